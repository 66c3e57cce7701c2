"""Small ONNX models for tests, built with onnx.helper (no torch)."""
from __future__ import annotations

import hashlib

import numpy as np


def mlp(width: int = 64, depth: int = 2, seed: int = 0, batch: int = 1) -> bytes:
    """A MatMul+Relu chain; ~width*width*depth MACs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev = "x"
    for i in range(depth):
        w = numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32) * 0.1, f"w{i}")
        inits.append(w)
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [f"h{i}"]))
        prev = f"h{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [batch, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def conv_net(channels: int = 16, size: int = 32, seed: int = 0) -> bytes:
    """Conv -> BatchNorm -> Relu -> GlobalAveragePool: a fusable chain."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    c = channels
    inits = [numpy_helper.from_array(rng.standard_normal((c, c, 3, 3)).astype(np.float32) * 0.1, "w"),
             numpy_helper.from_array(np.ones(c, np.float32), "scale"),
             numpy_helper.from_array(np.zeros(c, np.float32), "bias"),
             numpy_helper.from_array(np.zeros(c, np.float32), "mean"),
             numpy_helper.from_array(np.ones(c, np.float32), "var")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"]),
             helper.make_node("Relu", ["b"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def custom_op_model() -> bytes:
    """A structurally valid model whose operator no runtime implements (custom domain)."""
    from onnx import TensorProto, helper

    node = helper.make_node("FrobnicateTensor", ["x"], ["y"], domain="com.example.hilnas")
    graph = helper.make_graph([node], "custom", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example.hilnas", 1)])
    model.ir_version = 8
    return model.SerializeToString()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _onnx(nodes, inputs, outputs, inits=()) -> bytes:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def hang_model() -> bytes:
    """A Loop with 2^62 iterations: tiny to send, runs for ever."""
    from onnx import TensorProto, helper

    f1 = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("v", "v2")]
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c2"]), helper.make_node("Neg", ["v"], ["v2"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c", TensorProto.BOOL, []), f1[0]],
        [helper.make_tensor_value_info("c2", TensorProto.BOOL, []), f1[1]])
    return _onnx([helper.make_node("Loop", ["M", "cond", "x"], ["y"], body=body)],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                 [helper.make_tensor("M", TensorProto.INT64, [], [1 << 62]),
                  helper.make_tensor("cond", TensorProto.BOOL, [], [True])])


def oom_model() -> bytes:
    """Tile a 1-element input 400 M times: 1.6 GB, over the worker's 1 GiB address space."""
    from onnx import TensorProto, helper

    return _onnx([helper.make_node("Tile", ["x", "r"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
                 [helper.make_tensor("r", TensorProto.INT64, [1], [400_000_000])])


# The tiny search spaces the searcher tests share: 1x8x8 inputs, 4 classes, a handful of channels.
TINY_SHAPE = {"in_channels": 1, "input_size": 8, "num_classes": 4}
TINY_LAYOUT = {"nb201": {"C": 4, "N": 1}, "darts": {"C": 4, "layers": 3}}


def tiny_space(name: str):
    from hilnas.searchers.spaces import create_space

    return create_space(name, **TINY_LAYOUT[name], **TINY_SHAPE)


def hyper_architect(space, config, latency=None):
    """The hypernetwork search's training hook on ``space`` (params Reg; no kappa terms unless a ``latency`` cost
    model is given, then ``config.kappa`` of it), built as ``search`` does, without training: for tests of its parts
    (phase 1, the weight steps' cells, the anchor)."""
    import torch

    from hilnas.searchers.cost import ParamsCost
    from hilnas.searchers.hypernet import (HyperArchitect, Objective, RelaxedSupernet, ValidSupernet, arch_layout,
                                           new_hypernetwork)

    torch.manual_seed(0)
    config = config.resolved(space)   # "auto" settings -> the space's (``hypernet.defaults``)
    objective = Objective(space, ParamsCost(), latency, None, kappa=config.kappa if latency else 0.0, kappa_energy=0.0,
                          kappa_scaling=config.kappa_scaling)
    supernet = ValidSupernet(space, config.options)
    layout = arch_layout(supernet)
    init = {n: p for n, p in supernet.named_parameters() if n in layout}
    hypernet = new_hypernetwork(len(objective.ops), layout, config, init=init)
    return HyperArchitect(RelaxedSupernet(supernet, hypernet), objective, config, steps_per_epoch=4, seed=0)
