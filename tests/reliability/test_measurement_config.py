"""Defect 3: a partly filled MeasurementConfig takes the defaults field by field (not 0 warm-ups
and 1 run), explicit zeros keep their meaning, and max_runs caps the run count on the host and on
the simulated device alike."""
from __future__ import annotations

import hashlib
import math

import grpc
import pytest

from loopback import start_agent
from hilnas.agent.config import MeasureConfig
from hilnas.protos.v1 import agent_pb2 as pb, agent_pb2_grpc
from testmodels import mlp

pytestmark = pytest.mark.integration
DEFAULTS = MeasureConfig()
MEASURED = (pb.STATUS_OK, pb.STATUS_UNSTABLE, pb.STATUS_THROTTLED)   # a busy host may spread the default-cv runs


@pytest.fixture(params=["host", "simulated"])
def agent(request, tmp_path):
    running = start_agent(tmp_path, simulate="raspi4" if request.param == "simulated" else None)
    yield running
    running.stop(0)


def bench(running, config: pb.MeasurementConfig, model: bytes | None = None):
    model = model or mlp(8, 1, seed=11)
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        return agent_pb2_grpc.DeviceAgentStub(ch).Benchmark(
            pb.BenchmarkRequest(model=model, sha256=hashlib.sha256(model).hexdigest(), config=config), timeout=60)


def test_partial_config_fills_the_defaults_field_by_field(agent):
    r = bench(agent, pb.MeasurementConfig(threads=1, min_seconds=0.0))
    assert r.status in MEASURED, r.error
    assert r.config.threads == 1
    assert r.config.warmup_runs == DEFAULTS.warmup_runs and r.config.min_runs == DEFAULTS.min_runs
    assert r.config.max_runs == DEFAULTS.max_runs and math.isclose(r.config.cv_threshold, DEFAULTS.cv_threshold)
    assert r.latency.n >= DEFAULTS.min_runs
    unset = bench(agent, pb.MeasurementConfig(threads=1))
    assert math.isclose(unset.config.min_seconds, DEFAULTS.min_seconds)


def test_explicit_zeros_keep_their_meaning(agent):
    r = bench(agent, pb.MeasurementConfig(warmup_runs=0, min_runs=0, min_seconds=0.0, cv_threshold=100.0))
    assert r.status == pb.STATUS_OK, r.error
    assert r.config.warmup_runs == 0 and r.config.min_runs == 1 and r.config.min_seconds == 0
    assert r.latency.n == 1


def test_max_runs_caps_min_runs_and_min_seconds(agent):
    r = bench(agent, pb.MeasurementConfig(warmup_runs=0, min_runs=20, max_runs=5, min_seconds=30.0,
                                          cv_threshold=100.0))
    assert r.status == pb.STATUS_OK, r.error
    assert r.latency.n == 5


@pytest.mark.parametrize("field, value", [("min_seconds", float("nan")), ("min_seconds", float("inf")),
                                          ("timeout_s", -1.0), ("cooldown_seconds", 601.0),
                                          ("cv_threshold", float("nan")), ("energy_windows", 101)])
def test_out_of_range_config_is_refused(agent, field, value):
    with pytest.raises(grpc.RpcError) as err:
        bench(agent, pb.MeasurementConfig(**{field: value}))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in err.value.details()
    assert bench(agent, pb.MeasurementConfig(min_runs=2, min_seconds=0.0, cv_threshold=100.0)).status == pb.STATUS_OK
