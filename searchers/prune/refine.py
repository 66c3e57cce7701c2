"""Two ways to improve on the hypernetwork's own patterns near a budget: gate logits tuned at one lambda, and a
local search of gate flips and swaps within a cost band, on held-out loss.

``tuned`` (issue 12, eighth session): a fixed-lambda pruning trains its free logits for all its steps at one lambda
on whole batches; phase 2 trains the hypernetwork over [0, Lambda], a quarter batch per lambda, so near any one lambda
the family has had a small share of the steps (cause (ii): on the CIFAR-10 subset the fixed networks' held-out
loss was below the members' at the same latency). ``tuned`` starts from the hypernetwork's logits at lambda and
takes ``steps`` Adam steps of free logits on the same objective at that lambda (the temperature annealed as a fixed
pruning's), and returns the mode after every step: more candidates near the family, each
judged like the others (cost band, held-out loss, the device).

The local search:

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

import torch

from hilnas.searchers.prune.gates import GateObjective, annealed
from hilnas.searchers.spaces.resnet import GatePattern

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hilnas.searchers.prune.band import BandSearch
    from hilnas.searchers.prune.search import PruneResult
    from hilnas.searchers.train import Batch


def tuned(result: PruneResult, lam: float, batches: Iterator[Batch], steps: int, *,
          generator: torch.Generator | None = None, target: float | None = None, rate: float = 1.0) -> list[GatePattern]:
    """The modes of free gate logits after each of ``steps`` Adam steps (``config.gate_lr``) on ``L + lam T``, started
    from the hypernetwork's logits at ``lam``, the temperature annealed as a fixed pruning's (at phase 2's final one the
    cross-entropy's gradient through gates near 0/1 is too small to move them in a few steps: on the test's toy, 30
    steps at 0.3 kept a group whose removal lowers the loss by 0.4 nats); distinct, in the order reached.

    With ``target`` (a cost in the primary metric) lambda follows the logits' expected cost after each step,
    ``lambda *= exp(rate (f - f*) / f*)`` in cost fractions (f* the target's), so the modes stay near that cost
    instead of drifting to where a fixed pruning at ``lam`` would settle (aimed at a budget, not at a lambda).
    ``tuned_together`` with this one lambda."""
    return tuned_together(result, [lam], batches, steps, generator=generator,
                          targets=None if target is None else [target], rate=rate)[0]


@dataclass(frozen=True)
class Refined:
    """Where the local search ended, its held-out loss, and how much it looked at."""
    pattern: GatePattern
    val_loss: float
    start_loss: float
    moves: int
    scored: int        # neighbours scored (each once; the search's loss cache is shared)


def tuned_together(result: PruneResult, lams: list[float], batches: Iterator[Batch], steps: int, *,
                   generator: torch.Generator | None = None, targets: list[float] | None = None,
                   rate: float = 1.0) -> list[list[GatePattern]]:
    """``tuned`` at several lambdas at once, each on its share of every batch, in one forward pass (``segments``, as
    phase 2 runs its lambdas): a step costs about one whole-batch step for all of them. Per lambda, its modes;
    ``targets``, one per lambda, aim each as ``tuned``'s ``target``."""
    if steps < 0 or not lams or min(lams) < 0:
        raise ValueError(f"need steps >= 0 and lambdas >= 0, got steps={steps}, lambdas={lams}")
    if targets is not None and len(targets) != len(lams):
        raise ValueError(f"need one target per lambda, got {len(targets)} for {len(lams)}")
    cfg = result.config
    costs = result.costs[result.primary]
    objective = GateObjective(result.net, costs, result.layout)
    aims = None
    if targets is not None:
        aims = torch.tensor([max(costs.fraction(t), 1e-3) for t in targets], dtype=torch.float64)
        lams = [max(lam, 0.01 * result.Lambda) for lam in lams]   # a multiplicative update needs lambda > 0
    theta = torch.stack([result.logits(lam) for lam in lams]).detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=cfg.gate_lr)
    out: list[dict[GatePattern, None]] = [{} for _ in lams]
    lam_t = torch.tensor(lams, dtype=torch.float64)
    for i in range(steps):
        x, y = next(batches)
        loss, _ = objective.several(theta, lam_t, x, y, annealed(i, steps, cfg.tau_start, cfg.tau_end),
                                    generator=generator)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        for j, row in enumerate(theta.detach()):
            out[j].setdefault(result.layout.pattern(row))
        if aims is not None:
            with torch.no_grad():
                f = objective.cost_fractions(theta).double()
            lam_t = lam_t * torch.exp(torch.clamp(rate * (f - aims) / aims, -1.0, 1.0))
    return [list(o) for o in out]


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
