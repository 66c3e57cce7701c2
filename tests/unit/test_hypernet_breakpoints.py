"""A grid placed where the family changes (``Family.breakpoints``; issue 12 item 5, the family's distinct members).

The grid even in lambda puts several points on one member and steps over others where the family changes
quickly; ``breakpoints`` takes the scales at which the family's members first appear, bisecting where the
dense family changes between two of its scales (``fine_curve``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from hilnas.searchers.hypernet import HypernetConfig, ScaleMap
from hilnas.searchers.hypernet.family import Family

# where the member changes, in the hypernetwork's input v in [0, 1]: between the dense curve's points j/32 for
# j = 3..10 (so the dense curve sees each change), all within v < 0.31 (so a 12-point grid, v = i/11, misses most)
CHANGES = [(j - 0.5) / 32 for j in range(3, 11)]


@dataclass
class ClusterFamily(Family):
    """len(changes) + 1 members, costs len(changes) + 1, ..., 1 ms, changing at the positions ``changes``."""
    changes: list[float] = field(default_factory=lambda: list(CHANGES))
    ops: tuple[str, ...] = ("conv",)
    Lambda: float = 2.0
    models: dict[str, Any] = field(default_factory=lambda: {"latency_ms": SimpleNamespace(unit="ms")})
    primary: str = "latency_ms"
    config: Any = field(default_factory=lambda: HypernetConfig(scale_sampling="log", grid_points=12, curve_points=33))
    _curves: dict[Any, Any] = field(default_factory=dict)

    def architecture(self, t):
        from hilnas.searchers.hypernet import Architecture

        t = self._check(t)
        v = float(ScaleMap.of(self.config).encode(torch.tensor(t.scale, dtype=torch.float64), self.Lambda))
        level = sum(c <= v for c in self.changes)
        cost = float(len(self.changes) + 1 - level)
        return Architecture(t, f"member-{level}", {"latency_ms": cost}, {"latency_ms": cost})


def distinct(fam: Family, scales: list[float]) -> int:
    return len({a.genotype for a in fam.curve(scales, metric="latency_ms").points})


def test_the_grid_at_the_changes_lands_on_every_member_the_lambda_grid_steps_over():
    fam = ClusterFamily()
    assert distinct(fam, fam.grid(12)) == 5                       # v = 0, 1/11, 2/11, 3/11, 4/11: members 0, 1, 4, 7, 8
    assert distinct(fam, fam.grid(fam.config.curve_points)) == 9  # the dense family has all nine
    scales = fam.breakpoints(12)
    assert len(scales) == 12 and scales == sorted(scales) and len(set(scales)) == 12
    assert scales[0] == 0.0 and scales[-1] <= fam.Lambda
    assert distinct(fam, scales) == 9


def test_a_member_the_dense_curve_steps_over_is_found_by_bisection():
    # member 2 lives on [20.2/32, 20.4/32): between two neighbouring dense scales (20/32 and 21/32)
    fam = ClusterFamily(changes=[0.5 / 32, 20.2 / 32, 20.4 / 32])
    assert distinct(fam, fam.grid(fam.config.curve_points)) == 3
    assert len({a.genotype for a in fam.fine_curve(metric="latency_ms").points}) == 4
    members = fam.curve(fam.breakpoints(12), metric="latency_ms").points
    assert {a.genotype for a in members} == {f"member-{i}" for i in range(4)}


def test_with_more_members_than_points_it_keeps_both_ends_and_costs_evenly_spread_between():
    fam = ClusterFamily()
    members = fam.curve(fam.breakpoints(4), metric="latency_ms").points
    assert [a.costs["latency_ms"] for a in members] == [9.0, 6.0, 4.0, 1.0]   # nearest to 9, 6.33, 3.67, 1


def test_with_fewer_members_than_points_the_rest_fill_the_widest_gaps():
    fam = ClusterFamily(changes=[0.5 / 32, 20.5 / 32])
    scales = fam.breakpoints(12)
    assert len(scales) == 12 and scales == sorted(scales) and len(set(scales)) == 12 and scales[0] == 0.0
    assert distinct(fam, scales) == 3
    smap = ScaleMap.of(fam.config)
    pos = [float(smap.encode(torch.tensor(s, dtype=torch.float64), fam.Lambda)) for s in scales] + [1.0]
    assert max(b - a for a, b in zip(pos, pos[1:])) <= 1 / 6   # the members leave gaps of 0.625 and 0.34: halved


def test_a_grid_of_fewer_than_two_points_is_refused():
    with pytest.raises(ValueError, match="at least 2 points"):
        ClusterFamily().breakpoints(1)
