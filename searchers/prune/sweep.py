"""Fixed-lambda pruning, the lambda sweep, and Lambda from it and from Theorem 1 (seed 004, section 3).

Fixed-lambda pruning optimises one free logit per gate on ``L(gamma) + lambda T^T gamma / T^T 1``
(``gates.GateObjective``; Adam, Gumbel-Softmax with straight-through, temperature annealed) and takes
each gate's mode: the separately optimised baseline a hypernetwork member is compared with.

The sweep is the seed's first experiment: for lambda_1 < ... < lambda_n it prunes at each lambda
(continuing from the previous lambda's logits, so each point needs few steps) and records the
derived pattern, its cost and its accuracy on held-out batches. Accuracy against lambda has a
plateau for small lambda and then falls to the worst quality; Lambda is "the max value for lambda
which keeps positive metrics": the largest swept lambda before the first one whose network has
fallen to the worst quality (every block dropped, or its accuracy within ``drop``, a quarter, of the
way from the worst quality, the larger of chance and the fully pruned network's accuracy, to the
unpruned network's). Above it little changes, and the hypernetwork need not learn it.

Theorem 1's Lambda = (H - sup_valid L) / T^T 1 (H: the best constant predictor's loss, the label
entropy) is estimated too, on the same batches, with the probes the DARTS-space searcher uses
(``hypernet.bound``: the cheapest and dearest patterns and random ones). Every gate pattern keeps its
shortcuts, so Gamma_valid is all of {0, 1}^|E|: the theorem's guarantee (no broken graph below
Lambda) is void here, and with pre-trained weights frozen the fully pruned network usually loses
more than a constant predictor, so the theorem's condition fails and its bound is not positive. It
is recorded either way; the sweep sets the range.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import torch

from hilnas.searchers.hypernet.bound import BoundEstimate, Probe, constant_predictor_loss, estimate_bound
from hilnas.searchers.prune.gates import GateObjective, annealed, pattern_loss_accuracy
from hilnas.searchers.spaces.resnet import GatePattern

if TYPE_CHECKING:
    from hilnas.searchers.prune.search import PruneConfig
    from hilnas.searchers.train import Batch


def cycle(loader: Iterable[Batch]) -> Iterator[Batch]:
    """The loader's batches for ever (reshuffled on every pass when the loader shuffles)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the loader has no batches")


def optimise_gates(objective: GateObjective, lam: float, logits: torch.Tensor, batches: Iterator[Batch],
                   steps: int, config: PruneConfig, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Free gate logits after ``steps`` Adam steps on the objective at ``lam``, starting from ``logits``."""
    theta = logits.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=config.gate_lr)
    for i in range(steps):
        x, y = next(batches)
        loss, _ = objective(theta, lam, x, y, annealed(i, steps, config.tau_start, config.tau_end),
                            generator=generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return theta.detach()


@dataclass(frozen=True)
class SweepPoint:
    """The pattern pruning at one fixed lambda derived, and how it does on the held-out batches."""
    lam: float
    pattern: GatePattern
    cost: float          # exact cost in the primary metric
    fraction: float      # (cost - rest) / T^T 1
    loss: float          # cross-entropy, nats
    accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return {"lambda": self.lam, "pattern": self.pattern.to_dict(), "cost": self.cost, "fraction": self.fraction,
                "loss": self.loss, "accuracy": self.accuracy}


@dataclass(frozen=True)
class LambdaEstimate:
    """Lambda and what it came from: the sweep (accuracy vs lambda) and Theorem 1, both kept."""
    Lambda: float                   # the range phase 2 samples lambda from, nats per T^T 1
    source: str                     # "sweep" | "theorem" | "given"
    sweep_Lambda: float             # where the sweep's accuracy reached the worst quality
    theorem: BoundEstimate          # Theorem 1 on the probes (``applies`` False when its condition fails)
    points: tuple[SweepPoint, ...]
    full_accuracy: float            # the unpruned network on the held-out batches
    floor_accuracy: float           # the network with every block dropped (the worst quality)
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None
        return {"Lambda": self.Lambda, "source": self.source, "sweep_Lambda": num(self.sweep_Lambda),
                "theorem_Lambda": num(self.theorem.Lambda), "theorem": self.theorem.to_dict(),
                "points": [p.to_dict() for p in self.points], "full_accuracy": self.full_accuracy,
                "floor_accuracy": self.floor_accuracy, "notes": list(self.notes)}


def sweep_lambdas(config: PruneConfig) -> list[float]:
    """``sweep_points`` values from ``sweep_min`` to ``sweep_max``, evenly spaced in log."""
    n, lo, hi = config.sweep_points, config.sweep_min, config.sweep_max
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


def lambda_sweep(objective: GateObjective, batches: Iterator[Batch], held_out: list[Batch], config: PruneConfig,
                 *, start: torch.Tensor, generator: torch.Generator | None = None) -> list[SweepPoint]:
    """Prune at each swept lambda in turn, each from the previous one's logits (``start`` first)."""
    costs, layout = objective.costs, objective.layout
    logits, points = start, []
    for lam in sweep_lambdas(config):
        logits = optimise_gates(objective, lam, logits, batches, config.sweep_steps, config, generator=generator)
        pattern = layout.pattern(logits)
        cost = costs.pattern_cost(pattern)
        loss, acc = pattern_loss_accuracy(objective.net, layout, pattern, held_out)
        points.append(SweepPoint(lam, pattern, cost, costs.fraction(cost), loss, acc))
    return points


def sweep_Lambda(points: list[SweepPoint], full_accuracy: float, worst_accuracy: float, drop: float
                 ) -> tuple[float, list[str]]:
    """The largest swept lambda before the first one whose network has fallen to the worst quality (every block
    dropped, or the accuracy within ``drop`` of the way from the worst quality to the unpruned network's)."""
    line = worst_accuracy + drop * (full_accuracy - worst_accuracy)
    for i, p in enumerate(points):
        if not any(p.pattern.kept_blocks) or p.accuracy <= line:
            if i == 0:
                return p.lam, [f"the sweep's smallest lambda {p.lam:.4g} already pruned the network to the worst "
                               "quality; lower sweep_min"]
            return points[i - 1].lam, []
    last = points[-1]
    return last.lam, [f"the sweep never reached the worst quality (accuracy {last.accuracy:.3f} at lambda "
                      f"{last.lam:.4g}, above {line:.3f}); Lambda is its largest lambda: raise sweep_max "
                      "for a family that reaches further"]


def theorem_estimate(objective: GateObjective, held_out: list[Batch], samples: int, *, seed: int,
                     num_classes: int) -> BoundEstimate:
    """Theorem 1's Lambda on ``held_out``: the label entropy against the worst probe pattern's loss."""
    space, costs, layout = objective.net.space, objective.costs, objective.layout
    B = len(space.layers())
    rng = random.Random(seed)
    probes = [GatePattern.empty(B, space.groups), GatePattern.full(B, space.groups)]
    probes += [space.sample(rng) for _ in range(samples)]
    labels = torch.cat([y for _, y in held_out])
    h = constant_predictor_loss(labels, num_classes)
    found = [Probe(p, pattern_loss_accuracy(objective.net, layout, p, held_out)[0],
                   costs.fraction(costs.pattern_cost(p))) for p in dict.fromkeys(probes)]
    est = estimate_bound(h, found)
    return BoundEstimate(**{**est.__dict__, "samples": int(labels.numel())})
