"""The bi-level supernet search shared by DCA-NAS, DARTS and the fixed-penalty baseline.

One job: build the supernet, alternate architecture steps (``Architect``) and weight steps (the
shared ``train`` loop), derive the genotype, and when there is a budget check the derived
genotype against it, repairing it as a last resort and saying so (``repaired``,
``edges_changed``). The methods differ only in their ``SupernetOptions``, their ``CostTerm``
and the DCA-only settings ``run_bilevel`` reads from the config when present (``constrain``,
``temperature``; see ``search.py``). Every epoch records the supernet's validation accuracy,
the derived genotype's cost and the multiplier (``SearchResult.extra["epochs"]``).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

from hilnas.searchers.dca.architect import ArchConfig, Architect, CostTerm
from hilnas.searchers.dca.darts_nodes import NodeDecisions
from hilnas.searchers.dca.progressive import Progressive, decision_steps
from hilnas.searchers.dca.feedback import DeviceFeedback
from hilnas.searchers.cost import CostModel, extremes, table_cost
from hilnas.searchers.dca.repair import edges_changed, repair
from hilnas.searchers.result import (Budget, InfeasibleBudgetError, PeakMemory, SearchError, SearchResult, Stopwatch,
                                     check_data)
from hilnas.searchers.spaces import DartsSpace, NB201Space
from hilnas.searchers.supernet import DCA_OPTIONS, SupernetOptions, build_supernet
from hilnas.searchers.train import TrainConfig, evaluate, seed_everything, train

if TYPE_CHECKING:
    from hilnas.searchers.data import Loaders
    from hilnas.searchers.spaces import SearchSpace

log = logging.getLogger(__name__)
_RANGE_TOL = 1e-9


@dataclass(frozen=True, kw_only=True)
class BilevelConfig:
    """Hyper-parameters every supernet search shares (so methods compare on equal terms)."""
    epochs: int = 2                     # search epochs over the training half
    w_lr: float = 0.05                  # SGD lr of the supernet weights (cosine-annealed)
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    grad_clip: float | None = 5.0
    arch: ArchConfig = field(default_factory=ArchConfig)
    options: SupernetOptions = DCA_OPTIONS
    device: str = "cpu"                 # torch device; "auto" = CUDA when available
    max_batches_per_epoch: int | None = None  # cap for smoke runs
    eval_batches: int | None = 20       # validation batches for the reported val_acc; None = all

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.w_lr, momentum=self.w_momentum,
                           weight_decay=self.w_weight_decay, grad_clip=self.grad_clip, seed=seed,
                           device=self.device, log_every=0, eval_split="none",
                           max_batches_per_epoch=self.max_batches_per_epoch)


class BudgetAboveRangeError(SearchError):
    """Every genotype the search can derive fits the budget, so the constraint cannot bind."""

    def __init__(self, message: str, *, range: tuple[float, float]):
        super().__init__(message)
        self.range = range


def check_budget(space: SearchSpace, cost_model: CostModel, budget: Budget) -> None:
    """Raise unless the metrics agree and the budget lies within [cheapest, dearest] derivable cost."""
    if budget.metric != cost_model.metric:
        raise SearchError(f"budget {budget} is in {budget.metric} but the cost model {cost_model.name} "
                          f"measures {cost_model.metric}")
    ex = extremes(space, cost_model)
    lo, hi, unit = ex.cheapest_cost, ex.dearest_cost, cost_model.unit
    where = f"the networks of this {space.name} space cost {lo:.6g} to {hi:.6g} {unit} ({cost_model.name})"
    if lo > budget.value:
        raise InfeasibleBudgetError(
            f"budget {budget} is below the cheapest network the search can derive: {where} "
            f"({budget.value / lo:.2f}x of the cheapest); raise the budget or shrink the space (fewer cells or "
            f"channels)", cheapest_cost=lo, cheapest_genotype=ex.cheapest)
    if budget.value > hi * (1 + _RANGE_TOL):
        raise BudgetAboveRangeError(
            f"budget {budget} is above the dearest network the search can derive: {where}, so every network fits "
            f"and the constraint cannot bind; give a budget within that range, or search without one "
            f"(--method darts)", range=(lo, hi))


def temperature_schedule(config: Any) -> Callable[[int], float] | None:
    """Epoch -> softmax temperature: ``config.temperature = (start, end)``, geometric over the
    architecture epochs (after ``arch.warmup_epochs``); None when there is nothing to anneal."""
    start, end = getattr(config, "temperature", (1.0, 1.0))
    if start == end == 1.0:
        return None
    first, last = config.arch.warmup_epochs, config.epochs - 1

    def at(epoch: int) -> float:
        if epoch <= first or last <= first:
            return start
        return start * (end / start) ** (min(epoch - first, last - first) / (last - first))
    return at


def _band(term: CostTerm, budget: float) -> tuple[float, float] | None:
    """The band (lo * B, hi * B) the progressive decisions look ahead to: the multiplier's, if it has one."""
    band = getattr(term, "band", None)
    return (band[0] * budget, band[1] * budget) if band is not None else None


def _fixed_eval(model: Any, data: Loaders, batches: int,
                fixed_batches: bool = False) -> Callable[[dict[int, int]], tuple[float, float]] | None:
    """{edge: op index} -> (mean cross-entropy, accuracy) of the supernet with those edges fixed (the others mixed
    as in the search), on ``batches`` batches of the validation loader: choosing among cells or ops is an
    architecture step, and the alphas' data is where DARTS takes those; never the test split, on which the found
    network's accuracy is reported afterwards. The decided edges are restored afterwards. The loader reshuffles on
    every pass, so each call sees other batches; ``fixed_batches``: the first ``batches`` of the validation set in
    its stored order, every call (ops compared on the same images; the loader's generator untouched)."""
    if batches <= 0 or data.val is None:
        return None
    if fixed_batches:
        from torch.utils.data import DataLoader
        ordered = DataLoader(data.val.dataset, batch_size=data.val.batch_size, shuffle=False)
        loader: Any = [b for _, b in zip(range(batches), ordered)]
    else:
        loader = data.val

    def score(edges: dict[int, int]) -> tuple[float, float]:
        saved = dict(model.fixed["cell"])
        model.fixed["cell"].clear()
        model.fixed["cell"].update(edges)
        try:
            return evaluate(model, loader, max_batches=batches)
        finally:
            model.fixed["cell"].clear()
            model.fixed["cell"].update(saved)
    return score


def _oneshot(model: Any, data: Loaders, batches: int) -> Callable[[Any], float] | None:
    """genotype -> the supernet's one-shot accuracy with the cell's ops fixed (``_fixed_eval``)."""
    score = _fixed_eval(model, data, batches)
    if score is None:
        return None
    ops = model.space.ops
    return lambda genotype: score({e: ops.index(o) for e, o in enumerate(genotype.ops)})[1]


def _perturbation(model: Any, data: Loaders, batches: int) -> Callable[[dict[int, int]], tuple[float, float]] | None:
    """{edge: op index} -> (validation log-likelihood = -mean cross-entropy, accuracy) with those edges fixed:
    ``Progressive``'s perturbation-based selection (DARTS-PT), every op on the same fixed batches."""
    score = _fixed_eval(model, data, batches, fixed_batches=True)
    if score is None:
        return None

    def loglik(edges: dict[int, int]) -> tuple[float, float]:
        loss, acc = score(edges)
        return -loss, acc
    return loglik


def run_bilevel(method: str, space: SearchSpace, cost_model: CostModel, config: BilevelConfig,
                term: CostTerm, *, budget: Budget | None, enforce_budget: bool, seed: int,
                data: Loaders, measure: Callable[[Any], float] | None = None) -> SearchResult:
    """Search with ``term`` in the architecture loss; see the module docstring.

    ``measure(genotype)``: the device in the loop (``feedback.DeviceFeedback``), DCA-NAS only.
    """
    check_data(space, data)
    cost_model.check(space)
    if budget is not None and enforce_budget:
        check_budget(space, cost_model, budget)
    tables = cost_model.tables(space)
    seed_everything(seed)
    model = build_supernet(space, config.options)

    def predicted(genotype: Any) -> float:
        return table_cost(space, tables, genotype)

    feedback = DeviceFeedback(measure, predicted) if measure is not None else None
    progressive = None
    if getattr(config, "progressive", False) and isinstance(space, NB201Space) and budget is not None:
        per_epoch = len(data.train) if config.max_batches_per_epoch is None else \
            min(len(data.train), config.max_batches_per_epoch)
        arch_steps = max(1, (config.epochs - config.arch.warmup_epochs) * per_epoch)
        progressive = Progressive(model, tables, decision_steps(len(space.edges), arch_steps),
                                  lambda cost: float(term.penalty(cost)), lambda cost: cost <= budget.value,
                                  scale=(lambda: feedback.ratio) if feedback is not None else None,
                                  measure=feedback.cost_of if feedback is not None else None,
                                  remeasure=feedback.remeasure if feedback is not None else None,
                                  band=_band(term, budget.value) if getattr(config, "lookahead", False) else None,
                                  on_device=getattr(config, "device_decisions", 0),
                                  margin=getattr(config, "device_margin", 0.0) * budget.value,
                                  repeats=getattr(config, "device_repeats", 1),
                                  window=getattr(config, "device_window", 0.0) * budget.value,
                                  # the ratio is one measured network's: only with the device in the loop
                                  tolerance=getattr(config, "ratio_tolerance", 0.0) if feedback is not None else 0.0,
                                  reopen=getattr(config, "device_reopen", 0),
                                  reopen_measurements=getattr(config, "device_reopen_measurements", 0),
                                  margin_sigmas=getattr(config, "device_margin_sigmas", 0.0),
                                  accuracy=_oneshot(model, data, getattr(config, "device_oneshot_batches", 0)),
                                  fit_sample=getattr(config, "device_fit_sample", 0) if feedback is not None else 0,
                                  reopen_sigmas=getattr(config, "device_reopen_sigmas", 0.0),
                                  # aiming at the band's middle (docs/search.md): on the device only
                                  inside_sigmas=getattr(config, "device_inside_sigmas", 0.0) if feedback is not None
                                  else 0.0,
                                  inside_band=tuple(b * budget.value for b in
                                                    getattr(config, "device_inside_band", (0.9, 1.0))),
                                  middle=getattr(config, "lookahead_middle", False),
                                  widen=getattr(config, "lookahead_widen", 0),
                                  # the edges decided by the supernet's validation score instead of the alphas
                                  select=getattr(config, "select", "alpha"),
                                  supernet_score=_perturbation(model, data, getattr(config, "select_batches", 0))
                                  if getattr(config, "select", "alpha") == "perturbation" else None)
    elif getattr(config, "progressive", False) and isinstance(space, DartsSpace) and budget is not None:
        # the DARTS space: one node (its two inputs and ops) at a time (darts_nodes.py)
        progressive = NodeDecisions.for_search(model, tables, cost_model, config, term, budget.value, feedback,
                                               len(data.train))
    epochs: list[dict[str, Any]] = []

    def on_epoch(epoch: int, net: Any) -> dict[str, float]:
        g = net.genotype()
        row = {"epoch": epoch + 1, "val_acc": evaluate(net, data.val, max_batches=config.eval_batches)[1],
               "genotype_cost": predicted(g), "multiplier": term.multiplier, "temperature": net.temperature}
        if feedback is not None:
            row["device_cost"] = feedback.observe(g, epoch + 1)
        epochs.append({**row, "genotype": g.to_dict()})
        return row

    def constraint(net: Any, expected: float) -> float:
        if getattr(config, "constrain", "expected") == "derived":
            g = net.genotype()
            return feedback.device_cost(predicted(g), g) if feedback is not None else predicted(g)
        return feedback.device_cost(expected) if feedback is not None else expected

    architect = Architect(model, cost_model, term, config.arch, on_epoch, constraint_value=constraint,
                          temperature=temperature_schedule(config),
                          relaxed_cost=progressive.expected_cost if progressive else None,
                          on_step=progressive.after_step if progressive else None,
                          cost_scale=(lambda: feedback.ratio) if feedback is not None else None)
    with Stopwatch() as clock, PeakMemory() as mem:
        history = train(model, data, config.train_config(seed), hooks=architect)
    _, val_acc = evaluate(model, data.val, max_batches=config.eval_batches)
    derived = model.genotype()
    derived_cost = cost_model.genotype_cost(space, derived)
    genotype, cost, notes, repaired, changed = derived, derived_cost, [], False, 0
    # over budget: by the device when it is in the loop (its budget in the cost model's units), else predicted
    ratio = feedback.device_cost(derived_cost, derived) / derived_cost if feedback is not None else 1.0
    if budget is not None and enforce_budget and ratio * derived_cost > budget.value:
        with torch.no_grad():
            fix = repair(space, cost_model, derived, budget.value / ratio, model.op_weights(), model.edge_weights())
        genotype, cost, repaired = fix.genotype, cost_model.genotype_cost(space, fix.genotype), True
        changed = edges_changed(derived, genotype)
        notes.append(f"the derived genotype costs {ratio * derived_cost:.6g} {cost_model.unit}"
                     f"{' on the device' if feedback is not None else ''}, over the budget {budget.value:g}; "
                     f"repaired: {changed} edge(s) changed in {len(fix.moves)} move(s): " + "; ".join(fix.moves))
        log.warning(notes[-1])
    last = history.history[-1] if history.history else None
    extra: dict[str, Any] = {"options": dataclasses.asdict(config.options), "epochs": epochs,
                             "constraint_history": list(architect.constraint_history)}
    if progressive is not None:
        extra["decisions"] = progressive.decisions
        extra["decisions_restricted"] = sum(d["restricted"] for d in progressive.decisions)
        extra["decisions_fallback"] = sum(d["fallback"] for d in progressive.decisions)
        extra["decided_on_device"] = sum(d["on_device"] for d in progressive.decisions)   # decisions on measured cells
        decided = {a for d in progressive.decisions for a in (d.get("measured") or {})}
        sample_only = set(getattr(progressive, "fit_sampled", ())) - decided   # measured for the NB201 fit only
        extra["cells_measured_on_device"] = {a: c for a, c in progressive.measured.items()   # arch_str -> median cost
                                             if a not in sample_only}
        extra["cell_remeasurements"] = sum(len(v) - 1 for v in progressive.samples.values())   # confirmations
        if isinstance(progressive, Progressive):   # NB201's backtracking and spread margin (not the DARTS nodes')
            extra["reopened"] = progressive.reopened
            extra["reopen_measurements"] = progressive.reopen_used
            extra["device_fits"] = progressive.fits   # the fitted device predictor, each decision's fit
            extra["fit_sampled"] = progressive.fit_sampled   # cells measured for it before the first decision
            extra["measurement_spread"] = progressive.spread()   # pooled relative sd of one measurement (None: < 3)
            extra["select"] = progressive.select   # alpha | perturbation: how the decisions on the prediction chose
            extra["select_s"] = progressive.select_s   # the perturbation evaluations' wall time (in wall_s)
            extra["select_evals"] = progressive.select_evals
    if feedback is not None:
        extra["device"] = {"derived_cost": feedback.device_cost(derived_cost, derived), "log": feedback.log,
                           "networks_measured": len(feedback.measured)}
    return SearchResult(
        method=method, genotype=genotype, cost=cost, metric=cost_model.metric, budget=budget,
        within_budget=(cost <= budget.value) if budget is not None else None,
        derived_genotype=derived, derived_cost=derived_cost, repaired=repaired, edges_changed=changed,
        notes=tuple(notes), multiplier_history=tuple(architect.multiplier_history),
        cost_history=tuple(architect.cost_history), genotype_cost_history=tuple(e["genotype_cost"] for e in epochs),
        train_acc=last.train_acc if last else math.nan, val_acc=val_acc, epochs=config.epochs,
        steps=sum(h.batches for h in history.history), wall_s=clock.seconds, peak_mem_mb=mem.peak_mb,
        peak_rss_mb=mem.peak_rss_mb, seed=seed, extra=extra)
