"""``hilnas run FILE``: simulated devices on loopback, resuming, one run per workspace, a device that
is down, a budget no network meets, and a bad run file."""
from __future__ import annotations

import json
import textwrap

import pytest

from hilnas.server.cli import main
from hilnas.server.run import workspace_lock
from hilnas.server.store import Store
from loopback import start_agent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = """\
    name = "tiny"
    [space]
    name = "nb201"
    options = {{ C = 4, N = 1 }}
    [data]
    dataset = "synthetic"
    [search]
    methods = {methods}
    search_epochs = 1
    train_epochs = 1
    max_batches = 2
    [lut]
    warmup = 1
    min_runs = 3
    min_seconds = 0.0
    [measure]
    warmup = 1
    min_runs = 5
    min_seconds = 0.0
    [agents]
    retries = 1
    backoff_s = 0.05
"""


def run_file(tmp_path, devices: str, methods=("dca", "hypernet")) -> str:
    path = tmp_path / "run.toml"
    path.write_text(textwrap.dedent(TINY.format(methods=json.dumps(list(methods)))) + textwrap.dedent(devices))
    return str(path)


def run(capsys, ws, *argv):
    code = main(["--workspace", str(ws), "run", *argv, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_run_file_end_to_end_then_resumed_with_nothing_to_redo(tmp_path, capsys) -> None:
    ws = tmp_path / "ws"
    path = run_file(tmp_path, """
        [[devices]]
        key = "pi"
        simulate = "raspi4"
        budgets = ["latency_ms=40%", "latency_ms=60%", "latency_ms=0.001"]
    """, methods=("dca", "hypernet", "darts"))
    code, out, err = run(capsys, ws, path)
    assert code == 1, err  # one budget no network meets: said, with the cheapest
    assert "no network of the nb201 space meets latency_ms=0.001 on pi: the cheapest costs" in out
    with Store.open(ws) as store:
        run_id = int(store.runs_df("run")["id"].iloc[-1])
        steps = store.steps(run_id)
        assert all(s.status == "done" for s in steps)
        assert not any("latency_ms=0.001" in s.key for s in steps)  # no search spent on it
        validated = [s.result for s in steps if "/validate" in s.key]
        assert sorted((n["method"], n["budget"]) for n in validated) == [
            (m, b) for m in ("darts", "dca", "hypernet") for b in ("latency_ms=40%", "latency_ms=60%")]
        for n in validated:
            assert n["measured_ms"] > 0 and n["met"] == (n["ci95_ms"][1] <= n["budget_value"])
        # shared steps ran once: the hypernetwork's training, and DARTS' budget-free search and training
        keys = [s.key for s in steps]
        assert keys.count("pi/hypernet/seed0/hypernetwork") == 1
        assert [k for k in keys if k.startswith("pi/darts/")] == [
            "pi/darts/seed0/search", "pi/darts/seed0/train", "pi/darts/seed0/validate/latency_ms=40%",
            "pi/darts/seed0/validate/latency_ms=60%"]
        darts = [n for n in validated if n["method"] == "darts"]
        assert darts[0]["genotype"] == darts[1]["genotype"]
        models = len(store.models_df(run_id))
        assert models == 6 and store.get_run(run_id).status == "done"
    report = ws / "runs" / str(run_id) / "report"
    assert (report / "report.html").stat().st_size > 0 and (report / "pareto-pi.png").stat().st_size > 0

    code, out, err = run(capsys, ws, path, "--json")
    again = json.loads(out)
    assert (again["run_id"], again["resumed"], again["ran"], again["done_before"]) == (run_id, True, 0, len(steps))
    with Store.open(ws) as store:
        assert len(store.models_df(run_id)) == models  # nothing measured twice
        assert [(s.key, s.finished_at) for s in store.steps(run_id)] == [(s.key, s.finished_at) for s in steps]

    code, out, _ = run(capsys, ws, path, "--new", "--json")
    assert json.loads(out)["run_id"] == run_id + 1 and json.loads(out)["done_before"] == 0


def test_a_second_run_on_a_busy_workspace_is_refused_with_the_first_pid(tmp_path, capsys) -> None:
    import os

    ws = tmp_path / "ws"
    path = run_file(tmp_path, """
        [[devices]]
        key = "pi"
        simulate = "raspi4"
        budgets = ["latency_ms=40%"]
    """)
    with workspace_lock(ws, "hilnas run first.toml"):
        code, _, err = run(capsys, ws, path)
    assert code == 2 and f"(PID {os.getpid()} on" in err and '"hilnas run first.toml"' in err
    assert not (ws / "hilnas.db").exists()  # nothing started


def test_a_device_that_is_down_fails_alone_and_the_same_command_resumes(tmp_path, capsys) -> None:
    ws = tmp_path / "ws"
    probe = start_agent(tmp_path / "probe", simulate="pixel3")
    port = probe.port
    probe.stop(0)  # a port nobody answers on (for now)
    path = run_file(tmp_path, f"""
        [[devices]]
        key = "pi"
        simulate = "raspi4"
        budgets = ["latency_ms=40%"]

        [[devices]]
        key = "phone"
        address = "127.0.0.1:{port}"
        budgets = ["latency_ms=40%"]
    """, methods=("dca",))
    code, out, err = run(capsys, ws, path)
    assert code == 1
    assert f"device 'phone': no agent answered at 127.0.0.1:{port} after 2 tries with back-off" in out
    assert f"run `hilnas --workspace {ws} run {path}` again to continue" in out
    with Store.open(ws) as store:
        run_id = int(store.runs_df("run")["id"].iloc[-1])
        assert store.get_run(run_id).status == "failed"
        done = {s.key for s in store.steps(run_id) if s.status == "done"}
        assert "pi/dca/seed0/latency_ms=40%/validate" in done and not any(k.startswith("phone") for k in done)

    phone = start_agent(tmp_path / "phone", simulate="pixel3", port=port)  # the board is back
    try:
        code, out, err = run(capsys, ws, path, "--json")
    finally:
        phone.stop(0)
    result = json.loads(out)
    assert code == 0 and result["status"] == "done" and result["run_id"] == run_id
    assert {n["device"] for n in result["networks"]} == {"pi", "phone"}
    assert result["done_before"] == len(done)  # the Pi's steps were not redone


def test_a_bad_run_file_lists_every_problem_and_starts_nothing(tmp_path, capsys) -> None:
    ws = tmp_path / "ws"
    path = tmp_path / "bad.toml"
    path.write_text('[search]\nmethods = ["dca", "nas"]\ntrain_epochs = -1\n[[devices]]\nkey = "pi"\nbudgets = []\n')
    code, _, err = run(capsys, ws, str(path))
    assert code == 2
    assert "bad.toml:2: [search] methods: 'nas' is not a method; allowed:" in err
    assert "bad.toml:3: [search] train_epochs: must be an integer >= 1, got -1" in err
    assert "bad.toml:6: [[devices]] 'pi' budgets: give at least one budget" in err
    assert not ws.exists()
