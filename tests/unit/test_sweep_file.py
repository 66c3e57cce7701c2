"""The sweep file: a run file read as a cross product, plus [sweep] and [[cells]]; every problem at once."""
from __future__ import annotations

from pathlib import Path

import pytest

from hilnas.server.sweep import SweepFileError, parse_sweep_file, with_options

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sweeps" / "ci.toml"

BASE = """\
name = "s"
[space]
name = "nb201"
options = { C = 4, N = 1 }
[search]
methods = ["dca", "random"]
seeds = [0, 1]
[[devices]]
key = "sim"
simulate = "raspi4"
budgets = ["latency_ms=40%", "latency_ms=2"]
[[devices]]
key = "pi"
address = "127.0.0.1:50061"
budgets = ["latency_ms=3"]
"""


def test_the_product_is_devices_by_budgets_by_methods_by_seeds_in_file_order():
    sweep = parse_sweep_file(BASE)
    assert len(sweep.cells) == 2 * 2 * 2 + 1 * 2 * 2
    assert sweep.cells[0].key == "sim/dca/latency_ms=40%/seed0"
    assert sweep.cells[-1].key == "pi/random/latency_ms=3/seed1"
    assert len({c.key for c in sweep.cells}) == len(sweep.cells)
    assert sweep.options.on == "local" and sweep.options.per_device == 1


def test_a_cell_runs_one_device_one_budget_one_method_one_seed():
    sweep = parse_sweep_file(BASE)
    cell = sweep.cell("sim/random/latency_ms=2/seed1")
    run = sweep.cell_config(cell)
    assert [d.key for d in run.devices] == ["sim"] and [b.text for b in run.devices[0].budgets] == ["latency_ms=2"]
    assert run.methods == ("random",) and run.seeds == (1,) and run.space == "nb201"
    # a simulated board is each cell's own; a board at an address is shared by its cells
    assert not sweep.shared_device(cell) and sweep.shared_device(sweep.cell("pi/dca/latency_ms=3/seed0"))


def test_explicit_cells_are_added_once_and_options_are_read():
    sweep = parse_sweep_file(BASE + """
[sweep]
on = "ray"
workers = 3
per_device = 2
[[cells]]
device = "pi"
method = "dca"
budget = "latency_ms=9"
[[cells]]
device = "sim"
method = "dca"
budget = "latency_ms=2"
seed = 0
""")
    keys = [c.key for c in sweep.cells]
    assert keys[-1] == "pi/dca/latency_ms=9/seed0"        # seed: the first of [search] seeds
    assert keys.count("sim/dca/latency_ms=2/seed0") == 1   # already in the product
    assert (sweep.options.on, sweep.options.workers, sweep.options.per_device) == ("ray", 3, 2)
    assert with_options(sweep, on="local", workers=None).options.on == "local"


def test_every_problem_is_reported_at_once_with_its_line():
    text = BASE.replace('methods = ["dca", "random"]', 'methods = ["dca"]\nepochs = 3') + """
[sweep]
on = "slurm"
wokers = 2
[[cells]]
device = "sin"
method = "dcaa"
budget = "latency=3"
"""
    with pytest.raises(SweepFileError) as info:
        parse_sweep_file(text, source="s.toml")
    msg = str(info.value)
    lines = {p.where: p.line for p in info.value.problems}
    assert "[search] epochs" in msg and "unknown key 'epochs'" in msg            # the run file's part
    assert "[sweep] on" in msg and "allowed: local, ray" in msg
    assert "unknown key 'wokers' (did you mean 'workers'?)" in msg
    assert lines["[sweep] on"] == text.splitlines().index('on = "slurm"') + 1
    assert lines["[search] epochs"] == text.splitlines().index("epochs = 3") + 1


def test_cells_are_checked_against_the_devices_and_methods():
    text = BASE + """
[[cells]]
device = "sin"
method = "dcaa"
budget = "latency=3"
[[cells]]
method = "dca"
"""
    with pytest.raises(SweepFileError) as info:
        parse_sweep_file(text, source="s.toml")
    msg = str(info.value)
    assert "'sin' is not a [[devices]] key (did you mean 'sim'?)" in msg
    assert "'dcaa' is not a method" in msg and "unknown budget metric 'latency'" in msg
    assert "[[cells]] #2: needs device, budget" in msg


def test_an_empty_product_is_refused_with_what_to_add():
    with pytest.raises(SweepFileError, match=r"the sweep has no cells: \[search\] seeds is empty.*\[\[cells\]\]"):
        parse_sweep_file(BASE.replace("seeds = [0, 1]", "seeds = []"))
    # explicit cells alone are a sweep
    sweep = parse_sweep_file(BASE.replace("seeds = [0, 1]", "seeds = []") + """
[[cells]]
device = "sim"
method = "dca"
budget = "latency_ms=2"
""")
    assert [c.key for c in sweep.cells] == ["sim/dca/latency_ms=2/seed0"]


def test_the_fingerprint_follows_what_is_computed_not_where():
    a = parse_sweep_file(BASE)
    b = parse_sweep_file(BASE + '\n[sweep]\non = "ray"\nworkers = 8\n')
    c = parse_sweep_file(BASE.replace("latency_ms=3", "latency_ms=4"))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_the_shipped_example_parses():
    sweep = parse_sweep_file(EXAMPLE.read_text(), source=str(EXAMPLE), base_dir=EXAMPLE.parent)
    assert len(sweep.cells) == 4 and sweep.options.workers == 2
