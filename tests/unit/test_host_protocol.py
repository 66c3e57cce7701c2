"""The pieces under HostDevice: the timing loop, error classification, the worker's JSON
channel, the device fingerprint and the test-model builders."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from hilnas.agent import fingerprint as fp
from hilnas.agent.backends import classify_error, available_backends, get_backend
from hilnas.agent.protocol import TimingPlan, time_runs
from hilnas.agent.results import Status


class Counter:
    def __init__(self, sleep_s: float = 0.0):
        self.calls, self.sleep_s = 0, sleep_s

    def __call__(self):
        self.calls += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)


def test_min_runs_and_warmup():
    run = Counter()
    t = time_runs(run, TimingPlan(warmup_runs=3, min_runs=7, min_seconds=0.0))
    assert (len(t.samples_ms), t.warmup_runs, run.calls, t.stopped) == (7, 3, 10, "done")
    assert all(s >= 0 for s in t.samples_ms) and t.measure_wall_s >= sum(t.samples_ms) / 1e3


def test_min_seconds_extends_the_runs():
    t = time_runs(Counter(0.002), TimingPlan(warmup_runs=0, min_runs=1, min_seconds=0.05))
    assert t.stopped == "done" and len(t.samples_ms) > 1
    assert t.measure_wall_s >= 0.05


def test_max_runs_caps():
    t = time_runs(Counter(), TimingPlan(warmup_runs=0, min_runs=100, min_seconds=10.0, max_runs=12))
    assert (len(t.samples_ms), t.stopped) == (12, "max_runs")


def test_budget_stops_before_minimums():
    t = time_runs(Counter(0.01), TimingPlan(warmup_runs=0, min_runs=10_000, min_seconds=60.0, budget_s=0.05))
    assert t.stopped == "budget" and 1 <= len(t.samples_ms) < 10_000
    t = time_runs(Counter(), TimingPlan(warmup_runs=5, min_runs=5, budget_s=0.0))
    assert (t.samples_ms, t.warmup_runs, t.stopped) == ((), 0, "budget")


def test_at_least_one_run_and_cooldown():
    slept = []
    t = time_runs(Counter(), TimingPlan(warmup_runs=0, min_runs=0, min_seconds=0.0, cooldown_seconds=2.5),
                  sleep=slept.append)
    assert len(t.samples_ms) == 1 and slept == [2.5]


@pytest.mark.parametrize("message,loading,status", [
    ("Fatal error: ai.x:Foo(-1) is not a registered function/op", True, Status.UNSUPPORTED_OP),
    ("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for Foo(1)", True, Status.UNSUPPORTED_OP),
    ("Encountered unresolved custom op: HilnasNoSuchOp.", True, Status.UNSUPPORTED_OP),
    ("Didn't find op for builtin opcode 'CONV_2D' version '99'", True, Status.UNSUPPORTED_OP),
    ("Unsupported model IR version: 14, max supported IR version: 13", True, Status.INVALID_MODEL),
    ("Type Error: Type parameter (T) of Optype (Gemm) bound to different types", True, Status.INVALID_MODEL),
    ("Failed to allocate memory for requested buffer of size 1600000000", False, Status.CRASHED),
    ("std::bad_alloc", True, Status.CRASHED),
    ("Non-zero status code returned while running Reshape node", False, Status.INVALID_MODEL),
])
def test_classify_error(message, loading, status):
    assert classify_error(RuntimeError(message), loading=loading) == status


def test_memory_error_is_a_crash():
    assert classify_error(MemoryError(), loading=False) == Status.CRASHED


def test_worker_channel_survives_stdout_noise():
    # Whatever the process prints to stdout after protection lands on stderr.
    code = ("import os, json; from hilnas.agent.worker import _protect_stdout\n"
            "ch = _protect_stdout()\n"
            "print('python noise'); os.write(1, b'native noise\\n')\n"
            "ch.write(json.dumps({'ok': 1}) + '\\n')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == [{"ok": 1}]
    assert b"python noise" in out.stderr and b"native noise" in out.stderr


def test_worker_serves_json_lines_and_exits(tmp_path):
    from hilnas.agent.backends.onnx_builder import build_mlp_model

    model = tmp_path / "m.onnx"
    model.write_bytes(build_mlp_model(8, (8,), 2))
    req = {"id": 7, "path": str(model), "format": "ONNX", "backend": "onnxruntime", "threads": 1,
           "cpu_affinity": [], "warmup_runs": 1, "min_runs": 3, "min_seconds": 0.0, "max_runs": 0,
           "cooldown_seconds": 0.0, "budget_s": 30.0}
    missing = {**req, "id": 8, "path": str(tmp_path / "missing.onnx")}
    lines = "\n".join(json.dumps(r) for r in (req, missing, {"op": "exit"})) + "\n"
    out = subprocess.run([sys.executable, "-m", "hilnas.agent.worker", "--memory-mb", "4096"],
                         input=lines.encode(), capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ready, ok, bad = [json.loads(line) for line in out.stdout.splitlines()]
    assert ready["ready"] is True
    assert (ok["id"], ok["status"], len(ok["samples_ms"]), ok["threads"]) == (7, "OK", 3, 1)
    assert ok["runtime_version"].startswith("onnxruntime ")
    assert (bad["id"], bad["status"]) == (8, "INVALID_MODEL") and "missing" in bad["error"]


X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 49\nmodel name\t: AMD EPYC 7B12\n"
PI4 = ("processor\t: 0\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nHardware\t: BCM2711\n"
       "Revision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
ANDROID = "Processor\t: AArch64 Processor rev 13 (aarch64)\nprocessor\t: 0\nHardware\t: Qualcomm Technologies, Inc SDM845\n"


def test_cpu_model_from_cpuinfo():
    assert fp.cpu_model(X86) == "AMD EPYC 7B12"
    assert fp.cpu_model(PI4) == "Raspberry Pi 4 Model B Rev 1.4"
    assert fp.cpu_model(ANDROID) == "Qualcomm Technologies, Inc SDM845"
    assert fp.cpu_model("processor\t: 0\n")  # falls back to something non-empty


def test_fingerprint_covers_stable_fields_only():
    base = dict(cpu_model="AMD EPYC", cpu_cores=2, memory_bytes=4 << 30, os_family="Linux x86_64",
                runtime_versions={"onnxruntime": "onnxruntime 1.31.1"})
    f = fp.fingerprint(**base)
    assert len(f) == 16 and int(f, 16) >= 0
    assert fp.fingerprint(**{**base, "memory_bytes": (4 << 30) - (20 << 20)}) == f  # MemTotal jitter
    for change in [{"cpu_cores": 4}, {"cpu_model": "Raspberry Pi 4"}, {"os_family": "Linux aarch64"},
                   {"runtime_versions": {"onnxruntime": "onnxruntime 1.32.0"}}]:
        assert fp.fingerprint(**{**base, **change}) != f


def test_describe_host_does_not_import_runtimes():
    code = ("import sys; from hilnas.agent.fingerprint import describe_host\n"
            "info = describe_host()\n"
            "assert 'onnxruntime' in info.backends, info\n"
            "heavy = [m for m in ('onnxruntime', 'ai_edge_litert', 'tflite_runtime', 'onnx', 'torch') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "print(info.fingerprint)\n")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout  # stable across processes


def test_backends_registry():
    assert "onnxruntime" in available_backends()
    with pytest.raises(KeyError):
        get_backend("nope")


def test_tflite_builder_output_matches_numpy():
    tb = pytest.importorskip("hilnas.agent.backends.tflite_builder")
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tb.build_fc_model(8, 4, seed=5))
    interp.allocate_tensors()
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    y = interp.get_tensor(interp.get_output_details()[0]["index"])
    rng = np.random.default_rng(5)
    w, b = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    np.testing.assert_allclose(y, np.maximum(x @ w.T + b, 0), rtol=1e-5, atol=1e-5)


def test_onnx_builder_output_matches_numpy():
    import onnxruntime as ort

    from hilnas.agent.backends.onnx_builder import build_mlp_model

    sess = ort.InferenceSession(build_mlp_model(6, (5,), 3, seed=2, batch=2), providers=["CPUExecutionProvider"])
    x = np.ones((2, 6), np.float32)
    (y,) = sess.run(None, {"x": x})
    rng = np.random.default_rng(2)
    w0 = (rng.standard_normal((5, 6)) / np.sqrt(6)).astype(np.float32)
    w1 = (rng.standard_normal((3, 5)) / np.sqrt(5)).astype(np.float32)
    np.testing.assert_allclose(y, np.maximum(x @ w0.T, 0) @ w1.T, rtol=1e-5, atol=1e-5)
