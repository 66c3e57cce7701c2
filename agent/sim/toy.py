"""Tiny ONNX models built with ``onnx.helper`` (no torch): for tests, examples and smoke runs
of the simulated device. Weights are zeros; only shapes matter to a device model.
"""
from __future__ import annotations

import math

OPSET = 17


def _graph(nodes, inputs, outputs, inits, *, opset: int = OPSET) -> bytes:
    from onnx import helper

    graph = helper.make_graph(nodes, "toy", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="hilnas.toy")
    return model.SerializeToString()


def _tensor(name: str, shape) -> object:
    from onnx import TensorProto, helper

    return helper.make_tensor(name, TensorProto.FLOAT, list(shape), bytes(4 * math.prod(shape)), raw=True)


def _io(name: str, shape) -> object:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def conv_block(cin: int = 16, cout: int = 16, hw: int = 32, k: int = 3, *, stride: int = 1,
               group: int = 1, dilation: int = 1, bias: bool = False, bn: bool = False,
               relu: bool = False, batch: int | str = 1) -> bytes:
    """x (batch, cin, hw, hw) -> Conv(k, stride, 'same' padding)[+BN][+ReLU]."""
    from onnx import helper

    pad = dilation * (k - 1) // 2
    inits = [_tensor("w", (cout, cin // group, k, k))] + ([_tensor("b", (cout,))] if bias else [])
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y0"], name="conv",
                              kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4,
                              dilations=[dilation, dilation], group=group)]
    last = "y0"
    if bn:
        inits += [_tensor(f"bn{i}", (cout,)) for i in range(4)]
        nodes.append(helper.make_node("BatchNormalization", [last, "bn0", "bn1", "bn2", "bn3"], ["y1"], name="bn"))
        last = "y1"
    if relu:
        nodes.append(helper.make_node("Relu", [last], ["y2"], name="relu"))
        last = "y2"
    hout = (hw + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    return _graph(nodes, [_io("x", (batch, cin, hw, hw))], [_io(last, (batch, cout, hout, hout))], inits)


def unary(op: str, shape=(1, 16, 32, 32), **attrs) -> bytes:
    """One elementwise/shape-preserving op (Relu, Sigmoid, Softmax...) on an input."""
    from onnx import helper

    return _graph([helper.make_node(op, ["x"], ["y"], name=op.lower(), **attrs)],
                  [_io("x", shape)], [_io("y", shape)], [])


def batchnorm(c: int = 16, hw: int = 32) -> bytes:
    """BatchNormalization alone (as a separately exported part of a conv block)."""
    from onnx import helper

    inits = [_tensor(f"bn{i}", (c,)) for i in range(4)]
    node = helper.make_node("BatchNormalization", ["x", "bn0", "bn1", "bn2", "bn3"], ["y"], name="bn")
    return _graph([node], [_io("x", (1, c, hw, hw))], [_io("y", (1, c, hw, hw))], inits)


def gemm(m: int = 1, k: int = 64, n: int = 10, *, bias: bool = True) -> bytes:
    """x (m, k) -> Gemm with weights (n, k) transposed [+ bias]."""
    from onnx import helper

    inits = [_tensor("w", (n, k))] + ([_tensor("b", (n,))] if bias else [])
    node = helper.make_node("Gemm", ["x", "w"] + (["b"] if bias else []), ["y"], name="gemm", transB=1)
    return _graph([node], [_io("x", (m, k))], [_io("y", (m, n))], inits)


def mlp(widths=(64, 128, 10), *, batch: int = 1) -> bytes:
    """MatMul+Add(+Relu) layers: a chain the runtime fuses into Gemm+activation."""
    from onnx import helper

    nodes, inits, last = [], [], "x"
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        inits += [_tensor(f"w{i}", (a, b)), _tensor(f"b{i}", (b,))]
        nodes.append(helper.make_node("MatMul", [last, f"w{i}"], [f"m{i}"], name=f"matmul{i}"))
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}"))
        last = f"a{i}"
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [last], [f"r{i}"], name=f"relu{i}"))
            last = f"r{i}"
    return _graph(nodes, [_io("x", (batch, widths[0]))], [_io(last, (batch, widths[-1]))], inits)


def small_cnn(width: int = 16, hw: int = 32, depth: int = 2, classes: int = 10) -> bytes:
    """Conv+BN+ReLU blocks, global average pool, flatten, Gemm: a whole small network."""
    from onnx import helper

    nodes, inits, last, c = [], [], "x", 3
    for i in range(depth):
        inits += [_tensor(f"w{i}", (width, c, 3, 3))] + [_tensor(f"bn{i}_{j}", (width,)) for j in range(4)]
        nodes += [helper.make_node("Conv", [last, f"w{i}"], [f"c{i}"], name=f"conv{i}", kernel_shape=[3, 3], pads=[1] * 4),
                  helper.make_node("BatchNormalization", [f"c{i}"] + [f"bn{i}_{j}" for j in range(4)], [f"n{i}"], name=f"bn{i}"),
                  helper.make_node("Relu", [f"n{i}"], [f"r{i}"], name=f"relu{i}")]
        last, c = f"r{i}", width
    inits += [_tensor("fc_w", (classes, c)), _tensor("fc_b", (classes,))]
    nodes += [helper.make_node("GlobalAveragePool", [last], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1)]
    return _graph(nodes, [_io("x", (1, 3, hw, hw))], [_io("logits", (1, classes))], inits)
