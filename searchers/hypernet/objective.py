"""The hypernetwork search's training-time parts: seed 002's cost terms (``Objective``) and the
architecture-step hook ``HyperArchitect`` that ``train.train`` calls before every weight step.

See ``hypernet`` for the method (sampling, the warm-up, Lambda's estimate and re-estimates).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
from typing import TYPE_CHECKING, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hilnas.searchers.cost import CostModel, CostTables, expected_cost
from hilnas.searchers.hypernet.bound import (BoundEstimate, CostSpan, cost_span, estimate_from_supernet, is_valid,
                                             one_hot_arch)
from hilnas.searchers.hypernet.children import child, edge_ops
from hilnas.searchers.hypernet.derive import derive
from hilnas.searchers.hypernet.knee import family_knee, next_Lambda
from hilnas.searchers.hypernet.sweep import ScaleSweep, path_bound, sweep_scale
from hilnas.searchers.hypernet.tradeoff import ScaleMap, TradeOff, center
from hilnas.searchers.spaces import NB201Space
from hilnas.searchers.train import Batch, StepContext, TrainHooks, evaluate

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from hilnas.searchers.hypernet import HypernetConfig, RelaxedSupernet
    from hilnas.searchers.spaces import SearchSpace

# the search's logger, as before the split: these messages are the search's
log = logging.getLogger("hilnas.searchers.hypernet")


# -- the objective ------------------------------------------------------------------------------
def coefficient_ops(space: SearchSpace) -> tuple[str, ...]:
    """The op types that get a trade-off coefficient: every op of the space but ``none`` (it costs nothing)."""
    return tuple(op for op in space.ops if op != "none")


def checked_cost_models(space: SearchSpace, cost_model: CostModel, complexity: CostModel | None = None,
                        energy: CostModel | None = None) -> dict[str, CostModel]:
    """metric -> cost model for the given models, each checked against ``space`` (MissingOpsError names gaps)."""
    models: dict[str, CostModel] = {}
    for m in (cost_model, complexity or cost_model, energy):
        if m is not None:
            m.check(space)
            models.setdefault(m.metric, m)
    return models


class Objective:
    """The cost terms of seed 002's loss for one space, as fractions of each model's full span."""

    def __init__(self, space: SearchSpace, complexity: CostModel, latency: CostModel | None,
                 energy: CostModel | None, *, kappa: float, kappa_energy: float, kappa_scaling: str = "scale"):
        self.space = space
        self.kappa_scaling = kappa_scaling   # "scale": kappa x the drawn scale; "Lambda": kappa x Lambda at every scale
        self.kappa_on = True                 # off while the sweep measures where lambda's own term moves the network
        self.ops = coefficient_ops(space)
        self.index = torch.tensor([space.ops.index(op) for op in self.ops])
        self.complexity = complexity
        self.spans: dict[str, CostSpan] = {complexity.metric: cost_span(space, complexity)}
        self.terms: list[tuple[float, CostModel]] = []
        self.kappa_scale = 1.0   # "Lambda": the kappas are relative to Lambda, set to it once it is known
        for weight, model in ((kappa, latency), (kappa_energy, energy)):
            if model is not None and weight > 0:
                self.spans.setdefault(model.metric, cost_span(space, model))
                self.terms.append((weight, model))

    def complexity_term(self, coeffs: torch.Tensor, op_w: Mapping[str, torch.Tensor],
                        edge_w: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
        """sum_o coeffs[o] R_o(alpha): the expected complexity, each op type's part weighted by its coefficient."""
        t: CostTables = self.complexity.tables(self.space)
        c = torch.zeros(len(self.space.ops), dtype=torch.float64)
        c[self.index] = coeffs.detach().double().cpu()
        mean = float(c[self.index].mean())
        weighted = CostTables(t.cell_types, t.edge * c, t.add * mean, t.preprocess * mean, 0.0)
        return expected_cost(self.space, weighted, op_w, edge_w) / self.spans[self.complexity.metric].span

    def fraction(self, model: CostModel, op_w: Mapping[str, torch.Tensor],
                 edge_w: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
        span = self.spans[model.metric]
        return (model.expected_cost(self.space, op_w, edge_w) - span.rest) / span.span

    def kappa_factor(self, coeffs: torch.Tensor) -> float:
        """What the kappas multiply at these coefficients: the scale (their largest), or Lambda.

        "scale" (the default): the latency term rides with the scale, so lambda = 0 is accuracy alone. A
        kappa term at every scale sets where the lambda = 0 end of the family sits, since the
        cross-entropy's gradient on the alphas is far weaker than any cost term's: on the demo DARTS
        space (C=4, 3 cells) kappa x Lambda = 0.04 nats per span moved the lambda = 0 member from 3.3 to
        2.3 ms of a 1.2-4.6 ms range, and 0.4 (the old default on DARTS, where the sweep's Lambda is 4.05)
        to 1.4 ms, so every member was one cheap cell.
        """
        if not self.kappa_on:
            return 0.0
        return float(coeffs.max()) if self.kappa_scaling == "scale" else self.kappa_scale

    def penalty(self, coeffs: torch.Tensor, op_w: Mapping[str, torch.Tensor],
                edge_w: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
        total = self.complexity_term(coeffs, op_w, edge_w)
        factor = self.kappa_factor(coeffs)
        for weight, model in self.terms:
            total = total + weight * factor * self.fraction(model, op_w, edge_w)
        return total


# -- the architecture step -------------------------------------------------------------------------
class HyperArchitect(TrainHooks):
    """Before each weight step: one Adam step of the hypernetwork at a drawn lambda; then draws the
    weight step's lambda. Estimates Lambda once the warm-up ends (unless it was given)."""

    def __init__(self, relaxed: RelaxedSupernet, objective: Objective, config: HypernetConfig, *,
                 steps_per_epoch: int, seed: int):
        if not config.is_resolved:
            raise ValueError("HyperArchitect: resolve the config for the space first (HypernetConfig.resolved)")
        self.relaxed, self.objective, self.config = relaxed, objective, config
        self.smap = ScaleMap.of(config)
        self.supernet, self.hypernet = relaxed.supernet, relaxed.hypernet
        total = steps_per_epoch * config.epochs
        self.warmup_steps = int(round(config.warmup_fraction * total))
        self.max_warmup_steps = int(round(config.max_warmup_fraction * total))
        self.recheck_steps = max(1, steps_per_epoch // 4)
        self.next_check = self.warmup_steps
        self.seed = seed
        self.rng = np.random.default_rng(seed + 1)
        self.path_rng = random.Random(seed + 2)   # "uniform": the weight steps' cells
        self.arch_rng = torch.Generator().manual_seed(seed + 3)   # "straight-through": the arch step's cells
        self.path_counts: dict[str, int] = {}     # "uniform"/"sandwich": op -> edges it was on over the weight steps' cells
        self.child_distances: dict[int, int] = {}  # "sandwich-children": edges redrawn -> children trained with that many
        self.epoch_val: list[Batch] = []           # config.epoch_val_batches fixed val batches, drawn at the first step
        self.epoch_val_acc: list[float] = []       # accuracy at lambda = 0 on them after each epoch
        self._dearest = None                       # "sandwich", phase 1: the dearest valid genotype (by Reg), found once
        self.phase1_loss: list[float] = []         # phase 1 ("dearest"): the fit's loss per step; empty = not run
        a = config.arch
        self.optimizer = torch.optim.Adam(self.hypernet.trained_parameters(), lr=a.lr, betas=a.betas,
                                          weight_decay=a.weight_decay)
        self.Lambda: float | None = None if isinstance(config.Lambda, str) else float(config.Lambda)
        objective.kappa_scale = self.Lambda or 0.0
        self.Lambda_cap: float | None = self.Lambda   # knee="family": the estimate, the most the knee's Lambda may be
        self.bound: BoundEstimate | None = None
        self.sweep: ScaleSweep | None = None
        self.bound_batches: list[Batch] = []
        self.Lambda_history: list[tuple[int, float]] = []   # (weight steps taken, Lambda) per estimate
        self.knees: list[dict] = []   # knee="family": each epoch's knee (``Knee.to_dict``) and the Lambda it was read at
        self.history: dict[str, list[float]] = {"scale": [], "ce": [], "penalty": [], "complexity": []}
        self.epoch_costs: list[dict[str, float]] = []
        self.steps_done = 0

    # the draws
    def sample_weights(self) -> np.ndarray:
        k = len(self.objective.ops)
        if self.rng.random() < self.config.center_fraction:
            return np.full(k, 1.0 / k)
        if self.config.sampling == "dirichlet":
            return self.rng.dirichlet(np.full(k, self.config.concentration))
        g = self.rng.gumbel(size=k) / self.config.temperature
        e = np.exp(g - g.max())
        return e / e.sum()

    def sample(self, stratum: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """Coefficients (k,) of a drawn lambda, in nats (scale: position uniform on [0, 1], see ScaleMap; within
        the ``stratum`` (j, n): the j-th of n equal parts of [0, 1])."""
        assert self.Lambda is not None
        w = self.sample_weights()
        j, n = stratum
        v = 0.0 if self.config.zero_fraction and self.rng.random() < self.config.zero_fraction \
            else (j + self.rng.uniform(0.0, 1.0)) / n
        scale = self.Lambda * self.smap.fraction(v)
        return torch.tensor(scale * w / w.max(), dtype=torch.float32)

    # the hooks
    def excluded_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        return list(self.hypernet.parameters()) + self.supernet.arch_parameters()

    def progress_metrics(self) -> Mapping[str, float]:
        """The last sampled lambda scale and Lambda (none during the warm-up)."""
        if self.Lambda is None or not self.history["scale"]:
            return {}
        return {"scale": self.history["scale"][-1], "Lambda": self.Lambda}

    def before_step(self, ctx: StepContext, model: nn.Module, train_batch: Batch,
                    next_val_batch: Callable[[], Batch]) -> None:
        self.steps_done = ctx.global_step
        if self.config.phase1 != "none" and not self.phase1_loss and ctx.global_step >= self.warmup_steps:
            self.fit_phase1()   # before the sweep, so its walk starts where the family's lambda = 0 end now is
        if self.config.epoch_val_batches and not self.epoch_val:
            self.epoch_val = [next_val_batch() for _ in range(self.config.epoch_val_batches)]
        if self.Lambda is None and ctx.global_step >= self.next_check:
            if self.config.Lambda == "sweep":
                self.estimate_sweep(next_val_batch)
            else:
                self.estimate_bound(next_val_batch)
            if self.Lambda is None:  # the networks do not beat a constant yet: train the weights longer
                self.next_check = ctx.global_step + self.recheck_steps
        if self.Lambda is None or ctx.global_step < self.warmup_steps:
            self.relaxed.coeffs = None
            self.relaxed.path = self.weight_path(ctx.global_step)
            return
        x, y = next_val_batch()
        k = min(self.config.lambdas_per_step, len(y))
        params = list(self.hypernet.trained_parameters())   # with the anchor pinned: the offsets, not lambda = 0's
        total = [torch.zeros_like(p) for p in params]
        # k lambdas per step, each on its share of the batch, their positions stratified over [0, 1]: every step
        # contrasts small and large lambdas, so the hypernetwork learns how the architecture depends on lambda
        for j, (xs, ys) in enumerate(zip(x.chunk(k), y.chunk(k))):
            coeffs = self.sample(stratum=(j, k)).to(x.device)
            arch = self.hypernet(self.smap.encode(coeffs, self.Lambda))
            with self.supernet.using(arch):
                with (self.supernet.sampled(self.arch_rng) if self.config.arch_step == "straight-through"
                      else contextlib.nullcontext()):
                    ce = F.cross_entropy(self.supernet(xs), ys)
                op_w, edge_w = self.supernet.op_weights(), self.supernet.edge_weights()   # the penalty: soft weights
            penalty = self.objective.penalty(coeffs, op_w, edge_w)
            grads = torch.autograd.grad((ce + penalty) / k, params, allow_unused=True)
            for t, g in zip(total, grads):
                if g is not None:
                    t.add_(g)
            with torch.no_grad():
                frac = float(self.objective.fraction(self.objective.complexity, op_w, edge_w))
            self.history["scale"].append(float(coeffs.max()))
            self.history["ce"].append(float(ce.detach()))
            self.history["penalty"].append(float(penalty.detach()))
            self.history["complexity"].append(frac)
        for p, g in zip(params, total):
            p.grad = g
        self.optimizer.step()
        # the weight step's architecture: a drawn lambda's, lambda = 0's or a uniform cell's (``weight_lambda``)
        self.relaxed.coeffs = self.smap.encode(self.sample(), self.Lambda) if self.config.weight_lambda == "drawn" \
            else None
        self.relaxed.path = self.weight_path(ctx.global_step)
        self.steps_done = ctx.global_step + 1

    def after_step(self, ctx: StepContext, model: nn.Module, loss: float) -> None:
        self.relaxed.path = None   # evaluations between steps run lambda = 0's architecture, as with the other modes

    def weight_path(self, step: int) -> dict[str, torch.Tensor] | None:
        """The one-hot cell the weight step at ``step`` runs, or None for the hypernetwork's architecture.

        "uniform": a uniformly drawn valid cell every step. "sandwich-children": the dearest cell, a child of it
        (``child_path``) and a uniform cell, in turn. "sandwich": the dearest valid cell (by the complexity
        Reg) on even steps and a uniform one on odd steps: BigNAS's sandwich rule with its largest child, one path
        per step so a step costs as before. Why: on the full-size NB201 after 8 epochs the shared weights fit the
        cheap cells no worse than the dear ones (every probed cell within 0.1 nats), so lambda = 0 derived a cheap
        cell and the family had nothing to trade; trained half the time, the dearest cell is the network the
        weights serve first (seed 004's pre-trained network), and the uniform half keeps every other cell usable.
        """
        mode = self.config.weight_lambda
        if mode == "sandwich-children":   # the dearest cell, a child of it, a uniform cell, in turn
            phase = step % 3
            return self._one_hot(self.dearest()) if phase == 0 else self.child_path() if phase == 1 \
                else self.uniform_path()
        if mode == "uniform" or (mode == "sandwich" and step % 2):
            return self.uniform_path()
        if mode == "sandwich":
            return self._one_hot(self.dearest())
        return None

    def child_path(self) -> dict[str, torch.Tensor]:
        """The dearest cell with k edges' ops redrawn, k uniform in 1..E (``children.child``), as a one-hot
        architecture for one weight step; k is counted in ``child_distances``.

        Why ("sandwich-children"): with "sandwich" the dearest cell was an isolated optimum on the full-size NB201
        (cells one edge from it fit no better than cheap ones), so the family's dear members were not its better
        ones; children at every distance from the dearest give the cells between the two ends weight steps too.
        """
        space = self.supernet.space
        k = self.path_rng.randint(1, len(edge_ops(space, self.dearest())))
        self.child_distances[k] = self.child_distances.get(k, 0) + 1
        return self._one_hot(child(space, self.dearest(), k, self.path_rng))

    def _arch_weights(self) -> list[torch.Tensor]:
        """The op weights, and the edge weights when edges are normalised (else they are not the architecture's)."""
        sn = self.supernet
        return [*sn.op_weights().values(), *((sn.edge_weights() or {}).values() if sn.use_edge_norm else ())]

    def dearest(self):
        """The dearest valid genotype by the complexity Reg (seed 004's unpruned network), found once."""
        if self._dearest is None:
            self._dearest = cost_span(self.supernet.space, self.objective.complexity).dearest
        return self._dearest

    def fit_phase1(self) -> None:
        """Seed 004's phase 1: fit the hypernetwork so its architecture at and near lambda = 0 is the dearest cell.

        Seed 004 fits hypernet(0) to the all-on bias (||sigma(theta(0)) - bias||^2) before the trade-off, so the
        family starts at the unpruned network and lambda only prunes. Here: ``phase1_steps`` steps of a fresh Adam
        (the architecture step's lr; its own moments stay untouched) on the cross-entropy between the op weights
        (and DARTS edge weights) at drawn scale positions v in [0, ``phase1_reach``], v = 0 always among them, and
        a soft target: the dearest cell's one-hot logits scaled so its op has weight ``phase1_confidence`` on every
        edge. Soft, because a one-hot fit saturates the softmax and the architecture step would get no gradient.
        Why: with the weights trained on the dearest cell first (``weight_lambda="sandwich"``) it is the lowest-loss
        network on them, but an isolated optimum (cells near it fit no better than cheap ones), so an architecture
        step from the near-uniform init never finds it (docs/performance.md, fourth session).
        """
        from hilnas.searchers.hypernet.bound import _ONE_HOT

        space = self.supernet.space
        c, n_ops = self.config.phase1_confidence, len(space.ops)
        gap = math.log(c * (n_ops - 1) / (1 - c))   # the logit gap giving the target op weight c among n_ops ops
        target_arch = {k: v * (gap / _ONE_HOT) for k, v in one_hot_arch(self.supernet, self.dearest()).items()}
        with torch.no_grad(), self.supernet.using(target_arch):
            target = self._arch_weights()
        params = list(self.hypernet.trained_parameters())
        optimizer = torch.optim.Adam(params, lr=self.config.arch.lr, betas=self.config.arch.betas)
        device = self.hypernet.device
        draws = max(1, self.config.lambdas_per_step)
        for _ in range(self.config.phase1_steps):
            loss = torch.zeros((), device=device)
            for j in range(draws):   # v = 0 first, then positions drawn from [0, phase1_reach]
                v = 0.0 if j == 0 else self.rng.uniform(0.0, self.config.phase1_reach)
                w = self.sample_weights()
                u = torch.tensor(self.smap.fraction(v) * w / w.max(), dtype=torch.float32, device=device)
                with self.supernet.using(self.hypernet(self.smap.encode(u, 1.0))):
                    got = self._arch_weights()
                for t, p in zip(target, got):
                    loss = loss - (t.to(device) * p.clamp_min(1e-12).log()).sum() / draws
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.phase1_loss.append(float(loss.detach()))
        if self.config.anchor == "pinned":   # lambda = 0 keeps this fit through the trade-off phase (``Anchored``)
            self.hypernet.pin()
        log.info("phase 1 at step %d: the hypernetwork fitted to the dearest cell in %d steps (cross-entropy %.4g -> "
                 "%.4g)%s", self.steps_done, len(self.phase1_loss), self.phase1_loss[0], self.phase1_loss[-1],
                 "; lambda = 0 pinned to it" if self.config.anchor == "pinned" else "")

    def uniform_path(self) -> dict[str, torch.Tensor]:
        """A valid cell drawn uniformly (NB201: each edge's op uniform, redrawn until the cell is valid; DARTS: the
        space's sampler), as a one-hot architecture for one weight step (``weight_lambda="uniform"``).

        Why: with "drawn" the weight steps run the family's members, mostly cheap ones, and with either
        "drawn" or "zero" the warm-up runs lambda = 0's architecture, whose derived cells (all but one cell per
        type) are the argmax of the near-uniform initial alphas: one seed-dependent cell. The cells trained
        most then have the lowest loss on the shared weights, and the family's lambda = 0 end sits there (on the
        full-size NB201 seeds 1 and 2 it sat at 0.06-0.08 of the range, docs/performance.md). SPOS's uniform
        single path trains every op about equally often, so no cell is favoured by how often it was trained.
        """
        space = self.supernet.space
        while True:
            g = space.sample(self.path_rng)
            if is_valid(space, g):
                break
        return self._one_hot(g)

    def _one_hot(self, g) -> dict[str, torch.Tensor]:
        """``g`` as the one-hot architecture of a weight step, its ops counted in ``path_counts``."""
        space = self.supernet.space
        ops = g.ops if isinstance(space, NB201Space) else [op for cell in (g.normal, g.reduce) for op, _ in cell]
        for op in ops:
            self.path_counts[op] = self.path_counts.get(op, 0) + 1
        device = self.hypernet.device
        return {k: v.to(device) for k, v in one_hot_arch(self.supernet, g).items()}

    def set_Lambda(self, Lambda: float, *, estimate: bool = True) -> None:
        """``estimate``: Lambda from the sweep or Theorem 1, also the cap of the knee's Lambda (``fit_knee``)."""
        self.Lambda = Lambda
        if estimate:
            self.Lambda_cap = Lambda
        self.objective.kappa_scale = Lambda
        self.Lambda_history.append((self.steps_done, Lambda))

    def estimate_sweep(self, next_val_batch: Callable[[], Batch]) -> None:
        """Lambda from the sweep (``sweep``); Theorem 1's estimate is made and recorded beside it."""
        self.estimate_bound(next_val_batch, record_only=True)
        k = len(self.objective.ops)
        with torch.no_grad():
            start = self.hypernet(torch.zeros(k, device=self.hypernet.device))
        self.objective.kappa_on = False   # the sweep measures where lambda's own term reaches the cheapest network
        try:
            self.sweep = sweep_scale(self.supernet, self.objective, start, next_val_batch, self.config)
        finally:
            self.objective.kappa_on = True
        self.sweep = dataclasses.replace(self.sweep, path_bound=path_bound(self.supernet, self.sweep,
                                                                           self.bound_batches))
        for note in self.sweep.notes:
            log.warning("Lambda at step %d: %s", self.steps_done, note)
        self.set_Lambda(self.sweep.Lambda)
        log.info("Lambda = %.4g at step %d (sweep, rule %s; the walk's end %.4g; Theorem 1: %.4g; over the sweep's "
                 "networks: %.4g)", self.Lambda, self.steps_done, self.sweep.rule, self.sweep.Lambda_reach,
                 self.bound.theorem if self.bound else math.nan, self.sweep.path_bound.theorem)

    def estimate_bound(self, next_val_batch: Callable[[], Batch] | None = None, *, final: bool = False,
                       record_only: bool = False) -> None:
        """(Re-)estimate Lambda on the probe batches (drawn once, at the first estimate).

        When the theorem does not apply: a first estimate leaves Lambda unset (the warm-up goes on)
        until the warm-up may last no longer (or ``final``), then takes ``Lambda_fallback``; a
        re-estimate keeps the previous Lambda. Either way the estimate says so. ``record_only``:
        keep the estimate beside the sweep's Lambda, without setting Lambda.
        """
        if not self.bound_batches:
            assert next_val_batch is not None
            self.bound_batches = [next_val_batch() for _ in range(self.config.bound_batches)]
        span = self.objective.spans[self.objective.complexity.metric]
        est = estimate_from_supernet(self.supernet, span, self.objective.complexity, self.bound_batches,
                                     samples=self.config.bound_samples, seed=self.seed)
        if record_only:
            self.bound = dataclasses.replace(est, source="theorem" if est.applies else "none (recorded; the sweep "
                                             "sets Lambda)")
            return
        if not est.applies:
            if self.Lambda is not None:
                est = dataclasses.replace(est, Lambda=self.Lambda, source="previous",
                                          notes=est.notes + (f"kept the previous Lambda {self.Lambda:.4g}",))
            elif final or self.steps_done + self.recheck_steps > self.max_warmup_steps:
                est = dataclasses.replace(est, Lambda=self.config.Lambda_fallback, source="fallback",
                                          notes=est.notes + (f"the warm-up cannot go on; used Lambda_fallback "
                                                             f"{self.config.Lambda_fallback:g}",))
            for note in est.notes:
                log.warning("Lambda at step %d: %s", self.steps_done, note)
        self.bound = est
        if math.isfinite(est.Lambda):
            self.set_Lambda(est.Lambda)
            log.info("Lambda = %.4g at step %d (%s; constant predictor %.4g nats, worst valid probe %.4g nats)",
                     self.Lambda, self.steps_done, est.source, est.constant_loss, est.worst_valid_loss)

    def on_epoch_end(self, epoch: int, model: nn.Module) -> Mapping[str, float] | None:
        if self.epoch_val:   # lambda = 0's architecture (coeffs None), BatchNorm on each batch's own statistics
            self.relaxed.coeffs, self.relaxed.path = None, None
            self.epoch_val_acc.append(evaluate(self.relaxed, self.epoch_val, bn=self.config.eval_bn)[1])
        if self.Lambda is None:
            return None
        k = len(self.objective.ops)
        model_ = self.objective.complexity
        out = {"Lambda": self.Lambda}
        for name, s in (("cost_at_0", 0.0), ("cost_at_half_Lambda", 0.5), ("cost_at_Lambda", 1.0)):
            g = derive(self.supernet, self.hypernet, TradeOff(center(k), s * self.Lambda), self.Lambda, self.smap)[0]
            out[name] = model_.genotype_cost(self.supernet.space, g)
        self.epoch_costs.append(out)
        # the networks improve as the weights train, and Lambda with them: the next epoch samples the new range
        if self.config.Lambda == "auto" and epoch < self.config.epochs - 1:
            self.estimate_bound()
        if self.config.knee == "family" and epoch < self.config.epochs - 1:
            self.fit_knee(out)
        return out

    def fit_knee(self, out: dict[str, float] | None = None) -> None:
        """``knee="family"``: Lambda <- knee_margin x the family's knee, at most the estimate (``knee.next_Lambda``),
        so the next epoch draws its scales where the family changes rather than past its cheap end. Not after the
        last epoch: the hypernetwork reads a scale relative to Lambda, so it would derive at scales it was not
        trained for."""
        assert self.Lambda is not None and self.Lambda_cap is not None
        c = self.config
        model = self.objective.complexity
        knee = family_knee(self.supernet, self.hypernet, model, self.objective.spans[model.metric],
                           len(self.objective.ops), self.Lambda, self.smap, points=c.curve_points, floor=c.log_floor,
                           reach=c.sweep_reach, bisect_steps=c.bisect_steps)
        new = next_Lambda(knee, self.Lambda, self.Lambda_cap, c.knee_margin)
        self.knees.append({"step": self.steps_done, "Lambda": self.Lambda, "next_Lambda": new, **knee.to_dict()})
        if out is not None:
            out["knee"] = math.nan if knee.scale is None else knee.scale
        if new != self.Lambda:
            log.info("Lambda %.4g -> %.4g at step %d (the family's knee %s, x %g, at most %.4g)", self.Lambda, new,
                     self.steps_done, "none below Lambda" if knee.scale is None else f"{knee.scale:.4g}",
                     c.knee_margin, self.Lambda_cap)
            self.set_Lambda(new, estimate=False)
