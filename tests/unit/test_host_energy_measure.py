"""HostDevice measures energy with the energy protocol over a (fake) meter it discovered, after
the latency, driving its worker's ``run_for`` op; a missing meter, a bad protocol config or too
little time are said in the result, never a silent number or a failed latency result."""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from pathlib import Path

import psutil
import pytest
from fixtures.energy_sysfs import cpus, nonroot_reader, rapl_package, thermal_zone

from hilnas.agent.backends.onnx_builder import build_mlp_model
from hilnas.agent.cache import ModelCache
from hilnas.agent.config import AgentLimits, MeasureConfig
from hilnas.agent.core import Agent
from hilnas.agent.energy import energy_valid
from hilnas.agent.energy.base import INVALIDATING_FLAGS
from hilnas.agent.energy.sysfs import CommandNotFound, read_text
from hilnas.agent.host import HostDevice
from hilnas.agent.results import BenchmarkRequest, ModelFormat, Status
from hilnas.agent.validate import check_model
from hilnas.agent.worker import serve

LIMITS = AgentLimits(worker_memory_mb=1024, worker_timeout_s=30.0)
FAST = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=0.0, max_runs=50, threads=1, cv_threshold=5.0)
ENERGY = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=0.0, max_runs=50, threads=1, cv_threshold=5.0,
                       energy=True)
IDLE_W, BUSY_W = 2.0, 6.0


def no_vcgencmd(argv):
    raise CommandNotFound("vcgencmd not found on PATH")


class CpuDrivenRapl:
    """A fake RAPL package counter (µJ) that grows like a real one: ``IDLE_W`` all the time,
    plus ``BUSY_W`` per CPU-second the device's measurement worker spends. Reads of every other
    file go to the fake sysfs tree on disk."""

    def __init__(self, counter: Path):
        self.counter = counter
        self.device: HostDevice | None = None   # set once the device exists
        self.t0 = time.monotonic()
        self.cpu_s: dict[int, float] = {}        # worker pid -> its CPU seconds so far

    def __call__(self, path: Path) -> str:
        if path != self.counter:
            return read_text(path)
        pid = self.device.worker_pid if self.device is not None else None
        if pid is not None:
            try:
                t = psutil.Process(pid).cpu_times()
                self.cpu_s[pid] = max(self.cpu_s.get(pid, 0.0), t.user + t.system)
            except psutil.NoSuchProcess:
                pass
        joules = IDLE_W * (time.monotonic() - self.t0) + BUSY_W * sum(self.cpu_s.values())
        return str(int(joules * 1e6))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    cache = ModelCache(tmp_path_factory.mktemp("models"), max_bytes=1 << 30)

    def put(data: bytes):
        digest = hashlib.sha256(data).hexdigest()
        check_model(data, digest, ModelFormat.ONNX, LIMITS)
        return cache.put(digest, data, ModelFormat.ONNX)
    return put


@pytest.fixture(scope="module")
def model(store):
    return store(build_mlp_model(64, (128,), 10))


@pytest.fixture(scope="module")
def rapl_device(tmp_path_factory):
    root = tmp_path_factory.mktemp("sysfs")
    counter = rapl_package(root, energy_uj=0, subzones=())
    cpus(root, [1_500_000, 1_500_000])
    thermal_zone(root, 0, "x86_pkg_temp", 45000)
    fake = CpuDrivenRapl(counter)
    dev = HostDevice(LIMITS, root=root, runner=no_vcgencmd, reader=fake)
    fake.device = dev
    yield dev
    dev.close()


@pytest.fixture(scope="module")
def locked_root(tmp_path_factory):
    """A laptop whose RAPL counter is root-only (Linux >= 5.10) and nothing else."""
    root = tmp_path_factory.mktemp("locked")
    os.chmod(rapl_package(root, energy_uj=123, subzones=()), 0o400)
    return root


@pytest.fixture(scope="module")
def locked_device(locked_root):
    with HostDevice(LIMITS, root=locked_root, runner=no_vcgencmd, reader=nonroot_reader) as dev:
        yield dev


def test_host_energy_meters_found_once_and_described(rapl_device, locked_device):
    infos = rapl_device.info().energy_meters
    assert [(i.name, i.kind, i.scope, i.available) for i in infos] == [("rapl:package-0", "counter", "package", True)]
    assert rapl_device.meter is rapl_device.meters[0]
    locked = locked_device.info().energy_meters
    assert [(i.name, i.available) for i in locked] == [("rapl:package-0", False), ("none", False)]
    assert "CVE-2020-8694" in locked[0].note and "rapl:package-0" in locked[1].note
    assert locked_device.meter is None


@pytest.mark.slow
def test_host_energy_measured_after_latency(rapl_device, model):
    out = rapl_device.measure(model, "", ENERGY, timeout_s=30.0)
    assert out.status is Status.OK, out.error
    assert len(out.samples_ms) >= ENERGY.min_runs       # the latency result is untouched
    e = out.energy
    assert e is not None and energy_valid(e), e
    assert (e.meter, e.meter_kind, e.windows) == ("rapl:package-0", "counter", 5)
    assert not set(e.flags) & INVALIDATING_FLAGS and not e.estimated and e.note == ""
    assert e.gross_mj > e.net_mj > 0
    assert 0 < e.net_ci95_low_mj <= e.net_mj <= e.net_ci95_high_mj
    # Idle: the worker waits on its pipe, so the counter grows at IDLE_W, plus what little CPU the worker
    # is still charged for (psutil's 10 ms ticks land late on a busy host: 2.12 W was seen in CI), far
    # below the active windows' IDLE_W + up to BUSY_W.
    assert IDLE_W * 1e3 * 0.95 <= e.idle_power_mw <= (IDLE_W + 0.05 * BUSY_W) * 1e3
    # Running: one single-threaded worker adds at most one core's worth of BUSY_W.
    assert 0 < e.active_power_mw - e.idle_power_mw <= BUSY_W * 1e3 * 1.1


def test_host_energy_without_a_usable_meter_says_why(locked_device, model):
    out = locked_device.measure(model, "", ENERGY, timeout_s=30.0)
    assert out.status is Status.OK and len(out.samples_ms) >= ENERGY.min_runs
    e = out.energy
    assert e.meter == "none" and e.flags == ("meter_unavailable",) and not energy_valid(e)
    assert math.isnan(e.net_mj) and math.isnan(e.gross_mj) and e.windows == 0
    assert "CVE-2020-8694" in e.note  # the RAPL permission note, with its fix


def test_host_energy_over_the_time_limit_is_refused_in_the_result(rapl_device, model):
    out = rapl_device.measure(model, "", ENERGY, timeout_s=3.0)   # the protocol needs ~7 s
    assert out.status is Status.OK and out.samples_ms
    assert out.energy.flags == ("over_time_limit",) and math.isnan(out.energy.net_mj)
    assert "raise timeout_s" in out.energy.note


def test_host_energy_no_energy_when_not_asked(rapl_device, model):
    assert rapl_device.measure(model, "", FAST, timeout_s=30.0).energy is None


@pytest.mark.parametrize("bad", [dict(energy_windows=4), dict(energy_window_s=0.5), dict(energy_idle_s=-1.0)])
def test_host_energy_protocol_below_its_minimum_is_a_bad_config(locked_root, tmp_path, model, bad):
    dev = HostDevice(LIMITS, root=locked_root, runner=no_vcgencmd, reader=nonroot_reader)
    config = MeasureConfig(energy=True, **bad)
    with pytest.raises(ValueError, match="energy protocol needs"):
        dev.measure(model, "", config, timeout_s=10.0)
    agent = Agent(dev, ModelCache(tmp_path, max_bytes=1 << 20), LIMITS)
    data = build_mlp_model(8, (8,), 2)
    res = agent.benchmark(BenchmarkRequest(sha256=hashlib.sha256(data).hexdigest(), model=data, config=config))
    assert res.status is Status.INVALID_MODEL and res.error.startswith("bad measurement config:")
    assert dev.worker_pid is None   # refused before any model ran
    agent.close()


def test_host_energy_defaults_are_filled_only_with_energy_on():
    on = MeasureConfig(energy=True).with_defaults(default_timeout_s=60.0)
    assert (on.energy_idle_s, on.energy_window_s, on.energy_windows) == (1.0, 1.0, 5)
    assert MeasureConfig(energy=True, energy_windows=8).energy_protocol() == (1.0, 1.0, 8)
    off = MeasureConfig().with_defaults(default_timeout_s=60.0)
    assert (off.energy_idle_s, off.energy_window_s, off.energy_windows) == (0.0, 0.0, 0)


def test_host_energy_worker_run_for_op(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(build_mlp_model(16, (16,), 4))
    lines = [{"op": "run_for", "id": 1, "seconds": 0.01},      # nothing loaded yet
             {"id": 2, "path": str(path), "format": "ONNX", "backend": "onnxruntime", "threads": 1,
              "warmup_runs": 1, "min_runs": 2, "min_seconds": 0.0, "max_runs": 5},
             {"op": "run_for", "id": 3, "seconds": 0.05},
             {"op": "run_for", "id": 4, "seconds": 0.0}]
    out = io.StringIO()
    assert serve(io.BytesIO(b"".join(json.dumps(x).encode() + b"\n" for x in lines)), out) == 0
    ready, none, timed, ran, once = (json.loads(x) for x in out.getvalue().splitlines())
    assert ready["ready"] and timed["status"] == "OK"
    assert none["id"] == 1 and none["status"] == "CRASHED" and "no model is loaded" in none["error"]
    assert ran["id"] == 3 and ran["status"] == "OK" and ran["runs"] >= 1 and ran["elapsed_s"] >= 0.05
    assert once["runs"] == 1   # at least one run, however short the window
