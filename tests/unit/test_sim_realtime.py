"""SimulatedDevice(realtime=True): a measurement takes the wall time it reports (plus the cooldown);
the default stays instant."""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from hilnas.agent.config import MeasureConfig
from hilnas.agent.device import StoredModel
from hilnas.agent.results import ModelFormat, Status
from hilnas.agent.sim import toy
from hilnas.agent.sim.device import SimulatedDevice

# ~0.3 s of simulated runs: long enough that sleeping it is unmistakable, short for a unit test.
HALF_SECOND = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=0.3)


def _cnn(tmp_path: Path) -> StoredModel:
    data = toy.small_cnn(width=16, hw=32, depth=2)
    sha = hashlib.sha256(data).hexdigest()
    path = tmp_path / f"{sha}.onnx"
    path.write_bytes(data)
    return StoredModel(sha256=sha, path=path, format=ModelFormat.ONNX, size_bytes=len(data))


def _timed(device: SimulatedDevice, model: StoredModel, config: MeasureConfig, timeout_s: float = 30.0):
    t = time.monotonic()
    outcome = device.measure(model, "simulated", config, timeout_s=timeout_s)
    return outcome, time.monotonic() - t


def test_realtime_takes_the_time_it_reports_and_the_default_does_not(tmp_path):
    model = _cnn(tmp_path)
    instant, instant_s = _timed(SimulatedDevice("raspi4", seed=1), model, HALF_SECOND)
    real, real_s = _timed(SimulatedDevice("raspi4", seed=1, realtime=True), model, HALF_SECOND)
    assert instant.status is Status.OK and real.status is Status.OK
    assert real.measure_wall_s >= 0.3 and real_s >= real.measure_wall_s
    assert instant_s < instant.measure_wall_s   # nothing sleeps by default
    # the same numbers either way: realtime changes when the answer comes, not what it says
    assert real.samples_ms == instant.samples_ms and real.measure_wall_s == instant.measure_wall_s


def test_realtime_sleeps_the_cooldown_after_the_runs(tmp_path):
    model = _cnn(tmp_path)
    config = MeasureConfig(warmup_runs=1, min_runs=2, min_seconds=0.0, cooldown_seconds=0.4)
    outcome, elapsed = _timed(SimulatedDevice("raspi4", realtime=True), model, config)
    assert outcome.measure_wall_s < 0.1 and elapsed >= outcome.measure_wall_s + 0.4


def test_realtime_timeout_holds_the_device_for_the_limit_only(tmp_path):
    model = _cnn(tmp_path)
    long = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=30.0)
    outcome, elapsed = _timed(SimulatedDevice("raspi4", realtime=True), model, long, timeout_s=0.4)
    assert outcome.status is Status.TIMEOUT and outcome.measure_wall_s == 0.4
    assert 0.4 <= elapsed < 10.0


def test_close_ends_a_realtime_measurement(tmp_path):
    model = _cnn(tmp_path)
    device = SimulatedDevice("raspi4", realtime=True)
    device.measure(model, "simulated", HALF_SECOND, timeout_s=30.0)   # analysed: the next call only sleeps
    long = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=60.0)
    done = []
    worker = threading.Thread(target=lambda: done.append(device.measure(model, "simulated", long, timeout_s=120.0)))
    worker.start()
    time.sleep(0.2)
    device.close()
    worker.join(10.0)
    assert not worker.is_alive() and done[0].status is Status.OK   # the agent stopping does not wait a minute


def test_conditions_answer_while_a_realtime_measurement_runs(tmp_path):
    model = _cnn(tmp_path)
    device = SimulatedDevice("raspi4", realtime=True)
    long = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=3.0)
    worker = threading.Thread(target=device.measure, args=(model, "simulated", long), kwargs={"timeout_s": 30.0})
    worker.start()
    time.sleep(0.3)
    t = time.monotonic()
    device.conditions()
    assert time.monotonic() - t < 1.0 and worker.is_alive()
    device.close()
    worker.join(10.0)
