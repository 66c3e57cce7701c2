"""``hilnas sweep`` end to end: cells in a process pool and on a local Ray bound to 127.0.0.1, a Ray
worker killed mid-cell, resuming, and the bad inputs of issue 15 (a Ray address that does not
answer, two sweeps on one workspace). Every cell is a real search on a simulated board (the
shipped examples/sweeps/ci.toml, smoke-sized), recorded by the head only."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from hilnas.server.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sweeps" / "ci.toml"


def _sweep_file(tmp_path: Path, *, budgets=('"latency_ms=40%"', '"latency_ms=70%"'), methods='"dca", "random"',
                extra: str = "") -> Path:
    text = EXAMPLE.read_text()
    text = text.replace('budgets = ["latency_ms=40%", "latency_ms=70%"]', f"budgets = [{', '.join(budgets)}]")
    text = text.replace('methods = ["dca", "random"]', f"methods = [{methods}]")
    path = tmp_path / "sweep.toml"
    path.write_text(text + extra)
    return path


def _sweep(capfd, ws: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--workspace", str(ws), "sweep", *argv])
    out, err = capfd.readouterr()
    return code, out, err


def _db(ws: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{ws / 'hilnas.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    return db


def _check_recorded_once(ws: Path, cells: int) -> list[sqlite3.Row]:
    """Every cell: one run under the sweep, done, with its steps, one model and one validation,
    its ONNX file in the head's workspace; the LUT once; the store intact."""
    import json

    db = _db(ws)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (sweep_id,) = [r["id"] for r in db.execute("SELECT id FROM runs WHERE kind = 'sweep'")]
        children = db.execute("SELECT * FROM runs WHERE parent_id = ? ORDER BY id", (sweep_id,)).fetchall()
        keys = [json.loads(r["config"])["cell"] for r in children]
        assert len(children) == cells and Counter(keys).most_common(1)[0][1] == 1, keys
        assert all(r["status"] == "done" for r in children)
        for r in children:
            steps = {s["key"]: s for s in db.execute("SELECT * FROM steps WHERE run_id = ?", (r["id"],))}
            assert steps and {s["status"] for s in steps.values()} == {"done"}
            (validate,) = [json.loads(s["result"]) for k, s in steps.items() if k.endswith("/validate")]
            # the worker's ids and paths, mapped to the head's
            onnx = Path(validate["onnx_path"])
            assert onnx.is_file() and onnx.is_relative_to(ws.resolve() / "runs" / str(r["id"]))
            models = db.execute("SELECT * FROM models WHERE run_id = ?", (r["id"],)).fetchall()
            assert [m["id"] for m in models] == [validate["model_id"]] and models[0]["name"].startswith(f"run{r['id']}/")
            assert [v["id"] for v in db.execute("SELECT id FROM validations WHERE model_id = ?",
                                                 (models[0]["id"],))] == [validate["validation_id"]]
        lut = db.execute("SELECT op_key, count(*) AS n FROM lut_rows GROUP BY fingerprint, config_hash, op_key").fetchall()
        assert lut and all(row["n"] == 1 for row in lut)
        return children
    finally:
        db.close()


def test_a_sweep_in_the_local_pool_records_each_cell_once_and_resumes(tmp_path, capfd):
    sweep = _sweep_file(tmp_path, methods='"dca"')          # 2 cells: one method x 2 budgets
    ws = tmp_path / "ws"
    code, out, err = _sweep(capfd, ws, str(sweep), "--workers", "2")
    assert code == 0, out + err
    _check_recorded_once(ws, cells=2)
    assert "2 cell(s) run now, 0 done before" in out and "report:" in out
    assert "[raspi4-sim/dca/latency_ms=40%/seed0]" in err          # each cell's own progress
    assert "[2/2] raspi4-sim/dca/" in err                           # and the sweep's
    report = ws / "sweeps" / "1" / "report"
    assert (report / "pareto-raspi4-sim.png").stat().st_size > 0
    assert "pareto-raspi4-sim.png" in (report / "report.html").read_text() or "data:image/png" in (report / "report.html").read_text()
    # resumed: nothing run again, nothing recorded twice
    code, out, _ = _sweep(capfd, ws, str(sweep))
    assert code == 0 and "0 cell(s) run now, 2 done before" in out
    _check_recorded_once(ws, cells=2)


def _loopback_only(pids: set[int]) -> list[str]:
    """Addresses other than loopback that any of ``pids`` listens on."""
    bad = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.pid in pids and conn.status == psutil.CONN_LISTEN and conn.laddr.ip not in ("127.0.0.1", "::ffff:127.0.0.1", "::1"):
            bad.append(f"{conn.pid}:{conn.laddr.ip}:{conn.laddr.port}")
    return bad


def _ray_processes() -> set[int]:
    me = psutil.Process()
    return {p.pid for p in me.children(recursive=True)}


def test_ci_sweep_on_a_local_ray_bound_to_loopback(tmp_path, capfd):
    """The CI sweep: 2 methods x 2 budgets on a simulated Pi, as Ray tasks on a local Ray."""
    ws = tmp_path / "ws"
    seen_bad: list[str] = []
    stop = threading.Event()

    def watch():   # while the sweep runs, nothing of Ray may listen beyond loopback
        while not stop.is_set():
            seen_bad.extend(_loopback_only(_ray_processes()))
            stop.wait(2.0)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        code, out, err = _sweep(capfd, ws, str(EXAMPLE), "--on", "ray")
    finally:
        stop.set()
        watcher.join(10)
    assert code == 0, out + err[-3000:]
    assert "a local Ray on 127.0.0.1" in out and "4 cell(s) run now" in out
    assert not seen_bad, seen_bad
    _check_recorded_once(ws, cells=4)


def test_a_ray_worker_killed_mid_cell_is_retried_and_recorded_once(tmp_path, capfd):
    sweep = _sweep_file(tmp_path, methods='"dca"')           # 2 cells, both running at once
    ws = tmp_path / "ws"
    killed: list[int] = []

    def kill_one_cell():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            for p in psutil.Process().children(recursive=True):   # this test's own Ray only
                try:
                    running_a_cell = (p.cmdline() or [""])[0].startswith("ray::sweep_cell")
                except psutil.Error:
                    continue
                if running_a_cell:
                    time.sleep(3.0)   # mid-cell: its LUT, search or training is under way
                    try:
                        os.kill(p.pid, signal.SIGKILL)
                        killed.append(p.pid)
                    except ProcessLookupError:
                        continue
                    break
            time.sleep(0.2)
    killer = threading.Thread(target=kill_one_cell, daemon=True)
    killer.start()
    code, out, err = _sweep(capfd, ws, str(sweep), "--on", "ray")
    killer.join(10)
    assert killed, "no Ray worker was seen running a cell"
    assert code == 0, out + err[-3000:]
    children = _check_recorded_once(ws, cells=2)
    import json

    pids = {json.loads(r["config"])["worker"]["pid"] for r in children}
    assert killed[0] not in pids       # the killed cell was finished by another worker


def test_a_ray_address_that_does_not_answer_fails_fast_and_starts_nothing(tmp_path, capfd):
    with socket.socket() as s:          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sweep = _sweep_file(tmp_path, extra="connect_timeout_s = 2\n")
    ws = tmp_path / "ws"
    t = time.monotonic()
    code, out, err = _sweep(capfd, ws, str(sweep), "--on", "ray", "--address", f"127.0.0.1:{port}")
    assert code == 2 and time.monotonic() - t < 30
    assert f"the Ray cluster at 127.0.0.1:{port} does not answer" in err and "nothing was started" in err
    assert "ray start --head" in err and len(err.strip().splitlines()) == 1
    assert not (ws / "hilnas.db").exists() or _db(ws).execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_a_second_sweep_on_a_busy_workspace_is_refused(tmp_path, capfd):
    from hilnas.server.run import workspace_lock

    sweep = _sweep_file(tmp_path)
    ws = tmp_path / "ws"
    with workspace_lock(ws, f"hilnas --workspace {ws} sweep first.toml"):
        code, out, err = _sweep(capfd, ws, str(sweep))
    assert code == 2 and "is busy" in err and f"PID {os.getpid()}" in err and "first.toml" in err
    assert not (ws / "hilnas.db").exists()     # the refused sweep touched nothing


def test_a_bad_sweep_file_lists_every_problem(tmp_path, capfd):
    sweep = _sweep_file(tmp_path, extra='on = "slurm"\n[[cells]]\ndevice = "nope"\nmethod = "dca"\nbudget = "latency_ms=1"\n')
    code, _, err = _sweep(capfd, tmp_path / "ws", str(sweep))
    assert code == 2 and "2 problem(s) in the sweep file" in err
    assert "[sweep] on: 'slurm' is not allowed" in err and "'nope' is not a [[devices]] key" in err
