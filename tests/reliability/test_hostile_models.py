"""Models that exhaust memory or time at run time, or blow up while being checked: refused or
stopped by the limits, on the host and on the simulated device alike, and the agent serves on."""
from __future__ import annotations

import time

import pytest

import hostile_models as H
from loopback import FAST, client_for, start_agent
from hilnas.agent.config import AgentLimits, MeasureConfig
from hilnas.agent.results import Status

pytestmark = pytest.mark.integration
LIMITS = AgentLimits(worker_memory_mb=1024, worker_timeout_s=10)
CONFIG = MeasureConfig(warmup_runs=1, min_runs=3, min_seconds=0.0, timeout_s=3.0, cv_threshold=100.0)
MEASURED = {Status.OK, Status.UNSTABLE, Status.THROTTLED}

# model -> the status both devices must give
CASES = {
    "constant_of_shape": {Status.CRASHED},      # 16 GB at run time: the worker's memory limit stops it
    "expand": {Status.CRASHED},
    "tile": {Status.CRASHED},
    "range_": {Status.CRASHED},
    "nested_loops": {Status.TIMEOUT},            # 10^45 iterations: the wall-time limit stops it
    "nested_ifs": MEASURED,                      # deep but cheap: measured
    "function_bomb": {Status.INVALID_MODEL},     # 31 functions inlining to 2^30 nodes: refused unrun
    "recursive_function": {Status.INVALID_MODEL},
    "many_nodes": {Status.INVALID_MODEL},        # 100 001 nodes: over max_nodes
    "zero_dim": MEASURED,                        # an empty tensor is valid: measured
    "negative_dim": {Status.INVALID_MODEL},
    "negative_initializer_dim": {Status.INVALID_MODEL},
    "huge_declared_tensor": {Status.INVALID_MODEL},
}


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    host = start_agent(tmp_path_factory.mktemp("host"), limits=LIMITS)
    sim = start_agent(tmp_path_factory.mktemp("sim"), simulate="raspi4", limits=LIMITS)
    yield {"host": host, "simulated": sim}
    host.stop(0)
    sim.stop(0)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_model_is_refused_or_stopped_on_host_and_simulator(agents, name):
    model = getattr(H, name)()
    got = {}
    for kind, running in agents.items():
        with client_for(running) as c:
            start = time.monotonic()
            r = c.benchmark(model, config=CONFIG, upload=True, timeout_s=60)
            took = time.monotonic() - start
            got[kind] = r.status
            assert r.status in CASES[name], (kind, r.status, r.error)
            assert took < CONFIG.timeout_s + 10, (kind, took)   # stopped by the limit, not by luck
            if r.status not in MEASURED:
                assert r.error
            # the agent answers and measures afterwards
            assert c.describe().fingerprint
            after = c.benchmark(H.zero_dim() if name != "zero_dim" else H.negative_dim(), config=FAST, upload=True)
            assert after.status in (MEASURED if name != "zero_dim" else {Status.INVALID_MODEL}), after.error
    assert got["host"] == got["simulated"] or got["host"] in MEASURED and got["simulated"] in MEASURED, got


def test_hostile_constants_do_not_stall_the_simulators_analysis():
    """ONNX data propagation would materialise these in the agent's own process."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from hilnas.agent.sim.graph import analyse_onnx

    w = numpy_helper.from_array(np.ones(1 << 24, np.float32), "w")   # 64 MB: within the model size limit
    graph = helper.make_graph([helper.make_node("Add", ["w", "w"], ["s"]), helper.make_node("Add", ["s", "x"], ["y"])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])], [w])
    weights = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()
    for model in (H.constant_of_shape(), H.range_(), weights):
        start = time.monotonic()
        cost = analyse_onnx(model)
        assert time.monotonic() - start < 3.0
        assert cost.largest_tensor_bytes >= 4 * (1 << 24)
