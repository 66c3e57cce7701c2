"""Builds small, real ONNX models with ``onnx.helper`` (no torch), for tests and
``hilnas-agent selftest``. ``onnx`` is imported only when a model is built."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

OPSET = 17
IR_VERSION = 9  # what opset 17 needs; a newer onnx would stamp an IR older runtimes refuse


def _model(graph, extra_opsets: Sequence[tuple[str, int]] = ()) -> bytes:
    import onnx
    from onnx import helper

    opsets = [helper.make_opsetid("", OPSET)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION,
                              producer_name="hilnas")
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build_mlp_model(in_features: int = 64, hidden: Sequence[int] = (128,), out_features: int = 10,
                    seed: int = 0, *, batch: int = 1) -> bytes:
    """x (batch, in) -> [Gemm -> Relu] per hidden width -> Gemm -> y (batch, out), float32."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    widths = [in_features, *hidden, out_features]
    nodes, inits = [], []
    x = "x"
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
        w = (rng.standard_normal((w_out, w_in)) / np.sqrt(w_in)).astype(np.float32)  # (out, in)
        b = np.zeros(w_out, np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        last = i == len(widths) - 2
        y = "y" if last else f"h{i}"
        gemm_out = y if last else f"g{i}"
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"B{i}"], [gemm_out], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [y]))
        x = y
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, out_features])],
        initializer=inits)
    return _model(graph)


def build_custom_op_model(op_type: str = "HilnasNoSuchOp", domain: str = "ai.hilnas.test",
                          shape: Sequence[int] = (1, 4)) -> bytes:
    """A valid model whose one node is an operator no runtime implements, to check that the
    agent reports UNSUPPORTED_OP."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node(op_type, ["x"], ["y"], domain=domain)], "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])
    return _model(graph, extra_opsets=[(domain, 1)])
