"""Pruning a pre-trained network with a hypernetwork: seed 004's problem and Algorithm 1.

Seed 004 prunes the modules E of a trained model: find gates gamma(lambda) in {0, 1}^|E| minimising

    E_lambda E_gamma [ L_valid(gamma(lambda)) + lambda sum_e T(e) gamma(lambda)_e ],

with T(e) the time of module e on the device (here the LUT: ``cost.ModuleCosts``) and gamma relaxed
by Gumbel-Softmax (``gates``). A hypernetwork maps lambda to the gates' logits, so one training run
yields the pruned network for every lambda, and any budget is served later by bisection on lambda.

Algorithm 1, as built here (``search``):

1. load the pre-trained model (``pretrain``) and measure T (the LUT);
2. initialise the hypernetwork; phase 1: fit it to the all-on bias, ``|| sigmoid(theta(lambda)) - bias ||^2``
   over lambda, until hypernet(0)'s network keeps the pre-trained accuracy on held-out batches;
3. estimate Lambda: the lambda sweep (accuracy vs lambda, its plateau and drop; started from phase 1's
   fit, scored on ``sweep_eval_batches`` held-out batches, stopped at the drop) and Theorem 1 (its
   probes the patterns the sweep scored and ``bound_samples`` random ones), both recorded (``sweep``); the
   sweep's value is the range unless told otherwise;
4. phase 2: draw lambda on [0, Lambda], gamma from the hypernetwork at lambda (Gumbel-Softmax,
   straight-through, temperature annealed), Adam steps on ``L_valid(gamma) + lambda T(gamma) / T^T 1``.

Deviations from the seed, each for a measured reason given where the code makes it:

- the penalty is the cost of the sampled pattern as a fraction of T^T 1 (``cost``: exact for the
  hard pattern; seed 004's linear T^T gamma for block gates, but a branch's cost depends on how
  many of its channel groups it keeps); lambda is in nats per T^T 1, the hypernetwork sees its
  position in [0, Lambda];
- the pre-trained weights stay fixed during the search and BatchNorm normalises with batch
  statistics; a derived network has its statistics re-estimated before it is scored or exported
  (``gates.freeze``, ``gates.recalibrate``); fine-tuning a derived network is a separate option;
- the lambda = 0 member is pinned to phase 1's fit (the anchor, ``PruneHypernet``); the other lambdas learn offsets
  from it. ``PruneConfig.anchor = "learned"`` trains the anchor in phase 2 on L_valid alone, on one of each step's
  shares at lambda = 0 (seed 004 has no pin); on the CIFAR-10 subset its quarter-batch gradients dropped the last
  block at lambda = 0 (held-out loss 1.578 against a fixed pruning's 1.371), so it is not the default;
- phase 2 draws lambda log-spread (``scale_sampling``, seed 004: uniform), four per step (three, and lambda = 0,
  with the learned anchor), each on a
  quarter of the batch and with its loss weighted 1 / (1 + lambda) (the same optimum at every
  lambda, but the large lambdas no longer outweigh the small ones in the shared parameters); the
  four patterns run in one forward pass with per-sample gates and BatchNorm statistics per quarter
  (``segments``: the same losses as four passes, at about a fixed pruning's cost per step);
- L_valid is the validation split's loss; accuracies are reported on the test split.

A derived pattern takes every gate's mode; no pattern breaks the graph (shortcuts are never gated).
A budget that falls in a gap between the modes of neighbouring lambdas can take a pattern the
hypernetwork samples near them (``band``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from hilnas.searchers.hypernet.anchor import Anchored
from hilnas.searchers.hypernet.family import Architecture, Family, TradeOffCurve
from hilnas.searchers.hypernet.search import Hypernetwork
from hilnas.searchers.hypernet.tradeoff import ScaleMap, TradeOff
from hilnas.searchers.prune.cost import ModuleCosts
from hilnas.searchers.prune.gates import (GateLayout, GateObjective, annealed, freeze, pattern_loss_accuracy,
                                         recalibrate)
from hilnas.searchers.prune.network import GatedResNet
from hilnas.searchers.hypernet.bound import Probe
from hilnas.searchers.prune.sweep import (Clock, LambdaEstimate, cycle, has_fallen, lambda_sweep, optimise_gates,
                                          sweep_Lambda, theorem_estimate)
from hilnas.searchers.result import PeakMemory, SearchError, Stopwatch, check_data
from hilnas.searchers.spaces.resnet import GatePattern, ResNetSpace
from hilnas.searchers.train import evaluate

if TYPE_CHECKING:
    from collections.abc import Iterable

    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.data import Loaders
    from hilnas.searchers.train import Batch


@dataclass(frozen=True, kw_only=True)
class PruneConfig:
    """How to prune: the gates, Algorithm 1's two phases, the lambda sweep, and the family derived after."""
    granularity: str = "groups"        # gates on "blocks" only, or on blocks and their channel "groups"
    hidden: int = 32                   # width of the hypernetwork's two hidden layers
    # phase 1 (Algorithm 1, lines 3-7)
    bias: float = 0.9                  # the all-on bias: every gate's keep-probability phase 1 fits
    phase1_lr: float = 1e-2
    phase1_max_steps: int = 400
    accuracy_tolerance: float = 0.005  # hypernet(0) must keep the pre-trained accuracy within this
    # Lambda
    Lambda: float | str = "sweep"      # "sweep" | "theorem" (falls back to the sweep when it does not apply) | > 0
    sweep_points: int = 6              # lambdas of the sweep, log-spaced from sweep_min to sweep_max (seventh session:
    sweep_min: float = 0.1             # 8 from 0.01 before; their first three were all on the plateau on both datasets)
    sweep_max: float = 30.0
    sweep_steps: int = 20              # gate steps per swept lambda (each continues from the previous one)
    sweep_eval_batches: int = 4        # held-out batches the sweep scores each lambda's pattern on (of eval_batches)
    sweep_stop: bool = True            # stop the sweep at the drop (the first lambda whose network has fallen)
    sweep_batch: int | None = 32       # images of each batch the sweep's gate steps use (None: the whole batch)
    drop: float = 0.25                 # fallen: accuracy within this share of the way from the worst quality to full
    bound_samples: int = 4             # random patterns probed for Theorem 1, besides the empty, the full and the sweep's
    # phase 2 (lines 8-12) and fixed-lambda pruning
    steps: int = 600                   # hypernetwork steps of phase 2 (and steps of one fixed-lambda pruning)
    lr: float = 3e-3                   # Adam on the hypernetwork
    lambdas_per_step: int = 4          # phase 2: lambdas per step, each on its share of the batch (one is 0: ``anchor``)
    phase2_pass: str = "one"           # the shares in "one" forward pass (``segments``) | "split": a pass per share
    anchor: str = "pinned"             # lambda = 0's logits in phase 2: "pinned" to phase 1's all-on fit | "learned" on
                                       # one of the lambdas_per_step shares, L_valid alone, at gate_lr (fourth session:
                                       # on CIFAR-10 it dropped the last block at lambda = 0, 51 % vs 61 %)
    gate_lr: float = 0.1               # Adam on free logits (fixed-lambda pruning, the sweep)
    tau_start: float = 1.0             # Gumbel-Softmax temperature, annealed geometrically ...
    tau_end: float = 0.3               # ... to this at the last step
    scale_sampling: str = "log"        # lambda draws: "uniform" on [0, Lambda] (seed 004) | "log" (``ScaleMap``)
    log_floor: float = 0.01
    eval_batches: int = 8              # held-out validation batches for accuracies during the search
    recalibrate_batches: int = 20      # training batches a derived network's BatchNorm statistics are re-estimated on
    # the family
    grid_points: int = 12              # lambdas of the default grid, 0..Lambda
    curve_points: int = 33             # lambdas of the dense family ``for_budget`` searches
    bisect_steps: int = 6

    def __post_init__(self) -> None:
        GateLayout(1, 1, self.granularity)  # checks the granularity
        if isinstance(self.Lambda, str):
            if self.Lambda not in ("sweep", "theorem"):
                raise ValueError(f"Lambda must be 'sweep', 'theorem' or a positive number, got {self.Lambda!r}")
        elif not (math.isfinite(self.Lambda) and self.Lambda > 0):
            raise ValueError(f"Lambda must be 'sweep', 'theorem' or a positive number, got {self.Lambda!r}")
        if not 0 < self.drop < 1:
            raise ValueError(f"drop must lie in (0, 1), got {self.drop}")
        if not 0.5 < self.bias < 1:
            raise ValueError(f"bias must lie in (0.5, 1) (a keep-probability whose mode is 'on'), got {self.bias}")
        if not 0 < self.sweep_min < self.sweep_max or self.sweep_points < 2:
            raise ValueError("need 0 < sweep_min < sweep_max and sweep_points >= 2")
        if min(self.steps, self.sweep_steps, self.lambdas_per_step, self.phase1_max_steps, self.eval_batches, self.hidden,
               self.recalibrate_batches, self.sweep_eval_batches, self.sweep_batch or 1) < 1 or self.bound_samples < 0:
            raise ValueError("steps, sweep_steps, sweep_eval_batches, phase1_max_steps, eval_batches and hidden must be >= 1, "
                             "bound_samples >= 0")
        if not 0 < self.tau_end <= self.tau_start:
            raise ValueError("need 0 < tau_end <= tau_start")
        if self.scale_sampling not in ("uniform", "log") or not 0 < self.log_floor < 1:
            raise ValueError("scale_sampling must be 'uniform' or 'log', log_floor in (0, 1)")
        if self.phase2_pass not in ("one", "split"):
            raise ValueError(f"phase2_pass must be 'one' or 'split', got {self.phase2_pass!r}")
        if self.anchor not in ("learned", "pinned"):
            raise ValueError(f"anchor must be 'learned' or 'pinned', got {self.anchor!r}")
        if self.anchor == "learned" and self.lambdas_per_step < 2:
            raise ValueError("the learned anchor takes one of lambdas_per_step for lambda = 0: need lambdas_per_step >= 2 "
                             "(or anchor='pinned')")
        if self.grid_points < 2 or self.curve_points < 2 or self.bisect_steps < 0:
            raise ValueError("grid_points and curve_points must be >= 2, bisect_steps >= 0")


# -- the result: a family of pruned networks ------------------------------------------------------
@dataclass
class PruneResult(Family):
    """One pruning-hypernetwork run: the pre-trained network, the hypernetwork lambda -> gates, Lambda."""
    space: ResNetSpace
    config: PruneConfig
    net: GatedResNet                    # the pre-trained network (weights frozen)
    layout: GateLayout
    hypernet: PruneHypernet
    models: dict[str, CostModel]        # metric -> cost model (the latency LUT, and any others given)
    primary: str
    costs: dict[str, ModuleCosts]       # metric -> T(e) per module
    Lambda: float
    estimate: LambdaEstimate | None     # the sweep and Theorem 1; None when loaded without them
    pretrained_accuracy: float          # on the held-out validation batches
    phase1: dict[str, Any]              # steps taken, whether hypernet(0) kept the accuracy
    history: dict[str, list[float]]     # per phase-2 step: lambda, cross-entropy, cost fraction, temperature
    timings: dict[str, float]           # seconds, wall and CPU: phase1, sweep, theorem, phase2 (and <phase>_cpu)
    steps: int
    wall_s: float
    peak_mem_mb: float
    seed: int
    ops: tuple[str, ...] = ("lambda",)  # one coefficient (Family's simplex has a single vertex)
    _curves: dict[Any, TradeOffCurve] = field(default_factory=dict, repr=False)

    def logits(self, t: TradeOff | float) -> torch.Tensor:
        t = self._check(t)
        c = torch.tensor([t.scale], dtype=torch.float32)
        with torch.no_grad():
            return self.hypernet(ScaleMap.of(self.config).encode(c, self.Lambda))["gates"]

    def architecture(self, t: TradeOff | float) -> Architecture:
        """The pruned network at lambda (a bare number is lambda): every gate at its mode."""
        t = self._check(t)
        logits = self.logits(t)
        pattern = self.layout.pattern(logits)
        block, group = self.layout.split(torch.sigmoid(logits))
        costs = {m: model.genotype_cost(self.space, pattern) for m, model in self.models.items()}
        expected = {m: float(c.expected(block, group)) for m, c in self.costs.items()}
        return Architecture(t, pattern, costs, expected)

    def network(self, pattern: GatePattern, calibration: Iterable[Batch]) -> torch.nn.Module:
        """The pruned network of ``pattern``: pre-trained weights, BatchNorm statistics re-estimated on
        ``calibration`` (``gates.recalibrate``; the first ``config.recalibrate_batches`` training batches)."""
        return recalibrate(self.net.prune(pattern), list(itertools.islice(calibration, self.config.recalibrate_batches)))

    def accuracy(self, pattern: GatePattern, loader: Iterable[Batch], calibration: Iterable[Batch], *,
                 max_batches: int | None = None) -> float:
        """Test accuracy of the pruned network ``pattern`` (``network``; no fine-tuning) on ``loader``."""
        return evaluate(self.network(pattern, calibration), loader, max_batches=max_batches)[1]

    def to_dict(self) -> dict[str, Any]:
        import dataclasses
        return {"method": "prune", "space": self.space.name, "Lambda": self.Lambda,
                "estimate": self.estimate.to_dict() if self.estimate else None,
                "pretrained_accuracy": self.pretrained_accuracy, "phase1": self.phase1, "timings": self.timings,
                "metrics": {m: model.unit for m, model in self.models.items()}, "primary": self.primary,
                "T": {m: {"rest": c.rest, "span": c.span, "branch": c.branch.tolist()} for m, c in self.costs.items()},
                "steps": self.steps, "wall_s": self.wall_s, "peak_mem_mb": self.peak_mem_mb, "seed": self.seed,
                "curve": self.curve().to_dict(), "config": dataclasses.asdict(self.config)}


# -- Algorithm 1 ----------------------------------------------------------------------------------
class PruneHypernet(Anchored):
    """lambda / Lambda -> gate logits: the DARTS-space hypernetwork's MLP with one input, anchored at lambda = 0.

    Once phase 1 has fitted it to the all-on bias, ``pin()`` makes that fit the anchor, lambda = 0's logits,
    and phase 2 learns how the gates move away from it: ``theta(u) = h(u) - h(0) + anchor`` (``Anchored``, shared
    with the DARTS-space/NB201 hypernetwork's ``anchor="pinned"``). Unanchored, phase 2
    let the gates that hardly change the loss drift off at lambda = 0 too (on the CIFAR-10 subset the
    lambda = 0 member lost 9 points against the pre-trained network), though there the objective is the
    pre-trained network's own loss. The anchor is a parameter that only lambda = 0's own loss moves
    (``PruneConfig.anchor = "learned"``): at u = 0 the output is the anchor itself, elsewhere the anchor as it
    stands (detached), so the lambdas > 0 train h alone and never pull lambda = 0's gates off. Kept fixed
    (``"pinned"``), lambda = 0 could not drop a group that hurts the held-out loss (cause (b) of the third session).
    """

    def __init__(self, layout: GateLayout, hidden: int):
        super().__init__(Hypernetwork(1, {"gates": (layout.size,)}, hidden, init={"gates": torch.zeros(layout.size)}))


def new_hypernet(layout: GateLayout, hidden: int) -> PruneHypernet:
    return PruneHypernet(layout, hidden)


def phase1(hypernet: PruneHypernet, objective: GateObjective, held_out: list[Batch], target_accuracy: float,
           config: PruneConfig, *, generator: torch.Generator) -> dict[str, Any]:
    """Fit the hypernetwork to the all-on bias until hypernet(0)'s network keeps ``target_accuracy``."""
    opt = torch.optim.Adam(hypernet.h.parameters(), lr=config.phase1_lr)
    layout, acc, steps = objective.layout, math.nan, 0
    zero = torch.zeros(1)
    while steps < config.phase1_max_steps:
        u = torch.rand(8, 1, generator=generator)  # the whole input range, so phase 2 starts all-on everywhere
        p = torch.stack([torch.sigmoid(hypernet(v)["gates"]) for v in u])
        loss = ((p - config.bias) ** 2).sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        if steps % 10 == 0:
            with torch.no_grad():
                pattern = layout.pattern(hypernet(zero)["gates"])
            acc = pattern_loss_accuracy(objective.net, layout, pattern, held_out)[1]
            if acc >= target_accuracy - config.accuracy_tolerance:
                return {"steps": steps, "accuracy": acc, "kept_accuracy": True}
    return {"steps": steps, "accuracy": acc, "kept_accuracy": False,
            "note": f"after {steps} steps hypernet(0) reaches {acc:.4f}, not the pre-trained {target_accuracy:.4f}"}


def estimate_Lambda(objective: GateObjective, batches, held_out: list[Batch], config: PruneConfig, *,
                    seed: int, generator: torch.Generator, num_classes: int, timings: dict[str, float],
                    start: torch.Tensor | None = None) -> LambdaEstimate:
    """The sweep's and Theorem 1's Lambda (both recorded); which one is used follows ``config.Lambda``.

    The sweep starts from ``start`` (phase 1's fit at lambda = 0; default the all-on bias), scores on the first
    ``config.sweep_eval_batches`` held-out batches and stops at the drop (``config.sweep_stop``); Theorem 1's
    probes are the patterns it scored, plus ``config.bound_samples`` random ones.
    """
    layout, space = objective.layout, objective.net.space
    B = len(space.layers())
    scoring = held_out[: config.sweep_eval_batches]
    with Clock() as clock:
        full, empty = GatePattern.full(B, space.groups), GatePattern.empty(B, space.groups)
        full_loss, full_acc = pattern_loss_accuracy(objective.net, layout, full, scoring)
        floor_loss, floor_acc = pattern_loss_accuracy(objective.net, layout, empty, scoring)
        worst = max(floor_acc, 1.0 / num_classes)  # chance, or the fully pruned network when it does better
        if start is None:
            start = layout.logits_of(full, math.log(config.bias / (1 - config.bias)))
        points = lambda_sweep(objective, batches, scoring, config, start=start, generator=generator,
                              fallen=has_fallen(full_acc, worst, config.drop) if config.sweep_stop else None,
                              scored={full: (full_loss, full_acc), empty: (floor_loss, floor_acc)})
    clock.record(timings, "sweep")
    with Clock() as clock:
        scored = [Probe(full, full_loss, 1.0), Probe(empty, floor_loss, 0.0)]
        scored += [Probe(p.pattern, p.loss, p.fraction) for p in points]
        theorem = theorem_estimate(objective, scoring, config.bound_samples, seed=seed, num_classes=num_classes,
                                   scored=scored)
    clock.record(timings, "theorem")
    swept, notes = sweep_Lambda(points, full_acc, worst, config.drop)
    notes += list(theorem.notes)
    if not isinstance(config.Lambda, str):
        Lambda, source = float(config.Lambda), "given"
    elif config.Lambda == "theorem" and theorem.applies:
        Lambda, source = theorem.Lambda, "theorem"
    else:
        if config.Lambda == "theorem":
            notes.append("Theorem 1 does not apply on these probes; the sweep's Lambda is used")
        Lambda, source = swept, "sweep"
    return LambdaEstimate(Lambda, source, swept, theorem, tuple(points), full_acc, floor_acc, tuple(notes))


def phase2(hypernet: PruneHypernet, objective: GateObjective, batches, Lambda: float, config: PruneConfig, *,
           generator: torch.Generator, rng: torch.Generator) -> dict[str, list[float]]:
    """``config.steps`` Adam steps of the hypernetwork, each at ``config.lambdas_per_step`` lambdas on [0, Lambda], each on
    its share of the batch: fresh draws, or with ``config.anchor = "learned"`` lambda = 0 (which trains the anchor
    alone) and ``lambdas_per_step - 1`` fresh draws."""
    learned = config.anchor == "learned"
    groups: list[dict[str, Any]] = [{"params": list(hypernet.h.parameters()), "lr": config.lr}]
    if learned:   # lambda = 0's logits are free logits, stepped as a fixed-lambda pruning steps its own
        groups.append({"params": [hypernet.anchor], "lr": config.gate_lr})
    opt = torch.optim.Adam(groups)
    smap = ScaleMap.of(config)
    history: dict[str, list[float]] = {"lambda": [], "ce": [], "fraction": [], "tau": []}
    drawn: list[torch.Tensor] = []   # each step's (k, size) logits, for the history's cost fractions
    k = config.lambdas_per_step
    for i in range(config.steps):
        x, y = next(batches)
        tau = annealed(i, config.steps, config.tau_start, config.tau_end)
        opt.zero_grad(set_to_none=True)
        # k lambdas per step, stratified over the hypernetwork's input, each on its share of the batch: every step
        # contrasts small and large lambdas, so the shared parameters do not just follow the last draw
        # (with the learned anchor one of the k is lambda = 0: a share as large as the others, for lambda = 0's logits)
        shares = list(zip(x.chunk(k), y.chunk(k)))      # k of them unless the batch is small
        n = len(shares) - learned
        v = (torch.arange(n) + torch.rand(n, generator=rng)) / n
        lams = [0.0] * learned + [Lambda * smap.fraction(float(v[j])) for j in range(n)]
        # the k lambdas' logits in one call of the hypernetwork (``Anchored.flat``; the same values to float rounding
        # as a call per lambda, 0.85 ms instead of 2.4 ms a step with the backward pass, seventh session)
        logits = hypernet.flat(smap.encode(torch.tensor(lams).unsqueeze(1), Lambda))
        # 1 / (1 + lambda): the same optimum at every lambda, but a large lambda's penalty no longer
        # outweighs a small lambda's cross-entropy in the shared parameters
        weight = 1.0 / (len(lams) * (1.0 + torch.tensor(lams)))
        if config.phase2_pass == "one":   # the k patterns in one pass, BatchNorm per share (``segments``)
            loss, ce = objective.several(logits, torch.tensor(lams), x, y, tau, generator=generator)
            (loss * weight).sum().backward()
        else:                             # "split": a pass per share
            ce = torch.zeros(len(lams))
            for j, (xs, ys) in enumerate(shares):
                loss_j, ce_j = objective(logits[j], lams[j], xs, ys, tau, generator=generator)
                (loss_j * weight[j]).backward(retain_graph=j < len(lams) - 1)
                ce[j] = ce_j.detach()
        history["lambda"] += lams
        history["ce"] += ce.detach().tolist()
        history["tau"] += [tau] * len(lams)
        drawn.append(logits.detach())
        opt.step()
    # each lambda's expected cost fraction at its logits, priced once for the whole phase rather than k times a step
    history["fraction"] = objective.cost_fractions(torch.cat(drawn)).tolist() if drawn else []
    return history


def search(space: ResNetSpace, cost_model: CostModel, config: PruneConfig, *, net: GatedResNet, data: Loaders,
           seed: int = 0, others: Iterable[CostModel] = ()) -> PruneResult:
    """Prune the pre-trained ``net`` with a hypernetwork (Algorithm 1); the result derives the family.

    ``cost_model`` gives T(e) (a device's LUT latency, or parameters / FLOPs); ``others`` are priced
    too for every member (e.g. parameters beside latency). Gates are trained on ``data.val``.
    """
    if not (isinstance(space, ResNetSpace) or hasattr(space, "gated_network")) or net.space != space:
        raise SearchError(f"pruning needs a prunable space and its pre-trained network; got {space.name} and a network "
                          f"for {getattr(net.space, 'name', '?')}")
    check_data(space, data)
    models = {cost_model.metric: cost_model}
    for m in others:
        models.setdefault(m.metric, m)
    costs = {metric: ModuleCosts.of(space, m) for metric, m in models.items()}
    layout = GateLayout(len(space.layers()), space.groups, config.granularity)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    freeze(net)
    objective = GateObjective(net, costs[cost_model.metric], layout)
    held_out = [b for _, b in zip(range(config.eval_batches), data.val)]
    batches = cycle(data.val)
    timings: dict[str, float] = {}
    with Stopwatch() as clock, PeakMemory() as mem:
        hypernet = new_hypernet(layout, config.hidden)
        pre_acc = pattern_loss_accuracy(net, layout, GatePattern.full(layout.blocks, space.groups), held_out)[1]
        with Clock() as c1:
            p1 = phase1(hypernet, objective, held_out, pre_acc, config, generator=generator)
            hypernet.pin()
        c1.record(timings, "phase1")
        est = estimate_Lambda(objective, batches, held_out, config, seed=seed, generator=generator,
                              num_classes=space.num_classes, timings=timings, start=hypernet.anchor.detach().clone())
        with Clock() as c2:
            history = phase2(hypernet, objective, batches, est.Lambda, config, generator=generator,
                             rng=torch.Generator().manual_seed(seed + 1))
        c2.record(timings, "phase2")
    hypernet.eval()
    return PruneResult(space=space, config=config, net=net, layout=layout, hypernet=hypernet, models=models,
                       primary=cost_model.metric, costs=costs, Lambda=est.Lambda, estimate=est,
                       pretrained_accuracy=pre_acc, phase1=p1, history=history, timings=timings,
                       steps=config.steps, wall_s=clock.seconds, peak_mem_mb=mem.peak_mb, seed=seed)


@dataclass(frozen=True)
class FixedPruning:
    """One separately optimised fixed-lambda pruning (the baseline a family member is compared with)."""
    lam: float
    pattern: GatePattern
    costs: dict[str, float]
    wall_s: float


def prune_fixed(space: ResNetSpace, cost_model: CostModel, lam: float, config: PruneConfig, *, net: GatedResNet,
                data: Loaders, seed: int = 0, others: Iterable[CostModel] = ()) -> FixedPruning:
    """Optimise free gate logits at one lambda for ``config.steps`` steps from the all-on bias (no hypernetwork)."""
    check_data(space, data)
    models = {cost_model.metric: cost_model, **{m.metric: m for m in others}}
    layout = GateLayout(len(space.layers()), space.groups, config.granularity)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    objective = GateObjective(freeze(net), ModuleCosts.of(space, cost_model), layout)
    start = layout.logits_of(GatePattern.full(layout.blocks, space.groups), math.log(config.bias / (1 - config.bias)))
    with Stopwatch() as clock:
        logits = optimise_gates(objective, lam, start, cycle(data.val), config.steps, config, generator=generator)
    pattern = layout.pattern(logits)
    return FixedPruning(lam, pattern, {m: model.genotype_cost(space, pattern) for m, model in models.items()},
                        clock.seconds)

