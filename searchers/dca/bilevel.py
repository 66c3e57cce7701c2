"""The bi-level supernet search shared by DCA-NAS, DARTS and the fixed-penalty baseline.

One job: build the supernet, alternate architecture steps (``Architect``) and weight steps (the
shared ``train`` loop), derive the genotype, and when there is a budget make sure the returned
genotype meets it exactly (repairing it and saying so when it does not). The methods differ
only in their ``SupernetOptions`` and their ``CostTerm``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from hilnas.searchers.dca.architect import ArchConfig, Architect, CostTerm
from hilnas.searchers.cost import CostModel, extremes, table_cost
from hilnas.searchers.dca.repair import repair
from hilnas.searchers.result import (Budget, InfeasibleBudgetError, PeakMemory, SearchError, SearchResult, Stopwatch,
                                     check_data)
from hilnas.searchers.supernet import DCA_OPTIONS, SupernetOptions, build_supernet
from hilnas.searchers.train import TrainConfig, evaluate, seed_everything, train

if TYPE_CHECKING:
    from hilnas.searchers.data import Loaders
    from hilnas.searchers.spaces import SearchSpace

log = logging.getLogger(__name__)


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


def check_budget(space: SearchSpace, cost_model: CostModel, budget: Budget) -> None:
    """Raise unless the metrics agree and some derivable genotype fits the budget (exactly)."""
    if budget.metric != cost_model.metric:
        raise SearchError(f"budget {budget} is in {budget.metric} but the cost model {cost_model.name} "
                          f"measures {cost_model.metric}")
    ex = extremes(space, cost_model)
    if ex.cheapest_cost > budget.value:
        raise InfeasibleBudgetError(
            f"no architecture of this {space.name} space meets {budget}: the cheapest one the search can derive "
            f"costs {ex.cheapest_cost:.6g} {cost_model.unit} ({budget.value / ex.cheapest_cost:.2f}x of it); "
            f"raise the budget or shrink the space (fewer cells or channels)",
            cheapest_cost=ex.cheapest_cost, cheapest_genotype=ex.cheapest)


def run_bilevel(method: str, space: SearchSpace, cost_model: CostModel, config: BilevelConfig,
                term: CostTerm, *, budget: Budget | None, enforce_budget: bool, seed: int,
                data: Loaders) -> SearchResult:
    """Search with ``term`` in the architecture loss; see the module docstring."""
    check_data(space, data)
    cost_model.check(space)
    if budget is not None and enforce_budget:
        check_budget(space, cost_model, budget)
    tables = cost_model.tables(space)
    seed_everything(seed)
    model = build_supernet(space, config.options)
    per_epoch: list[float] = []

    def on_epoch(epoch: int, net: Any) -> dict[str, float]:
        c = table_cost(space, tables, net.genotype())
        per_epoch.append(c)
        return {"genotype_cost": c, "multiplier": term.multiplier}

    def derived_cost(net: Any) -> float:
        return table_cost(space, tables, net.genotype())

    track = derived_cost if getattr(config, "constrain", "expected") == "derived" else None
    architect = Architect(model, cost_model, term, config.arch, on_epoch, constraint_value=track)
    with Stopwatch() as clock, PeakMemory() as mem:
        history = train(model, data, config.train_config(seed), hooks=architect)
    _, val_acc = evaluate(model, data.val, max_batches=config.eval_batches)
    derived = model.genotype()
    derived_cost = cost_model.genotype_cost(space, derived)
    genotype, cost, notes, repaired = derived, derived_cost, [], False
    if budget is not None and enforce_budget and derived_cost > budget.value:
        with torch.no_grad():
            fix = repair(space, cost_model, derived, budget.value, model.op_weights(), model.edge_weights())
        genotype, cost, repaired = fix.genotype, cost_model.genotype_cost(space, fix.genotype), True
        notes.append(f"the derived genotype costs {derived_cost:.6g} {cost_model.unit}, over the budget "
                     f"{budget.value:g}; repaired with {len(fix.moves)} change(s): " + "; ".join(fix.moves))
        log.warning(notes[-1])
    last = history.history[-1] if history.history else None
    return SearchResult(
        method=method, genotype=genotype, cost=cost, metric=cost_model.metric, budget=budget,
        within_budget=(cost <= budget.value) if budget is not None else None,
        derived_genotype=derived, derived_cost=derived_cost, repaired=repaired, notes=tuple(notes),
        multiplier_history=tuple(architect.multiplier_history), cost_history=tuple(architect.cost_history),
        genotype_cost_history=tuple(per_epoch), train_acc=last.train_acc if last else math.nan,
        val_acc=val_acc, epochs=config.epochs, steps=sum(h.batches for h in history.history),
        wall_s=clock.seconds, peak_mem_mb=mem.peak_mb, peak_rss_mb=mem.peak_rss_mb, seed=seed,
        extra={"options": dataclasses.asdict(config.options), "derived_history": list(architect.derived_history)})
