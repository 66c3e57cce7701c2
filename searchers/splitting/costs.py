"""e_l of eq. (1): how much one more neuron in a layer costs the whole network, on the device.

Splitting a neuron of layer l widens layer l by one channel, so it changes two op keys: layer
l's own (one more output channel) and the next layer's (one more input channel: the depthwise
conv gets a channel and the pointwise conv a column), or the head's. Its cost is

    e_l = C(widths + 1_l) - C(widths)

under the run's cost model C: LUT latency or energy measured on the device (interpolated on the
width grid, ``spaces.mobilenet.grid``), or exact FLOPs / parameters. All neurons of a layer cost
the same, and seed 003 re-evaluates e_l at every growing step because it depends on the
current widths; so does ``split_costs``.

A measured grid can make a layer look free or cheaper when wider (timing noise, or a width that
suits the SIMD lanes better): such an e_l is raised to ``floor`` times the median of the positive
ones, so noise never makes a split free.
"""
from __future__ import annotations

import math
import statistics

from hilnas.searchers.cost import CostModel
from hilnas.searchers.spaces.mobilenet import MobileNetSpace, MobileNetWidths


def split_costs(space: MobileNetSpace, widths: MobileNetWidths, cost_model: CostModel, *, by: int = 1,
                floor: float = 0.05) -> tuple[tuple[float, ...], int]:
    """(e_l per layer for ``by`` more neurons, how many were raised to the floor); inf for a layer that
    cannot grow by ``by`` within its grid."""
    base = cost_model.genotype_cost(space, widths)
    raw = [cost_model.genotype_cost(space, widths.grown(l, by)) - base if widths.widths[l] + by <= space.max_width(l)
           else math.inf for l in range(space.num_layers)]
    positive = [e for e in raw if 0 < e < math.inf]
    least = floor * statistics.median(positive) if positive else 1e-12
    costs = tuple(e if e == math.inf or e >= least else least for e in raw)
    return costs, sum(1 for e, c in zip(raw, costs) if e != c)
