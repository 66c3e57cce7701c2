"""SimulatedDevice: the Device protocol over the device model."""
from __future__ import annotations

import hashlib
import inspect
import re
import statistics
from pathlib import Path

import pytest

from hilnas.agent.config import MeasureConfig
from hilnas.agent.device import Device, StoredModel
from hilnas.agent.results import ModelFormat, Status
from hilnas.agent.sim import toy
from hilnas.agent.sim.device import SimulatedDevice, list_profiles
from hilnas.agent.sim.graph import analyse_onnx
from hilnas.agent.sim.profile import PROFILE_DIR

FAST = MeasureConfig(warmup_runs=2, min_runs=20, min_seconds=0.0)


def _store(tmp_path: Path, data: bytes, fmt: ModelFormat = ModelFormat.ONNX) -> StoredModel:
    sha = hashlib.sha256(data).hexdigest()
    path = tmp_path / f"{sha}.bin"
    path.write_bytes(data)
    return StoredModel(sha256=sha, path=path, format=fmt, size_bytes=len(data))


def _profile_file(tmp_path: Path, base: str = "raspi4", **edits: str) -> Path:
    """A copy of a shipped profile with `key = value` lines replaced."""
    text = (PROFILE_DIR / f"{base}.toml").read_text()
    for key, value in edits.items():
        text, n = re.subn(rf"^{key} = [^#\n]*", f"{key} = {value} ", text, count=1, flags=re.M)
        assert n == 1, key
    path = tmp_path / f"{base}-edited.toml"
    path.write_text(text)
    return path


@pytest.fixture
def cnn(tmp_path) -> StoredModel:
    return _store(tmp_path, toy.small_cnn(width=16, hw=32, depth=2))


def test_is_a_device_and_describes_itself():
    dev = SimulatedDevice("raspi4", seed=3)
    for name in ("info", "conditions", "measure", "close"):   # Device is not runtime-checkable
        want = inspect.signature(getattr(Device, name)).parameters
        got = inspect.signature(getattr(SimulatedDevice, name)).parameters
        assert [(p.name, p.kind) for p in got.values()] == [(p.name, p.kind) for p in want.values()]
    info = dev.info()
    assert info.simulated and info.profile == "raspi4" and info.backends == ("simulated",)
    assert info.default_backend == "simulated" and "A72" in info.cpu_model
    assert info.runtime_versions["simulated"].startswith("simulated raspi4 (hilnas ")
    assert info.energy_meters[0].kind == "simulated" and info.energy_meters[0].available
    assert info.fingerprint == SimulatedDevice("raspi4", seed=99).info().fingerprint
    assert info.fingerprint != SimulatedDevice("pixel3").info().fingerprint
    assert "raspi4" in list_profiles()


def test_measure_returns_noisy_samples_around_the_model(cnn):
    dev = SimulatedDevice("raspi4")
    out = dev.measure(cnn, "simulated", FAST, timeout_s=60)
    assert out.status == Status.OK, out.error
    assert len(out.samples_ms) == 20 and all(s > 0 for s in out.samples_ms)
    expected = dev.model.latency_ms(analyse_onnx(cnn.path.read_bytes()))
    assert statistics.median(out.samples_ms) == pytest.approx(expected, rel=0.1)
    assert len(set(out.samples_ms)) > 1                                # noisy
    assert out.runtime_version == dev.info().runtime_versions["simulated"]
    assert out.measure_wall_s == pytest.approx(sum(out.samples_ms) / 1e3, rel=0.5)
    assert out.measure_wall_s > sum(out.samples_ms) / 1e3             # warm-up included
    assert out.energy is None


def test_min_seconds_and_max_runs_set_the_sample_count(cnn):
    dev = SimulatedDevice("host-x86")
    lat = dev.model.latency_ms(analyse_onnx(cnn.path.read_bytes()))
    out = dev.measure(cnn, "simulated", MeasureConfig(warmup_runs=0, min_runs=5, min_seconds=0.05, max_runs=10_000), timeout_s=60)
    assert len(out.samples_ms) >= 50 / lat - 1
    capped = dev.measure(cnn, "simulated", MeasureConfig(min_runs=5, min_seconds=100.0, max_runs=40), timeout_s=600)
    assert len(capped.samples_ms) == 40


def test_seeded_runs_are_reproducible(cnn):
    a = SimulatedDevice("raspi4", seed=1).measure(cnn, "simulated", FAST, timeout_s=60)
    b = SimulatedDevice("raspi4", seed=1).measure(cnn, "simulated", FAST, timeout_s=60)
    c = SimulatedDevice("raspi4", seed=2).measure(cnn, "simulated", FAST, timeout_s=60)
    assert a.samples_ms == b.samples_ms
    assert a.samples_ms != c.samples_ms
    # a second measurement of the same model differs, and is itself reproducible
    dev1, dev2 = SimulatedDevice("raspi4", seed=1), SimulatedDevice("raspi4", seed=1)
    first = [dev1.measure(cnn, "simulated", FAST, timeout_s=60).samples_ms for _ in range(2)]
    again = [dev2.measure(cnn, "simulated", FAST, timeout_s=60).samples_ms for _ in range(2)]
    assert first == again and first[0] != first[1]


def test_bigger_model_costs_more(tmp_path):
    dev = SimulatedDevice("pixel3")
    small = dev.measure(_store(tmp_path, toy.small_cnn(width=8)), "simulated", FAST, timeout_s=60)
    big = dev.measure(_store(tmp_path, toy.small_cnn(width=64)), "simulated", FAST, timeout_s=60)
    assert statistics.median(big.samples_ms) > 3 * statistics.median(small.samples_ms)


def test_timeout_is_a_status_and_nothing_sleeps(cnn):
    dev = SimulatedDevice("raspi4")
    out = dev.measure(cnn, "simulated", MeasureConfig(min_runs=10, min_seconds=30.0), timeout_s=1.0)
    assert out.status == Status.TIMEOUT and "limit" in out.error
    assert out.measure_wall_s == 1.0 and out.samples_ms == ()


@pytest.mark.parametrize("data", [b"", b"definitely not onnx", bytes(range(200))])
def test_bad_bytes_are_invalid_model(tmp_path, data):
    out = SimulatedDevice("raspi4").measure(_store(tmp_path, data), "simulated", FAST, timeout_s=60)
    assert out.status == Status.INVALID_MODEL and out.error


def test_unsupported_inputs_are_typed_statuses(tmp_path, cnn):
    dev = SimulatedDevice("raspi4")
    tflite = dev.measure(_store(tmp_path, b"TFL3 model", ModelFormat.TFLITE), "simulated", FAST, timeout_s=60)
    assert tflite.status == Status.BACKEND_UNAVAILABLE and "ONNX" in tflite.error
    other = dev.measure(cnn, "tflite", FAST, timeout_s=60)
    assert other.status == Status.BACKEND_UNAVAILABLE and "simulated" in other.error
    assert dev.measure(cnn, "onnxruntime", FAST, timeout_s=60).status == Status.OK
    from onnx import helper
    bogus = helper.make_model(helper.make_graph([helper.make_node("Frobnicate", ["x"], ["y"])], "g",
                                                [toy._io("x", (1, 4))], [toy._io("y", (1, 4))]))
    unsupported = dev.measure(_store(tmp_path, bogus.SerializeToString()), "simulated", FAST, timeout_s=60)
    assert unsupported.status == Status.UNSUPPORTED_OP
    gone = StoredModel(sha256="0" * 64, path=tmp_path / "missing.onnx", format=ModelFormat.ONNX, size_bytes=1)
    assert dev.measure(gone, "simulated", FAST, timeout_s=60).status == Status.MODEL_NOT_CACHED


def test_energy_result(cnn):
    dev = SimulatedDevice("raspi4")
    out = dev.measure(cnn, "simulated", MeasureConfig(warmup_runs=1, min_runs=50, min_seconds=0.0, energy=True), timeout_s=60)
    e = out.energy
    assert e is not None and e.meter == "simulated" and e.meter_kind == "simulated"
    assert e.gross_mj > e.net_mj > 0 and e.net_ci95_low_mj <= e.net_mj <= e.net_ci95_high_mj
    assert e.windows >= 2 and e.active_power_mw > e.idle_power_mw > 0
    expected = dev.model.energy_mj(analyse_onnx(cnn.path.read_bytes()))
    assert e.net_mj == pytest.approx(expected, rel=0.15)


def test_energy_counter_wrap_is_corrected_and_flagged(tmp_path, cnn):
    path = _profile_file(tmp_path, "host-x86", counter_wrap_mj="5.0", resolution_mj="0.0")
    dev = SimulatedDevice(path)
    out = dev.measure(cnn, "simulated", MeasureConfig(warmup_runs=0, min_runs=200, min_seconds=0.0, energy=True), timeout_s=60)
    assert "counter_wrapped" in out.energy.flags
    expected = dev.model.energy_mj(analyse_onnx(cnn.path.read_bytes()))
    assert out.energy.net_mj == pytest.approx(expected, rel=0.15)


def test_thermal_throttling(tmp_path, cnn):
    path = _profile_file(tmp_path, enabled="true", throttle_after_s="0.5", throttle_freq_fraction="0.5")
    dev = SimulatedDevice(path)
    cool = dev.conditions()
    assert not cool.throttled and cool.throttled_bits == 0
    cfg = MeasureConfig(warmup_runs=0, min_runs=10, min_seconds=1.0, max_runs=100_000)
    first = dev.measure(cnn, "simulated", cfg, timeout_s=600)
    hot = dev.conditions()
    assert hot.throttled and hot.throttled_bits & 0x4
    assert hot.temperatures_c["cpu-thermal"] > cool.temperatures_c["cpu-thermal"]
    assert max(hot.cpu_freq_khz.values()) < max(cool.cpu_freq_khz.values())
    second = dev.measure(cnn, "simulated", cfg, timeout_s=600)
    assert statistics.median(second.samples_ms) > 1.5 * statistics.median(first.samples_ms[:10])
    # a long cooldown after the measurement lets it recover before the next one
    dev.measure(cnn, "simulated", MeasureConfig(warmup_runs=0, min_runs=5, min_seconds=0.0, cooldown_seconds=3600), timeout_s=600)
    dev.measure(cnn, "simulated", MeasureConfig(warmup_runs=0, min_runs=5, min_seconds=0.0), timeout_s=600)
    assert not dev.conditions().throttled and dev.conditions().throttled_bits & 0x40000   # "has occurred"


def test_thermal_is_off_by_default(cnn):
    dev = SimulatedDevice("raspi4")
    for _ in range(3):
        dev.measure(cnn, "simulated", MeasureConfig(min_runs=10, min_seconds=1.0), timeout_s=600)
    assert not dev.conditions().throttled
