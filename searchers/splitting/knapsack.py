"""Seed 003's eq. (1): which neurons to split in one step, under the step's cost budget.

    max_beta  sum_l beta_l * g_l   s.t.  sum_l beta_l * e_l <= e_budget,  beta_l in {0, 1}

with ``g_l = -lambda_min(l)`` the gain of splitting neuron l (the paper minimises
``sum beta_l lambda_min(l)``, the same problem) and ``e_l`` its cost.

``knapsack_dp`` solves it exactly by dynamic programming over the budget in ``resolution`` equal
units, each cost rounded *up* to whole units: any set it returns fits the real budget, and its
gain is at least the optimum of the real problem with ``n`` units less budget (each of n items
loses less than one unit). Costs that are whole multiples of the unit give the exact optimum.
``knapsack_greedy`` takes items by gain/cost ratio while they fit (what the paper's ranking does
when all costs are equal). ``knapsack_brute_force`` enumerates every subset, for tests.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np


def _check(gains: Sequence[float], costs: Sequence[float], budget: float) -> None:
    if len(gains) != len(costs):
        raise ValueError(f"{len(gains)} gains but {len(costs)} costs")
    if not math.isfinite(budget) or budget < 0:
        raise ValueError(f"the budget must be a finite number >= 0, got {budget}")
    if any(not math.isfinite(c) or c < 0 for c in costs):
        raise ValueError("item costs must be finite and >= 0")


def knapsack_dp(gains: Sequence[float], costs: Sequence[float], budget: float, *,
                resolution: int = 1000) -> list[int]:
    """Indices (ascending) of the chosen items: exact on the budget discretised into ``resolution`` units."""
    _check(gains, costs, budget)
    if resolution < 1:
        raise ValueError("resolution must be >= 1")
    unit = budget / resolution if budget > 0 else 1.0
    if budget == 0:
        resolution = 0  # only free items fit
    chosen: list[int] = []
    items: list[tuple[int, float, int]] = []
    for i, (g, c) in enumerate(zip(gains, costs)):
        if g <= 0:
            continue  # a split that does not lower the loss is never worth its cost
        w = math.ceil(c / unit - 1e-9) if c > 0 else 0
        if w == 0:
            chosen.append(i)  # free: always taken
        elif w <= resolution:
            items.append((i, g, w))
    best = np.zeros(resolution + 1)              # best[b]: the largest gain within b units
    keep = np.zeros((len(items), resolution + 1), dtype=bool)
    for n, (_, g, w) in enumerate(items):
        candidate = best[:-w] + g                # take item n on top of the best of b - w units
        better = candidate > best[w:]
        keep[n, w:] = better
        best[w:] = np.where(better, candidate, best[w:])
    b = int(np.argmax(best))
    for n in range(len(items) - 1, -1, -1):
        if keep[n, b]:
            chosen.append(items[n][0])
            b -= items[n][2]
    return sorted(chosen)


def knapsack_greedy(gains: Sequence[float], costs: Sequence[float], budget: float) -> list[int]:
    """Items by descending gain/cost ratio, each taken when it still fits."""
    _check(gains, costs, budget)
    order = sorted((i for i, g in enumerate(gains) if g > 0),
                   key=lambda i: -(gains[i] / costs[i]) if costs[i] > 0 else -math.inf)
    chosen, spent = [], 0.0
    for i in order:
        if spent + costs[i] <= budget:
            chosen.append(i)
            spent += costs[i]
    return sorted(chosen)


def knapsack_brute_force(gains: Sequence[float], costs: Sequence[float], budget: float) -> list[int]:
    """The exact optimum by enumerating all 2^n subsets (n <= 20)."""
    _check(gains, costs, budget)
    if len(gains) > 20:
        raise ValueError("brute force is for small instances (n <= 20)")
    best, best_set = 0.0, ()
    for r in range(1, len(gains) + 1):
        for subset in itertools.combinations(range(len(gains)), r):
            if sum(costs[i] for i in subset) <= budget:
                gain = sum(gains[i] for i in subset)
                if gain > best:
                    best, best_set = gain, subset
    return sorted(best_set)


SOLVERS = {"dp": knapsack_dp, "greedy": knapsack_greedy}
