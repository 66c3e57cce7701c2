"""Defect 7: one bad sha256 gets one status, HASH_MISMATCH, on every path."""
from __future__ import annotations

import grpc
import pytest

from hilnas.agent.cache import ModelCache
from hilnas.agent.config import AgentLimits
from hilnas.agent.device import AgentError
from hilnas.agent.results import ModelFormat, Status
from hilnas.agent.validate import check_model
from hilnas.protos.v1 import agent_pb2 as pb, agent_pb2_grpc
from testmodels import mlp, sha

pytestmark = pytest.mark.integration
MODEL = mlp(8, 1, seed=5)
BAD = ["", "abc", sha(MODEL).upper(), sha(MODEL) + "0", "g" * 64, " " + sha(MODEL)[1:], "0" * 64]
CONFIG = pb.MeasurementConfig(warmup_runs=0, min_runs=1, min_seconds=0.0, cv_threshold=100.0)


@pytest.mark.parametrize("digest", BAD)
def test_bad_sha256_is_hash_mismatch_on_every_path(sim_agent, tmp_path, digest):
    statuses = {}
    # "0"*64 is well formed, only not this model's: hash-only it is a plain cache miss.
    models = (MODEL,) if digest == "0" * 64 else (MODEL, b"")
    with grpc.insecure_channel(f"127.0.0.1:{sim_agent.port}") as ch:
        stub = agent_pb2_grpc.DeviceAgentStub(ch)
        for name, model in zip(("unary", "unary hash-only"), models):
            with pytest.raises(grpc.RpcError) as err:
                stub.Benchmark(pb.BenchmarkRequest(model=model, sha256=digest, config=CONFIG), timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            statuses[name] = dict(err.value.trailing_metadata())["hilnas-status"]
        for name, model in zip(("stream", "stream hash-only"), models):
            [reply] = stub.BenchmarkStream(iter([pb.BenchmarkRequest(model=model, sha256=digest, config=CONFIG)]),
                                           timeout=30)
            statuses[name] = pb.Status.Name(reply.status).removeprefix("STATUS_")
    for name, call in (("check_model", lambda: check_model(MODEL, digest, ModelFormat.ONNX, AgentLimits())),
                       ("cache", lambda: ModelCache(tmp_path / "c", 1 << 20).put(digest, MODEL, ModelFormat.ONNX))):
        with pytest.raises(AgentError) as err:
            call()
        statuses[name] = err.value.status.name
    assert set(statuses.values()) == {Status.HASH_MISMATCH.name}, statuses
