"""Which scale of the sweep's walk is Lambda (issue 12, continued; ``searchers/hypernet/sweep.py``).

The walk's end ("reach", the rule before) is set by its tail: a walk that makes most of its descent
early and then creeps to the cheapest network puts Lambda far above where the family moves. The
"descent" rule takes the smallest scale left with at most ``sweep_descent`` of the walk's descent.
"""
from __future__ import annotations

import dataclasses
import math

import pytest

from hilnas.searchers.genotype import NB201Genotype
from hilnas.searchers.hypernet import HypernetConfig
from hilnas.searchers.hypernet.sweep import SweepPoint, descent_scale, with_rule

OPS = ("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3")
SCALES = [0.01 * 3000 ** (i / 8) for i in range(9)]


def walk(fractions):
    """A synthetic sweep path: one distinct genotype per point, scales as the default sweep's."""
    return [SweepPoint(s, NB201Genotype((OPS[i % 5],) * 5 + (OPS[(i // 5) % 5],)), f, 2.0)
            for i, (s, f) in enumerate(zip(SCALES, fractions))]


# the shape of the demo DARTS walks: most of the descent by the 4th scale, then a long tail to the cheapest
TAIL = walk([0.48, 0.41, 0.37, 0.27, 0.16, 0.12, 0.09])


def test_descent_rule_stops_where_the_walk_has_made_half_its_descent_not_at_its_tail():
    cfg = HypernetConfig()
    assert cfg.sweep_rule == "descent" and cfg.sweep_descent == 0.5
    sw = with_rule(TAIL, cheapest=0.064, reached=True, config=cfg)
    # left to go: 0.39, 0.32, 0.28, 0.18, 0.07, ... of a descent of 0.39 -> the first with <= 0.195 is 0.27
    assert sw.Lambda == pytest.approx(SCALES[3]) and sw.Lambda_descent == sw.Lambda
    assert sw.Lambda_reach == pytest.approx(SCALES[6])          # the old rule's choice, recorded beside it
    assert sw.Lambda < sw.Lambda_reach / 10
    d = sw.to_dict()
    assert d["rule"] == "descent" and d["Lambda"] == sw.Lambda and d["Lambda_reach"] == sw.Lambda_reach


def test_reach_rule_keeps_the_walks_end():
    sw = with_rule(TAIL, cheapest=0.064, reached=True, config=HypernetConfig(sweep_rule="reach"))
    assert sw.rule == "reach" and sw.Lambda == pytest.approx(SCALES[6]) and sw.Lambda_descent == pytest.approx(SCALES[3])


def test_descent_is_measured_against_the_walks_own_cheap_end_not_its_last_point():
    # the walk overshoots to its cheapest at the 3rd scale and drifts back up: Lambda is not pushed to the end
    path = walk([0.50, 0.28, 0.10, 0.12, 0.15])
    assert descent_scale(path, 0.0) == pytest.approx(SCALES[2])
    assert descent_scale(path, 0.5) == pytest.approx(SCALES[1])   # 0.28 - 0.10 = 0.18 <= 0.5 * 0.40
    # the tolerance orders the choice: more left to go, an earlier scale
    assert [descent_scale(TAIL, t) for t in (0.9, 0.5, 0.1, 0.0)] == pytest.approx(
        [SCALES[1], SCALES[3], SCALES[5], SCALES[6]])


def test_a_walk_that_never_moved_gives_its_first_scale():
    assert descent_scale(walk([0.3, 0.3, 0.3]), 0.5) == pytest.approx(SCALES[0])
    with pytest.raises(ValueError, match="at least one"):
        descent_scale([], 0.5)


@pytest.mark.parametrize("bad", [dict(sweep_rule="tail"), dict(sweep_descent=1.0), dict(sweep_descent=-0.1)])
def test_bad_rule_settings_are_refused(bad):
    with pytest.raises(ValueError, match="sweep_rule|sweep_descent"):
        HypernetConfig(**bad)
