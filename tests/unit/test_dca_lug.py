"""The lookup graph: monotone fit, its inverse, building it from searches, budget strings."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from hilnas.searchers.genotype import NB201Genotype
from hilnas.searchers.dca.lug import LookupGraph, LugPoint, build_lug, isotonic, search_for_budget
from hilnas.searchers.result import Budget, SearchResult
from hilnas.server.search.common import parse_budget

G = NB201Genotype(("skip_connect",) * 6)


def graph(pairs):
    return LookupGraph("latency_ms", tuple(LugPoint(b, b, m, G) for b, m in pairs))


def test_isotonic_pools_violators():
    assert isotonic([1, 3, 2, 4]) == [1, 2.5, 2.5, 4]
    assert isotonic([5, 4, 3]) == [4, 4, 4]
    assert isotonic([1, 2, 3]) == [1, 2, 3]


def test_inverse_of_a_linear_graph():
    g = graph([(10, 6), (20, 12), (30, 18)])  # device = 0.6 x search budget
    assert g.device_cost(25) == pytest.approx(15)
    assert g.search_budget(15) == pytest.approx(25)
    assert g.search_budget(15, target=0.9) == pytest.approx(22.5)
    assert g.search_budget(3) == pytest.approx(5)      # below the first point: its ratio
    assert g.search_budget(24) == pytest.approx(40)    # above the last point: its ratio


def test_inverse_never_overshoots_on_a_non_monotone_graph():
    g = graph([(10, 6), (20, 13), (30, 11), (40, 20)])  # the dip is pooled: (20, 30) -> 12 each
    b = g.search_budget(12)
    assert b == pytest.approx(30)
    assert g.device_cost(b) <= 12 + 1e-9
    for d in (7, 9, 12.5, 15, 19):
        assert g.device_cost(g.search_budget(d)) == pytest.approx(d)


def test_round_trip_through_dict():
    g = graph([(10, 6), (20, 12)])
    assert LookupGraph.from_dict(g.to_dict()) == g


def test_axis_predicted_or_search_budget():
    pts = (LugPoint(10, 9, 5, G), LugPoint(20, 12, 7, G))  # the second search left slack
    assert LookupGraph("latency_ms", pts, "search_budget").search_budget(7) == pytest.approx(20)
    assert LookupGraph("latency_ms", pts, "predicted").search_budget(7) == pytest.approx(12)
    with pytest.raises(ValueError, match="axis"):
        LookupGraph("latency_ms", pts, "budget")


def _fake_search(budget):
    return SearchResult(method="dca", genotype=G, cost=0.9 * budget, metric="latency_ms",
                        budget=Budget("latency_ms", budget), within_budget=True, derived_genotype=G,
                        derived_cost=0.9 * budget)


@pytest.mark.parametrize("parallel", [False, True])
def test_build_lug_searches_each_budget_and_measures_each_result(parallel):
    measured = []

    def measure(genotype):
        measured.append(genotype)
        return 0.5 * len(measured) + 1.0
    if parallel:
        with ThreadPoolExecutor(2) as pool:
            g, results = build_lug(_fake_search, [30, 10, 20, 20], measure, metric="latency_ms", map_fn=pool.map)
    else:
        g, results = build_lug(_fake_search, [30, 10, 20, 20], measure, metric="latency_ms")
    assert [p.search_budget for p in g.points] == [10, 20, 30]
    assert [p.predicted for p in g.points] == pytest.approx([9, 18, 27])
    assert len(measured) == 3 and sorted(results) == [10, 20, 30]


@pytest.mark.parametrize("text, metric, value", [
    ("latency_ms=15", "latency_ms", 15.0), ("energy_mj = 2.5", "energy_mj", 2.5),
    ("params_m=0.3", "params_m", 0.3), ("mflops=120", "mflops", 120.0)])
def test_parse_budget(text, metric, value):
    assert parse_budget(text) == Budget(metric, value)


@pytest.mark.parametrize("text, match", [
    ("latency=15", "unknown metric 'latency'"), ("latency_ms", "METRIC=VALUE"),
    ("latency_ms=fast", "not a number"), ("latency_ms=-3", "positive"), ("latency_ms=nan", "positive")])
def test_parse_budget_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_budget(text)


def test_search_for_budget_refines_until_the_device_agrees():
    def device(genotype_budget):  # the device costs 0.5 x search budget + 2 (not what the graph assumed)
        return 0.5 * genotype_budget + 2.0
    seen = []

    def search_at(b):
        seen.append(b)
        return _fake_search(b)

    def measure(genotype):
        return device(seen[-1])
    start = graph([(10, 4.0), (40, 16.0)])  # believes device = 0.4 x budget
    out = search_for_budget(start, search_at, measure, 12.0, target=0.95, rounds=4)
    assert 0.9 * 12.0 <= out.measured <= 12.0
    assert out.rounds >= 2 and len(out.graph.points) == 2 + out.rounds
    assert out.searched.keys() == set(seen) and [b for b, _ in out.tried] == seen


def test_search_for_budget_reuses_known_searches():
    def search_at(b):
        raise AssertionError("no new search expected")
    g = graph([(10, 9.5), (20, 19.0)])
    known = {10.0: _fake_search(10.0), 20.0: _fake_search(20.0)}
    out = search_for_budget(g, search_at, lambda genotype: 0.0, 10.0, target=0.95, rounds=3, known=known)
    assert out.rounds == 0 and out.measured == 9.5 and out.search_budget == 10.0
