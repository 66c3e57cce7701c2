"""Hypernetwork search (DARTS-CC, seeds 002 and 004): the architecture as a function of the trade-off.

A small MLP maps the trade-off coefficients to every architecture parameter of the supernet
(the alphas, and the DARTS edge weights, in the supernet's own layout), so one training run
yields a family of architectures, one per coefficient. The coefficients are one per op type
(seed 002's simplex: ``TradeOff.weights`` on the simplex over the ops that have a cost, i.e.
all but ``none``) times a scale in ``[0, Lambda]``; the op type with the largest weight gets the
scale, the others proportionally less, so the centre of the simplex is seed 004's single
coefficient and Theorem 1's bound applies to the scale (``bound``). The architecture
loss, on a validation batch, is seed 002's final loss

    CE(w, alpha(lambda)) + sum_o lambda_o R_o(alpha) + kappa s Lat(alpha) + kappa_E s Energy(alpha),

where s = max_o lambda_o is the scale, R_o is the expected complexity that op type ``o`` adds (node sums and DARTS preprocessing,
which belong to no op type, count with the mean coefficient) and every cost is the expected
variable cost of the derived network (``CostModel.expected_cost``) as a fraction of the dearest
valid network's, so the coefficients are in nats and Lambda is the theorem's ``T^T 1 = 1`` form.
When the complexity is the latency model itself, the kappa term is left out (it would only
shift the scale). The kappas ride with the drawn scale s (kappa_eff = kappa x s,
``kappa_scaling="scale"``): the family's lambda = 0 end is then accuracy alone. Deviation from
seed 002, where kappa is one fixed weight: any cost term present at every scale sets where the
lambda = 0 end sits, because the cross-entropy's gradient on the alphas is far weaker than a cost
term's (on the demo DARTS space, C=4 with 3 cells, kappa x Lambda = 0.04 nats per span moved the
lambda = 0 member from 3.3 to 2.3 ms of a 1.2-4.6 ms range, and the previous default, kappa
relative to Lambda, ``"Lambda"``, gave 0.4 there and one cheap cell for every lambda).

Sampling: the direction as seed 002 writes it, ``S ~ GumbelSoftmax(theta)`` with theta = 0 (every
op type alike) at ``temperature``; ``center_fraction`` of the draws at the centre (the scalar
penalty grids and budgets use). ``sampling="dirichlet"`` draws Dirichlet(``concentration``) points
instead (1 = uniform on the simplex); lambda is an input, never optimised, so the two differ only
in how they spread the draws (docs/search.md compares them).
The scale: seed 004 draws it uniformly from [0, Lambda] (``scale_sampling="uniform"``); the
default spreads it logarithmically (``ScaleMap``), because the relaxed problem trades off at
coefficients far below the theorem's bound.

Training reuses the one loop (``train.train``) with the ``HyperArchitect`` hook: a warm-up
trains the weights alone; with ``phase1="dearest"`` the hypernetwork is then fitted so that lambda = 0 and its
neighbourhood derive the dearest valid cell (seed 004's phase 1, ``HyperArchitect.fit_phase1``); then Lambda is
estimated (``bound``) unless given, and
re-estimated after every epoch but the last, since the valid networks' losses, and the bound
with them, improve as the weights train; before every weight step the hook takes one Adam step
of the hypernetwork on a validation batch at a freshly drawn lambda, and the weight step runs
the supernet at another draw.

Derivation (``derivation="argmax"``): DARTS as the supernet derives (two strongest inputs per node,
best non-``none`` op, always a valid graph); NB201 per-edge argmax, and when that cuts the output
off the input the most probable valid cell (exact, over all cells). ``"expected-cost"`` instead
takes the most probable genotype near the relaxation's expected cost; with soft op weights that
pulls the lambda = 0 end towards the mixture's mean cost (on the demo DARTS space 3.3 against the
argmax's 4.5 ms), so it is no longer the default. The supernet's own derived cells follow the
same rule during training (``ValidSupernet``). The family along a ray is made monotone by
isotonic selection: walking up the scale, a derived genotype dearer than one already found at a
smaller scale is replaced by that one (a smaller penalty, so no less accurate, and cheaper).
The raw violations are counted and reported. ``for_budget`` binary-searches the monotone family
for the smallest scale within the budget, then bisects between that grid point and the previous
one, keeping the feasible end.

This module holds the config, the networks and ``search``; the parts live beside it:
``tradeoff`` (lambda's coordinates), ``objective`` (the cost terms and the training
hook), ``derive`` (derivation), ``family`` (the family and the result),
``bound`` (Lambda), ``io`` (saving and loading). Every name is re-exported here.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import torch
from torch import nn

from hilnas.searchers.dca.architect import ArchConfig
from hilnas.searchers.dca.bilevel import BilevelConfig
from hilnas.searchers.hypernet.anchor import Anchored
from hilnas.searchers.hypernet.defaults import AUTO, FALLBACK, resolve
from hilnas.searchers.hypernet.derive import (arch_weights, check_median, derive, match_expected_cost,
                                              valid_genotype)
from hilnas.searchers.hypernet.family import (Architecture, BudgetRangeError, HypernetResult, TradeOffCurve,
                                              count_violations, isotonic)
from hilnas.searchers.hypernet.tradeoff import (ScaleMap, TradeOff, TradeOffError, center, check_simplex,
                                                parse_direction)
from hilnas.searchers.hypernet.objective import HyperArchitect, Objective, checked_cost_models
from hilnas.searchers.result import PeakMemory, Stopwatch, check_data
from hilnas.searchers.spaces import NB201Space
from hilnas.searchers.supernet import DCA_OPTIONS, Supernet, SupernetOptions
from hilnas.searchers.train import seed_everything, train

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.data import Loaders
    from hilnas.searchers.spaces import SearchSpace


# the weight step's architecture (``HypernetConfig.weight_lambda``); the CLI and the benchmark offer the same choices
# (``server.cli.search.hypernet.WEIGHT_LAMBDAS``, held equal by a test)
WEIGHT_LAMBDAS = ("drawn", "zero", "uniform", "sandwich", "sandwich-children")
DERIVATIONS = ("argmax", "expected-cost", "median", "conv-median")   # the family's rules (``derive``)


@dataclass(frozen=True, kw_only=True)
class HypernetConfig(BilevelConfig):
    """The hypernetwork search: the shared supernet settings, plus the trade-off and its sampling.

    ``arch`` configures the hypernetwork's Adam (its ``warmup_epochs`` must stay 0: the warm-up
    is ``warmup_fraction``). Coefficients and kappas are in nats per full cost span.
    """
    # Adam moves each of the head's ``hidden`` weights by about lr per step, so an output moves up to ~hidden x lr:
    # at lr 0.01 the demo DARTS space's op weights were one-hot after 3 epochs at every lambda (entropy 0.13-0.29
    # nats of ln 8 = 2.08), where the softmax passes no gradient, and all 12 grid points gave 3 cells within 0.2 %
    # of the range; at 0.001 they stay soft and the alphas keep following lambda (docs/search.md)
    arch: ArchConfig = field(default_factory=lambda: ArchConfig(lr=1e-3, weight_decay=0.0))
    hidden: int = 64                   # width of the hypernetwork's two hidden layers
    kappa: float = 0.1                 # weight of the LUT latency term (seed 002's kappa), x the scale; 0 = off
    kappa_energy: float = 0.1          # the same for the energy term, when an energy cost model is given
    kappa_scaling: str = "scale"       # what the kappas multiply: "scale" (the drawn scale: lambda = 0 is accuracy
                                       # alone) | "Lambda" (Lambda at every scale, as before; ``Objective.kappa_factor``)
    sampling: str = "gumbel"           # direction draws: "gumbel" (Gumbel-Softmax, seed 002) | "dirichlet"
    concentration: float = 1.0         # Dirichlet concentration (1 = uniform on the simplex)
    temperature: float = 1.0           # Gumbel-Softmax temperature
    center_fraction: float = 0.5       # share of draws at the centre (the scalar penalty of grids and budgets)
    lambdas_per_step: int = 4          # lambdas per architecture step, each on its share of the validation batch
    zero_fraction: float = 0.0         # share of draws at lambda = 0 (accuracy only), anchoring that end
    weight_lambda: str = "auto"        # the weight step's architecture ("auto": the space's measured setting, ``defaults``;
                                       # DARTS "sandwich", NB201 "sandwich-children", other spaces "drawn"): "drawn" (a drawn lambda's) | "zero" (lambda = 0's,
                                       # as in the warm-up: the weights serve the accuracy-first end, seed 004's fixed
                                       # pre-trained network, and do not follow the family to its cheap members) |
                                       # "uniform" (a uniformly drawn valid cell, the warm-up included: SPOS's fair
                                       # single path, so no cell is trained more because the family or the init picks
                                       # it; ``HyperArchitect.uniform_path``) | "sandwich" (the dearest valid cell on even
                                       # steps, a uniform one on odd: the weights serve the dear end first, as seed 004's
                                       # pre-trained network; ``HyperArchitect.weight_path``) | "sandwich-children"
                                       # (the dearest cell, a child of it with k of its E edges' ops redrawn, k uniform
                                       # in 1..E, and a uniform cell, in turn: BigNAS's sandwich with intermediate
                                       # children, so cells at every distance from the dearest are trained and the
                                       # loss can fall gradually toward the dear end; ``HyperArchitect.child_path``)
    epoch_val_batches: int = 0         # > 0: after every epoch, the accuracy at lambda = 0 on this many val batches (drawn
                                       # once, at the first step; ``HypernetResult.epoch_val_acc``); 0 = not measured
    arch_step: str = "auto"            # the architecture step's forward ("auto": "relaxed" on every space; NB201's before
                                       # the seventh session's knee: "straight-through"): "relaxed" (the softmax mixture in the searched
                                       # cell, the argmax cell in the derived ones) | "straight-through" (a cell drawn
                                       # from the op weights runs everywhere, one-hot, the gradient straight through:
                                       # the networks the arch step judges are those single-path weight steps train;
                                       # ``ValidSupernet.sampled``)
    phase1: str = "auto"               # before the trade-off phase (seed 004's Algorithm 1, phase 1; "auto": DARTS and NB201
                                       # "dearest", others "none"): "none" | "dearest" (fit
                                       # the hypernetwork's output at and near lambda = 0 to the dearest valid cell, so the
                                       # family starts at the unpruned network and larger lambdas walk down from it;
                                       # ``HyperArchitect.fit_phase1``)
    anchor: str = "auto"               # after phase 1 ("auto": DARTS and NB201 "pinned", others "none", and "none" whenever
                                       # phase 1 is off): "none" | "pinned" (lambda = 0's architecture logits pinned to phase 1's
                                       # fit, the other lambdas learning offsets from it, theta(u) = h(u) - h(0) + anchor, as
                                       # the pruning hypernetwork's; ``anchor.Anchored``; needs phase1="dearest"). It holds the
                                       # lambda = 0 end at the dearest cell through the trade-off phase by construction
    phase1_steps: int = 300            # "dearest": Adam steps of the fit (each a hypernetwork forward, no supernet)
    phase1_confidence: float = 0.6     # "dearest": the target's softmax weight on the dearest cell's op per edge; < 1 so
                                       # the fitted op weights stay soft and the architecture step still has a gradient
    phase1_reach: float = 0.1          # "dearest": the fit covers scale positions v in [0, phase1_reach] (ScaleMap)
    eval_bn: str = "batch"             # the recorded val_acc's BatchNorm: "batch" (each batch's own statistics, as the
                                       # search's losses) | "running" (eval mode; its running statistics mix every path the
                                       # weight steps ran, so with "uniform" it read 8-11 % where the losses were far below
                                       # a constant's; ``train.eval.batch_statistics``)
    scale_sampling: str = "auto"       # scale draws: "uniform" on [0, Lambda] (seed 004) | "log" (see ScaleMap); "auto":
                                       # NB201 "uniform" (with the knee), DARTS and others "log"
    log_floor: float = 0.01            # "log": scales below log_floor * Lambda are spread linearly
    Lambda: float | str = "sweep"      # upper end of the scale: "sweep" (measured, ``sweep``; Theorem 1 recorded
                                       # beside it) | "auto" (Theorem 1, re-estimated every epoch) | a number
    Lambda_fallback: float = 0.5       # "auto": used (and reported) if the theorem never applies in max_warmup_fraction
    sweep_points: int = 9              # "sweep": scales from sweep_min to sweep_max, log-spaced ...
    sweep_min: float = 0.01
    sweep_max: float = 30.0
    sweep_steps: int = 6               # ... each with this many Adam steps of free architecture parameters
    sweep_lr: float = 0.05
    sweep_reach: float = 0.05          # a network within this share of the span of the cheapest has reached it
    sweep_rule: str = "descent"        # Lambda from the walk: "descent" (where it has made most of its descent,
                                       # ``descent_scale``) | "reach" (the scale it reached the cheapest at; before)
    sweep_descent: float = 0.5         # "descent": left to go, as a share of the walk's whole descent
    knee: str = "auto"                 # after each trade-off epoch but the last ("auto": NB201 "family", DARTS and others
                                       # "none"): "none" | "family" (Lambda <- knee_margin x
                                       # the smallest scale whose derived member is within sweep_reach of the valid cells'
                                       # range above the cheapest, at most the estimate; x Lambda when none is below it;
                                       # ``knee``): the draws go where the family changes, not past its cheap end
    knee_margin: float = 1.5           # "family": Lambda's multiple of the knee (> 1: the cheap end stays inside)
    warmup_fraction: float = 0.25      # share of the weight steps before the first hypernetwork step ...
    max_warmup_fraction: float = 0.5   # ... extended (re-checked every quarter epoch) until Theorem 1 applies
    bound_batches: int = 3             # validation batches the bound is estimated on (drawn once)
    bound_samples: int = 3             # random valid networks probed besides the cheapest and the dearest
    derivation: str = "auto"           # the family's rule ("auto": "argmax" on every space; read when
                                       # members are derived, never in training): "argmax" (as the supernet) |
                                       # "expected-cost" (see match_expected_cost; on the demo spaces it pulled the
                                       # lambda = 0 end towards the soft mixture's mean) | "median" (NB201: per edge the
                                       # op at the median of the op weights ordered by the complexity's cost, so
                                       # 3x3 -> 1x1 -> a free op; ``median_genotype``) | "conv-median" (NB201: the
                                       # median while the edge's argmax is a convolution, never below the
                                       # cheapest one; the argmax's op once that is free)
    cost_band: float = 0.1             # "expected-cost": relative band around the expected complexity
    grid_points: int = 9               # scales of the default grid, 0..Lambda
    curve_points: int = 33             # scales of the dense family ``for_budget`` searches
    bisect_steps: int = 6              # bisection steps between two grid scales

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.arch.warmup_epochs:
            raise ValueError("HypernetConfig: set warmup_fraction, not arch.warmup_epochs")
        if self.scale_sampling not in (AUTO, "uniform", "log") or not 0 < self.log_floor < 1:
            raise ValueError(f"scale_sampling must be 'auto', 'uniform' or 'log' and log_floor in (0, 1), got "
                             f"{self.scale_sampling!r}, {self.log_floor!r}")
        if self.derivation not in (AUTO, *DERIVATIONS) or not self.cost_band >= 0:
            raise ValueError(f"derivation must be 'auto', 'argmax', 'expected-cost', 'median' or 'conv-median' and "
                             f"cost_band >= 0, got "
                             f"{self.derivation!r}, {self.cost_band!r}")
        if self.kappa_scaling not in ("scale", "Lambda"):
            raise ValueError(f"kappa_scaling must be 'scale' or 'Lambda', got {self.kappa_scaling!r}")
        if self.weight_lambda not in (AUTO, *WEIGHT_LAMBDAS):
            raise ValueError(f"weight_lambda must be 'auto', 'drawn', 'zero', 'uniform', 'sandwich' or "
                             f"'sandwich-children', got {self.weight_lambda!r}")
        if self.arch_step not in (AUTO, "relaxed", "straight-through"):
            raise ValueError(f"arch_step must be 'auto', 'relaxed' or 'straight-through', got {self.arch_step!r}")
        if self.phase1 not in (AUTO, "none", "dearest"):
            raise ValueError(f"phase1 must be 'auto', 'none' or 'dearest', got {self.phase1!r}")
        if self.anchor not in (AUTO, "none", "pinned"):
            raise ValueError(f"anchor must be 'auto', 'none' or 'pinned', got {self.anchor!r}")
        if self.anchor == "pinned" and self.phase1 == "none":
            raise ValueError("anchor='pinned' pins lambda = 0 to phase 1's fit: set phase1='dearest' (or anchor='none')")
        if not (self.phase1_steps >= 1 and 0.5 < self.phase1_confidence < 1 and 0 <= self.phase1_reach <= 1):
            raise ValueError(f"need phase1_steps >= 1, phase1_confidence in (0.5, 1) and phase1_reach in [0, 1], got "
                             f"{self.phase1_steps!r}, {self.phase1_confidence!r}, {self.phase1_reach!r}")
        if self.eval_bn not in ("batch", "running"):
            raise ValueError(f"eval_bn must be 'batch' or 'running', got {self.eval_bn!r}")
        if self.sampling not in ("dirichlet", "gumbel"):
            raise ValueError(f"sampling must be 'dirichlet' or 'gumbel', got {self.sampling!r}")
        if isinstance(self.Lambda, str):
            if self.Lambda not in ("sweep", "auto"):
                raise ValueError(f"Lambda must be a positive number, 'sweep' or 'auto', got {self.Lambda!r}")
        elif not (math.isfinite(self.Lambda) and self.Lambda > 0):
            raise ValueError(f"Lambda must be a positive number, 'sweep' or 'auto', got {self.Lambda!r}")
        if not (0 < self.sweep_min < self.sweep_max and self.sweep_points >= 2 and self.sweep_steps >= 1
                and self.sweep_lr > 0 and 0 <= self.sweep_reach < 1 and 0 <= self.sweep_descent < 1):
            raise ValueError("need 0 < sweep_min < sweep_max, sweep_points >= 2, sweep_steps >= 1, sweep_lr > 0, "
                             "sweep_reach and sweep_descent in [0, 1)")
        if self.knee not in (AUTO, "none", "family") or not self.knee_margin > 1:
            raise ValueError(f"knee must be 'auto', 'none' or 'family' and knee_margin > 1, got {self.knee!r}, "
                             f"{self.knee_margin!r}")
        if self.sweep_rule not in ("descent", "reach"):
            raise ValueError(f"sweep_rule must be 'descent' or 'reach', got {self.sweep_rule!r}")
        for name in ("kappa", "kappa_energy"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.concentration > 0 and self.temperature > 0 and self.Lambda_fallback > 0):
            raise ValueError("concentration, temperature and Lambda_fallback must be > 0")
        if not (0 <= self.warmup_fraction <= self.max_warmup_fraction < 1 and 0 <= self.center_fraction <= 1):
            raise ValueError("need 0 <= warmup_fraction <= max_warmup_fraction < 1 and center_fraction in [0, 1]")
        if self.grid_points < 2 or self.curve_points < 2 or self.bisect_steps < 0 or self.hidden < 1:
            raise ValueError("grid_points and curve_points must be >= 2, bisect_steps >= 0, hidden >= 1")
        if self.epoch_val_batches < 0:
            raise ValueError(f"epoch_val_batches must be >= 0, got {self.epoch_val_batches}")
        if self.lambdas_per_step < 1:
            raise ValueError(f"lambdas_per_step must be >= 1, got {self.lambdas_per_step}")
        if self.bound_batches < 1 or self.bound_samples < 0:
            raise ValueError("bound_batches must be >= 1 and bound_samples >= 0")


    def resolved(self, space: SearchSpace) -> HypernetConfig:
        """This config with every ``"auto"`` setting replaced by ``space``'s measured one (``defaults.resolve``);
        explicit settings are kept. What ``search`` runs and records."""
        given = {f: getattr(self, f) for f in FALLBACK}
        out = resolve(space.name, given)
        if out["derivation"] in ("median", "conv-median"):   # refused before any training
            check_median(space, " (or 'auto')", out["derivation"])
        return self if out == given else dataclasses.replace(self, **out)

    @property
    def is_resolved(self) -> bool:
        return all(getattr(self, f) != AUTO for f in FALLBACK)


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

    @property
    def device(self) -> torch.device:
        return self.head.bias.device

    @property
    def num_coeffs(self) -> int:
        return self.body[0].in_features

    def trained_parameters(self) -> Iterator[nn.Parameter]:
        """What the trade-off steps train (all of it; ``Anchored`` keeps its anchor out)."""
        return self.parameters()

    def flat(self, x: torch.Tensor) -> torch.Tensor:  # (k,) in [0, 1] -> (total,), every output in one vector
        # centred inputs: the output bias is the architecture at mid-range and the weights set the slope, rather
        # than bias and weights both chasing the architecture at lambda = 0 (an ill-conditioned fit for Adam)
        x = 2.0 * x - 1.0
        return self.head(self.body(x)) + self.linear(x)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: t.reshape(s) for (k, s), t in zip(self.layout.items(), flat.split(self.sizes, dim=-1))}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # (k,) in [0, 1] -> {name: shape of the layout}
        return self.unflatten(self.flat(x))


def new_hypernetwork(num_coeffs: int, layout: Mapping[str, tuple[int, ...]], config: HypernetConfig,
                     init: Mapping[str, torch.Tensor] | None = None) -> Hypernetwork | Anchored:
    """The search's hypernetwork: ``Hypernetwork``, wrapped in ``Anchored`` when ``config.anchor == "pinned"``
    (``config`` resolved for the space: ``HypernetConfig.resolved``)."""
    if config.anchor == AUTO:
        raise ValueError("new_hypernetwork: resolve the config for the space first (HypernetConfig.resolved)")
    h = Hypernetwork(num_coeffs, layout, config.hidden, init=init)
    return Anchored(h) if config.anchor == "pinned" else h


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
        # cell type -> a one-hot op per edge drawn from the op weights (``sampled``): the forward runs that discrete
        # cell, the gradient reaching the op weights straight through (``arch_step="straight-through"``)
        self.sample: Mapping[str, torch.Tensor] | None = None

    @contextlib.contextmanager
    def sampled(self, rng: torch.Generator) -> Iterator[ValidSupernet]:
        """Within ``using``: draw one op per edge from the current op weights (NB201: redrawn, up to 50 times,
        until the cell is valid) and run that discrete cell everywhere, the searched cell included, with the
        straight-through gradient ``one_hot + p - p.detach()`` to the op weights p."""
        from hilnas.searchers.cost import _nb201_connected

        with torch.no_grad():
            probs = {t: w.detach() for t, w in self.op_weights().items()}
        sample = {}
        for t, p in probs.items():
            for _ in range(50):
                idx = torch.multinomial(p.cpu().double(), 1, generator=rng).squeeze(1)
                if not isinstance(self.space, NB201Space) or _nb201_connected(
                        tuple(self.space.ops[int(i)] for i in idx)):
                    break
            sample[t] = torch.nn.functional.one_hot(idx, p.shape[1]).to(p)
        self.sample = sample
        try:
            yield self
        finally:
            self.sample = None

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
        w = {t: self.arch[f"alphas.{t}"].softmax(dim=-1) for t in self.alphas}
        if self.sample is not None:   # the drawn cell, with the gradient of the op weights (straight through)
            w = {t: self.sample[t] + p - p.detach() for t, p in w.items()}
        return w

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

    The forward detaches the architecture: the weight step trains weights only. ``path`` (set for one weight
    step by ``weight_lambda="uniform"``) replaces the hypernetwork's architecture with a one-hot cell.
    """

    def __init__(self, supernet: ValidSupernet, hypernet: Hypernetwork | Anchored):
        super().__init__()
        self.supernet, self.hypernet = supernet, hypernet
        self.coeffs: torch.Tensor | None = None   # (k,) hypernetwork input (ScaleMap.encode); None = zeros
        self.path: Mapping[str, torch.Tensor] | None = None   # a one-hot architecture in place of the hypernetwork's

    def _input(self) -> torch.Tensor:
        device = self.hypernet.device
        return self.coeffs.to(device) if self.coeffs is not None else torch.zeros(self.hypernet.num_coeffs,
                                                                                  device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        arch = self.path if self.path is not None else {k: v.detach() for k, v in self.hypernet(self._input()).items()}
        with self.supernet.using(arch):
            return self.supernet(x)


def arch_layout(supernet: Supernet) -> dict[str, tuple[int, ...]]:
    ids = {id(p) for p in supernet.arch_parameters()}
    return {n: tuple(p.shape) for n, p in supernet.named_parameters() if id(p) in ids}


# -- the entry point -----------------------------------------------------------------------------
def search(space: SearchSpace, cost_model: CostModel, config: HypernetConfig, *, seed: int = 0, data: Loaders,
           complexity: CostModel | None = None, energy: CostModel | None = None) -> HypernetResult:
    """Train the supernet weights and the hypernetwork in one run; the result derives the family.

    ``cost_model`` is the latency term (kappa) and the default metric of curves and budgets;
    ``complexity`` the term the per-op coefficients weigh (default: ``cost_model`` itself, e.g.
    ``ParamsCost()`` or a LUT cost); ``energy`` the optional energy term (kappa_energy).
    """
    check_data(space, data)
    config = config.resolved(space)   # "auto" settings -> the space's measured ones, recorded in the result
    complexity = complexity or cost_model
    models = checked_cost_models(space, cost_model, complexity, energy)
    objective = Objective(space, complexity, cost_model if complexity is not cost_model else None, energy,
                          kappa=config.kappa, kappa_energy=config.kappa_energy, kappa_scaling=config.kappa_scaling)
    seed_everything(seed)
    supernet = ValidSupernet(space, config.options)
    init = {n: p for n, p in supernet.named_parameters() if n in arch_layout(supernet)}
    hypernet = new_hypernetwork(len(objective.ops), arch_layout(supernet), config, init=init)
    relaxed = RelaxedSupernet(supernet, hypernet)
    per_epoch = len(data.train)
    if config.max_batches_per_epoch is not None:
        per_epoch = min(per_epoch, config.max_batches_per_epoch)
    hook = HyperArchitect(relaxed, objective, config, steps_per_epoch=per_epoch, seed=seed)
    with Stopwatch() as clock, PeakMemory() as mem:
        history = train(relaxed, data, config.train_config(seed), hooks=hook)
        if config.phase1 != "none" and not hook.phase1_loss:   # the run ended inside the warm-up, before phase 1
            hook.fit_phase1()
        if hook.Lambda is None:  # the run ended inside the warm-up: estimate now so the family exists
            val = _cycle(data.val)
            if config.Lambda == "sweep":
                hook.estimate_sweep(lambda: next(val))  # noqa: B023
            else:
                hook.estimate_bound(lambda: next(val), final=True)  # noqa: B023
    assert hook.Lambda is not None
    result = HypernetResult(
        space=space, config=config, models=models, primary=cost_model.metric, complexity=complexity,
        supernet=supernet, hypernet=hypernet,
        Lambda=hook.Lambda, bound=hook.bound, Lambda_history=hook.Lambda_history, ops=objective.ops,
        history=hook.history, epoch_costs=hook.epoch_costs, val_acc=math.nan, sweep=hook.sweep,
        epoch_val_acc=hook.epoch_val_acc, knees=hook.knees,
        steps=sum(h.batches for h in history.history), epochs=config.epochs, wall_s=clock.seconds,
        peak_mem_mb=mem.peak_mb, seed=seed)
    result.val_acc = result.accuracy(0.0, data.val, max_batches=config.eval_batches)
    return result


def _cycle(loader):
    while True:
        yield from loader


__all__ = ["Anchored", "arch_layout", "arch_weights", "Architecture", "BudgetRangeError", "center", "check_simplex",
           "count_violations", "derive", "HyperArchitect", "HypernetConfig", "HypernetResult",
           "Hypernetwork", "isotonic", "match_expected_cost", "new_hypernetwork", "Objective", "parse_direction",
           "RelaxedSupernet", "ScaleMap", "search", "TradeOff", "TradeOffCurve", "TradeOffError",
           "valid_genotype", "ValidSupernet", "WEIGHT_LAMBDAS"]
