"""``hilnas search hypernet`` with the per-space defaults (``"auto"``, ``hypernet.defaults``): a real run on a
simulated agent over loopback prints the settings the space resolved to, and the run's saved config holds them; a
flag given explicitly wins."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopback import start_agent
from hilnas.server.cli import main


@pytest.fixture
def sim(tmp_path):
    running = start_agent(tmp_path / "agent", simulate="raspi4")
    yield running
    running.stop(0)


def _run(capsys, ws, *argv):
    code = main(["--workspace", str(ws), "--retries", "1", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_the_summary_shows_the_resolved_settings_and_an_explicit_flag_wins(tmp_path, capsys, sim):
    ws = tmp_path / "ws"
    quick = ("--min-runs", "5", "--min-seconds", "0.01", "--warmup", "1")
    shape = ("--space", "nb201", "--dataset", "demo", "--space-opt", "C=4", "--space-opt", "N=1")
    search = ("search", "hypernet", "--device", "pi", *shape, "--search-epochs", "1", "--max-batches", "6", "--grid",
              "2", "--train-size", "200", "--Lambda", "0.5", *quick)
    assert _run(capsys, ws, "devices", "add", "pi", "--address", f"127.0.0.1:{sim.port}")[0] == 0
    code, _, err = _run(capsys, ws, "lut", "build", "--device", "pi", "--quiet", *shape, *quick)
    assert code == 0, err
    code, out, err = _run(capsys, ws, *search)
    assert code == 0, err
    assert ("settings: weight_lambda sandwich-children, arch_step straight-through, phase1 dearest, anchor none "
            "(auto: the space's measured setting where not given)") in out
    code, out, err = _run(capsys, ws, *search, "--arch-step", "relaxed", "--json")
    assert code == 0, err
    trained = json.loads((Path(json.loads(out)["trained_dir"]) / "trained.json").read_text())
    assert trained["config"]["arch_step"] == "relaxed" and trained["config"]["weight_lambda"] == "sandwich-children"
