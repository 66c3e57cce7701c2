"""Eq. (1): the DP knapsack against brute force, the greedy one below the optimum, bad input refused."""
import random

import pytest

from hilnas.searchers.splitting.knapsack import knapsack_brute_force, knapsack_dp, knapsack_greedy


def _gain(gains, chosen):
    return sum(gains[i] for i in chosen)


@pytest.mark.parametrize("seed", range(30))
def test_dp_matches_brute_force_on_whole_unit_costs(seed):
    rng = random.Random(seed)
    n = rng.randint(4, 12)
    gains = [rng.uniform(-0.3, 1.0) for _ in range(n)]  # some splits do not lower the loss
    costs = [rng.randint(1, 20) for _ in range(n)]
    budget = rng.randint(5, 60)
    dp = knapsack_dp(gains, costs, budget, resolution=budget)  # one unit = 1: the costs are exact
    best = knapsack_brute_force(gains, costs, budget)
    assert _gain(gains, dp) == pytest.approx(_gain(gains, best), abs=1e-12)
    assert sum(costs[i] for i in dp) <= budget and all(gains[i] > 0 for i in dp)


@pytest.mark.parametrize("seed", range(30))
def test_dp_on_real_costs_is_feasible_and_within_its_rounding_bound(seed):
    rng = random.Random(1000 + seed)
    n = 12
    gains = [rng.uniform(0.0, 1.0) for _ in range(n)]
    costs = [rng.uniform(0.1, 5.0) for _ in range(n)]
    budget = rng.uniform(3.0, 20.0)
    dp = knapsack_dp(gains, costs, budget, resolution=1000)
    assert sum(costs[i] for i in dp) <= budget
    # each of n items loses less than one unit to rounding up: at least the optimum of budget - n units
    assert _gain(gains, dp) >= _gain(gains, knapsack_brute_force(gains, costs, budget - n * budget / 1000)) - 1e-12
    greedy = knapsack_greedy(gains, costs, budget)
    assert sum(costs[i] for i in greedy) <= budget
    assert _gain(gains, greedy) <= _gain(gains, knapsack_brute_force(gains, costs, budget)) + 1e-12


def test_equal_costs_take_the_most_negative_indices():
    """With one cost for all (the paper's ranking), the top gains are taken, by either solver."""
    gains = [0.1, 0.9, 0.5, -0.2, 0.7]
    assert knapsack_dp(gains, [1.0] * 5, 3.01) == knapsack_greedy(gains, [1.0] * 5, 3.01) == [1, 2, 4]
    # exactly at the budget, rounding each cost up to whole units (1000 per budget) may lose an item
    assert knapsack_dp(gains, [1.0] * 5, 3.0, resolution=300) == [1, 2, 4]


def test_free_items_are_taken_and_oversized_ones_left():
    assert knapsack_dp([0.5, 0.4, 2.0], [0.0, 1.0, 10.0], 2.0) == [0, 1]
    assert knapsack_dp([1.0], [1.0], 0.0) == []


@pytest.mark.parametrize("gains, costs, budget, match", [
    ([1.0], [1.0, 2.0], 1.0, "1 gains but 2 costs"),
    ([1.0], [-1.0], 1.0, "costs must be finite"),
    ([1.0], [float("nan")], 1.0, "costs must be finite"),
    ([1.0], [1.0], float("inf"), "budget must be"),
])
def test_bad_input(gains, costs, budget, match):
    with pytest.raises(ValueError, match=match):
        knapsack_dp(gains, costs, budget)
