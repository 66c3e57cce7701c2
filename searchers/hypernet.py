"""Hypernetwork search (DARTS-CC, seeds 002 and 004): the architecture as a function of the trade-off.

A small MLP maps the trade-off coefficients to every architecture parameter of the supernet
(the alphas, and the DARTS edge weights, in the supernet's own layout), so one training run
yields a family of architectures, one per coefficient. The coefficients are one per op type
(seed 002's simplex: ``TradeOff.weights`` on the simplex over the ops that have a cost, i.e.
all but ``none``) times a scale in ``[0, Lambda]``; the op type with the largest weight gets the
scale, the others proportionally less, so the centre of the simplex is seed 004's single
coefficient and Theorem 1's bound applies to the scale (``hypernet_bound``). The architecture
loss, on a validation batch, is seed 002's final loss

    CE(w, alpha(lambda)) + sum_o lambda_o R_o(alpha) + kappa Lat(alpha) + kappa_E Energy(alpha),

where R_o is the expected complexity that op type ``o`` adds (node sums and DARTS preprocessing,
which belong to no op type, count with the mean coefficient) and every cost is the expected
variable cost of the derived network (``CostModel.expected_cost``) as a fraction of the dearest
valid network's, so the coefficients are in nats and Lambda is the theorem's ``T^T 1 = 1`` form.
When the complexity is the latency model itself, the kappa term is left out (it would only
shift the scale).

Sampling: the direction from a Dirichlet distribution (concentration 1 = uniform on the
simplex), ``center_fraction`` of the draws at the centre (the scalar penalty grids and budgets
use). Dirichlet rather than seed 002's Gumbel-Softmax because lambda is an input here, never
optimised, so a reparameterised gradient buys nothing, while Dirichlet(1) covers the simplex
evenly with no temperature to tune; ``sampling="gumbel"`` draws Gumbel-Softmax points instead.
The scale: seed 004 draws it uniformly from [0, Lambda] (``scale_sampling="uniform"``); the
default spreads it logarithmically (``ScaleMap``), because the relaxed problem trades off at
coefficients far below the theorem's bound.

Training reuses the one loop (``train.train``) with the ``HyperArchitect`` hook: a warm-up
trains the weights alone; then Lambda is estimated (``hypernet_bound``) unless given, and
re-estimated after every epoch but the last, since the valid networks' losses, and the bound
with them, improve as the weights train; before every weight step the hook takes one Adam step
of the hypernetwork on a validation batch at a freshly drawn lambda, and the weight step runs
the supernet at another draw.

Derivation: DARTS as the supernet derives (two strongest inputs per node, best non-``none`` op,
always a valid graph); NB201 per-edge argmax, and when that cuts the output off the input the
most probable valid cell (exact, over all cells). The supernet's own derived cells follow the
same rule during training (``ValidSupernet``). The family along a ray is made monotone by
isotonic selection: walking up the scale, a derived genotype dearer than one already found at a
smaller scale is replaced by that one (a smaller penalty, so no less accurate, and cheaper).
The raw violations are counted and reported. ``for_budget`` binary-searches the monotone family
for the smallest scale within the budget, then bisects between that grid point and the previous
one, keeping the feasible end.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hilnas.searchers.architect import ArchConfig
from hilnas.searchers.bilevel import BilevelConfig
from hilnas.searchers.cost import CostModel, CostTables, expected_cost
from hilnas.searchers.hypernet_bound import (BoundEstimate, CostSpan, cost_span, estimate_from_supernet,
                                             nb201_table)
from hilnas.searchers.result import Budget, PeakMemory, SearchError, Stopwatch, check_data
from hilnas.searchers.spaces import NB201Space
from hilnas.searchers.supernet import DCA_OPTIONS, Supernet, SupernetOptions, derive_genotype
from hilnas.searchers.train import Batch, StepContext, TrainHooks, evaluate, seed_everything, train

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from hilnas.searchers.data import Loaders
    from hilnas.searchers.spaces import SearchSpace

log = logging.getLogger(__name__)
_SIMPLEX_TOL = 1e-6
_COST_TOL = 1e-9  # relative: cost differences below this are rounding, not violations


class TradeOffError(ValueError):
    """A trade-off point is not on the simplex, or its scale is outside the trained range."""


class BudgetRangeError(SearchError):
    """A budget the family cannot meet sensibly; ``range`` is the reachable [min, max] in ``metric``."""

    def __init__(self, message: str, *, metric: str, range: tuple[float, float]):
        super().__init__(message)
        self.metric, self.range = metric, range


@dataclass(frozen=True)
class TradeOff:
    """A point of the trade-off: a direction on the simplex over op types, and a scale.

    ``weights`` has one entry per op type with a cost (``HypernetResult.ops``), >= 0, summing to
    1. The coefficient of op type o is ``scale * weights[o] / max(weights)``: the centre gives
    every op type the scale, a vertex penalises one op type alone. scale 0 = accuracy only.
    """
    weights: tuple[float, ...]
    scale: float

    def coefficients(self) -> tuple[float, ...]:
        top = max(self.weights)
        return tuple(self.scale * w / top for w in self.weights)

    def to_dict(self) -> dict[str, Any]:
        return {"weights": list(self.weights), "scale": self.scale}


def center(k: int) -> tuple[float, ...]:
    """The centre of the simplex over ``k`` op types (every op type weighs the same)."""
    return tuple([1.0 / k] * k)


def check_simplex(weights: Sequence[float], ops: Sequence[str]) -> tuple[float, ...]:
    """``weights`` as a tuple when it is a point of the simplex over ``ops``; TradeOffError otherwise."""
    try:
        w = tuple(float(v) for v in weights)
    except (TypeError, ValueError):
        raise TradeOffError(f"lambda weights must be numbers, got {weights!r}") from None
    where = f"the simplex over the {len(ops)} op types ({', '.join(ops)})"
    if len(w) != len(ops):
        raise TradeOffError(f"lambda has {len(w)} weights; a point of {where} has {len(ops)}")
    if not all(math.isfinite(v) for v in w) or min(w) < 0:
        raise TradeOffError(f"lambda {list(w)} is not on {where}: every weight must be finite and >= 0")
    if abs(sum(w) - 1.0) > _SIMPLEX_TOL:
        raise TradeOffError(f"lambda {list(w)} is not on {where}: the weights sum to {sum(w):.6g}, not 1")
    return w


def parse_direction(text: str, ops: Sequence[str]) -> tuple[float, ...]:
    """``"sep_conv_3x3=0.5,skip_connect=0.5"`` (unnamed op types get 0) -> a simplex point over ``ops``."""
    w = dict.fromkeys(ops, 0.0)
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, raw = item.partition("=")
        if not sep or name.strip() not in w:
            raise TradeOffError(f"direction item {item!r} must be OP=WEIGHT with OP one of {', '.join(ops)}")
        try:
            w[name.strip()] = float(raw)
        except ValueError:
            raise TradeOffError(f"direction item {item!r}: {raw!r} is not a number") from None
    return check_simplex(list(w.values()), ops)


@dataclass(frozen=True, kw_only=True)
class HypernetConfig(BilevelConfig):
    """The hypernetwork search: the shared supernet settings, plus the trade-off and its sampling.

    ``arch`` configures the hypernetwork's Adam (its ``warmup_epochs`` must stay 0: the warm-up
    is ``warmup_fraction``). Coefficients and kappas are in nats per full cost span.
    """
    arch: ArchConfig = field(default_factory=lambda: ArchConfig(lr=3e-3, weight_decay=0.0))
    hidden: int = 64                   # width of the hypernetwork's two hidden layers
    kappa: float = 0.1                 # weight of the LUT latency term (seed 002's kappa); 0 = off
    kappa_energy: float = 0.1          # weight of the energy term, when an energy cost model is given
    sampling: str = "dirichlet"        # direction draws: "dirichlet" | "gumbel" (Gumbel-Softmax)
    concentration: float = 1.0         # Dirichlet concentration (1 = uniform on the simplex)
    temperature: float = 1.0           # Gumbel-Softmax temperature
    center_fraction: float = 0.5       # share of draws at the centre (the scalar penalty of grids and budgets)
    zero_fraction: float = 0.0         # share of draws at lambda = 0 (accuracy only), anchoring that end
    scale_sampling: str = "log"        # scale draws: "uniform" on [0, Lambda] (seed 004) | "log" (see ScaleMap)
    log_floor: float = 0.01            # "log": scales below log_floor * Lambda are spread linearly
    Lambda: float | str = "auto"       # upper end of the scale; "auto" = estimate (seed 004, Theorem 1)
    Lambda_fallback: float = 0.5       # used (and reported) if the theorem never applies within max_warmup_fraction
    warmup_fraction: float = 0.25      # share of the weight steps before the first hypernetwork step ...
    max_warmup_fraction: float = 0.5   # ... extended (re-checked every quarter epoch) until Theorem 1 applies
    bound_batches: int = 3             # validation batches the bound is estimated on (drawn once)
    bound_samples: int = 3             # random valid networks probed besides the cheapest and the dearest
    derivation: str = "expected-cost"  # "expected-cost" (see match_expected_cost) | "argmax" (as the supernet)
    cost_band: float = 0.1             # "expected-cost": relative band around the expected complexity
    grid_points: int = 9               # scales of the default grid, 0..Lambda
    curve_points: int = 33             # scales of the dense family ``for_budget`` searches
    bisect_steps: int = 6              # bisection steps between two grid scales

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.arch.warmup_epochs:
            raise ValueError("HypernetConfig: set warmup_fraction, not arch.warmup_epochs")
        if self.scale_sampling not in ("uniform", "log") or not 0 < self.log_floor < 1:
            raise ValueError(f"scale_sampling must be 'uniform' or 'log' and log_floor in (0, 1), got "
                             f"{self.scale_sampling!r}, {self.log_floor!r}")
        if self.derivation not in ("expected-cost", "argmax") or not self.cost_band >= 0:
            raise ValueError(f"derivation must be 'expected-cost' or 'argmax' and cost_band >= 0, got "
                             f"{self.derivation!r}, {self.cost_band!r}")
        if self.sampling not in ("dirichlet", "gumbel"):
            raise ValueError(f"sampling must be 'dirichlet' or 'gumbel', got {self.sampling!r}")
        if isinstance(self.Lambda, str):
            if self.Lambda != "auto":
                raise ValueError(f"Lambda must be a positive number or 'auto', got {self.Lambda!r}")
        elif not (math.isfinite(self.Lambda) and self.Lambda > 0):
            raise ValueError(f"Lambda must be a positive number or 'auto', got {self.Lambda!r}")
        for name in ("kappa", "kappa_energy"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.concentration > 0 and self.temperature > 0 and self.Lambda_fallback > 0):
            raise ValueError("concentration, temperature and Lambda_fallback must be > 0")
        if not (0 <= self.warmup_fraction <= self.max_warmup_fraction < 1 and 0 <= self.center_fraction <= 1):
            raise ValueError("need 0 <= warmup_fraction <= max_warmup_fraction < 1 and center_fraction in [0, 1]")
        if self.grid_points < 2 or self.curve_points < 2 or self.bisect_steps < 0 or self.hidden < 1:
            raise ValueError("grid_points and curve_points must be >= 2, bisect_steps >= 0, hidden >= 1")
        if self.bound_batches < 1 or self.bound_samples < 0:
            raise ValueError("bound_batches must be >= 1 and bound_samples >= 0")


@dataclass(frozen=True)
class ScaleMap:
    """Where on [0, Lambda] the scale is drawn and how the hypernetwork sees it: a position v in [0, 1].

    In the relaxed problem the cross-entropy's gradient on the alphas is one to two orders of
    magnitude smaller than the normalised cost's, so the architecture changes at coefficients
    far below Lambda (the theorem bounds the discrete problem). "log" spreads positions evenly over
    ``u = scale / Lambda = floor ((1 + 1/floor)^v - 1)``: logarithmic above ``floor``, linear below
    it, 0 included; "uniform" is seed 004's ``u = v``.
    """
    floor: float | None      # None = uniform

    @classmethod
    def of(cls, config: HypernetConfig) -> ScaleMap:
        return cls(config.log_floor if config.scale_sampling == "log" else None)

    def fraction(self, v: float) -> float:
        return v if self.floor is None else self.floor * ((1.0 + 1.0 / self.floor) ** v - 1.0)

    def encode(self, coeffs: torch.Tensor, Lambda: float) -> torch.Tensor:
        """Hypernetwork input: each coefficient's position in [0, 1]."""
        u = (coeffs / Lambda).clamp(0.0, 1.0)
        return u if self.floor is None else torch.log1p(u / self.floor) / math.log1p(1.0 / self.floor)


# -- the hypernetwork ------------------------------------------------------------------------------
class Hypernetwork(nn.Module):
    """lambda (each coefficient's position in [0, 1], see ScaleMap) -> every architecture parameter of the supernet.

    An MLP plus a linear path; both output layers start at zero, so at first the architecture is
    the same for every lambda (the supernet's own small random init, kept in the output bias).
    """

    def __init__(self, num_coeffs: int, layout: Mapping[str, tuple[int, ...]], hidden: int = 64,
                 init: Mapping[str, torch.Tensor] | None = None):
        super().__init__()
        self.layout = {k: tuple(v) for k, v in layout.items()}
        self.sizes = [math.prod(s) for s in self.layout.values()]
        total = sum(self.sizes)
        self.body = nn.Sequential(nn.Linear(num_coeffs, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, total)
        self.linear = nn.Linear(num_coeffs, total, bias=False)
        with torch.no_grad():
            self.head.weight.zero_()
            self.linear.weight.zero_()
            if init is not None:
                self.head.bias.copy_(torch.cat([init[k].detach().reshape(-1) for k in self.layout]))
            else:
                self.head.bias.normal_(0.0, 1e-3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # (k,) in [0, 1] -> {name: shape of the layout}
        # centred inputs: the output bias is the architecture at mid-range and the weights set the slope, rather
        # than bias and weights both chasing the architecture at lambda = 0 (an ill-conditioned fit for Adam)
        x = 2.0 * x - 1.0
        flat = self.head(self.body(x)) + self.linear(x)
        return {k: t.reshape(s) for (k, s), t in zip(self.layout.items(), flat.split(self.sizes, dim=-1))}


class ValidSupernet(Supernet):
    """The supernet with two changes: the architecture can come from outside, and derived cells are valid.

    ``using(arch)`` runs the supernet with ``arch`` (parameter name -> tensor, e.g. the
    hypernetwork's output, gradients flowing back to it) in place of its own alphas and betas.
    ``Supernet.choices`` takes NB201's per-edge argmax, ``none`` included; once a large
    coefficient makes ``none`` win on every path, the derived cells output zeros, the network
    predicts a constant, no gradient reaches the alphas any more and the search cannot recover
    (seed 004's broken graph). Here the derived cells are the most probable valid cell instead.
    """

    def __init__(self, space: SearchSpace, options: SupernetOptions = DCA_OPTIONS):
        super().__init__(space, options)
        self.arch: Mapping[str, torch.Tensor] | None = None

    @contextlib.contextmanager
    def using(self, arch: Mapping[str, torch.Tensor]) -> Iterator[ValidSupernet]:
        previous, self.arch = self.arch, arch
        try:
            yield self
        finally:
            self.arch = previous

    def op_weights(self) -> dict[str, torch.Tensor]:
        if self.arch is None:
            return super().op_weights()
        return {t: self.arch[f"alphas.{t}"].softmax(dim=-1) for t in self.alphas}

    def edge_weights(self) -> dict[str, torch.Tensor] | None:
        if self.arch is None or not self.use_edge_norm:
            return super().edge_weights()
        order = torch.argsort(torch.tensor([e for idx in self.in_edges.values() for e in idx]))
        return {t: torch.cat([self.arch[f"betas.{t}"][idx].softmax(0) for idx in self.in_edges.values()])[order]
                for t in self.betas}

    def choices(self) -> dict[str, list[tuple[int, int]]]:
        if not isinstance(self.space, NB201Space):
            return super().choices()
        with torch.no_grad():
            g, _ = valid_genotype(self.space, self.op_weights(), None)
        return {"cell": [(e, self.space.ops.index(op)) for e, op in enumerate(g.ops) if op != "none"]}


class RelaxedSupernet(nn.Module):
    """The supernet run with the architecture the hypernetwork gives at ``coeffs`` (what ``train`` trains).

    The forward detaches the architecture: the weight step trains weights only.
    """

    def __init__(self, supernet: ValidSupernet, hypernet: Hypernetwork):
        super().__init__()
        self.supernet, self.hypernet = supernet, hypernet
        self.coeffs: torch.Tensor | None = None   # (k,) hypernetwork input (ScaleMap.encode); None = zeros

    def _input(self) -> torch.Tensor:
        device = self.hypernet.head.bias.device
        k = self.hypernet.body[0].in_features
        return self.coeffs.to(device) if self.coeffs is not None else torch.zeros(k, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        arch = {k: v.detach() for k, v in self.hypernet(self._input()).items()}
        with self.supernet.using(arch):
            return self.supernet(x)


def arch_weights(supernet: ValidSupernet, arch: Mapping[str, torch.Tensor]
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """(op weights, edge weights) of the supernet with ``arch`` in place of its architecture parameters."""
    with supernet.using(arch):
        return supernet.op_weights(), supernet.edge_weights()


def arch_layout(supernet: Supernet) -> dict[str, tuple[int, ...]]:
    ids = {id(p) for p in supernet.arch_parameters()}
    return {n: tuple(p.shape) for n, p in supernet.named_parameters() if id(p) in ids}


# -- the objective ------------------------------------------------------------------------------
class Objective:
    """The cost terms of seed 002's loss for one space, as fractions of each model's full span."""

    def __init__(self, space: SearchSpace, complexity: CostModel, latency: CostModel | None,
                 energy: CostModel | None, *, kappa: float, kappa_energy: float):
        self.space = space
        self.ops = tuple(op for op in space.ops if op != "none")
        self.index = torch.tensor([space.ops.index(op) for op in self.ops])
        self.complexity = complexity
        self.spans: dict[str, CostSpan] = {complexity.metric: cost_span(space, complexity)}
        self.terms: list[tuple[float, CostModel]] = []
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

    def penalty(self, coeffs: torch.Tensor, op_w: Mapping[str, torch.Tensor],
                edge_w: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
        total = self.complexity_term(coeffs, op_w, edge_w)
        for weight, model in self.terms:
            total = total + weight * self.fraction(model, op_w, edge_w)
        return total


# -- the architecture step -------------------------------------------------------------------------
class HyperArchitect(TrainHooks):
    """Before each weight step: one Adam step of the hypernetwork at a drawn lambda; then draws the
    weight step's lambda. Estimates Lambda once the warm-up ends (unless it was given)."""

    def __init__(self, relaxed: RelaxedSupernet, objective: Objective, config: HypernetConfig, *,
                 steps_per_epoch: int, seed: int):
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
        a = config.arch
        self.optimizer = torch.optim.Adam(self.hypernet.parameters(), lr=a.lr, betas=a.betas,
                                          weight_decay=a.weight_decay)
        self.Lambda: float | None = None if config.Lambda == "auto" else float(config.Lambda)
        self.bound: BoundEstimate | None = None
        self.bound_batches: list[Batch] = []
        self.Lambda_history: list[tuple[int, float]] = []   # (weight steps taken, Lambda) per estimate
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

    def sample(self) -> torch.Tensor:
        """Coefficients (k,) of a drawn lambda, in nats (scale: position uniform on [0, 1], see ScaleMap)."""
        assert self.Lambda is not None
        w = self.sample_weights()
        v = 0.0 if self.config.zero_fraction and self.rng.random() < self.config.zero_fraction \
            else self.rng.uniform(0.0, 1.0)
        scale = self.Lambda * self.smap.fraction(v)
        return torch.tensor(scale * w / w.max(), dtype=torch.float32)

    # the hooks
    def excluded_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        return list(self.hypernet.parameters()) + self.supernet.arch_parameters()

    def before_step(self, ctx: StepContext, model: nn.Module, train_batch: Batch,
                    next_val_batch: Callable[[], Batch]) -> None:
        self.steps_done = ctx.global_step
        if self.Lambda is None and ctx.global_step >= self.next_check:
            self.estimate_bound(next_val_batch)
            if self.Lambda is None:  # the networks do not beat a constant yet: train the weights longer
                self.next_check = ctx.global_step + self.recheck_steps
        if self.Lambda is None or ctx.global_step < self.warmup_steps:
            self.relaxed.coeffs = None
            return
        x, y = next_val_batch()
        coeffs = self.sample().to(x.device)
        arch = self.hypernet(self.smap.encode(coeffs, self.Lambda))
        with self.supernet.using(arch):
            ce = F.cross_entropy(self.supernet(x), y)
            op_w, edge_w = self.supernet.op_weights(), self.supernet.edge_weights()
        penalty = self.objective.penalty(coeffs, op_w, edge_w)
        params = list(self.hypernet.parameters())
        grads = torch.autograd.grad(ce + penalty, params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = g
        self.optimizer.step()
        with torch.no_grad():
            frac = float(self.objective.fraction(self.objective.complexity, op_w, edge_w))
        self.history["scale"].append(float(coeffs.max()))
        self.history["ce"].append(float(ce.detach()))
        self.history["penalty"].append(float(penalty.detach()))
        self.history["complexity"].append(frac)
        self.relaxed.coeffs = self.smap.encode(self.sample(), self.Lambda)  # the weight step's architecture
        self.steps_done = ctx.global_step + 1

    def estimate_bound(self, next_val_batch: Callable[[], Batch] | None = None, *, final: bool = False) -> None:
        """(Re-)estimate Lambda on the probe batches (drawn once, at the first estimate).

        When the theorem does not apply: a first estimate leaves Lambda unset (the warm-up goes on)
        until the warm-up may last no longer (or ``final``), then takes ``Lambda_fallback``; a
        re-estimate keeps the previous Lambda. Either way the estimate says so.
        """
        if not self.bound_batches:
            assert next_val_batch is not None
            self.bound_batches = [next_val_batch() for _ in range(self.config.bound_batches)]
        span = self.objective.spans[self.objective.complexity.metric]
        est = estimate_from_supernet(self.supernet, span, self.objective.complexity, self.bound_batches,
                                     samples=self.config.bound_samples, seed=self.seed)
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
            self.Lambda = est.Lambda
            self.Lambda_history.append((self.steps_done, self.Lambda))
            log.info("Lambda = %.4g at step %d (%s; constant predictor %.4g nats, worst valid probe %.4g nats)",
                     self.Lambda, self.steps_done, est.source, est.constant_loss, est.worst_valid_loss)

    def on_epoch_end(self, epoch: int, model: nn.Module) -> Mapping[str, float] | None:
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
        return out


# -- derivation -----------------------------------------------------------------------------------
def valid_genotype(space: SearchSpace, op_w: Mapping[str, torch.Tensor],
                   edge_w: Mapping[str, torch.Tensor] | None) -> tuple[Any, bool]:
    """The derived genotype, made a valid graph; True when the plain derivation had to be replaced.

    NB201: the argmax cell, or, when its output is cut off from its input, the valid cell with the
    largest product of op probabilities (over all cells). DARTS derivations are always valid.
    """
    g = derive_genotype(space, op_w, edge_w)  # the supernet's derivation already keeps NB201 cells connected
    if not isinstance(space, NB201Space):
        return g, False
    argmax = tuple(space.ops[int(i)] for i in op_w["cell"].argmax(dim=1))
    return g, g.ops != argmax


def match_expected_cost(space: SearchSpace, model: CostModel, op_w: Mapping[str, torch.Tensor],
                        edge_w: Mapping[str, torch.Tensor] | None, band: float) -> tuple[Any, bool]:
    """The most probable valid genotype whose exact cost is the relaxation's expected cost (within ``band``).

    The penalty controls the expected cost E of the derived network; the argmax cell alone can
    land anywhere from the cheapest to the dearest network when the op weights are still spread,
    which is how short searches leave them. NB201 (exact, over all cells): the valid cell with the
    largest product of op probabilities among those costing within ``band * E`` of E (the nearest
    costs when none does). DARTS: the supernet's derivation, repaired down along the alpha ranking
    (``repair.repair``) when it costs more than ``(1 + band) E``; it is not raised when cheaper.
    True when the result is not the plain derivation.
    """
    with torch.no_grad():
        e = float(model.expected_cost(space, op_w, edge_w))
    if not isinstance(space, NB201Space):
        from hilnas.searchers.repair import repair
        g = derive_genotype(space, op_w, edge_w)
        if model.genotype_cost(space, g) <= (1 + band) * e:
            return g, False
        with torch.no_grad():
            return repair(space, model, g, (1 + band) * e, op_w, edge_w).genotype, True
    table = nb201_table(space.ops)
    cache = model.__dict__.setdefault("_hypernet_nb201_costs", {})
    if space not in cache:
        cache[space] = table.costs(model.tables(space))
    costs = cache[space]
    gap = np.where(table.valid, np.abs(costs - e), np.inf)
    near = gap <= max(band * abs(e), float(gap.min()) + 1e-12)
    logp = op_w["cell"].detach().double().clamp_min(1e-30).log().cpu().numpy()  # (E, O)
    score = np.where(near, logp[np.arange(table.arch.shape[1]), table.arch].sum(axis=1), -np.inf)
    g = table.genotype(int(np.argmax(score)))
    return g, g != derive_genotype(space, op_w, edge_w)


def derive(supernet: ValidSupernet, hypernet: Hypernetwork, tradeoff: TradeOff, Lambda: float, smap: ScaleMap,
           *, match: tuple[CostModel, float] | None = None
           ) -> tuple[Any, bool, dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """(valid genotype, not the plain argmax?, op weights, edge weights) at ``tradeoff``.

    ``match``: (cost model, band) to derive with ``match_expected_cost``; None = ``valid_genotype``.
    """
    c = torch.tensor(tradeoff.coefficients(), dtype=torch.float32, device=hypernet.head.bias.device)
    x = smap.encode(c, Lambda)
    with torch.no_grad():
        op_w, edge_w = arch_weights(supernet, hypernet(x))
    if match is not None:
        g, repaired = match_expected_cost(supernet.space, match[0], op_w, edge_w, match[1])
    else:
        g, repaired = valid_genotype(supernet.space, op_w, edge_w)
    return g, repaired, op_w, edge_w


@dataclass(frozen=True)
class Architecture:
    """One member of the family: the lambda it was derived at, its genotype and what it costs."""
    tradeoff: TradeOff
    genotype: Any
    costs: Mapping[str, float]          # exact cost per metric (each cost model of the search)
    expected: Mapping[str, float]       # relaxed expected cost at alpha(lambda), per metric
    repaired: bool = False              # not the plain argmax: a broken NB201 cell fixed, or matched to the expected cost
    kept_from: float | None = None      # isotonic selection: the smaller scale whose genotype this is

    def to_dict(self) -> dict[str, Any]:
        return {"tradeoff": self.tradeoff.to_dict(), "genotype": self.genotype.to_dict(), "costs": dict(self.costs),
                "expected": dict(self.expected), "repaired": self.repaired, "kept_from": self.kept_from}


def count_violations(costs: Sequence[float]) -> int:
    """Steps up in a sequence that should not increase (rounding-level differences ignored)."""
    return sum(1 for a, b in zip(costs, costs[1:]) if b > a + _COST_TOL * max(1.0, abs(a)))


@dataclass(frozen=True)
class TradeOffCurve:
    """The family along one ray of the simplex, scale ascending, monotone in ``metric``."""
    metric: str
    points: tuple[Architecture, ...]    # after isotonic selection: costs non-increasing
    raw: tuple[Architecture, ...]       # as derived at each scale
    raw_violations: int                 # increases of the raw cost along the scale
    violations: int                     # increases of the selected cost (0 by construction)

    @property
    def range(self) -> tuple[float, float]:
        costs = [p.costs[self.metric] for p in self.points]
        return min(costs), max(costs)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "range": list(self.range), "raw_violations": self.raw_violations,
                "violations": self.violations, "points": [p.to_dict() for p in self.points],
                "raw": [p.to_dict() for p in self.raw]}


def isotonic(raw: Sequence[Architecture], metric: str) -> list[Architecture]:
    """Walk up the scale; keep a derived genotype unless a smaller scale already gave a cheaper one."""
    out: list[Architecture] = []
    for a in raw:
        if out and a.costs[metric] > out[-1].costs[metric] + _COST_TOL * max(1.0, abs(out[-1].costs[metric])):
            prev = out[-1]
            out.append(dataclasses.replace(prev, tradeoff=a.tradeoff, kept_from=prev.kept_from
                                           if prev.kept_from is not None else prev.tradeoff.scale))
        else:
            out.append(a)
    return out


# -- the result ----------------------------------------------------------------------------------
@dataclass
class HypernetResult:
    """One hypernetwork run: the trained supernet and hypernetwork, Lambda, and the family they give."""
    space: SearchSpace
    config: HypernetConfig
    models: dict[str, CostModel]        # metric -> cost model (latency, complexity, energy: those given)
    primary: str                        # the cost model's metric (the default for curves)
    complexity: CostModel               # what the coefficients weigh (and "expected-cost" derivation matches)
    supernet: ValidSupernet
    hypernet: Hypernetwork
    Lambda: float
    bound: BoundEstimate | None         # the last estimate; None when Lambda was given
    Lambda_history: list[tuple[int, float]]  # (weight steps taken, Lambda) at each estimate
    ops: tuple[str, ...]                # op types with a coefficient, in weight order
    history: dict[str, list[float]]     # per architecture step: scale, ce, penalty, complexity fraction
    epoch_costs: list[dict[str, float]]
    val_acc: float                      # supernet accuracy on the val split at lambda = 0 (``accuracy`` for others)
    steps: int
    epochs: int
    wall_s: float
    peak_mem_mb: float
    seed: int
    _curves: dict[Any, TradeOffCurve] = field(default_factory=dict, repr=False)

    # -- points -----------------------------------------------------------------------------
    def tradeoff(self, scale: float, weights: Sequence[float] | None = None) -> TradeOff:
        """A checked trade-off point: ``weights`` on the simplex over ``ops`` (None = the centre), scale in
        [0, Lambda]."""
        w = center(len(self.ops)) if weights is None else check_simplex(weights, self.ops)
        try:
            s = float(scale)
        except (TypeError, ValueError):
            raise TradeOffError(f"lambda scale must be a number, got {scale!r}") from None
        if not (math.isfinite(s) and -_SIMPLEX_TOL <= s <= self.Lambda * (1 + _SIMPLEX_TOL)):
            raise TradeOffError(f"lambda scale {scale!r} is outside the trained range [0, {self.Lambda:.6g}] "
                                "(Lambda, the upper end the hypernetwork was trained on)")
        return TradeOff(w, min(max(s, 0.0), self.Lambda))

    def _check(self, t: TradeOff | float) -> TradeOff:
        if isinstance(t, TradeOff):
            return self.tradeoff(t.scale, t.weights)
        return self.tradeoff(t)

    def architecture(self, t: TradeOff | float) -> Architecture:
        """The valid genotype at one trade-off point (a bare number is a scale at the centre)."""
        t = self._check(t)
        match = (self.complexity, self.config.cost_band) if self.config.derivation == "expected-cost" else None
        g, repaired, op_w, edge_w = derive(self.supernet, self.hypernet, t, self.Lambda, ScaleMap.of(self.config),
                                           match=match)
        costs = {m: model.genotype_cost(self.space, g) for m, model in self.models.items()}
        with torch.no_grad():
            expected = {m: float(model.expected_cost(self.space, op_w, edge_w)) for m, model in self.models.items()}
        return Architecture(t, g, costs, expected, repaired)

    def accuracy(self, t: TradeOff | float, loader: Iterable[Batch], *, max_batches: int | None = None) -> float:
        """The supernet's accuracy on ``loader`` with the architecture at ``t`` (a proxy: shared weights)."""
        t = self._check(t)
        relaxed = RelaxedSupernet(self.supernet, self.hypernet)
        relaxed.coeffs = ScaleMap.of(self.config).encode(torch.tensor(t.coefficients()), self.Lambda)
        return evaluate(relaxed, loader, max_batches=max_batches)[1]

    def architectures(self, lambdas: Sequence[TradeOff | float]) -> list[Architecture]:
        """The genotype at each trade-off point, as derived (no isotonic selection; see ``curve``)."""
        return [self.architecture(t) for t in lambdas]

    def grid(self, points: int | None = None) -> list[float]:
        """``points`` scales from 0 to Lambda, evenly spaced in the hypernetwork's input (``ScaleMap``)."""
        n = points or self.config.grid_points
        smap = ScaleMap.of(self.config)
        return [0.0] + [self.Lambda * smap.fraction(i / (n - 1)) for i in range(1, n - 1)] + [self.Lambda]

    def curve(self, scales: Sequence[float] | None = None, *, weights: Sequence[float] | None = None,
              metric: str | None = None) -> TradeOffCurve:
        """The family along the ray ``weights`` at ``scales`` (default: the grid), made monotone in ``metric``."""
        metric = metric or self.primary
        if metric not in self.models:
            raise SearchError(f"no cost model measures {metric!r} in this search; it has {', '.join(self.models)}")
        scales = sorted(self.grid() if scales is None else [float(s) for s in scales])
        w = center(len(self.ops)) if weights is None else check_simplex(weights, self.ops)
        key = (tuple(scales), w, metric)
        if key not in self._curves:
            raw = self.architectures([self.tradeoff(s, w) for s in scales])
            points = isotonic(raw, metric)
            self._curves[key] = TradeOffCurve(metric, tuple(points), tuple(raw),
                                              count_violations([a.costs[metric] for a in raw]),
                                              count_violations([a.costs[metric] for a in points]))
        return self._curves[key]

    def reachable(self, metric: str | None = None, *, weights: Sequence[float] | None = None) -> tuple[float, float]:
        """[min, max] exact cost of the dense family along ``weights``'s ray."""
        return self.curve(self.grid(self.config.curve_points), weights=weights, metric=metric).range

    def for_budget(self, budget: Budget | str, *, weights: Sequence[float] | None = None) -> Architecture:
        """The least-penalised member within ``budget`` along the ray, found by bisection on the scale.

        Raises BudgetRangeError when the budget lies outside the family's reachable [min, max].
        """
        b = Budget.parse(budget) if isinstance(budget, str) else budget
        curve = self.curve(self.grid(self.config.curve_points), weights=weights, metric=b.metric)
        lo, hi = curve.range
        unit = self.models[b.metric].unit
        if b.value < lo:
            raise BudgetRangeError(f"budget {b} is below what this family reaches: [{lo:.6g}, {hi:.6g}] {unit}; "
                                   f"its cheapest member costs {lo:.6g} (a new search with a larger Lambda, or a "
                                   "smaller space, may reach further)", metric=b.metric, range=(lo, hi))
        if b.value > hi * (1 + _COST_TOL):
            raise BudgetRangeError(f"budget {b} is above what this family reaches: [{lo:.6g}, {hi:.6g}] {unit}; "
                                   f"every member fits, and the most accurate one (lambda = 0) costs {hi:.6g} — "
                                   "give a budget within the range, or take lambda = 0", metric=b.metric,
                                   range=(lo, hi))
        pts = curve.points
        cost = [p.costs[b.metric] for p in pts]
        i, j = 0, len(pts) - 1     # binary search for the first grid point within budget (costs non-increasing)
        while i < j:
            mid = (i + j) // 2
            if cost[mid] <= b.value:
                j = mid
            else:
                i = mid + 1
        best = pts[i]
        if i > 0 and best.kept_from is None:   # refine between the previous scale (over) and this one (within)
            w = pts[i].tradeoff.weights
            s_lo, s_hi = pts[i - 1].tradeoff.scale, pts[i].tradeoff.scale
            for _ in range(self.config.bisect_steps):
                mid_s = 0.5 * (s_lo + s_hi)
                a = self.architecture(TradeOff(w, mid_s))
                if a.costs[b.metric] <= b.value:
                    s_hi, best = mid_s, a
                else:
                    s_lo = mid_s
        return best

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: settings, Lambda and its estimate, histories, the default curve."""
        return {"method": "hypernet", "space": self.space.name, "Lambda": self.Lambda,
                "Lambda_history": [list(x) for x in self.Lambda_history],
                "bound": self.bound.to_dict() if self.bound else None, "ops": list(self.ops),
                "metrics": {m: model.unit for m, model in self.models.items()}, "primary": self.primary,
                "val_acc": self.val_acc, "steps": self.steps,
                "epochs": self.epochs, "wall_s": self.wall_s, "peak_mem_mb": self.peak_mem_mb, "seed": self.seed,
                "epoch_costs": self.epoch_costs, "curve": self.curve().to_dict(),
                "config": _plain(dataclasses.asdict(self.config))}


def _plain(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _plain(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_plain(v) for v in d]
    return d


# -- the entry point -----------------------------------------------------------------------------
def search(space: SearchSpace, cost_model: CostModel, config: HypernetConfig, *, seed: int = 0, data: Loaders,
           complexity: CostModel | None = None, energy: CostModel | None = None) -> HypernetResult:
    """Train the supernet weights and the hypernetwork in one run; the result derives the family.

    ``cost_model`` is the latency term (kappa) and the default metric of curves and budgets;
    ``complexity`` the term the per-op coefficients weigh (default: ``cost_model`` itself, e.g.
    ``ParamsCost()`` or a LUT cost); ``energy`` the optional energy term (kappa_energy).
    """
    check_data(space, data)
    complexity = complexity or cost_model
    models: dict[str, CostModel] = {}
    for m in (cost_model, complexity, energy):
        if m is not None:
            m.check(space)
            models.setdefault(m.metric, m)
    objective = Objective(space, complexity, cost_model if complexity is not cost_model else None, energy,
                          kappa=config.kappa, kappa_energy=config.kappa_energy)
    seed_everything(seed)
    supernet = ValidSupernet(space, config.options)
    init = {n: p for n, p in supernet.named_parameters() if n in arch_layout(supernet)}
    hypernet = Hypernetwork(len(objective.ops), arch_layout(supernet), config.hidden, init=init)
    relaxed = RelaxedSupernet(supernet, hypernet)
    per_epoch = len(data.train)
    if config.max_batches_per_epoch is not None:
        per_epoch = min(per_epoch, config.max_batches_per_epoch)
    hook = HyperArchitect(relaxed, objective, config, steps_per_epoch=per_epoch, seed=seed)
    with Stopwatch() as clock, PeakMemory() as mem:
        history = train(relaxed, data, config.train_config(seed), hooks=hook)
        if hook.Lambda is None:  # the run ended inside the warm-up: estimate now so the family exists
            val = iter(data.val)
            hook.estimate_bound(lambda: next(val), final=True)  # noqa: B023
    assert hook.Lambda is not None
    result = HypernetResult(
        space=space, config=config, models=models, primary=cost_model.metric, complexity=complexity,
        supernet=supernet, hypernet=hypernet,
        Lambda=hook.Lambda, bound=hook.bound, Lambda_history=hook.Lambda_history, ops=objective.ops,
        history=hook.history, epoch_costs=hook.epoch_costs, val_acc=math.nan,
        steps=sum(h.batches for h in history.history), epochs=config.epochs, wall_s=clock.seconds,
        peak_mem_mb=mem.peak_mb, seed=seed)
    result.val_acc = result.accuracy(0.0, data.val, max_batches=config.eval_batches)
    return result

__all__ = ["Architecture", "BudgetRangeError", "HyperArchitect", "HypernetConfig", "HypernetResult", "Hypernetwork",
           "Objective", "RelaxedSupernet", "TradeOff", "TradeOffCurve", "TradeOffError", "arch_weights", "center",
           "check_simplex", "count_violations", "derive", "isotonic", "parse_direction", "search", "valid_genotype"]
