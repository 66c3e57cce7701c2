"""The rule of ``benchmarks/bench_prune_matched.py`` (issue 12, tenth session): how each member is judged against
the fixed-lambda prunings measured near its latency, and which lambda the search for one tries next."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_prune_matched.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_prune_matched import AIM, WINDOW, Fixed, judge, next_lambda  # noqa: E402


def test_a_fixed_network_in_the_window_and_no_better_rival_is_a_pass():
    out = judge(10.0, 0.50, [(10.3, 0.505), (4.0, 0.30), (20.0, 0.70)])
    assert out["verdict"] == "pass" and out["in_window"] == 1
    assert out["acc_diff_points"] == pytest.approx(-0.5)
    assert out["best_rival_ms"] == 10.3


def test_a_cheaper_fixed_network_more_than_a_point_better_is_a_miss_even_with_one_in_the_window():
    # the member at 10 ms loses to a fixed network at 9 ms: cheaper and better counts against it
    out = judge(10.0, 0.50, [(10.2, 0.49), (9.0, 0.52)])
    assert out["verdict"] == "miss"
    assert out["acc_diff_points"] == pytest.approx(-2.0)
    assert out["best_rival_ms"] == 9.0 and out["best_rival"] == 1   # its index in the pool given


def test_a_dearer_fixed_network_outside_the_window_is_no_rival():
    # 10.6 ms > 10 / 0.95: in the fixed side's favour, so it neither beats the member nor matches it
    out = judge(10.0, 0.50, [(10.6, 0.60), (5.0, 0.40)])
    assert out["verdict"] == "gap" and out["in_window"] == 0
    assert out["acc_diff_points"] == pytest.approx(10.0)
    assert out["nearest_dearer"]["measured_ms"] == 10.6
    assert out["nearest_dearer"]["acc_diff_points"] == pytest.approx(-10.0)


def test_no_fixed_network_as_dear_as_the_member_is_the_dear_end():
    out = judge(10.0, 0.60, [(9.0, 0.55), (3.0, 0.2)])
    assert out["verdict"] == "dear end"
    # but a cheaper fixed network better by over a point is still a miss
    assert judge(10.0, 0.50, [(9.0, 0.55)])["verdict"] == "miss"


def test_the_window_edges():
    assert judge(10.0, 0.5, [(10.0, 0.5)])["verdict"] == "pass"
    assert judge(10.0, 0.5, [(10.0 / WINDOW, 0.5)])["verdict"] == "pass"
    assert judge(10.0, 0.5, [(10.0 / WINDOW * 1.001, 0.5)])["verdict"] == "gap"


def pool(*pairs) -> list[Fixed]:
    return [Fixed(lam, None, "result", steer_ms=ms) for lam, ms in pairs]


def test_the_secant_aims_at_the_window_middle_in_log_lambda():
    # too dear: lambda 0.1 at 30 ms; too cheap: lambda 1.0 at 10 ms; the member at 19.5 ms aims at 20 ms, halfway
    lam = next_lambda(pool((0.1, 30.0), (1.0, 10.0)), 20.0 * AIM, largest=3.0)
    assert lam == pytest.approx(math.sqrt(0.1 * 1.0))


def test_the_secant_step_is_clipped_inside_the_bracket():
    # the aim (35 ms) lies a sixth of the way from the dear side (40 ms): the step still moves a fifth (log lambda)
    lam = next_lambda(pool((0.1, 40.0), (1.0, 10.0)), 35.0 * AIM, largest=3.0)
    assert lam == pytest.approx(math.exp(math.log(0.1) + 0.2 * (math.log(1.0) - math.log(0.1))))


def test_lambda_zero_stands_for_a_sixteenth_of_the_other_side():
    lam = next_lambda(pool((0.0, 30.0), (1.6, 10.0)), 20.0 * AIM, largest=3.0)
    assert lam == pytest.approx(math.sqrt(0.1 * 1.6))


def test_the_bracket_is_the_nearest_in_lambda_on_each_side():
    # a fixed pruning's latency is noisy in lambda: lambda 0.8 came out dearer (33 ms) than lambda 0.59 (31 ms); the
    # next try lies between 0.8 and 0.87 (too cheap at 22.4 ms), not between 0.59 and 0.87 again
    p = pool((0.59, 31.0), (0.8, 33.0), (0.87, 22.4), (1.1, 18.0))
    lam = next_lambda(p, 22.54, largest=3.0)
    assert 0.8 < lam < 0.87
    # noise inverted the two sides (a dear network at a larger lambda than a cheap one): the nearest by latency
    q = pool((0.5, 40.0), (1.0, 30.0), (0.9, 10.0))
    lam = next_lambda(q, 20.0 * AIM, largest=3.0)
    assert lam == pytest.approx(math.exp(math.log(1.0) + 0.5 * (math.log(0.9) - math.log(1.0))))


def test_nothing_too_dear_tries_lambda_zero_then_gives_up():
    assert next_lambda(pool((0.5, 10.0)), 20.0, largest=3.0) == 0.0
    assert next_lambda(pool((0.0, 18.0), (0.5, 10.0)), 20.0, largest=3.0) is None


def test_nothing_too_cheap_doubles_the_largest_lambda():
    assert next_lambda(pool((0.5, 30.0)), 10.0, largest=3.0) == 6.0
    assert next_lambda(pool((4.0, 30.0)), 10.0, largest=3.0) == 8.0


def test_a_file_that_is_not_a_result_is_refused_before_anything_runs(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"agents": {}}))
    r = subprocess.run([sys.executable, str(BENCH), str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a bench_prune.py result file" in r.stderr
    missing = subprocess.run([sys.executable, str(BENCH), str(tmp_path / "none.json")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "none.json" in missing.stderr
    assert list(tmp_path.iterdir()) == [bad]   # nothing written


def test_an_agent_the_result_has_no_members_for_is_refused(tmp_path):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"agents": {"sim": {"members": []}, "host": {}}, "setup": {}, "model": {}}))
    r = subprocess.run([sys.executable, str(BENCH), str(f), "--agent", "host"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "give --agent, one of ['sim']" in r.stderr


# the same rule applied to the fixed networks themselves (benchmarks/prune_matched_null.py)
from prune_matched_null import fixed_as_members, tally  # noqa: E402

NULL = ROOT / "benchmarks" / "prune_matched_null.py"


def row(bits, ms, acc):
    return {"pattern": bits, "measured_ms": ms, "test_acc": acc}


def test_each_fixed_network_is_judged_against_the_others_not_against_itself_or_its_copy():
    rows = fixed_as_members([row("a", 10.0, 0.50), row("a", 10.0, 0.50),   # one network found twice
                             row("b", 30.0, 0.70)])
    by = {r["pattern"]: r for r in rows}
    assert len(rows) == 2
    # a's only network in its window is its own copy: no rival there, so a gap, not a pass at d = 0
    assert by["a"]["verdict"] == "gap" and by["a"]["acc_diff_points"] is None
    assert by["b"]["verdict"] == "dear end"


def test_a_fixed_network_beaten_by_a_cheaper_one_is_a_miss_naming_its_rival():
    rows = fixed_as_members([row("a", 10.0, 0.50), row("b", 9.0, 0.53), row("c", 10.3, 0.51),
                             {"pattern": "d", "measured_ms": None, "test_acc": 0.9}])   # not measured: left out
    by = {r["pattern"]: r for r in rows}
    assert set(by) == {"a", "b", "c"}
    assert by["a"]["verdict"] == "miss" and by["a"]["rival_pattern"] == "b"
    assert by["a"]["acc_diff_points"] == pytest.approx(-3.0)
    assert by["c"]["verdict"] == "miss" and by["c"]["rival_pattern"] == "b"   # 10.3 ms: b too, 2 points better
    # b (9 ms): nothing in [9, 9.47] and nothing cheaper: no rival, a gap
    assert by["b"]["verdict"] == "gap" and by["b"]["rival_pattern"] is None
    t = tally(rows)
    assert (t["pass"], t["miss"], t["gap"], t["dear_end"]) == (0, 2, 1, 0)
    assert t["misses_points"] == [pytest.approx(-3.0), pytest.approx(-2.0)]


def test_the_null_refuses_a_file_that_is_not_a_matched_result(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"members": []}))
    r = subprocess.run([sys.executable, str(NULL), "--no-se", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a bench_prune_matched.py result file" in r.stderr
    assert list(tmp_path.iterdir()) == [bad]


# why a member misses: the loop's choice, the family, or the ranking (benchmarks/prune_miss_causes.py)
from prune_miss_causes import best_rival, cause, in_band  # noqa: E402

CAUSES = ROOT / "benchmarks" / "prune_miss_causes.py"


def test_a_candidate_counts_in_band_only_when_every_loop_window_was_measured_inside():
    band = (0.9, 1.0)                           # the source result's recorded target window
    assert in_band([9.5, 9.9], 10.0, band) and in_band([9.0, 10.0], 10.0, band)
    assert not in_band([9.5, 10.1], 10.0, band)      # its second window above the budget
    assert not in_band([8.9], 10.0, band)            # below 0.9 x budget
    assert not in_band([9.5, None], 10.0, band)      # a window the device failed to measure
    assert not in_band([], 10.0, band)
    assert not in_band([9.5], 10.0, (0.96, 1.0))     # the band the result was judged on, not a copy of it


def test_a_better_ranked_candidate_measured_in_band_and_passed_over_is_the_loops_miss():
    # the member 1.709 nats; the loop measured one of 1.643 in band: the loop's, whatever the rival
    assert cause(1.709, 1.704, [1.643, 1.72], delta=0.01) == "loop"
    assert cause(1.709, 1.20, [1.643], delta=0.01) == "loop"
    # within delta of the member is no better ranked
    assert cause(1.709, 1.704, [1.70], delta=0.01) == "ranking"


def test_a_rival_ranked_better_than_everything_the_loop_had_is_the_familys_miss():
    assert cause(0.581, 0.404, [], delta=0.01) == "family"        # nothing tried in band
    assert cause(0.581, 0.404, [0.60, 0.59], delta=0.01) == "family"
    # the rival better than the member but not than a tried candidate: the loop's (it had a better one)
    assert cause(0.581, 0.404, [0.40], delta=0.01) == "loop"


def test_a_member_ranked_as_well_as_its_rival_is_a_miss_of_the_ranking():
    assert cause(1.758, 1.774, [1.80], delta=0.01) == "ranking"
    assert cause(1.50, 1.495, [], delta=0.01) == "ranking"         # the rival within delta


def test_the_rival_is_the_pool_network_the_member_was_judged_against():
    pool = [row("a", 10.0, 0.50), row("b", 10.2, 0.52), row("c", 10.2, 0.49)]
    assert best_rival({"best_rival_ms": 10.2, "best_rival_acc": 0.52}, pool)["pattern"] == "b"
    assert best_rival({"best_rival_ms": 10.2, "best_rival_acc": 0.60}, pool) is None


def test_the_causes_refuse_a_file_without_its_source_before_loading_anything(tmp_path):
    bad = tmp_path / "x_matched.json"
    bad.write_text(json.dumps({"members": [], "pool": [], "source": str(tmp_path / "gone.json")}))
    r = subprocess.run([sys.executable, str(CAUSES), str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "with its source result beside it" in r.stderr
    neg = subprocess.run([sys.executable, str(CAUSES), "--delta", "-1", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert neg.returncode == 2 and "--delta must be >= 0" in neg.stderr
    assert list(tmp_path.iterdir()) == [bad]
