"""A dense chain of candidates near a budget: channel groups dropped one at a time from a dearer pattern.

Issue 12, ninth session. Near some fixed networks' latencies the family's own patterns (modes and samples at the
lambdas that bracket a budget) had a held-out loss well above the fixed pruning's, and the few there were spaced so
coarsely in latency that the match's [0.95, 1.0] window often held one poor candidate or none (causes (i) and (ii)
of the sixth to eighth sessions). A fixed-lambda pruning's free logits move, step after step, along the
cross-entropy's gradient with respect to the gates; a dropped group is one whose gate that gradient pushed down
further than the penalty's pull needed.

``chain`` does that descent greedily and without training. From ``start`` (the dearer bracketing member's pattern)
it drops the kept channel group whose estimated rise in cross-entropy per unit of cost saved is least, then
estimates again, until the pattern costs less than ``lo``; every pattern on the way is a candidate. The estimate is
first order, ``-dCE/dgate`` at the pattern's own 0/1 gates in the gated network (``saliency``; BatchNorm on batch
statistics, as the search judges patterns), on batches of the gates' split other than the held-out ones that rank
the candidates, so the ranking is not the one that chose them. A group whose removal lowers the loss (its estimate
is negative) goes first whatever it saves: the fixed lambda = 0 pruning's kind of drop, which the pinned anchor never
makes. The chain is finely spaced in cost (one group at a time), so a band of 5 % of a budget holds several of its
patterns; the LUT prices each exactly.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from hilnas.searchers.prune.gates import pattern_gates
from hilnas.searchers.spaces.resnet import GatePattern

if TYPE_CHECKING:
    from hilnas.searchers.prune.search import PruneResult
    from hilnas.searchers.train import Batch


def saliency(result: PruneResult, pattern: GatePattern, batches: Sequence[Batch]) -> torch.Tensor:
    """(B, G): the first-order change of the mean cross-entropy on ``batches`` when each group of ``pattern`` is
    dropped, ``-dCE/dgate`` at the pattern's 0/1 gates (its kept groups' entries are the ones that mean anything)."""
    block, group = pattern_gates(result.layout, pattern)
    group = group.clone().requires_grad_(True)
    total = torch.zeros(())
    n = 0
    for x, y in batches:
        total = total + F.cross_entropy(result.net(x, (block, group)), y, reduction="sum")
        n += len(y)
    (grad,) = torch.autograd.grad(total / n, group)
    return -grad.detach()


def chain(result: PruneResult, start: GatePattern, batches: Sequence[Batch], lo: float) -> list[GatePattern]:
    """The patterns from ``start`` (excluded) dropping one channel group at a time, each the least estimated rise in
    cross-entropy per cost saved (``saliency``, estimated again after every drop), down to the first whose cost in
    the family's primary metric is below ``lo`` (included), or to the empty pattern."""
    if not batches:
        raise ValueError("a chain needs batches to estimate the drops on")
    costs = result.costs[result.primary]
    masks = [list(m) for m in start.masks]
    out: list[GatePattern] = []
    pattern = start
    while any(any(m) for m in masks) and costs.pattern_cost(pattern) >= lo:
        rise = saliency(result, pattern, batches)
        best, key = None, None
        for b, m in enumerate(masks):
            k = sum(m)
            saved = float(costs.branch[b, k] - costs.branch[b, k - 1]) if k else 0.0
            for g, on in enumerate(m):
                if not on:
                    continue
                r = float(rise[b, g])
                # a drop that lowers the loss first (most first); else the least rise per cost saved
                here = (0, r) if r < 0 else (1, r / saved if saved > 0 else float("inf"))
                if key is None or here < key:
                    best, key = (b, g), here
        b, g = best  # type: ignore[misc]
        masks[b][g] = False
        pattern = GatePattern(tuple(map(tuple, masks)))
        out.append(pattern)
    return out
