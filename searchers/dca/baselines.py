"""Baselines through the same entry point as DCA-NAS: ``search(space, cost_model, config, *, seed, data)``.

- ``darts``: DARTS (first order) without any cost term and without seed 001's speed-ups; the
  cost model only prices the result.
- ``penalty``: a fixed-weight cost penalty in the architecture loss (ProxylessNAS's
  CE + w * E[cost], the weight made unit-free by a reference cost), on DCA-NAS's supernet, so it
  differs from DCA-NAS only in using a hand-set weight instead of a learned multiplier. Nothing
  guarantees the budget; the result reports whether it was met.
- ``random``: genotypes sampled uniformly among those within the budget (exact cost), each
  trained briefly; the best on the validation split wins. ``time_budget_s`` stops it when the
  time is up instead of after ``samples`` (random search at equal wall time).
"""
from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import torch

from hilnas.searchers.dca.architect import FixedPenalty, NoCost
from hilnas.searchers.dca.bilevel import BilevelConfig, check_budget, run_bilevel
from hilnas.searchers.cost import CostModel, table_cost
from hilnas.searchers.model import build_network
from hilnas.searchers.dca.repair import repair
from hilnas.searchers.result import Budget, PeakMemory, SearchResult, Stopwatch, check_data
from hilnas.searchers.supernet import DARTS_OPTIONS, SupernetOptions
from hilnas.searchers.train import TrainConfig, seed_everything, train

if TYPE_CHECKING:
    from hilnas.searchers.data import Loaders
    from hilnas.searchers.spaces import SearchSpace


@dataclass(frozen=True, kw_only=True)
class DartsConfig(BilevelConfig):
    """DARTS: the shared search settings, no speed-ups; a budget only labels the result."""
    options: SupernetOptions = DARTS_OPTIONS
    budget: Budget | None = None


@dataclass(frozen=True, kw_only=True)
class PenaltyConfig(BilevelConfig):
    """Fixed-weight penalty: architecture loss CE + weight * E[cost] / reference."""
    penalty_weight: float = 1.0
    budget: Budget | None = None    # the reference cost when given (and what within_budget reports)
    reference: float | None = None  # overrides the reference; None = budget, else the uniform-alpha cost


@dataclass(frozen=True, kw_only=True)
class RandomConfig:
    """Random search under the constraint: sample, train each briefly, keep the best on val."""
    budget: Budget | None = None
    samples: int = 8                    # genotypes trained and compared
    epochs: int = 1                     # training epochs per sample
    w_lr: float = 0.05
    device: str = "cpu"
    max_batches_per_epoch: int | None = None
    eval_batches: int | None = 20
    max_tries: int = 5000               # rejection-sampling draws before repairing samples into budget
    time_budget_s: float | None = None  # stop drawing once this much time has passed (>= 1 sample); None = no limit

    def __post_init__(self) -> None:
        if self.samples < 1 or self.epochs < 1:
            raise ValueError("samples and epochs must be >= 1")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be > 0 or None, got {self.time_budget_s}")


def search_darts(space: SearchSpace, cost_model: CostModel, config: DartsConfig, *, seed: int = 0,
                 data: Loaders) -> SearchResult:
    return run_bilevel("darts", space, cost_model, config, NoCost(), budget=config.budget, enforce_budget=False,
                       seed=seed, data=data)


def search_penalty(space: SearchSpace, cost_model: CostModel, config: PenaltyConfig, *, seed: int = 0,
                   data: Loaders) -> SearchResult:
    reference = config.reference or (config.budget.value if config.budget else None)
    if reference is None:
        from hilnas.searchers.supernet import build_supernet
        net = build_supernet(space, config.options)
        reference = float(cost_model.expected_cost(space, net.op_weights(), net.edge_weights()))
    return run_bilevel("penalty", space, cost_model, config, FixedPenalty(config.penalty_weight, reference),
                       budget=config.budget, enforce_budget=False, seed=seed, data=data)


def sample_within_budget(space: SearchSpace, cost_model: CostModel, budget: Budget | None, n: int,
                         rng: random.Random, *, max_tries: int = 5000) -> list:
    """``n`` distinct genotypes uniformly sampled from those within budget; repaired samples fill the rest."""
    return list(itertools.islice(within_budget(space, cost_model, budget, rng, max_tries=max_tries), n))


def within_budget(space: SearchSpace, cost_model: CostModel, budget: Budget | None, rng: random.Random, *,
                  max_tries: int = 5000) -> Iterator:
    """Distinct genotypes drawn uniformly from those within budget, one at a time; once ``max_tries``
    draws found none new, random samples repaired into the budget (a tight budget holds few)."""
    tables = cost_model.tables(space)
    seen: set = set()
    uniform = {t: torch.full((len(space.edges), len(space.ops)), 1.0 / len(space.ops))
               for t in (("normal", "reduce") if space.name == "darts" else ("cell",))}
    while True:
        for _ in range(max_tries):
            g = space.sample(rng)
            if g not in seen and (budget is None or table_cost(space, tables, g) <= budget.value):
                break
        else:
            if budget is None:
                return
            g = repair(space, cost_model, space.sample(rng), budget.value, uniform).genotype
            if g in seen:
                continue
        seen.add(g)
        yield g


def search_random(space: SearchSpace, cost_model: CostModel, config: RandomConfig, *, seed: int = 0,
                  data: Loaders) -> SearchResult:
    check_data(space, data)
    cost_model.check(space)
    if config.budget is not None:
        check_budget(space, cost_model, config.budget)
    rng = random.Random(seed)
    best: tuple[float, float, object] | None = None
    scores: list[dict] = []
    with Stopwatch() as clock, PeakMemory() as mem:
        candidates = itertools.islice(within_budget(space, cost_model, config.budget, rng, max_tries=config.max_tries),
                                      config.samples)
        for i, g in enumerate(candidates):
            if config.time_budget_s is not None and i and time.perf_counter() - clock.start >= config.time_budget_s:
                break
            seed_everything(seed + i)
            result = train(build_network(space, g), data, TrainConfig(
                epochs=config.epochs, lr=config.w_lr, seed=seed + i, device=config.device, log_every=0,
                eval_split="val", max_batches_per_epoch=config.max_batches_per_epoch,
                max_eval_batches=config.eval_batches))
            cost = cost_model.genotype_cost(space, g)
            scores.append({"genotype": g.to_dict(), "cost": cost, "val_acc": result.final_acc})
            acc = result.final_acc if not math.isnan(result.final_acc) else -1.0
            if best is None or acc > best[0]:
                best = (acc, result.history[-1].train_acc, g)
    assert best is not None
    acc, train_acc, g = best
    cost = cost_model.genotype_cost(space, g)
    return SearchResult(
        method="random", genotype=g, cost=cost, metric=cost_model.metric, budget=config.budget,
        within_budget=(cost <= config.budget.value) if config.budget else None, derived_genotype=g,
        derived_cost=cost, train_acc=train_acc, val_acc=acc, epochs=config.epochs,
        wall_s=clock.seconds, peak_mem_mb=mem.peak_mb, peak_rss_mb=mem.peak_rss_mb, seed=seed,
        extra={"samples": scores})


SearchFn = Callable[..., SearchResult]


def methods() -> dict[str, tuple[SearchFn, type]]:
    """Method name -> (search function, its config class); all share the ``search`` signature."""
    from hilnas.searchers import dca
    return {"dca": (dca.search, dca.DcaConfig), "darts": (search_darts, DartsConfig),
            "penalty": (search_penalty, PenaltyConfig), "random": (search_random, RandomConfig)}
