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
cost is recorded. The walk ends at the first scale whose network is (within ``sweep_reach`` of the
span) the cheapest valid network, or at ``sweep_max``. The points and the theorem's estimate are
both kept (``HypernetResult.sweep``, ``bound``).

Which scale of the walk is Lambda (``sweep_rule``, issue 12 continued). "reach" (the rule before) takes
the walk's end. That is set by its tail: on the demo DARTS space (C=4, 3 cells) it was 4.05 in every
seed, while most of the descent was done by ~0.2-0.5 and the hypernetwork's family stopped moving by
~0.3, so half the family's grid repeated the cheap end. "descent" (the default) takes the scale where
the walk has made most of its descent: with f(s) the derived network's cost fraction along the walk,

    Lambda = min { s_i : f(s_i) - min_j f(s_j) <= tau * (f(s_1) - min_j f(s_j)) },   tau = sweep_descent,

the smallest scale left with at most a share tau of the walk's own descent (its start to its cheap
end; tau = 0.5 by default, the half-descent scale). Deviation from seed 004, which reads Lambda off a
plateau of the accuracy: the last-step cross-entropies of a few-step walk are one quarter-batch each
and too noisy to find a plateau in, so the rule reads the cost, which is deterministic given the
walk. The walk's end is kept as ``Lambda_reach``.

Theorem 1 from the sweep (``path_bound``): the theorem's sup runs over every valid network, and on
DARTS the cheapest one (skip connections and pools only) loses more than a constant predictor with
the supernet's shared weights (2.67 against 2.25 nats on the demo DARTS space), so the theorem bounds
nothing there. The sweep walks the networks the family actually moves through, from the lambda = 0
end to (nearly) the cheapest; with the sup taken over those networks instead,
``(H - max_path L(g)) / T^T 1`` bounds where the family's own networks stop beating a constant.
This is a deviation from the seed (a sup over the reached networks, not over Gamma_valid), recorded
beside the theorem's estimate, never used to set Lambda.
"""
from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
import torch.nn.functional as F

from hilnas.searchers.hypernet.bound import (BoundEstimate, Probe, constant_predictor_loss, estimate_bound,
                                             genotype_loss)
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
    Lambda: float                 # by ``rule``
    cheapest_fraction: float      # the cheapest valid network's fraction (what "reached" is measured against)
    reached: bool                 # some scale derived (nearly) the cheapest network
    notes: tuple[str, ...] = ()
    path_bound: BoundEstimate | None = None   # Theorem 1 with the sup over the sweep's networks (``path_bound``)
    rule: str = "reach"
    Lambda_reach: float = math.nan   # the walk's end ("reach", the rule before issue 12's continuation)
    Lambda_descent: float = math.nan  # where the walk has made most of its descent ("descent")

    def to_dict(self) -> dict[str, Any]:
        return {"Lambda": self.Lambda, "rule": self.rule, "Lambda_reach": self.Lambda_reach,
                "Lambda_descent": self.Lambda_descent, "reached": self.reached, "cheapest_fraction": self.cheapest_fraction,
                "points": [p.to_dict() for p in self.points], "notes": list(self.notes),
                "path_bound": self.path_bound.to_dict() if self.path_bound else None}


def path_bound(supernet: ValidSupernet, sweep: ScaleSweep, batches: Sequence[Batch]) -> BoundEstimate:
    """Theorem 1's estimate with the sweep's distinct networks as the probes (see the module docstring)."""
    labels = torch.cat([y for _, y in batches])
    h = constant_predictor_loss(labels, supernet.space.num_classes)
    probes, seen = [], set()
    for p in sweep.points:
        if p.genotype not in seen:
            seen.add(p.genotype)
            probes.append(Probe(p.genotype, genotype_loss(supernet, p.genotype, batches), max(p.fraction, 0.0)))
    est = estimate_bound(h, probes)
    return dataclasses.replace(est, samples=int(labels.numel()), source="sweep path" if est.applies else "none")


def descent_scale(points: Sequence[SweepPoint], tau: float) -> float:
    """The smallest scale of the walk left with at most ``tau`` of its descent (module docstring)."""
    if not points:
        raise ValueError("descent_scale needs at least one sweep point")
    start, end = points[0].fraction, min(p.fraction for p in points)
    return next(p.scale for p in points if p.fraction - end <= tau * (start - end))


def with_rule(points: Sequence[SweepPoint], cheapest: float, reached: bool, config: HypernetConfig,
              notes: tuple[str, ...] = ()) -> ScaleSweep:
    """The sweep's result, Lambda chosen by ``config.sweep_rule``, both rules' scales recorded."""
    reach, descent = points[-1].scale, descent_scale(points, config.sweep_descent)
    return ScaleSweep(tuple(points), descent if config.sweep_rule == "descent" else reach, cheapest, reached, notes,
                      rule=config.sweep_rule, Lambda_reach=reach, Lambda_descent=descent)


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
            return with_rule(points, cheapest, True, config)
    return with_rule(points, cheapest, False, config,
                     (f"the sweep never reached the cheapest network (fraction {points[-1].fraction:.3f} at scale "
                      f"{points[-1].scale:.4g}, cheapest {cheapest:.3f}); its end is its largest scale: raise "
                      "sweep_max for a family that reaches further",))
