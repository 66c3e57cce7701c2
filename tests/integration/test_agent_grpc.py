"""The agent over a real gRPC channel on loopback: measurement, cache, health, reflection, limits."""
from __future__ import annotations

import threading
import time

import grpc
import pytest

from loopback import FAST, client_for, start_agent
from hilnas.agent.config import AgentLimits, MeasureConfig
from hilnas.agent.results import ModelFormat, Status
from hilnas.protos.v1 import agent_pb2, agent_pb2_grpc
from testmodels import conv_net, custom_op_model, hang_model, mlp, oom_model, sha

pytestmark = pytest.mark.integration


def assert_still_serves(running):
    """After any bad input the agent must still measure a valid model."""
    with client_for(running) as c:
        r = c.benchmark(mlp(32, 1, seed=99), config=FAST, upload=True)
        assert r.status is Status.OK, r.error
        assert r.latency.median_ms > 0


def test_host_agent_measures_an_onnx_model(host_agent):
    with client_for(host_agent) as c:
        info = c.describe()
        assert "onnxruntime" in info.backends and not info.simulated
        assert len(info.fingerprint) == 16
        r = c.benchmark(conv_net(), config=FAST)
    assert r.status is Status.OK, r.error
    assert r.latency.n == len(r.samples_ms) >= FAST.min_runs
    assert r.latency.ci95_low_ms <= r.latency.median_ms <= r.latency.ci95_high_ms
    assert r.runtime_version.startswith("onnxruntime")
    assert r.device_fingerprint == info.fingerprint
    assert r.config.min_runs == FAST.min_runs
    assert r.conditions_before is not None and r.conditions_after is not None
    assert 0 < r.measure_wall_s <= r.total_wall_s


def test_simulated_agent_measures_and_is_marked(sim_agent):
    with client_for(sim_agent) as c:
        info = c.describe()
        assert info.simulated and info.profile == "raspi4" and info.backends == ("simulated",)
        r = c.benchmark(conv_net(), config=FAST)
    assert r.status is Status.OK, r.error
    assert r.simulated and r.latency.median_ms > 0


def test_cached_model_needs_no_upload(host_agent):
    model = mlp(48, 2, seed=3)
    with client_for(host_agent) as c:
        miss = c.benchmark(model, config=FAST, upload=False)
        assert miss.status is Status.MODEL_NOT_CACHED
        first = c.benchmark(model, config=FAST)  # offers the hash, then uploads
        assert first.status is Status.OK
        again = c.benchmark(model, config=FAST, upload=False)  # hash only
        assert again.status is Status.OK and again.sha256 == sha(model)


def test_stream_reports_failures_in_band_and_goes_on(host_agent):
    from hilnas.agent.results import BenchmarkRequest

    good, bad = mlp(16, 1), b"not a model at all"
    reqs = [BenchmarkRequest(sha256=sha(good), model=good, config=FAST, op_key="a"),
            BenchmarkRequest(sha256=sha(bad), model=bad, config=FAST, op_key="b"),
            BenchmarkRequest(sha256=sha(good), model=b"", config=FAST, op_key="c")]
    with client_for(host_agent) as c:
        results = list(c.benchmark_stream(reqs))
    assert [r.op_key for r in results] == ["a", "b", "c"]
    assert [r.status for r in results] == [Status.OK, Status.INVALID_MODEL, Status.OK]


def test_health_and_reflection(host_agent):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{host_agent.port}") as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="hilnas.v1.DeviceAgent"),
                                                    timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert "hilnas.v1.DeviceAgent" in names


def test_model_larger_than_grpc_default_4mb_is_accepted(host_agent):
    model = mlp(1100, 1)  # ~4.8 MB of weights
    assert len(model) > 4 * 1024 * 1024
    with client_for(host_agent) as c:
        r = c.benchmark(model, config=FAST)
    assert r.status is Status.OK, r.error


def test_tflite_model_measured_over_grpc(host_agent):
    from hilnas.agent.backends.tflite_builder import build_fc_model

    model = build_fc_model(32, 16, seed=0)
    with client_for(host_agent) as c:
        assert "tflite" in c.describe().backends
        r = c.benchmark(model, format=ModelFormat.TFLITE, backend="tflite", config=FAST)
    assert r.status is Status.OK, r.error
    assert r.backend == "tflite" and r.latency.median_ms > 0


# -- bad input: a clear status, and the agent keeps serving -------------------------------------
def _raw_benchmark(running, request, timeout=30, metadata=()):
    with grpc.insecure_channel(f"127.0.0.1:{running.port}",
                               options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        stub = agent_pb2_grpc.DeviceAgentStub(ch)
        return stub.Benchmark.with_call(request, timeout=timeout, metadata=metadata)


@pytest.mark.parametrize("payload, status, code", [
    (b"\x08\x01garbage-not-onnx" * 10, Status.INVALID_MODEL, grpc.StatusCode.INVALID_ARGUMENT),
    (mlp(32, 2)[:200], Status.INVALID_MODEL, grpc.StatusCode.INVALID_ARGUMENT),  # truncated
])
def test_garbage_and_truncated_models(host_agent, payload, status, code):
    with pytest.raises(grpc.RpcError) as err:
        _raw_benchmark(host_agent, agent_pb2.BenchmarkRequest(model=payload, sha256=sha(payload)))
    assert err.value.code() == code
    assert dict(err.value.trailing_metadata())["hilnas-status"] == status.name
    assert_still_serves(host_agent)


def test_hash_mismatch(host_agent):
    model = mlp(16, 1)
    with pytest.raises(grpc.RpcError) as err:
        _raw_benchmark(host_agent, agent_pb2.BenchmarkRequest(model=model, sha256="0" * 64))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "HASH_MISMATCH" in err.value.details()
    assert_still_serves(host_agent)


def test_oversized_model(tmp_path):
    running = start_agent(tmp_path, limits=AgentLimits(max_model_bytes=50_000, max_message_bytes=2 << 20,
                                                       worker_timeout_s=20))
    try:
        model = mlp(256, 1)
        assert len(model) > 50_000
        with client_for(running) as c:
            r = c.benchmark(model, config=FAST, upload=True)
        assert r.status is Status.MODEL_TOO_LARGE and "at most 50000" in r.error
        assert_still_serves(running)
    finally:
        running.stop(0)


def test_unsupported_operator(host_agent):
    model = custom_op_model()
    with client_for(host_agent) as c:
        r = c.benchmark(model, config=FAST)
    assert r.status is Status.UNSUPPORTED_OP, (r.status, r.error)
    assert "Frobnicate" in r.error
    assert_still_serves(host_agent)


def test_expired_deadline(host_agent):
    slow = MeasureConfig(warmup_runs=1, min_runs=5, min_seconds=5.0, max_runs=10**8)
    with client_for(host_agent) as c:
        start = time.monotonic()
        r = c.benchmark(mlp(64, 2), config=slow, timeout_s=1.0)
        elapsed = time.monotonic() - start
    assert r.status is Status.TIMEOUT
    assert elapsed < 4.0  # the agent gave up at the client's deadline, not after min_seconds
    assert_still_serves(host_agent)


def test_full_queue_is_refused_with_resource_exhausted(tmp_path):
    running = start_agent(tmp_path, limits=AgentLimits(queue_size=1, worker_timeout_s=20))
    try:
        slow = MeasureConfig(warmup_runs=1, min_runs=3, min_seconds=1.5, max_runs=10**8, cv_threshold=5.0)
        model = mlp(32, 1, seed=5)
        with client_for(running) as c:
            assert c.benchmark(model, config=FAST).status is Status.OK  # cache it
            results = []
            threads = [threading.Thread(target=lambda: results.append(c.benchmark(model, config=slow, upload=False)))
                       for _ in range(2)]
            for t in threads:
                t.start()
                time.sleep(0.3)  # first one measuring, second one queued
            third = c.benchmark(model, config=FAST, upload=False)
            for t in threads:
                t.join(20)
        assert third.status is Status.BUSY and "queue full" in third.error
        assert sorted(r.status.name for r in results) == ["OK", "OK"]
        assert_still_serves(running)
    finally:
        running.stop(0)


def test_model_that_hangs_the_runtime_times_out(host_agent):
    with client_for(host_agent) as c:
        start = time.monotonic()
        r = c.benchmark(hang_model(), config=MeasureConfig(warmup_runs=0, min_runs=1, timeout_s=1.0))
        assert r.status is Status.TIMEOUT and "wall-time limit" in r.error
        assert time.monotonic() - start < 15
    assert_still_serves(host_agent)


def test_model_that_crashes_the_runtime_costs_only_that_request(tmp_path):
    running = start_agent(tmp_path, limits=AgentLimits(worker_memory_mb=1024, worker_timeout_s=20))
    try:
        with client_for(running) as c:
            r = c.benchmark(oom_model(), config=FAST)
        assert r.status is Status.CRASHED and "out of memory" in r.error
        assert_still_serves(running)
    finally:
        running.stop(0)
