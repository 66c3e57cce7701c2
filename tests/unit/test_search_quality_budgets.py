"""The search-quality benchmark's budgets: the edge rule (a cluster at the band's edge) and the interior rule
(the band shrunk by the method's own margin holds the cells), the achievable ceiling, and a bad rule."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_search_quality.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_search_quality import (MARGIN_SIGMAS, budget_report, choose_budgets, fresh_spread,  # noqa: E402
                                  landing_probability)
from nb201_oracle import Oracle  # noqa: E402


def clustered() -> Oracle:
    """A cheapest cell at 3.4 ms (the first budget aims at 3 x that, 10.2 ms), a cluster of 150 cells at
    9.00-9.04 ms, and the most accurate cell at 20 ms: no cell between 9.04 and 20 ms."""
    lat = {"cheap": 3.4, "dear": 20.0, **{f"c{i}": 9.0 + 0.04 * i / 149 for i in range(150)}}
    acc = {"cheap": 70.0, "dear": 95.0, **{f"c{i}": 80.0 + i / 1000 for i in range(150)}}
    return Oracle(acc, lat)


def test_the_edge_rule_puts_a_cluster_at_the_band_edge_and_the_interior_rule_inside():
    o, spread = clustered(), 0.01
    edge, = choose_budgets(o, 1, rule="edge")
    inner, = choose_budgets(o, 1, rule="interior", spread=spread)
    # edge: the nearest budget to 10.2 ms whose band [0.9, 1.0] x B holds 100 cells is 10.0 ms, the cluster at 0.900-0.904
    assert edge == pytest.approx(10.0)
    # interior: the band shrunk by 1.5 sd (1.5 %) on each side is [0.914, 0.985] x B; the nearest budget holding the
    # cluster there is 9.8 ms (9.85 is the most it may be), the cluster at 0.918-0.922 x B
    assert inner == pytest.approx(9.8)
    e, i = budget_report(o, [edge, inner], spread)
    assert (e["band_cells"], e["interior_cells"]) == (150, 0) and (i["band_cells"], i["interior_cells"]) == (150, 150)
    # the ceiling: at the edge budget even the best-placed cell (9.04 ms, 0.904 x B) lands in the band ~2/3 of the time
    assert 0.55 < e["ceiling"] < 0.75 and e["best_placed_cell"] == "c149"
    assert i["ceiling"] > 0.99 and i["interior_ms"] == pytest.approx([0.9 * 9.8 / 0.985, 9.8 / 1.015])


def test_with_no_spread_the_interior_rule_is_the_edge_rule():
    o = clustered()
    assert choose_budgets(o, 1, rule="interior", spread=0.0) == choose_budgets(o, 1, rule="edge")
    with pytest.raises(ValueError, match="use one of edge, interior"):
        choose_budgets(o, 1, rule="middle")


def test_the_landing_probability_is_one_half_at_an_edge_and_high_in_the_middle():
    assert landing_probability(10.0, 10.0, 0.02) == pytest.approx(0.5, abs=1e-6)
    assert landing_probability(9.0, 10.0, 0.02) == pytest.approx(0.5, abs=1e-6)
    assert landing_probability(9.5, 10.0, 0.02) > 0.98 > landing_probability(9.5, 10.0, 0.04)
    assert landing_probability(9.5, 10.0, 0.0) == 1.0 and landing_probability(10.01, 10.0, 0.0) == 0.0


def test_one_fresh_measurements_spread_comes_from_the_device_model():
    # raspi4: run_cv 1 %, sample cv 3 % -> the median of 30 samples ~0.69 %; pixel3: 2 % and 5 % -> ~1.1 %
    assert fresh_spread("raspi4") == pytest.approx(0.0121, abs=5e-4)
    assert fresh_spread("pixel3") == pytest.approx(0.0230, abs=5e-4)
    assert fresh_spread("raspi4", runs=10**6) == pytest.approx(0.01, abs=1e-4) and MARGIN_SIGMAS == 1.5


def test_the_edge_rule_reproduces_the_budgets_of_the_runs_so_far():
    from bench_search_quality import ACCURACY_CSV, read_accuracy
    from nb201_oracle import simulated_latencies

    lat = simulated_latencies(("raspi4", "pixel3"), progress=lambda _: None)
    acc = read_accuracy(ACCURACY_CSV)
    oracles = {d: Oracle(acc, lat[d]) for d in lat}
    assert choose_budgets(oracles["raspi4"], 5, rule="edge") == [11.3, 17.4, 27.8, 44.2, 65.9]
    assert choose_budgets(oracles["pixel3"], 5, rule="edge") == [4.4, 7.3, 11.4, 18.2, 27.4]
    for d in oracles:   # the interior budgets: every one holds >= 100 cells inside by 1.5 sd
        report = budget_report(oracles[d], choose_budgets(oracles[d], 5, spread=fresh_spread(d)), fresh_spread(d))
        assert all(r["interior_cells"] >= 100 for r in report)
        assert min(r["ceiling"] for r in report) > 0.9


def test_an_unknown_budget_rule_is_refused_in_one_line_with_the_fix():
    r = subprocess.run([sys.executable, str(BENCH), "--budget-rule", "middle"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    line, = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "--budget-rule middle" in line and "--budget-rule interior" in line
