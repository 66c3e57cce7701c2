"""A local search around a member: single gate flips and swaps within a cost band, on held-out loss.

At the cheap end of the family (issue 12) the hypernetwork's own patterns near a latency were worse
than what a fixed-lambda pruning at one lambda finds there. ``refine`` starts from a pattern (the
member the band search or the device loop chose) and moves, greedily, to the best neighbour on the
held-out loss (``BandSearch.losses``, the same score the member was chosen by) while one improves:

- a neighbour flips one channel group on or off, or swaps one kept group of a block for a dropped
  one of the same block (a swap keeps the cost: a block's groups cost the same), and
- its exact cost lies within [lo, hi] in the family's primary metric (a LUT band).

It uses no training and no test data; the held-out batches are the validation split's. How much it
helps, and what it costs, is measured in ``benchmarks/bench_prune.py`` (docs/performance.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hilnas.searchers.spaces.resnet import GatePattern

if TYPE_CHECKING:
    from hilnas.searchers.prune.band import BandSearch


@dataclass(frozen=True)
class Refined:
    """Where the local search ended, its held-out loss, and how much it looked at."""
    pattern: GatePattern
    val_loss: float
    start_loss: float
    moves: int
    scored: int        # neighbours scored (each once; the search's loss cache is shared)


def neighbours(pattern: GatePattern) -> list[GatePattern]:
    """Every pattern one group flip, or one swap of a kept and a dropped group within a block, away."""
    masks = [list(m) for m in pattern.masks]
    out = []
    for b, m in enumerate(masks):
        for g in range(len(m)):
            m[g] = not m[g]
            out.append(GatePattern(tuple(map(tuple, masks))))
            m[g] = not m[g]
        for on in [g for g, v in enumerate(m) if v]:
            for off in [g for g, v in enumerate(m) if not v]:
                m[on], m[off] = False, True
                out.append(GatePattern(tuple(map(tuple, masks))))
                m[on], m[off] = True, False
    return out


def refine(search: BandSearch, pattern: GatePattern, lo: float, hi: float, *, rounds: int = 3) -> Refined:
    """Greedy descent on the held-out loss from ``pattern`` over ``neighbours`` whose cost lies in [lo, hi]."""
    if rounds < 0 or lo > hi:
        raise ValueError(f"need rounds >= 0 and lo <= hi, got rounds={rounds}, [{lo}, {hi}]")
    r = search.result
    model = r.models[r.primary]
    best = pattern
    start = best_loss = search.loss(pattern)
    moves, seen = 0, set()
    for _ in range(rounds):
        near = [q for q in neighbours(best) if lo <= model.genotype_cost(r.space, q) <= hi]
        if not near:
            break
        seen.update(near)
        losses = search.losses(near)
        q = min(near, key=losses.__getitem__)
        if losses[q] >= best_loss:
            break
        best, best_loss, moves = q, losses[q], moves + 1
    return Refined(best, best_loss, start, moves, len(seen))
