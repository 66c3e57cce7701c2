"""Property-based fuzzing of the agent's request handling over real gRPC (hypothesis): random and
mutated BenchmarkRequest messages, raw bytes in place of a message, mutated model bytes, and
streams of such requests. Every answer is a typed status with its matching gRPC code, one result
per streamed request in order, and the agent answers Describe afterwards.

Examples per property: HILNAS_FUZZ_EXAMPLES (default 50, CI's budget); e.g.
`HILNAS_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest tests/reliability/test_fuzz.py` for a longer
run (docs/reliability.md records one).
"""
from __future__ import annotations

import hashlib
import math
import os

import grpc
import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from loopback import start_agent
from hilnas.agent.config import AgentLimits
from hilnas.agent.servicer import GRPC_CODES
from hilnas.agent.results import Status
from hilnas.protos.v1 import agent_pb2 as pb, agent_pb2_grpc
from testmodels import conv_net, mlp

pytestmark = pytest.mark.integration
EXAMPLES = int(os.environ.get("HILNAS_FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("HILNAS_FUZZ_EXAMPLES"),
                suppress_health_check=list(HealthCheck), database=None)
LIMITS = AgentLimits(worker_memory_mb=1024, worker_timeout_s=3.0, max_model_bytes=1 << 20,
                     max_message_bytes=(1 << 20) + (16 << 20), queue_size=4)
SEEDS = [mlp(8, 1, seed=1), conv_net(channels=4, size=8)]
MEASURED = {pb.STATUS_OK, pb.STATUS_UNSTABLE, pb.STATUS_THROTTLED}


@pytest.fixture(scope="module", params=["simulated", "host"])
def agent(request, tmp_path_factory):
    running = start_agent(tmp_path_factory.mktemp(request.param), limits=LIMITS,
                          simulate="raspi4" if request.param == "simulated" else None)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield request.param, agent_pb2_grpc.DeviceAgentStub(channel), channel
    channel.close()
    running.stop(0)


# -- strategies -------------------------------------------------------------------------------------
def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """A valid model with bytes flipped, cut, inserted or spliced."""
    def mutate(draw_ops):
        out = bytearray(data)
        for kind, pos, value in draw_ops:
            pos %= max(len(out), 1)
            if kind == 0 and out:
                out[pos] = value
            elif kind == 1:
                del out[pos:]
            elif kind == 2:
                out[pos:pos] = bytes([value]) * (value % 7 + 1)
            elif out:
                out[pos:pos + 4] = (value * 0x01010101 & 0xFFFFFFFF).to_bytes(4, "little")
        return bytes(out)
    return st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255)),
                    min_size=1, max_size=6).map(mutate)


models = st.one_of(st.sampled_from(SEEDS), st.sampled_from(SEEDS), st.sampled_from(SEEDS).flatmap(mutated),
                   st.binary(max_size=512), st.just(b""))
hostile_floats = st.one_of(st.floats(0, 0.02), st.sampled_from([-1.0, math.nan, math.inf, -math.inf, 1e300, 1e6]))


SANE = {"warmup_runs": st.integers(0, 2), "min_runs": st.integers(0, 5), "min_seconds": st.floats(0, 0.01),
        "max_runs": st.integers(0, 50), "threads": st.integers(0, 2), "cv_threshold": st.floats(0, 100),
        "no_remeasure": st.booleans(), "timeout_s": st.floats(0, 2)}
HOSTILE = {**SANE, "min_seconds": hostile_floats, "cooldown_seconds": hostile_floats,
           "cv_threshold": st.one_of(st.floats(0, 100), hostile_floats), "timeout_s": st.one_of(st.floats(0, 2), hostile_floats),
           "energy_window_s": hostile_floats, "energy_windows": st.integers(0, 200), "energy_idle_s": hostile_floats,
           "energy": st.booleans()}


@st.composite
def configs(draw):
    """Mostly configs an agent accepts (so models get run), a third hostile in any field."""
    hostile = draw(st.integers(0, 2)) == 0
    fields = {name: draw(strat) for name, strat in (HOSTILE if hostile else SANE).items() if draw(st.booleans())}
    affinity = draw(st.lists(st.integers(0, 1 << 31), max_size=3) if hostile else st.sampled_from([[], [0]]))
    return pb.MeasurementConfig(cpu_affinity=affinity, **fields)


@st.composite
def requests(draw):
    model = draw(models)
    good = hashlib.sha256(model).hexdigest()
    sha = draw(st.text(max_size=70)) if draw(st.integers(0, 9)) == 0 else \
        draw(st.sampled_from([good] * 6 + [good.upper(), "0" * 64, ""]))
    return pb.BenchmarkRequest(
        request_id=draw(st.text(max_size=40)), model=draw(st.sampled_from([model, model, b""])), sha256=sha,
        format=draw(st.sampled_from([0, 0, 0, 1, 1, 1, 2, 1 << 20])),
        backend=draw(st.sampled_from(["", "", "", "", "onnxruntime", "simulated", "tflite", "../../bin/sh", "x" * 300])),
        config=draw(configs()), op_key=draw(st.text(max_size=40)))


# -- properties ---------------------------------------------------------------------------------------
CODES = {Status[name].value: code for name, code in ((s.name, c) for s, c in GRPC_CODES.items())}


def check_unary(stub, request) -> None:
    try:
        reply = stub.Benchmark(request, timeout=30)
    except grpc.RpcError as err:
        status = dict(err.trailing_metadata() or ()).get("hilnas-status")
        assert status, (err.code(), err.details())
        value = pb.Status.Value(f"STATUS_{status}")
        event(f"status {status}")
        assert value not in MEASURED and err.code() == CODES[value], (status, err.code(), err.details())
        assert err.details().startswith(status)
        return
    event(f"status {pb.Status.Name(reply.status).removeprefix('STATUS_')}")
    assert reply.status in MEASURED and reply.latency.n >= 1 and reply.request_id == request.request_id


def still_answers(stub) -> None:
    assert stub.Describe(pb.DescribeRequest(), timeout=10).fingerprint


VALID = pb.BenchmarkRequest(request_id="valid", model=SEEDS[1], sha256=hashlib.sha256(SEEDS[1]).hexdigest(),
                           config=pb.MeasurementConfig(min_runs=2, min_seconds=0.0, cv_threshold=100.0))


@FUZZ
@example(request=VALID)   # the success path runs in every derandomised CI run
@given(request=requests())
def test_fuzzed_benchmark_requests_get_typed_answers(agent, request):
    _, stub, _ = agent
    check_unary(stub, request)
    still_answers(stub)


@FUZZ
@example(reqs=[VALID, pb.BenchmarkRequest(request_id="bad", sha256="x"), VALID])
@given(reqs=st.lists(requests(), min_size=1, max_size=4))
def test_fuzzed_streams_answer_each_request_in_order(agent, reqs):
    _, stub, _ = agent
    replies = list(stub.BenchmarkStream(iter(reqs), timeout=60))
    assert [r.request_id for r in replies] == [r.request_id for r in reqs]
    assert all(r.status != pb.STATUS_UNSPECIFIED for r in replies)
    assert all(r.status not in MEASURED or r.latency.n >= 1 for r in replies)
    still_answers(stub)


@FUZZ
@given(data=st.one_of(st.binary(max_size=256), st.sampled_from(SEEDS).flatmap(mutated)))
def test_raw_bytes_instead_of_a_request(agent, data):
    _, stub, channel = agent
    raw = channel.unary_unary("/hilnas.v1.DeviceAgent/Benchmark", request_serializer=None,
                              response_deserializer=None)
    try:
        raw(data, timeout=30)
    except grpc.RpcError as err:
        # undecodable bytes are gRPC's to refuse (INTERNAL "Exception deserializing request");
        # decodable ones reach the agent and get a typed status
        assert err.code() in set(CODES.values()) | {grpc.StatusCode.INTERNAL}, (err.code(), err.details())
    still_answers(stub)
