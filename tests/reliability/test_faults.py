"""Faults, with real processes on loopback: kill -9 of the agent during a LUT build of three
passes, during a validation and during a search's measurement; kill -9 of the central process
mid-write; a worker that segfaults or is killed. Afterwards the store passes PRAGMA
integrity_check and holds every key exactly once with every pass done, and the agent answers."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from agent_process import AgentProcess, wait_until
from hilnas.agent.config import AgentLimits, MeasureConfig
from hilnas.agent.results import Status
from hilnas.server.client import AgentClient, ClientConfig

pytestmark = pytest.mark.integration
SPACE_OPTS = ["--space", "nb201", "--space-opt", "C=4", "--space-opt", "N=1", "--space-opt", "input_size=8"]
MEASURE = ["--warmup", "1", "--min-runs", "5", "--min-seconds", "0.02"]


def hilnas(ws: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hilnas.server.cli", "--workspace", str(ws), "--retries", "6", *args],
                          capture_output=True, text=True, timeout=timeout)


def hilnas_bg(ws: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hilnas.server.cli", "--workspace", str(ws), "--retries", "6",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def db_rows(ws: Path, sql: str, params=()) -> list:
    """Read the store the way a second process would (WAL: readers never block the writer)."""
    if not (ws / "hilnas.db").exists():
        return []
    conn = sqlite3.connect(f"file:{ws / 'hilnas.db'}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:   # the schema is being created
        return []
    finally:
        conn.close()


def lut_keys() -> list[str]:
    from hilnas.searchers.spaces import create_space
    from hilnas.server.lut.micromodels import MicroModels

    return MicroModels.keys_for_space(create_space("nb201", C=4, N=1, input_size=8))


def assert_store_complete(ws: Path, keys: list[str], passes: int) -> None:
    """Intact, every key exactly once, every pass done."""
    assert db_rows(ws, "PRAGMA integrity_check") == [("ok",)]
    rows = db_rows(ws, "SELECT op_key, count(*), min(passes), max(passes), min(status) FROM lut_rows GROUP BY op_key")
    assert sorted(r[0] for r in rows) == sorted(keys)
    assert all(r[1] == 1 for r in rows), [r for r in rows if r[1] != 1]
    assert all(r[2] == passes == r[3] for r in rows), [r for r in rows if r[2] != passes or r[3] != passes]


@pytest.fixture
def agent(tmp_path):
    running = AgentProcess(tmp_path / "agent").start()
    yield running
    running.stop()


def add_device(ws: Path, agent: AgentProcess) -> None:
    assert hilnas(ws, "devices", "add", "pi", "--address", agent.address).returncode == 0
    assert hilnas(ws, "devices", "describe", "pi").returncode == 0   # the store learns the device


def restart_after(agent: AgentProcess, delay_s: float) -> threading.Thread:
    """systemd's Restart=on-failure: the same agent, on the same port, a moment later."""
    def restart():
        time.sleep(delay_s)
        agent.start()
    t = threading.Thread(target=restart)
    t.start()
    return t


def test_agent_killed_during_a_three_pass_lut_build(tmp_path, agent):
    ws = tmp_path / "ws"
    add_device(ws, agent)
    keys = lut_keys()
    build = hilnas_bg(ws, "lut", "build", "--device", "pi", *SPACE_OPTS, *MEASURE, "--repeats", "3", "--batch", "4",
                      "--quiet", "--json")
    # Kill the agent in the middle of the second pass, while a stream is open.
    def second_pass():
        got = db_rows(ws, "SELECT count(*) FROM lut_rows WHERE passes >= 2")
        return bool(got) and got[0][0] >= 3
    assert wait_until(second_pass, 120)
    agent.kill()
    restarted = restart_after(agent, 0.5)
    out, err = build.communicate(timeout=300)
    restarted.join()
    assert build.returncode == 0, err[-2000:]
    assert_store_complete(ws, keys, passes=3)
    assert hilnas(ws, "devices", "describe", "pi").returncode == 0   # the agent answers


@pytest.mark.parametrize("when", ["first pass", "third pass"])
def test_central_process_killed_mid_write_resumes(tmp_path, agent, when):
    ws = tmp_path / "ws"
    add_device(ws, agent)
    keys = lut_keys()
    build = hilnas_bg(ws, "lut", "build", "--device", "pi", *SPACE_OPTS, *MEASURE, "--repeats", "3", "--batch", "2",
                      "--quiet")
    need = 1 if when == "first pass" else 3

    def reached():
        got = db_rows(ws, "SELECT count(*) FROM lut_rows WHERE passes >= ?", (need,))
        return bool(got) and got[0][0] >= 2
    assert wait_until(reached, 120, every_s=0.005)
    os.kill(build.pid, signal.SIGKILL)            # kill -9 of `hilnas lut build`, between or inside commits
    build.wait(10)
    assert db_rows(ws, "PRAGMA integrity_check") == [("ok",)]
    again = hilnas(ws, "lut", "build", "--device", "pi", *SPACE_OPTS, *MEASURE, "--repeats", "3", "--quiet", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    import json
    report = json.loads(again.stdout)
    assert report["already_present"] + report["resumed"] + report["measured"] == len(keys)
    assert report["resumed"] >= 1          # rows left short by the kill got only their missing passes
    assert_store_complete(ws, keys, passes=3)


def _network(tmp_path: Path) -> Path:
    from hilnas.searchers.genotype import NB201Genotype
    from hilnas.searchers.spaces import create_space
    from hilnas.server import model_meta

    path = tmp_path / "net.onnx"
    path.write_bytes(model_meta.export_network(create_space("nb201", C=4, N=1, input_size=8),
                                               NB201Genotype.from_index(99)))
    return path


def test_agent_killed_during_a_validation(tmp_path, agent):
    ws = tmp_path / "ws"
    add_device(ws, agent)
    model = _network(tmp_path)
    slow = ["--warmup", "1", "--min-runs", "5", "--min-seconds", "3"]
    # 1. the agent comes back (systemd): the client's retry completes the validation, once.
    run = hilnas_bg(ws, "validate", str(model), "--device", "pi", "--json", *slow)
    assert agent.wait_measuring()                  # the model is running on the device now
    agent.kill()
    restarted = restart_after(agent, 0.5)
    out, err = run.communicate(timeout=120)
    restarted.join()
    assert run.returncode == 0, err[-2000:]
    assert db_rows(ws, "SELECT count(*) FROM validations") == [(1,)]
    # 2. the agent stays down: one clear line, nothing half-written; after a restart, one row more.
    run = hilnas_bg(ws, "--retries", "1", "validate", str(model), "--device", "pi", *slow)
    assert agent.wait_measuring()
    agent.kill()
    out, err = run.communicate(timeout=120)
    assert run.returncode != 0 and "hilnas: error:" in err and "Traceback" not in err, err[-2000:]
    assert db_rows(ws, "SELECT count(*) FROM validations") == [(1,)]
    assert db_rows(ws, "PRAGMA integrity_check") == [("ok",)]
    agent.start()
    assert hilnas(ws, "validate", str(model), "--device", "pi", "--min-seconds", "0.05").returncode == 0
    assert db_rows(ws, "SELECT count(*) FROM validations") == [(2,)]
    assert db_rows(ws, "SELECT count(*) FROM validations v JOIN models m ON v.model_id = m.id") == [(2,)]


@pytest.mark.slow
def test_agent_killed_during_a_searchs_measurement(tmp_path, agent, one_torch_thread):
    """A search trains, then measures its network on the device; the agent dies in that
    measurement and comes back: the run finishes with one model and one validation."""
    from hilnas.searchers.data import DatasetConfig
    from hilnas.searchers.result import Budget
    from hilnas.searchers.supernet import SupernetOptions
    from hilnas.server.search.dca import DcaRunConfig, run_dca
    from hilnas.server.store import Store

    ws = tmp_path / "ws"
    add_device(ws, agent)
    assert hilnas(ws, "lut", "build", "--device", "pi", *SPACE_OPTS, "--space-opt", "in_channels=1",
                  "--space-opt", "num_classes=4", *MEASURE, "--quiet").returncode == 0
    client = AgentClient(ClientConfig(agent.address, retries=6, backoff_s=0.5))
    orig = client.benchmark
    killed, killers = [], []

    def benchmark_then_die(*args, **kw):
        if not killers:                 # the search's measurement: kill the agent once it runs the model
            def kill_when_measuring():
                if agent.wait_measuring():
                    agent.kill()
                    killed.append(time.monotonic())
                restart_after(agent, 0.5).join()
            killers.append(threading.Thread(target=kill_when_measuring))
            killers[0].start()
        return orig(*args, **kw)
    client.benchmark = benchmark_then_die
    data = DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=64,
                         synthetic_test=16, batch_size=16, val_fraction=0.5)
    from hilnas.searchers.cost import ParamsCost, extremes
    from hilnas.searchers.spaces import create_space

    # within the space's range: DCA-NAS refuses a budget every network fits (the constraint could not bind)
    dearest = extremes(create_space("nb201", in_channels=1, input_size=8, num_classes=4, C=4, N=1),
                       ParamsCost()).dearest_cost
    cfg = DcaRunConfig(budget=Budget("params_m", 0.9 * dearest), space="nb201",
                       space_overrides={"C": 4, "N": 1},
                       dataset=data, search_epochs=1, train_epochs=1,
                       # max_runs lifted: the default 10 000 runs of this tiny cell end in < 1 s on a fast host
                       measure=MeasureConfig(warmup_runs=1, min_runs=5, min_seconds=3.0, max_runs=10**8),
                       search_options={"options": SupernetOptions(bottleneck=2)}, out_dir=str(tmp_path / "models"))
    with Store.open(ws) as store:
        report = run_dca(store, "pi", [client], cfg)
        killers[0].join(60)
        assert killed and report.measured_latency_ms is not None and report.measured_latency_ms > 0
        assert len(store.validations_df(model_id=report.model_id)) == 1
        assert store.get_run(report.run_id).status == "done"
    client.close()
    assert db_rows(ws, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["segfault", "oom-killer"])
def test_worker_dying_mid_measurement_costs_that_request_only(tmp_path, sig):
    from loopback import client_for, start_agent
    from testmodels import mlp

    running = start_agent(tmp_path, limits=AgentLimits(worker_timeout_s=30))
    device = running.agent.device
    try:
        with client_for(running) as c:
            steady = MeasureConfig(min_runs=2, min_seconds=0.0, cv_threshold=100.0)   # a busy host must not fail it
            assert c.benchmark(mlp(16, 1), config=steady).status is Status.OK
            victim = device.worker_pid

            def kill_worker():
                time.sleep(1.0)
                os.kill(victim, sig)
            threading.Thread(target=kill_worker).start()
            r = c.benchmark(mlp(16, 1, seed=1), config=MeasureConfig(min_runs=2, min_seconds=5.0, max_runs=10 ** 9,
                                                                     cv_threshold=100.0))
            assert r.status is Status.CRASHED and signal.Signals(sig).name in r.error, r.error
            assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
            after = c.benchmark(mlp(16, 1, seed=2), config=steady)
            assert after.status is Status.OK and device.worker_pid != victim
    finally:
        running.stop(0)
