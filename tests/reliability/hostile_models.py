"""ONNX models built to exhaust memory or time at run time, or to blow up while being checked.

Each is small to send. The outputs declare no length, so a bomb is not caught by the agent's
static tensor-size check and has to be stopped by the worker's limits (or priced by the
simulator), which is what the suite tests.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

OPSET = [helper.make_opsetid("", 17)]


def _model(nodes, inputs, outputs, inits=(), functions=(), opsets=OPSET, check=True) -> bytes:
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=list(opsets), ir_version=9, functions=list(functions))
    if check:
        onnx.checker.check_model(model)
    return model.SerializeToString()


def _x(shape=(1,)):
    return [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))]


def _y():
    return [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])]  # rank 1, length unknown


def _i64(name, values):
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], list(values))


def constant_of_shape(elements: int = 4 * 10 ** 9) -> bytes:
    """ConstantOfShape of ``elements`` floats (16 GB), added to the input."""
    return _model([helper.make_node("ConstantOfShape", ["s"], ["c"]), helper.make_node("Add", ["c", "x"], ["y"])],
                  _x(), _y(), [_i64("s", [elements])])


def expand(elements: int = 4 * 10 ** 9) -> bytes:
    return _model([helper.make_node("Expand", ["x", "s"], ["y"])], _x(), _y(), [_i64("s", [elements])])


def tile(elements: int = 10 ** 9) -> bytes:
    return _model([helper.make_node("Tile", ["x", "r"], ["y"])], _x(), _y(), [_i64("r", [elements])])


def range_(elements: float = 4e9) -> bytes:
    scalars = [helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("a", 0.0), ("b", elements),
                                                                              ("d", 1.0))]
    return _model([helper.make_node("Range", ["a", "b", "d"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"])],
                  _x(), _y(), scalars)


def _loop_body(inner: list, depth: int) -> onnx.GraphProto:
    f = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1])  # noqa: E731
    return helper.make_graph(
        [helper.make_node("Identity", [f"c{depth}"], [f"k{depth}"]), *inner], f"body{depth}",
        [helper.make_tensor_value_info(f"i{depth}", TensorProto.INT64, []),
         helper.make_tensor_value_info(f"c{depth}", TensorProto.BOOL, []), f(f"v{depth}")],
        [helper.make_tensor_value_info(f"k{depth}", TensorProto.BOOL, []), f(f"w{depth}")],
        [helper.make_tensor(f"M{depth}", TensorProto.INT64, [], [10 ** 15]),
         helper.make_tensor(f"t{depth}", TensorProto.BOOL, [], [True])])


def nested_loops(depth: int = 3, trips: int = 10 ** 15) -> bytes:
    """Loops of ``trips`` iterations nested ``depth`` deep: tiny to send, never ends."""
    inner = [helper.make_node("Neg", [f"v{depth}"], [f"w{depth}"])]
    for d in range(depth, 0, -1):
        body = _loop_body(inner, d)
        inner = [helper.make_node("Loop", [f"M{d - 1}" if d > 1 else "M", f"t{d - 1}" if d > 1 else "cond",
                                           f"v{d - 1}" if d > 1 else "x"], [f"w{d - 1}" if d > 1 else "y"], body=body)]
    return _model(inner, _x(), _y(), [helper.make_tensor("M", TensorProto.INT64, [], [trips]),
                                      helper.make_tensor("cond", TensorProto.BOOL, [], [True])])


def nested_ifs(depth: int = 20) -> bytes:
    """Ifs nested ``depth`` deep on a data-dependent condition, each branch a Neg or the next If."""
    out = lambda n: [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1])]  # noqa: E731
    branch = helper.make_graph([helper.make_node("Neg", ["x"], [f"n{depth}"])], f"leaf", [], out(f"n{depth}"))
    for d in range(depth - 1, -1, -1):
        other = helper.make_graph([helper.make_node("Abs", ["x"], [f"a{d}"])], f"else{d}", [], out(f"a{d}"))
        node = helper.make_node("If", ["c"], [f"n{d}" if d else "y"], then_branch=branch, else_branch=other)
        branch = helper.make_graph([node], f"then{d}", [], out(f"n{d}"))
    return _model([helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
                   helper.make_node("Greater", ["s", "z"], ["c"]), *branch.node],
                  _x(), _y(), [helper.make_tensor("z", TensorProto.FLOAT, [], [0.0])])


def function_bomb(levels: int = 30) -> bytes:
    """Local functions f_k = f_(k-1)(f_(k-1)(x)): ``levels`` small functions inline to 2^levels nodes."""
    dom = "hilnas.bomb"
    funcs = [helper.make_function(dom, "f0", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])], OPSET)]
    for k in range(1, levels + 1):
        funcs.append(helper.make_function(dom, f"f{k}", ["a"], ["b"], [
            helper.make_node(f"f{k - 1}", ["a"], ["m"], domain=dom),
            helper.make_node(f"f{k - 1}", ["m"], ["b"], domain=dom)], [*OPSET, helper.make_opsetid(dom, 1)]))
    return _model([helper.make_node(f"f{levels}", ["x"], ["y"], domain=dom)], _x(), _y(), functions=funcs,
                  opsets=[*OPSET, helper.make_opsetid(dom, 1)])


def recursive_function() -> bytes:
    dom = "hilnas.bomb"
    f = helper.make_function(dom, "f", ["a"], ["b"], [helper.make_node("f", ["a"], ["b"], domain=dom)],
                             [*OPSET, helper.make_opsetid(dom, 1)])
    return _model([helper.make_node("f", ["x"], ["y"], domain=dom)], _x(), _y(), functions=[f],
                  opsets=[*OPSET, helper.make_opsetid(dom, 1)], check=False)


def many_nodes(n: int = 100_001) -> bytes:
    nodes = [helper.make_node("Relu", ["x" if i == 0 else f"h{i - 1}"], ["y" if i == n - 1 else f"h{i}"])
             for i in range(n)]
    return _model(nodes, _x((1, 4)), _y(), check=False)


def zero_dim() -> bytes:
    """A valid model on an empty tensor: runs (and costs next to nothing)."""
    return _model([helper.make_node("Relu", ["x"], ["y"])], _x((0, 4)),
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [0, 4])])


def negative_dim() -> bytes:
    return _model([helper.make_node("Relu", ["x"], ["y"])], _x((1, 4)),
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-3, 4])], check=False)


def negative_initializer_dim() -> bytes:
    t = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    t.dims[0] = -5
    return _model([helper.make_node("Add", ["x", "w"], ["y"])], _x(), _y(), [t], check=False)


def huge_declared_tensor() -> bytes:
    return _model([helper.make_node("Relu", ["x"], ["y"])], _x((1 << 20, 1 << 20)), _y())
