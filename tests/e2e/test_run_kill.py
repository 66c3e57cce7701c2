"""``kill -9`` of ``hilnas run`` in the middle of a search: the run reads as interrupted, and the same
command resumes it without redoing any finished step (counted in the store)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hilnas.server.cli import main
from hilnas.server.store import Store

pytestmark = pytest.mark.slow

RUN_FILE = """\
    name = "kill-me"
    [space]
    name = "nb201"
    options = { C = 4, N = 1 }
    [data]
    dataset = "demo"
    [search]
    methods = ["dca", "hypernet"]
    search_epochs = 2
    train_epochs = 1
    max_batches = 12
    [lut]
    warmup = 1
    min_runs = 3
    min_seconds = 0.0
    [measure]
    warmup = 1
    min_runs = 5
    min_seconds = 0.0
    [[devices]]
    key = "pi"
    simulate = "raspi4"
    budgets = ["latency_ms=30%", "latency_ms=60%"]
"""
TARGET = "pi/hypernet/seed0/hypernetwork"  # killed while the hypernetwork trains, after DCA's networks are done


def _wait_for_running_step(ws, child: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert child.poll() is None, "the run ended before it could be killed"
        if (ws / "hilnas.db").exists():
            with Store.open(ws) as store:
                runs = store.runs_df("run")
                if len(runs):
                    step = store.get_step(int(runs["id"].iloc[-1]), TARGET)
                    if step is not None and step.status == "running":
                        return
        time.sleep(0.05)
    raise AssertionError(f"step {TARGET} never ran")


def test_sigkill_mid_search_then_resume_redoes_no_finished_step(tmp_path, capsys) -> None:
    ws, path = tmp_path / "ws", tmp_path / "run.toml"
    path.write_text(textwrap.dedent(RUN_FILE))
    child = subprocess.Popen([sys.executable, "-m", "hilnas.server.cli", "--workspace", str(ws), "run", str(path),
                              "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        _wait_for_running_step(ws, child)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()

    with Store.open(ws) as store:
        run_id = int(store.runs_df("run")["id"].iloc[-1])
        assert store.get_run(run_id).status == "interrupted"
        before = {s.key: (s.started_at, s.finished_at) for s in store.steps(run_id) if s.status == "done"}
        assert store.get_step(run_id, TARGET).status == "running"  # killed mid-search
        lut_rows = store.query_df("SELECT op_key, measured_at FROM lut_rows ORDER BY op_key")
        models_before = len(store.models_df(run_id))
    assert {"pi/lut", "pi/budgets", "pi/dca/seed0/latency_ms=30%/validate"} <= set(before)
    assert models_before == sum(k.endswith("/validate") for k in before)

    assert main(["--workspace", str(ws), "runs", "--kind", "run"]) == 0
    assert "interrupted" in capsys.readouterr().out

    code = main(["--workspace", str(ws), "run", str(path), "--json", "--quiet"])
    outcome = json.loads(capsys.readouterr().out)
    assert code == 0 and outcome["status"] == "done" and outcome["run_id"] == run_id and outcome["resumed"]
    assert outcome["done_before"] == len(before) and outcome["ran"] == outcome["planned"] - len(before)

    with Store.open(ws) as store:
        steps = store.steps(run_id)
        assert all(s.status == "done" for s in steps)
        # every step finished before the kill kept its record: none ran again
        assert {k: v for k, v in ((s.key, (s.started_at, s.finished_at)) for s in steps) if k in before} == before
        validated = [s for s in steps if s.key.endswith("/validate")]
        assert len(validated) == 4  # 2 methods x 2 budgets
        assert len(store.models_df(run_id)) == len(validated)  # one model per network: none measured twice
        assert store.query_df("SELECT op_key, measured_at FROM lut_rows ORDER BY op_key").equals(lut_rows)
        assert store.get_step(run_id, TARGET).started_at > before["pi/budgets"][1]
