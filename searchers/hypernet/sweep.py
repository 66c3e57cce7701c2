"""Lambda from a sweep of the scale (seed 004, section 3), for the DARTS-space hypernetwork.

Theorem 1 bounds the *discrete* problem: below its Lambda the best network is a valid graph. The
hypernetwork trains the *relaxed* problem, where the architecture moves once the penalty's
gradient outweighs the cross-entropy's, and that happens at scales unrelated to the bound: on the
demo NB201 (C=8, N=1) the theorem gave Lambda = 0.31 and no member below it differed from the
lambda = 0 cell, while on DARTS the theorem did not apply at all (the worst probe lost more than a
constant predictor) and the fallback 0.5 left the family within 2.39-2.75 ms. So, as seed 004's
first experiment does, Lambda is measured: for scales s_1 < ... < s_n (log-spaced), free
architecture parameters take ``sweep_steps`` Adam steps on the search's own loss at that scale
(at the centre of the simplex, continuing from the previous scale), and the derived network's
cost is recorded. Lambda is the first scale whose network is (within ``sweep_reach`` of the span)
the cheapest valid network: above it the family has nowhere cheaper to go. The points and the
theorem's estimate are both kept (``HypernetResult.sweep``, ``bound``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F

from hilnas.searchers.hypernet.derive import valid_genotype

if TYPE_CHECKING:
    from hilnas.searchers.hypernet import HypernetConfig, ValidSupernet
    from hilnas.searchers.hypernet.objective import Objective
    from hilnas.searchers.train import Batch


@dataclass(frozen=True)
class SweepPoint:
    """The network free architecture parameters derive after a few steps at one scale."""
    scale: float
    genotype: Any
    fraction: float       # its complexity as a fraction of the span (0 = the cheapest's variable cost)
    loss: float           # the last step's cross-entropy, nats

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "genotype": self.genotype.to_dict(), "fraction": self.fraction,
                "loss": self.loss}


@dataclass(frozen=True)
class ScaleSweep:
    """The sweep's points and the Lambda it gives."""
    points: tuple[SweepPoint, ...]
    Lambda: float
    cheapest_fraction: float      # the cheapest valid network's fraction (what "reached" is measured against)
    reached: bool                 # some scale derived (nearly) the cheapest network
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"Lambda": self.Lambda, "reached": self.reached, "cheapest_fraction": self.cheapest_fraction,
                "points": [p.to_dict() for p in self.points], "notes": list(self.notes)}


def scales(config: HypernetConfig) -> list[float]:
    n, lo, hi = config.sweep_points, config.sweep_min, config.sweep_max
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


def sweep_scale(supernet: ValidSupernet, objective: Objective, start: dict[str, torch.Tensor],
                next_val_batch: Callable[[], Batch], config: HypernetConfig) -> ScaleSweep:
    """Run the sweep from the architecture ``start`` (parameter name -> tensor); see the module docstring."""
    space, model = supernet.space, objective.complexity
    span = objective.spans[model.metric]
    cheapest = span.fraction(span.cheapest_cost)
    arch = {k: v.detach().clone().requires_grad_(True) for k, v in start.items()}
    opt = torch.optim.Adam(list(arch.values()), lr=config.sweep_lr)
    k = len(objective.ops)
    points = []
    for s in scales(config):
        coeffs = torch.full((k,), s)
        loss = math.nan
        for _ in range(config.sweep_steps):
            x, y = next_val_batch()
            with supernet.using(arch):
                ce = F.cross_entropy(supernet(x), y)
                op_w, edge_w = supernet.op_weights(), supernet.edge_weights()
            total = ce + objective.penalty(coeffs, op_w, edge_w)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            loss = float(ce.detach())
        with torch.no_grad(), supernet.using(arch):
            g, _ = valid_genotype(space, supernet.op_weights(), supernet.edge_weights())
        points.append(SweepPoint(s, g, span.fraction(model.genotype_cost(space, g)), loss))
        if points[-1].fraction <= cheapest + config.sweep_reach * (1 - cheapest):
            return ScaleSweep(tuple(points), s, cheapest, True)
    return ScaleSweep(tuple(points), points[-1].scale, cheapest, False,
                      (f"the sweep never reached the cheapest network (fraction {points[-1].fraction:.3f} at scale "
                       f"{points[-1].scale:.4g}, cheapest {cheapest:.3f}); Lambda is its largest scale: raise "
                       "sweep_max for a family that reaches further",))
