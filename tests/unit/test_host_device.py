"""HostDevice with real runtimes in real worker processes: measurements, unsupported ops, and
recovery after out-of-memory, crashes and hangs."""
import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from hilnas.agent.backends.onnx_builder import build_custom_op_model, build_mlp_model
from hilnas.agent.cache import ModelCache
from hilnas.agent.config import AgentLimits, MeasureConfig
from hilnas.agent.host import HostDevice
from hilnas.agent.results import ModelFormat, Status
from hilnas.agent.validate import check_model

LIMITS = AgentLimits(worker_memory_mb=1024, worker_timeout_s=20.0)
FAST = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=0.0, max_runs=50, threads=1)
ONNX, TFLITE = ModelFormat.ONNX, ModelFormat.TFLITE


from testmodels import hang_model, oom_model  # noqa: E402  (shared with the gRPC tests)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> ModelCache:
    return ModelCache(tmp_path_factory.mktemp("models"), max_bytes=1 << 30)


@pytest.fixture(scope="module")
def store(cache):
    def put(data: bytes, fmt: ModelFormat = ONNX):
        digest = hashlib.sha256(data).hexdigest()
        check_model(data, digest, fmt, LIMITS)  # every model here is one the agent would accept
        return cache.put(digest, data, fmt)
    return put


@pytest.fixture(scope="module")
def device():
    with HostDevice(LIMITS) as dev:
        yield dev


@pytest.fixture(scope="module")
def good(store):
    return store(build_mlp_model(32, (64,), 10))


def assert_measures(device, model, config=FAST, backend=""):
    out = device.measure(model, backend, config, timeout_s=20.0)
    assert out.status == Status.OK, out.error
    assert len(out.samples_ms) >= config.min_runs and min(out.samples_ms) > 0
    assert out.measure_wall_s > 0 and out.energy is None
    return out


def test_measures_onnx(device, good):
    out = assert_measures(device, good)
    assert out.runtime_version.startswith("onnxruntime ")
    assert len(out.samples_ms) <= FAST.max_runs


def test_measures_tflite(device, store):
    tb = pytest.importorskip("hilnas.agent.backends.tflite_builder")
    out = assert_measures(device, store(tb.build_fc_model(64, 32), TFLITE), backend="tflite")
    assert out.runtime_version.startswith(("ai-edge-litert ", "tflite-runtime "))


def test_worker_is_reused_between_requests(device, good):
    assert_measures(device, good)
    pid = device.worker_pid
    assert_measures(device, good)
    assert device.worker_pid == pid and device.last_report.pid == pid


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_threads_and_affinity_are_applied(device, good):
    usable = sorted(os.sched_getaffinity(0))
    cpu = usable[-1]
    assert_measures(device, good, MeasureConfig(warmup_runs=1, min_runs=3, min_seconds=0.0, threads=2,
                                                cpu_affinity=(cpu,)))
    report = device.last_report
    assert report.affinity == (cpu,) and report.threads == 2
    # Every thread of the worker, the runtime's pool included, is pinned.
    tasks = Path(f"/proc/{report.pid}/task")
    for task in tasks.iterdir():
        status = (task / "status").read_text()
        allowed = next(line for line in status.splitlines() if line.startswith("Cpus_allowed_list"))
        assert allowed.split()[-1] == str(cpu)
    # With no affinity asked, the worker is unpinned again.
    assert_measures(device, good, FAST)
    assert device.last_report.affinity == tuple(usable)


def test_config_the_device_cannot_honour(device, good):
    with pytest.raises(ValueError, match="cpu_affinity"):
        device.measure(good, "", MeasureConfig(cpu_affinity=(4096,)), timeout_s=5.0)
    with pytest.raises(ValueError, match="threads"):
        device.measure(good, "", MeasureConfig(threads=-1), timeout_s=5.0)


def test_backend_mismatch_and_unknown_backend(device, good):
    assert device.measure(good, "tflite", FAST, timeout_s=5.0).status == Status.INVALID_MODEL
    assert device.measure(good, "tensorrt", FAST, timeout_s=5.0).status == Status.BACKEND_UNAVAILABLE


def test_unsupported_op(device, store, good):
    out = device.measure(store(build_custom_op_model()), "", FAST, timeout_s=20.0)
    assert out.status == Status.UNSUPPORTED_OP and "HilnasNoSuchOp" in out.error
    tb = pytest.importorskip("hilnas.agent.backends.tflite_builder")
    out = device.measure(store(tb.build_custom_op_model(), TFLITE), "tflite", FAST, timeout_s=20.0)
    assert out.status == Status.UNSUPPORTED_OP and "HilnasNoSuchOp" in out.error
    assert_measures(device, good)


def test_out_of_memory_is_a_crash_and_the_device_recovers(device, store, good):
    out = device.measure(store(oom_model()), "", FAST, timeout_s=20.0)
    assert out.status == Status.CRASHED and "out of memory" in out.error and "1024 MiB" in out.error
    assert_measures(device, good)


def test_hang_is_killed_as_timeout_and_the_device_recovers(device, store, good):
    assert_measures(device, good)
    pid = device.worker_pid
    out = device.measure(store(hang_model()), "", FAST, timeout_s=1.0)
    assert out.status == Status.TIMEOUT and "1 s" in out.error
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the hung worker is gone
    assert_measures(device, good)
    assert device.worker_pid != pid


def test_runtime_crash_is_reported_with_the_signal(device, store, good):
    assert_measures(device, good)
    result = {}
    job = threading.Thread(target=lambda: result.setdefault(
        "out", device.measure(store(hang_model()), "", FAST, timeout_s=30.0)))
    job.start()
    time.sleep(0.5)  # the worker is now inside the runtime's Loop kernel
    os.kill(device.worker_pid, signal.SIGSEGV)  # what a segfaulting kernel looks like from outside
    job.join(timeout=30)
    out = result["out"]
    assert out.status == Status.CRASHED and "SIGSEGV" in out.error
    assert_measures(device, good)


def test_worker_dying_while_idle_is_restarted(device, good):
    assert_measures(device, good)
    pid = device.worker_pid
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert_measures(device, good)
    assert device.worker_pid != pid


def test_info_and_conditions(device):
    info = device.info()
    assert len(info.fingerprint) == 16 and info.fingerprint == HostDevice(LIMITS).info().fingerprint
    assert "onnxruntime" in info.backends and info.runtime_versions["onnxruntime"].startswith("onnxruntime ")
    assert info.cpu_cores >= 1 and info.memory_bytes > 0 and info.cpu_model and info.agent_version
    assert not info.simulated and info.max_model_bytes == LIMITS.max_model_bytes
    cond = device.conditions()
    assert cond.timestamp_s > 0 and cond.load_avg_1m >= 0


def test_close_stops_the_worker(good):
    dev = HostDevice(LIMITS)
    assert_measures(dev, good)
    pid = dev.worker_pid
    dev.close()
    assert dev.worker_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert_measures(dev, good)  # usable again: the worker restarts lazily
    dev.close()
