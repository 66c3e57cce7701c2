"""ONNX graph analysis of the simulated device: FLOPs, bytes, folding and fusion."""
from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from hilnas.agent.results import Status
from hilnas.agent.sim import toy
from hilnas.agent.sim.graph import GraphError, analyse_onnx


def _by_name(data: bytes):
    return {n.name: n for n in analyse_onnx(data).nodes}


def _model(nodes, inputs, outputs, inits=()) -> bytes:
    graph = helper.make_graph(nodes, "t", [toy._io(*i) for i in inputs], [toy._io(*o) for o in outputs],
                              initializer=[toy._tensor(*i) for i in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("kw, out_hw, macs_per_out, variant", [
    (dict(cin=16, cout=32, hw=32, k=3), 32, 16 * 9, ""),
    (dict(cin=16, cout=32, hw=32, k=3, stride=2), 16, 16 * 9, ""),
    (dict(cin=16, cout=32, hw=32, k=1), 32, 16, "pointwise"),
    (dict(cin=16, cout=16, hw=32, k=3, group=16), 32, 9, "depthwise"),
    (dict(cin=16, cout=32, hw=32, k=3, group=4), 32, 4 * 9, "grouped"),
    (dict(cin=8, cout=8, hw=20, k=3, dilation=2), 20, 8 * 9, ""),
])
def test_conv_flops_match_hand_computed(kw, out_hw, macs_per_out, variant):
    conv = _by_name(toy.conv_block(**kw))["conv"]
    out_elems = kw["cout"] * out_hw * out_hw
    assert conv.output_shape == (1, kw["cout"], out_hw, out_hw)
    assert conv.flops == 2 * out_elems * macs_per_out           # 2 FLOPs per multiply-accumulate
    assert conv.variant == variant
    assert conv.bytes_read == 4 * kw["cin"] * kw["hw"] ** 2     # the input activation, fp32
    assert conv.bytes_written == 4 * out_elems
    assert conv.params_bytes == 4 * kw["cout"] * kw["cin"] // kw.get("group", 1) * 9 ** (kw["k"] == 3)


def test_conv_bias_adds_one_flop_per_output():
    plain = _by_name(toy.conv_block(8, 8, 8, 3))["conv"]
    biased = _by_name(toy.conv_block(8, 8, 8, 3, bias=True))["conv"]
    assert biased.flops - plain.flops == 8 * 8 * 8
    assert biased.params_bytes - plain.params_bytes == 8 * 4


def test_conv_transpose_flops():
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv", kernel_shape=[3, 3],
                            strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])
    cost = _by_name(_model([node], [("x", (1, 8, 8, 8))], [("y", (1, 4, 16, 16))], [("w", (8, 4, 3, 3))]))["deconv"]
    assert cost.output_shape == (1, 4, 16, 16)
    assert cost.flops == 2 * (8 * 8 * 8) * (4 * 9)   # every input element meets cout/g * k*k weights


def test_gemm_and_matmul_flops():
    g = _by_name(toy.gemm(m=2, k=64, n=10, bias=True))["gemm"]
    assert g.flops == 2 * 2 * 64 * 10 + 2 * 10
    assert g.output_shape == (2, 10)
    mm = _by_name(toy.mlp((64, 128, 10)))
    assert mm["matmul0"].flops == 2 * 64 * 128
    assert mm["matmul1"].flops == 2 * 128 * 10


def test_pooling_and_reductions():
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("AveragePool", ["x"], ["a"], name="avgpool", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("GlobalAveragePool", ["x"], ["g"], name="gap"),
             helper.make_node("ReduceMean", ["x"], ["r"], name="reduce", axes=[2, 3], keepdims=1)]
    costs = _by_name(_model(nodes, [("x", (1, 16, 32, 32))],
                            [("p", (1, 16, 16, 16)), ("a", (1, 16, 32, 32)), ("g", (1, 16, 1, 1)), ("r", (1, 16, 1, 1))]))
    assert costs["maxpool"].flops == 16 * 16 * 16 * 4
    assert costs["avgpool"].flops == 16 * 32 * 32 * 9 + 16 * 32 * 32
    assert costs["gap"].flops == 16 * 32 * 32 + 16
    assert costs["reduce"].flops == 16 * 32 * 32 + 16


def test_memory_and_elementwise_ops():
    shape = (1, 8, 4, 4)
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Sigmoid", ["r"], ["s"], name="sigmoid"),
             helper.make_node("Softmax", ["s"], ["sm"], name="softmax", axis=1),
             helper.make_node("Transpose", ["sm"], ["t"], name="transpose", perm=[0, 2, 3, 1]),
             helper.make_node("Concat", ["t", "t"], ["c"], name="concat", axis=3),
             helper.make_node("Flatten", ["c"], ["f"], name="flatten")]
    data = _model(nodes, [("x", shape)], [("f", (1, 256))], [])
    costs = _by_name(data)
    n = 8 * 4 * 4
    assert costs["relu"].flops == n and costs["sigmoid"].flops == 4 * n and costs["softmax"].flops == 5 * n
    assert costs["transpose"].flops == 0 and costs["transpose"].bytes_read == costs["transpose"].bytes_written == 4 * n
    assert costs["concat"].bytes_written == 8 * n and costs["concat"].bytes_read == 8 * n
    assert costs["flatten"].view and costs["flatten"].bytes_moved == 0


def test_symbolic_batch_is_costed_as_one():
    one = _by_name(toy.conv_block(8, 8, 8, 3))["conv"]
    sym = _by_name(toy.conv_block(8, 8, 8, 3, batch="N"))["conv"]
    assert sym.flops == one.flops and sym.output_shape == one.output_shape


def test_conv_bn_relu_is_fused_into_the_conv():
    costs = _by_name(toy.conv_block(16, 16, 16, 3, bn=True, relu=True))
    assert costs["conv"].runs
    assert costs["bn"].fused_into == "conv" and costs["relu"].fused_into == "conv"
    assert costs["bn"].fusable and costs["relu"].fusable and not costs["bn"].runs


def test_no_fusion_when_the_conv_output_has_two_consumers():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Add", ["c", "r"], ["y"], name="add")]
    costs = _by_name(_model(nodes, [("x", (1, 4, 8, 8))], [("y", (1, 4, 8, 8))], [("w", (4, 4, 1, 1))]))
    assert costs["relu"].runs and costs["add"].runs


def test_matmul_bias_relu_and_pad_conv_fusions():
    costs = _by_name(toy.mlp((64, 128, 10)))
    assert costs["add0"].fused_into == "matmul0" and costs["relu0"].fused_into == "matmul0"
    assert costs["add1"].fused_into == "matmul1"
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
             helper.make_node("Conv", ["p", "w"], ["y"], name="conv", kernel_shape=[3, 3])]
    pads = helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])
    graph = helper.make_graph(nodes, "t", [toy._io("x", (1, 4, 8, 8))], [toy._io("y", (1, 4, 8, 8))],
                              initializer=[pads, toy._tensor("w", (4, 4, 3, 3))])
    costs = _by_name(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    assert costs["pad"].fused_into == "conv"


def test_constant_identity_duplicate_and_dead_nodes_are_folded():
    nodes = [helper.make_node("Mul", ["c1", "c2"], ["k"], name="const_mul"),         # all inputs constant
             helper.make_node("Identity", ["x"], ["i"], name="identity"),
             helper.make_node("Relu", ["i"], ["r1"], name="relu_a"),
             helper.make_node("Relu", ["i"], ["r2"], name="relu_b"),                 # same as relu_a
             helper.make_node("Sigmoid", ["x"], ["unused"], name="dead"),            # reaches no output
             helper.make_node("Add", ["r1", "r2"], ["a"], name="add"),
             helper.make_node("Mul", ["a", "k"], ["y"], name="scale")]
    costs = _by_name(_model(nodes, [("x", (1, 8))], [("y", (1, 8))], [("c1", (1, 8)), ("c2", (1, 8))]))
    assert costs["const_mul"].folded == "constant"
    assert costs["identity"].folded == "identity"
    assert costs["relu_b"].folded == "duplicate" and costs["relu_a"].runs
    assert costs["dead"].folded == "dead"
    assert costs["add"].runs and costs["scale"].runs
    assert costs["scale"].params_bytes == 8 * 4       # the folded constant is now a weight


def test_bad_bytes_are_invalid_model():
    for data in (b"", b"this is not an onnx model", bytes(range(256))):
        with pytest.raises(GraphError) as err:
            analyse_onnx(data)
        assert err.value.status == Status.INVALID_MODEL


def test_channel_mismatch_is_invalid_model():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1] * 4)
    data = _model([node], [("x", (1, 8, 16, 16))], [("y", (1, 4, 16, 16))], [("w", (4, 3, 3, 3))])
    with pytest.raises(GraphError) as err:
        analyse_onnx(data)
    assert err.value.status == Status.INVALID_MODEL and "channels" in err.value.message


def test_matmul_shape_mismatch_is_invalid_model():
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    data = _model([node], [("x", (1, 8))], [("y", (1, 4))], [("w", (6, 4))])
    with pytest.raises(GraphError) as err:
        analyse_onnx(data)
    assert err.value.status == Status.INVALID_MODEL and "shape inference" in err.value.message


def test_unknown_operators_are_unsupported():
    bogus = _model([helper.make_node("Frobnicate", ["x"], ["y"])], [("x", (1, 8))], [("y", (1, 8))])
    with pytest.raises(GraphError) as err:
        analyse_onnx(bogus)
    assert err.value.status == Status.UNSUPPORTED_OP and "Frobnicate" in err.value.message
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "t", [toy._io("x", (1, 8))], [toy._io("y", (1, 8))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(GraphError) as err:
        analyse_onnx(model.SerializeToString())
    assert err.value.status == Status.UNSUPPORTED_OP


def test_node_limit():
    with pytest.raises(GraphError) as err:
        analyse_onnx(toy.small_cnn(depth=3), max_nodes=5)
    assert err.value.status == Status.INVALID_MODEL and "limit" in err.value.message


def test_graph_totals():
    g = analyse_onnx(toy.small_cnn(width=8, hw=8, depth=2))
    assert g.input_bytes == 3 * 8 * 8 * 4 and g.output_bytes == 10 * 4
    assert g.flops == sum(n.flops for n in g.nodes if not n.folded) > 0
    assert g.params_bytes == 4 * (8 * 3 * 9 + 8 * 8 * 9 + 8 * 4 * 2 + 10 * 8 + 10)
