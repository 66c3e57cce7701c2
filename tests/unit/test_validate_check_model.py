"""check_model: every refusal has its typed status; real models pass."""
import hashlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hilnas.agent.backends.onnx_builder import build_custom_op_model, build_mlp_model
from hilnas.agent.config import AgentLimits
from hilnas.agent.device import AgentError
from hilnas.agent.results import ModelFormat, Status
from hilnas.agent.validate import check_model, is_sha256, tflite_summary

tflite_builder = pytest.importorskip("hilnas.agent.backends.tflite_builder")
LIMITS = AgentLimits()
ONNX, TFLITE = ModelFormat.ONNX, ModelFormat.TFLITE


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def refused(data: bytes, fmt: ModelFormat, limits: AgentLimits = LIMITS, digest: str | None = None) -> AgentError:
    with pytest.raises(AgentError) as info:
        check_model(data, sha(data) if digest is None else digest, fmt, limits)
    return info.value


def onnx_bytes(graph) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return model.SerializeToString()


def test_real_models_pass():
    for data, fmt in [(build_mlp_model(), ONNX), (tflite_builder.build_fc_model(), TFLITE),
                      (tflite_builder.build_add_model(), TFLITE)]:
        check_model(data, sha(data), fmt, LIMITS)


def test_unsupported_ops_are_left_to_the_runtime():
    for data, fmt in [(build_custom_op_model(), ONNX), (tflite_builder.build_custom_op_model(), TFLITE)]:
        check_model(data, sha(data), fmt, LIMITS)


@pytest.mark.parametrize("bad", ["", "abc", "A" * 64, "g" * 64, "0" * 63, "0" * 65, "../" + "0" * 61])
def test_malformed_hash(bad):
    assert not is_sha256(bad)
    err = refused(build_mlp_model(), ONNX, digest=bad)
    assert err.status == Status.HASH_MISMATCH and "64 lowercase hex" in err.message


def test_hash_mismatch_names_both_hashes():
    data = build_mlp_model()
    wrong = sha(b"something else")
    err = refused(data, ONNX, digest=wrong)
    assert err.status == Status.HASH_MISMATCH
    assert wrong in err.message and sha(data) in err.message


def test_oversized_model():
    data = build_mlp_model()
    err = refused(data, ONNX, AgentLimits(max_model_bytes=len(data) - 1))
    assert err.status == Status.MODEL_TOO_LARGE and str(len(data)) in err.message
    check_model(data, sha(data), ONNX, AgentLimits(max_model_bytes=len(data)))


@pytest.mark.parametrize("fmt", [ONNX, TFLITE])
@pytest.mark.parametrize("data", [b"", b"\x00", b"hello world, not a model", bytes(range(256)) * 8,
                                  np.random.default_rng(0).bytes(4096)])
def test_garbage(fmt, data):
    assert refused(data, fmt).status == Status.INVALID_MODEL


@pytest.mark.parametrize("fmt,build", [(ONNX, build_mlp_model), (TFLITE, lambda: tflite_builder.build_fc_model())])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated(fmt, build, keep):
    data = build()
    assert refused(data[: int(len(data) * keep)], fmt).status == Status.INVALID_MODEL


def test_onnx_checker_failure_is_invalid():
    # Gemm with a missing input name: parses as protobuf, fails the checker.
    graph = helper.make_graph([helper.make_node("Relu", ["nope"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    err = refused(onnx_bytes(graph), ONNX)
    assert err.status == Status.INVALID_MODEL and "checker" in err.message


def test_onnx_node_count_includes_subgraphs():
    data = build_mlp_model(hidden=(8, 8))  # 5 nodes
    assert refused(data, ONNX, AgentLimits(max_nodes=4)).status == Status.INVALID_MODEL
    check_model(data, sha(data), ONNX, AgentLimits(max_nodes=5))
    # A Loop whose body holds 3 nodes: 4 in all.
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c2"]), helper.make_node("Neg", ["v"], ["v1"]),
         helper.make_node("Neg", ["v1"], ["v2"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("c2", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v2", TensorProto.FLOAT, [1])])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["M", "", "x"], ["y"], body=body)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[helper.make_tensor("M", TensorProto.INT64, [], [3])])
    loop = onnx_bytes(graph)
    err = refused(loop, ONNX, AgentLimits(max_nodes=3))
    assert "nodes" in err.message
    check_model(loop, sha(loop), ONNX, AgentLimits(max_nodes=4))


def test_onnx_tensor_size_limits():
    limits = AgentLimits(max_tensor_elements=1000)
    data = build_mlp_model(in_features=8, hidden=(16,), out_features=4)  # largest tensor 16x8
    check_model(data, sha(data), ONNX, limits)
    big_init = build_mlp_model(in_features=64, hidden=(32,), out_features=4)  # 32x64 = 2048
    err = refused(big_init, ONNX, limits)
    assert err.status == Status.INVALID_MODEL and "2048" in err.message
    # A declared input of 10^12 elements, no data behind it.
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1_000_000, 1_000_000])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    assert refused(onnx_bytes(graph), ONNX).status == Status.INVALID_MODEL


def test_onnx_external_data_refused():
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "W")
    onnx.external_data_helper.set_external_data(w, location="../../etc/passwd")
    w.ClearField("raw_data")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], initializer=[w])
    err = refused(onnx_bytes(graph), ONNX)
    assert err.status == Status.INVALID_MODEL and "external data" in err.message


def test_tflite_identifier_and_version():
    data = bytearray(tflite_builder.build_fc_model())
    data[4:8] = b"XXXX"
    assert "identifier" in refused(bytes(data), TFLITE).message
    # An ONNX model sent as TFLite is refused too.
    assert refused(build_mlp_model(), TFLITE).status == Status.INVALID_MODEL


def test_tflite_counts_and_limits():
    data = tflite_builder.build_fc_model(16, 8)
    assert tflite_summary(data) == {"subgraphs": 1, "operators": 1, "tensors": 4}
    err = refused(data, TFLITE, AgentLimits(max_nodes=0))
    assert "operators" in err.message
    err = refused(data, TFLITE, AgentLimits(max_tensor_elements=100))  # weights are 8x16 = 128
    assert err.status == Status.INVALID_MODEL and "128" in err.message
    check_model(data, sha(data), TFLITE, AgentLimits(max_tensor_elements=128))


def test_tflite_corruption_never_escapes_as_another_exception():
    # Flip bytes all over a valid model: each variant is accepted or refused as INVALID_MODEL,
    # and the bounds-checked reader never raises anything else.
    data = tflite_builder.build_fc_model(8, 4)
    rng = np.random.default_rng(3)
    refusals = 0
    for pos in range(0, len(data)):
        for value in (0x00, 0xFF, int(rng.integers(256))):
            bad = bytearray(data)
            bad[pos] = value
            try:
                check_model(bytes(bad), sha(bytes(bad)), TFLITE, LIMITS)
            except AgentError as err:
                assert err.status == Status.INVALID_MODEL
                refusals += 1
    assert refusals > 0
