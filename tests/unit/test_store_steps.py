"""Steps of resumable runs, and runs whose process was killed (``interrupted``, never a crash)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hilnas.server.store import Store, StoreError


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "ws") as s:
        yield s


def _run_in_child(workspace: Path, *, sleep: float = 0.0) -> subprocess.Popen:
    """A child process that starts a run and then exits (or sleeps) without finishing it."""
    code = textwrap.dedent(f"""
        import time
        from hilnas.server.store import Store
        s = Store.open({str(workspace)!r})
        print(s.start_run("run", {{"file": "x.toml"}}), flush=True)
        time.sleep({sleep})
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_step_lifecycle(store: Store) -> None:
    run = store.start_run("run")
    store.start_step(run, "lut/pi")
    assert store.get_step(run, "lut/pi").status == "running"
    store.finish_step(run, "lut/pi", result={"measured": 20})
    step = store.get_step(run, "lut/pi")
    assert (step.status, step.result) == ("done", {"measured": 20}) and step.seconds >= 0
    with pytest.raises(StoreError, match="already done"):
        store.start_step(run, "lut/pi")  # a finished step never runs twice

    store.start_step(run, "search/pi")
    store.finish_step(run, "search/pi", status="failed", result={"error": "agent gone"})
    store.start_step(run, "search/pi")  # a failed step runs again, its old error cleared
    assert store.get_step(run, "search/pi").result == {}
    assert [s.key for s in store.steps(run)] == ["lut/pi", "search/pi"]
    assert store.steps_df(run)["result"].iloc[0] == {"measured": 20}

    with pytest.raises(StoreError, match="no step 'nope'"):
        store.finish_step(run, "nope")
    with pytest.raises(ValueError, match="done or failed"):
        store.finish_step(run, "search/pi", status="running")
    with pytest.raises(StoreError, match="unknown run id"):
        store.start_step(run + 1, "x")
    assert store.get_step(run, "nope") is None


def test_killed_run_reads_interrupted_and_runs_lists_it(tmp_path: Path, capsys) -> None:
    ws = tmp_path / "ws"
    child = _run_in_child(ws)
    run_id = int(child.communicate(timeout=60)[0])  # the child exited without finish_run
    with Store.open(ws) as store:
        finished = store.start_run("search-dca")
        store.finish_run(finished, result={"acc": 0.5})
        assert store.get_run(run_id).status == "interrupted"
        frame = store.runs_df()  # used to raise TypeError on the killed run's NULL result
        assert frame["status"].tolist() == ["interrupted", "done"]
        assert frame["result"].tolist() == [None, {"acc": 0.5}]
        live = store.start_run("run")
        assert store.get_run(live).status == "running"  # this process is alive

    from hilnas.server.cli import main

    assert main(["--workspace", str(ws), "runs"]) == 0
    out = capsys.readouterr().out
    assert f"{run_id}  run" in out and "interrupted" in out


def test_resume_takes_over_an_interrupted_run_only(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    child = _run_in_child(ws, sleep=60)
    run_id = int(child.stdout.readline())
    try:
        with Store.open(ws) as store:
            assert store.get_run(run_id).status == "running"
            with pytest.raises(StoreError, match=f"still running \\(PID {child.pid}"):
                store.resume_run(run_id)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
            assert store.get_run(run_id).status == "interrupted"
            run = store.resume_run(run_id)
            assert (run.status, run.pid) == ("running", os.getpid())
    finally:
        if child.poll() is None:
            child.kill()
