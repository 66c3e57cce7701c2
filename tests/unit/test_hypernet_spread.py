"""A grid even in the family's cost, not in lambda (``Family.spread``; issue 12, the family's distinct members).

A family whose cost moves over a small part of [0, Lambda] gives a grid even in lambda few distinct
members; ``spread`` asks the family for costs evenly spaced over its reachable range instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from hilnas.searchers.hypernet import Architecture, HypernetConfig, count_violations
from hilnas.searchers.hypernet.family import Family

LEVELS = 12          # distinct members of the toy family, costs 12, 11, ..., 1 ms
MOVES_BY = 0.02      # ... all of them within [0, MOVES_BY * Lambda]


@dataclass
class StepFamily(Family):
    """A family of LEVELS members whose cost steps down from LEVELS to 1 ms as the scale goes from 0 to
    MOVES_BY * Lambda, then stays at the cheapest (the shape of the demo families: the change is early)."""
    ops: tuple[str, ...] = ("conv",)
    Lambda: float = 1.0
    models: dict[str, Any] = field(default_factory=lambda: {"latency_ms": SimpleNamespace(unit="ms")})
    primary: str = "latency_ms"
    config: Any = field(default_factory=lambda: HypernetConfig(scale_sampling="log", grid_points=12, curve_points=33, bisect_steps=8))
    _curves: dict[Any, Any] = field(default_factory=dict)
    calls: int = 0

    def architecture(self, t):
        t = self._check(t)
        self.calls += 1
        level = min(LEVELS - 1, math.floor(LEVELS * t.scale / (MOVES_BY * self.Lambda)))
        cost = float(LEVELS - level)
        return Architecture(t, f"member-{level}", {"latency_ms": cost}, {"latency_ms": cost})


def test_the_spread_finds_members_a_grid_even_in_lambda_skips():
    fam = StepFamily()
    grid = fam.curve(fam.grid(12), metric="latency_ms")
    assert len({a.genotype for a in grid.raw}) < 8          # the lambda grid: most points past the family's change
    members = fam.spread(12, metric="latency_ms")
    costs = [a.costs["latency_ms"] for a in members]
    assert costs == [float(c) for c in range(LEVELS, 0, -1)]   # one member per evenly spaced cost
    assert len({a.genotype for a in members}) == LEVELS and count_violations(costs) == 0
    assert members[0].tradeoff.scale == 0.0


def test_each_spread_member_is_the_least_penalised_within_its_cost():
    fam = StepFamily()
    lo, hi = fam.reachable("latency_ms")
    targets = [hi - (hi - lo) * i / 4 for i in range(5)]       # 12, 9.25, 6.5, 3.75, 1 ms: between the levels
    members = fam.spread(5, metric="latency_ms")
    for a, b in zip(members, targets):
        assert a.costs["latency_ms"] <= b
        assert a.costs["latency_ms"] == math.floor(b)          # the dearest level within it, not a cheaper one


def test_where_the_family_jumps_neighbouring_costs_give_one_member_and_are_counted_once():
    fam = StepFamily()
    members = fam.spread(40, metric="latency_ms")             # more points than the family has members
    assert len(members) == 40 and len({a.genotype for a in members}) == LEVELS


def test_a_spread_of_fewer_than_two_points_is_refused():
    with pytest.raises(ValueError, match="at least 2 points"):
        StepFamily().spread(1)
