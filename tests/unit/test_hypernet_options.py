"""``--hypernet-opt KEY=VALUE`` (bench_search_quality's pass-through to HypernetConfig, issue 11 item 5): values
take their field's type, unknown keys and bad values are refused with one line that names the fix."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hilnas.searchers.hypernet import HypernetConfig
from hilnas.server.cli.search.hypernet import hypernet_options

ROOT = Path(__file__).resolve().parents[2]


def test_options_become_typed_config_fields():
    opts = hypernet_options(["weight_lambda=sandwich-children", "phase1=dearest", "arch-step=straight-through",
                             "anchor=pinned", "phase1_steps=200", "zero_fraction=0.1", "Lambda=0.5",
                             "max_batches_per_epoch=none"])
    assert opts == {"weight_lambda": "sandwich-children", "phase1": "dearest", "arch_step": "straight-through",
                    "anchor": "pinned", "phase1_steps": 200, "zero_fraction": 0.1, "Lambda": 0.5,
                    "max_batches_per_epoch": None}
    cfg = HypernetConfig(**opts)
    assert cfg.anchor == "pinned" and cfg.phase1_steps == 200 and cfg.Lambda == 0.5
    assert hypernet_options(["Lambda=sweep"]) == {"Lambda": "sweep"} and hypernet_options([]) == {}


@pytest.mark.parametrize("pairs, match", [
    (["anchr=pinned"], r"anchr: not a HypernetConfig setting this flag takes; use one of .*anchor"),
    (["arch=1"], r"arch: not a HypernetConfig setting"),     # a nested config, not a scalar
    (["anchor"], r"'anchor' is not KEY=VALUE"),
    (["phase1_steps=many"], r"phase1_steps takes a number"),
    (["anchor=pinned", "phase1=none"], r"set phase1='dearest'"),          # the set is checked together
    (["weight_lambda=all"], r"weight_lambda must be"),
])
def test_bad_options_are_refused_with_the_fix(pairs, match):
    with pytest.raises(ValueError, match=match):
        hypernet_options(pairs)


def test_the_benchmark_refuses_a_bad_option_before_anything_runs():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_search_quality.py"), "--methods", "hypernet",
                        "--hypernet-opt", "anchr=pinned"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and r.stdout == ""
    line, = r.stderr.strip().splitlines()
    assert line.startswith("bench_search_quality: --hypernet-opt anchr:")
