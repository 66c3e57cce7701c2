"""A dense chain of candidates near a budget: channel groups dropped one at a time from a dearer pattern.

Issue 12, ninth session. Near some fixed networks' latencies the family's own patterns (modes and samples at the
lambdas that bracket a budget) had a held-out loss well above the fixed pruning's, and the few there were spaced so
coarsely in latency that the match's [0.95, 1.0] window often held one poor candidate or none (causes (i) and (ii)
of the sixth to eighth sessions).

``chain`` descends greedily, without training: from ``start`` (the dearer bracketing member's pattern) it drops the
kept channel group whose removal raises the cross-entropy least per unit of cost saved (a drop that lowers it goes
first: the fixed lambda = 0 pruning's kind of drop, which the pinned anchor never makes), then measures again, until
the pattern costs less than ``lo``; every pattern on the way is a candidate. The rises are measured exactly, each
single drop run as its pruned network (``score.HeldOutLoss``) on batches of the gates' split other than the held-out
ones that rank the candidates, so the ranking is not the one that chose them. (A first-order estimate, the gradient
of the cross-entropy with respect to the gates at the pattern's 0/1 gates, was tried first: on the CIFAR-10 subset
it did not rank the drops, e.g. a group whose removal cost 0.089 nats it put among the harmless, and its chain from
the unpruned network rose to 1.64 nats at 56.8 ms where the exact one held 1.39.) The chain is finely spaced in cost
(one group at a time), so a band of 5 % of a budget holds several of its patterns; the LUT prices each exactly.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from hilnas.searchers.spaces.resnet import GatePattern

if TYPE_CHECKING:
    from hilnas.searchers.prune.score import HeldOutLoss
    from hilnas.searchers.prune.search import PruneResult


def without(pattern: GatePattern, b: int, g: int) -> GatePattern:
    """``pattern`` with channel group ``g`` of block ``b`` dropped."""
    masks = [list(x) for x in pattern.masks]
    masks[b][g] = False
    return GatePattern(tuple(map(tuple, masks)))


def drops(pattern: GatePattern) -> list[tuple[tuple[int, int], GatePattern]]:
    """Every pattern one kept channel group fewer than ``pattern``, with the (block, group) it drops."""
    return [((b, g), without(pattern, b, g)) for b, m in enumerate(pattern.masks) for g, on in enumerate(m) if on]


def _order(result: PruneResult, pattern: GatePattern, near: list, scorer: HeldOutLoss) -> list[tuple[int, int]]:
    """The (block, group) of ``near``'s drops from ``pattern``, the least rise in ``scorer``'s cross-entropy per cost
    saved first (a drop that lowers it before any)."""
    costs = result.costs[result.primary]
    base, here = scorer(pattern), costs.pattern_cost(pattern)
    losses = scorer.losses(p for _, p in near)
    keyed = []
    for (b, g), p in near:
        rise, saved = losses[p] - base, here - costs.pattern_cost(p)
        keyed.append(((0, rise) if rise < 0 else (1, rise / saved if saved > 0 else math.inf), (b, g)))
    return [bg for _, bg in sorted(keyed)]


def trims(result: PruneResult, start: GatePattern, scorer: HeldOutLoss, lo: float, hi: float) -> list[GatePattern]:
    """The patterns in [lo, hi] (cost in the family's primary metric) on the way down from ``start``, dropping one
    channel group at a time in the order of ``chain`` measured once at ``start``, and never below ``lo``: only the
    drops that keep the cost at or above ``lo`` are measured (``confirm.trimmed``: a candidate measured just above
    a band, a few groups short of it; the drops that would overshoot the band cannot give a candidate in it)."""
    costs = result.costs[result.primary]
    near = [(bg, p) for bg, p in drops(start) if costs.pattern_cost(p) >= lo]
    out, pattern = [], start
    for b, g in _order(result, start, near, scorer) if near else []:
        nxt = without(pattern, b, g)
        if costs.pattern_cost(nxt) >= lo:
            pattern = nxt
            out.append(pattern)
    return [p for p in out if costs.pattern_cost(p) <= hi]


def chain(result: PruneResult, start: GatePattern, scorer: HeldOutLoss, lo: float, *, refresh: int = 1
          ) -> list[GatePattern]:
    """The patterns from ``start`` (excluded) dropping one channel group at a time, each the least rise in ``scorer``'s
    cross-entropy per cost saved (a drop that lowers it first), the rises measured again every ``refresh`` drops (in
    between, the order of the last measurement), down to the first pattern whose cost in the family's primary metric
    is below ``lo`` (included), or to the empty pattern."""
    if refresh < 1:
        raise ValueError(f"refresh must be >= 1, got {refresh}")
    costs = result.costs[result.primary]
    out: list[GatePattern] = []
    pattern, order = start, []
    while any(any(m) for m in pattern.masks) and costs.pattern_cost(pattern) >= lo:
        if len(out) % refresh == 0:
            order = _order(result, pattern, drops(pattern), scorer)
        pattern = without(pattern, *next(bg for bg in order if pattern.masks[bg[0]][bg[1]]))
        out.append(pattern)
    return out
