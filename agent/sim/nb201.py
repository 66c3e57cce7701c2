"""NAS-Bench-201 CIFAR networks (C=16, N=5, 32x32 input) as ONNX graphs, built with
``onnx.helper`` (no torch), so the device model can be compared with the published device
latencies in /work/shared/data/nb201_device_latency_calibration.csv.

The graph follows the benchmark's inference network: stem Conv3x3+BN; three stages of N cells
with a ResNet basic block (stride 2) between them; BN+ReLU, global average pool and a linear
classifier. A cell computes node_i = sum_{j<i} op_{j,i}(node_j) over the ops of ``arch_str``.

The benchmark's ``none`` op is ``x * 0``; which of those products the measured pipeline folded
away is not documented, so the graph follows what the published measurements show (analysis of
the CSV above, 3,125 networks; ``docs/performance.md`` gives the figures):
- a node without inputs is a zero tensor; while the cell output still depends on the cell input,
  the ops that read a zero node are computed (``x * 0`` is not folded there); when the cell
  output does not, the whole network is a constant (zero nodes are initializers, folded away
  with everything that depends only on them; those networks measure ~0.01 ms);
- a node that reaches the cell output only through ``none`` edges is dead code and is not
  computed, with two measured exceptions (most, not all, networks of each kind behave so): node 2
  when one of its own inputs is ``none`` (read through ``none~2`` by node 3), and node 1 when it
  is read through ``none~1`` by a node 2 that is computed. There the ``x * 0`` stays in the
  graph (a Mul and an Add), which keeps its operand alive.
"""
from __future__ import annotations

import re

_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def parse_arch(arch_str: str) -> list[list[tuple[str, int]]]:
    """``|op~0|+|op~0|op~1|+|...|`` -> [[(op, input)], [(op, input), ...], ...]."""
    nodes = []
    for part in arch_str.strip().split("+"):
        edges = [e for e in part.strip("|").split("|") if e]
        node = []
        for edge in edges:
            m = re.fullmatch(r"(\w+)~(\d+)", edge)
            if not m or m.group(1) not in _OPS:
                raise ValueError(f"bad NAS-Bench-201 edge {edge!r} in {arch_str!r}")
            node.append((m.group(1), int(m.group(2))))
        nodes.append(node)
    if len(nodes) != 3:
        raise ValueError(f"a NAS-Bench-201 cell has 3 nodes: {arch_str!r}")
    return nodes


class _Builder:
    """Appends nodes and zero-filled initializers (values do not matter to the device model)."""

    def __init__(self) -> None:
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def init(self, prefix: str, shape: tuple[int, ...]) -> str:
        from onnx import TensorProto, helper
        import math

        name = self.name(prefix)
        self.inits.append(helper.make_tensor(name, TensorProto.FLOAT, shape,
                                             bytes(4 * math.prod(shape)), raw=True))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, bn: bool = True) -> str:
        pad = (k - 1) // 2
        y = self.node("Conv", [x, self.init("w", (cout, cin, k, k))], kernel_shape=[k, k],
                      strides=[stride, stride], pads=[pad] * 4)
        return self.bn(y, cout) if bn else y

    def bn(self, x: str, c: int) -> str:
        return self.node("BatchNormalization", [x] + [self.init("bn", (c,)) for _ in range(4)])

    def relu_conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int = 1) -> str:
        return self.conv(self.node("Relu", [x]), cin, cout, k, stride)

    def zeros(self, c: int, hw: int) -> str:
        return self.init("zeros", (1, c, hw, hw))

    def add_all(self, xs: list[str]) -> str:
        out = xs[0]
        for x in xs[1:]:
            out = self.node("Add", [out, x])
        return out


def nb201_onnx(arch_str: str, *, C: int = 16, N: int = 5, num_classes: int = 10, opset: int = 17) -> bytes:
    """Serialized ONNX model of the NAS-Bench-201 network for ``arch_str`` (batch 1)."""
    from onnx import TensorProto, helper

    cell = parse_arch(arch_str)
    b = _Builder()
    x = b.conv("input", 3, C, 3)
    c, hw = C, 32
    for stage in range(3):
        if stage:
            # ResNet basic block, stride 2: two ReLU-Conv-BN plus an AvgPool+Conv1x1 shortcut.
            a = b.relu_conv_bn(x, c, 2 * c, 3, 2)
            a = b.relu_conv_bn(a, 2 * c, 2 * c, 3, 1)
            s = b.node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
            s = b.conv(s, c, 2 * c, 1, bn=False)
            c, hw = 2 * c, hw // 2
            x = b.node("Add", [a, s])
        for _ in range(N):
            x = _cell(b, x, cell, c, hw)
    x = b.node("Relu", [b.bn(x, c)])
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])])
    x = b.node("Gemm", [x, b.init("fc_w", (num_classes, c)), b.init("fc_b", (num_classes,))], transB=1)
    graph = helper.make_graph(
        b.nodes, "nb201", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, num_classes])], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model.SerializeToString()


def kept_by_zero(cell: list[list[tuple[str, int]]]) -> tuple[bool, bool]:
    """Whether node 1 and node 2 are computed although only ``none`` edges read them (see the
    module docstring: measured behaviour of the published pipeline, not an ONNX rule)."""
    (e0,), (e1, e2), (e3, e4, e5) = ([op for op, _ in node] for node in cell)
    live2 = e5 != "none"
    keep2 = not live2 and "none" in (e1, e2) and (e1, e2) != ("none", "none")
    keep1 = e2 == "none" and e4 == "none" and (live2 or keep2)
    return keep1, keep2


def _cell(b: _Builder, x: str, cell: list[list[tuple[str, int]]], c: int, hw: int) -> str:
    # A node is "zero" when no edge brings it anything but zeros; if the cell output is zero,
    # the network output is a constant and every zero node is a foldable initializer.
    zero = [False]
    for edges in cell:
        zero.append(all(op == "none" or zero[j] for op, j in edges))
    keep = (False,) + kept_by_zero(cell) if not zero[3] else (False, False, False)
    nodes, computed = [x], [True]
    for i, edges in enumerate(cell, start=1):
        terms = []
        for op, j in edges:
            src = nodes[j]
            if op == "skip_connect":
                terms.append(src)
            elif op == "nor_conv_1x1":
                terms.append(b.relu_conv_bn(src, c, c, 1))
            elif op == "nor_conv_3x3":
                terms.append(b.relu_conv_bn(src, c, c, 3))
            elif op == "avg_pool_3x3":
                terms.append(b.node("AveragePool", [src], kernel_shape=[3, 3], strides=[1, 1],
                                    pads=[1, 1, 1, 1], count_include_pad=0))
            elif op == "none" and keep[j] and computed[j] and j == i - 1:
                terms.append(b.node("Mul", [src, b.init("zero", ())]))   # x * 0, not folded
        computed.append(bool(terms))
        if terms:
            nodes.append(b.add_all(terms))
        elif zero[3]:
            nodes.append(b.zeros(c, hw))
        else:               # a zero tensor computed at run time: what reads it is still computed
            nodes.append(b.node("Mul", [x, b.init("zero", ())]))
    return nodes[-1]
