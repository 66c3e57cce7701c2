"""The search-quality benchmark's ground truth and bad inputs: the oracle, a missing table or data folder."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_search_quality.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
from nb201_oracle import ACCURACY_CSV, CIFAR_SUBSET, Oracle  # noqa: E402


def test_the_oracle_is_the_best_cell_within_the_budget_and_its_front_is_pareto():
    acc = {"a": 80.0, "b": 85.0, "c": 84.0, "d": 90.0}
    lat = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 5.0}
    o = Oracle(acc, lat)
    assert [f[2] for f in o.front] == ["a", "b", "d"]   # c is dearer and worse than b
    assert o.best_within(0.5) is None
    assert o.best_within(4.9) == (85.0, "b") and o.best_within(5.0) == (90.0, "d")
    assert o.regret("c", 4.0) == pytest.approx(1.0) and o.range() == (1.0, 5.0)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_a_missing_accuracy_table_names_the_file_and_the_flag(tmp_path):
    missing = tmp_path / "nope.csv"
    r = run("--accuracy-table", str(missing))
    assert r.returncode == 2 and r.stdout == ""
    line, = r.stderr.strip().splitlines()
    assert str(missing) in line and "--accuracy-table" in line and "nb201_cifar10_accuracy.csv" in line


def test_a_short_accuracy_table_is_refused(tmp_path):
    short = tmp_path / "short.csv"
    short.write_text("index,arch_str,cifar10_test_acc_200ep\n0,|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,10\n")
    r = run("--accuracy-table", str(short))
    assert r.returncode == 2 and "has 1 cells, not all 15,625" in r.stderr


@pytest.mark.skipif(not ACCURACY_CSV.is_file() or not CIFAR_SUBSET.is_dir(), reason="needs /work/shared/data")
def test_a_missing_or_incomplete_data_folder_names_what_is_missing(tmp_path):
    r = run("--data-dir", str(tmp_path / "absent"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "--data-dir" in r.stderr
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(next(CIFAR_SUBSET.glob("data_batch_1.bin*")), partial)
    r = run("--data-dir", str(partial))
    assert r.returncode == 2 and "lacks data_batch_2.bin" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("--seeds", "0")
    assert r.returncode == 2 and "--seeds" in r.stderr
    r = run("--device-repeats", "0")
    assert r.returncode == 2 and "--device-repeats must be >= 1" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_budgets_out_of_the_grid_and_bad_middle_settings_are_refused_with_the_fix():
    r = run("--budgets", "5", "--only-budgets", "1,6")
    line, = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "--only-budgets 1,6" in line and "numbered 1..5" in line and "--only-budgets 1" in line
    for flag, value in [("--device-inside-sigmas", "-1"), ("--lookahead-middle", "2")]:
        r = run(flag, value)
        line, = r.stderr.strip().splitlines()
        assert r.returncode == 2 and "--device-inside-sigmas >= 0, --lookahead-middle 0 or 1" in line


def test_seed_offset_runs_the_held_out_seeds_and_bad_select_or_offset_are_refused():
    from bench_search_quality import search_seeds

    assert search_seeds(1, 3) == [3] and search_seeds(3) == [0, 1, 2] and search_seeds(2, 5) == [5, 6]
    if not ACCURACY_CSV.is_file() or not CIFAR_SUBSET.is_dir():
        pytest.skip("needs /work/shared/data")
    r = run("--seed-offset", "-1")
    assert r.returncode == 2 and r.stdout == ""
    line, = r.stderr.strip().splitlines()
    assert "--seed-offset -1" in line and "e.g. --seed-offset 3" in line
    r = run("--select", "magnitude")
    assert r.returncode == 2 and "--select magnitude: use --select auto (the default), alpha" in r.stderr
