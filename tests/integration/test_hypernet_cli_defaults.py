"""``hilnas search hypernet`` with the per-space defaults (``"auto"``, ``hypernet.defaults``): a real run on a
simulated agent over loopback prints the settings the space resolved to, and the run's saved config holds them; a
flag given explicitly wins (a training flag and the derivation alike)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopback import start_agent
from hilnas.server.cli import main


def _cli(capsys, tmp_path, *argv) -> tuple[int, str, str]:
    code = main(["--workspace", str(tmp_path / "ws"), "--retries", "1", *argv])
    return (code, *capsys.readouterr())


@pytest.mark.slow
def test_the_summary_shows_the_resolved_settings_and_an_explicit_flag_wins(tmp_path, capsys):
    quick = ("--min-runs", "5", "--min-seconds", "0.01", "--warmup", "1")
    shape = ("--space", "nb201", "--dataset", "demo", "--space-opt", "C=4", "--space-opt", "N=1")
    search = ("search", "hypernet", "--device", "pi", *shape, "--search-epochs", "1", "--max-batches", "6", "--grid",
              "2", "--train-size", "200", "--Lambda", "0.5", *quick)
    agent = start_agent(tmp_path / "agent", simulate="raspi4")
    try:
        results = [_cli(capsys, tmp_path, *argv) for argv in (
            ("devices", "add", "pi", "--address", f"127.0.0.1:{agent.port}"),
            ("lut", "build", "--device", "pi", "--quiet", *shape, *quick),
            search, (*search, "--arch-step", "straight-through", "--derivation", "conv-median", "--json"))]
    finally:
        agent.stop(0)
    assert all(code == 0 for code, _, _ in results), [err for _, _, err in results]
    assert ("settings: weight_lambda sandwich-children, arch_step relaxed, phase1 dearest, anchor pinned, "
            "scale_sampling uniform, knee family, derivation argmax (auto: the space's measured setting where not "
            "given)") in results[2][1]
    out = results[3][1]
    trained = json.loads((Path(json.loads(out)["trained_dir"]) / "trained.json").read_text())
    assert trained["config"]["arch_step"] == "straight-through" and trained["config"]["knee"] == "family"
    assert trained["config"]["weight_lambda"] == "sandwich-children" and trained["config"]["derivation"] == "conv-median"
