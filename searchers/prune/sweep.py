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
unpruned network's). Above it little changes, and the hypernetwork need not learn it; so the sweep
stops at that first fallen lambda (``sweep_stop``) rather than pruning at the lambdas past it.

What the sweep costs (issue 12: a run within 1.5x one fixed-lambda pruning), measured on the CIFAR-10
subset's narrow ResNet, 1 thread: one sweep lambda's 20 gate steps cost what 20 steps of a fixed
pruning cost, and the scoring is cheap beside them (8 held-out batches: ~3 s CPU of a 28 s sweep);
so the steps are what count. Halving them (10 per lambda) made each pattern lag a lambda behind
and moved Lambda from 3.05 to 30 (never fell), so they stay; each step instead uses half of its
batch (``sweep_batch`` 32 of 64 images: the same patterns and Lambda as whole batches on the same
batches, 13.6 s CPU instead of 25.9 s; 16 images: 10.1 s, but the patterns drift and Lambda moved
to 9.56). The sweep also scores on 4 batches, stops at the drop, and Theorem 1 reuses its patterns.
It starts at 0.1 with 6 lambdas (seventh session; 8 from 0.01 before, the same spacing): in every earlier
run on both datasets and agents the first three lambdas derived the unpruned network, and on the same data
the 6 lambdas from 0.1 put Lambda at the same point of the grid (9.59 against 9.56, the drop at 30 on both
datasets) for 2.2 s less CPU on Fashion-MNIST and 3.5 s on the CIFAR-10 subset
(``bench_prune.py --sweep-only``, ``benchmarks/results/prune_*_sweep_s7.json``).

Theorem 1's Lambda = (H - sup_valid L) / T^T 1 (H: the best constant predictor's loss, the label
entropy) is estimated too, on the same batches, with ``hypernet.bound``'s estimator; its probes are
the cheapest and dearest patterns and every pattern the sweep scored (already scored: no extra
forward pass), plus ``bound_samples`` random ones (4). The random ones stay: without them the worst
probe is a sweep pattern or the empty network, whose losses on the CIFAR-10 subset were below the
label entropy, so the theorem seemed to apply (Lambda 0.02-0.08), while random patterns lose more
than the constant predictor (2.86 and 2.69 nats against H = 2.30; the empty network 2.24): with them
it does not apply (-0.56). They cost ~1 s CPU on 4 batches. Every gate pattern keeps its shortcuts,
so Gamma_valid is all of {0, 1}^|E|: the theorem's guarantee (no broken graph below Lambda) is void
here. It is recorded either way; the sweep sets the range.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import torch

from hilnas.searchers.hypernet.bound import BoundEstimate, Probe, constant_predictor_loss, estimate_bound
from hilnas.searchers.prune.gates import GateObjective, annealed, pattern_loss_accuracy
from hilnas.searchers.spaces.resnet import GatePattern

if TYPE_CHECKING:
    from hilnas.searchers.prune.search import PruneConfig
    from hilnas.searchers.train import Batch


class Clock:
    """Wall and CPU (process) time of a ``with`` block: on a shared machine the wall time follows the load."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def record(self, timings: dict[str, float], name: str) -> None:
        timings[name], timings[f"{name}_cpu"] = self.wall, self.cpu


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
                 *, start: torch.Tensor, generator: torch.Generator | None = None,
                 fallen: Callable[[SweepPoint], bool] | None = None,
                 scored: dict[GatePattern, tuple[float, float]] | None = None) -> list[SweepPoint]:
    """Prune at each swept lambda in turn, each from the previous one's logits (``start`` first), scoring each
    pattern on ``held_out``; with ``fallen``, stop after the first point it accepts (the drop: nothing past it
    changes Lambda, and a network pruned to the worst quality stays there as lambda grows).

    ``scored``: pattern -> (loss, accuracy) already known on ``held_out`` (e.g. the unpruned network's); a pattern
    is scored once (on the plateau the sweep derives the unpruned network at several lambdas: 5 of 8 on CIFAR-10).
    """
    costs, layout = objective.costs, objective.layout
    logits, points = start, []
    known = dict(scored or {})
    n = config.sweep_batch
    small = ((x[:n], y[:n]) for x, y in batches) if n else batches   # the sweep's steps on part of each batch
    for lam in sweep_lambdas(config):
        logits = optimise_gates(objective, lam, logits, small, config.sweep_steps, config, generator=generator)
        pattern = layout.pattern(logits)
        cost = costs.pattern_cost(pattern)
        if pattern not in known:
            known[pattern] = pattern_loss_accuracy(objective.net, layout, pattern, held_out)
        loss, acc = known[pattern]
        points.append(SweepPoint(lam, pattern, cost, costs.fraction(cost), loss, acc))
        if fallen is not None and fallen(points[-1]):
            break
    return points


def has_fallen(full_accuracy: float, worst_accuracy: float, drop: float) -> Callable[[SweepPoint], bool]:
    """Whether a sweep point's network has fallen to the worst quality: every block dropped, or its accuracy
    within ``drop`` of the way from the worst quality to the unpruned network's."""
    line = worst_accuracy + drop * (full_accuracy - worst_accuracy)
    return lambda p: not any(p.pattern.kept_blocks) or p.accuracy <= line


def sweep_Lambda(points: list[SweepPoint], full_accuracy: float, worst_accuracy: float, drop: float
                 ) -> tuple[float, list[str]]:
    """The largest swept lambda before the first one whose network has fallen to the worst quality (``has_fallen``)."""
    fallen = has_fallen(full_accuracy, worst_accuracy, drop)
    for i, p in enumerate(points):
        if fallen(p):
            if i == 0:
                return p.lam, [f"the sweep's smallest lambda {p.lam:.4g} already pruned the network to the worst "
                               "quality; lower sweep_min"]
            return points[i - 1].lam, []
    last = points[-1]
    line = worst_accuracy + drop * (full_accuracy - worst_accuracy)
    return last.lam, [f"the sweep never reached the worst quality (accuracy {last.accuracy:.3f} at lambda "
                      f"{last.lam:.4g}, above {line:.3f}); Lambda is its largest lambda: raise sweep_max "
                      "for a family that reaches further"]


def theorem_estimate(objective: GateObjective, held_out: list[Batch], samples: int, *, seed: int,
                     num_classes: int, scored: Iterable[Probe] = ()) -> BoundEstimate:
    """Theorem 1's Lambda on ``held_out``: the label entropy against the worst probe pattern's loss.

    The probes are ``scored`` (patterns already scored on ``held_out``: the empty and full networks and the
    sweep's points, free) and ``samples`` random patterns scored here; the empty and full networks are
    scored here when ``scored`` lacks them.
    """
    space, costs, layout = objective.net.space, objective.costs, objective.layout
    B = len(space.layers())
    rng = random.Random(seed)
    found = {p.genotype: p for p in scored}
    probes = [GatePattern.empty(B, space.groups), GatePattern.full(B, space.groups)]
    probes += [space.sample(rng) for _ in range(samples)]
    for p in dict.fromkeys(probes):
        if p not in found:
            found[p] = Probe(p, pattern_loss_accuracy(objective.net, layout, p, held_out)[0],
                             costs.fraction(costs.pattern_cost(p)))
    labels = torch.cat([y for _, y in held_out])
    est = estimate_bound(constant_predictor_loss(labels, num_classes), list(found.values()))
    return BoundEstimate(**{**est.__dict__, "samples": int(labels.numel())})
