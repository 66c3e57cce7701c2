"""Static analysis of an ONNX graph for the device model: shapes, FLOPs and bytes of every node.

``analyse_onnx(bytes) -> GraphCost`` runs shape inference, then marks what a runtime such as ONNX
Runtime does before the first inference: constant folding, identity, common-subexpression and
dead-node elimination, and fusion of Conv(+BatchNorm/affine)(+activation), MatMul(+bias)
(+activation) and Pad+Conv.
The device model (``model.py``) prices the result; this module knows nothing of devices.

Conventions: one multiply-accumulate is 2 FLOPs, a bias add 1 FLOP per output element (the
convention of the FLOPS column in /work/shared/data/mlbench_tflite_cnn_ops_gpu.csv). Symbolic
dimensions (e.g. a batch ``N``) are taken as 1, as the agent feeds batch-1 inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from hilnas.agent.results import Status
from hilnas.agent.sim.control_flow import CONTROL_FLOW, control_flow_cost


class GraphError(Exception):
    """A graph the simulated device cannot cost, with the status a real runtime would give."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class NodeCost:
    """What one node costs on any device: work, data moved, and what the runtime does with it."""

    op_type: str
    name: str                       # node name; made unique ("<op>_<index>" when empty)
    flops: float                    # floating-point operations of the node alone
    bytes_read: int                 # activation bytes read (non-constant inputs)
    bytes_written: int              # output bytes
    params_bytes: int               # constant inputs (weights, biases, BN statistics), bytes
    output_shape: tuple[int, ...]   # first output; -1 = unknown dimension, () = scalar/unknown rank
    variant: str = ""               # efficiency sub-class: Conv "depthwise"/"grouped"/"pointwise"
    fusable: bool = False           # a runtime can fuse this op into a neighbouring Conv/Gemm
    fused_into: str = ""            # name of the node it is fused into; "" = its own kernel
    folded: str = ""                # "constant", "identity", "duplicate" or "dead": removed before running
    view: bool = False              # metadata-only op (Reshape, Flatten...): no data moved
    trips: float = 0.0              # control flow (Loop, Scan, If): how often ``body`` runs per inference
    body: tuple["NodeCost", ...] = ()  # ... and the nodes of the subgraph it runs

    @property
    def runs(self) -> bool:
        """True when the node is dispatched as a kernel of its own."""
        return not self.folded and not self.fused_into

    @property
    def bytes_moved(self) -> int:
        return self.bytes_read + self.bytes_written + self.params_bytes

    @property
    def total_flops(self) -> float:
        """FLOPs of one inference of this node, its subgraph's runs included."""
        return self.flops + self.trips * sum(n.total_flops for n in self.body)


@dataclass(frozen=True)
class GraphCost:
    """Every node's cost plus the graph-level numbers a per-model overhead needs."""

    nodes: tuple[NodeCost, ...]
    input_bytes: int        # bytes fed to the graph inputs per inference
    output_bytes: int       # bytes of the graph outputs per inference
    opset: int
    warnings: tuple[str, ...] = ()
    largest_tensor_bytes: int = 0   # the largest tensor the runtime must hold (input, weight, output), bytes
    largest_tensor: str = ""        # ... and its name

    @property
    def live(self) -> tuple[NodeCost, ...]:
        """Nodes that survive folding (kernels and fused epilogues)."""
        return tuple(n for n in self.nodes if not n.folded)

    @property
    def flops(self) -> float:
        return sum(n.total_flops for n in self.live)

    @property
    def params_bytes(self) -> int:
        return sum(n.params_bytes for n in self.live)


# FLOPs per output element of elementwise ops (1 unless listed); transcendental ops cost more.
_ELEMENTWISE = {
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Relu": 1, "LeakyRelu": 2, "PRelu": 2, "Clip": 1,
    "Max": 1, "Min": 1, "Sum": 1, "Mean": 2, "Neg": 1, "Abs": 1, "Floor": 1, "Ceil": 1,
    "Round": 1, "Sign": 1, "Cast": 1, "Where": 1, "Equal": 1, "Less": 1, "Greater": 1,
    "LessOrEqual": 1, "GreaterOrEqual": 1, "And": 1, "Or": 1, "Xor": 1, "Not": 1,
    "Sqrt": 2, "Reciprocal": 2, "HardSigmoid": 3, "HardSwish": 4, "Sigmoid": 4, "Tanh": 4,
    "Exp": 4, "Log": 4, "Erf": 4, "Softplus": 4, "Elu": 4, "Selu": 4, "Pow": 4, "Mish": 8,
    "Gelu": 8, "BatchNormalization": 2, "InstanceNormalization": 5, "LayerNormalization": 8,
    "Softmax": 5, "LogSoftmax": 6, "Hardmax": 2, "Dropout": 0,
}
_REDUCE = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
           "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp", "ArgMax", "ArgMin"}
# Pure data movement: no arithmetic, bytes read + written.
_MEMORY = {"Concat", "Split", "Transpose", "Pad", "Slice", "Gather", "GatherElements", "Tile",
           "Expand", "DepthToSpace", "SpaceToDepth", "ScatterElements", "ScatterND",
           "GatherND", "ReverseSequence", "Compress", "NonZero", "TopK"}
# Metadata-only ops: ORT reuses the input buffer, so only dispatch is paid.
_VIEWS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}
_IDENTITY = {"Identity", "Dropout"}           # removed by ORT's graph optimiser
_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                     "Multinomial", "Bernoulli"}
_ACTIVATIONS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh"}
_AFFINE = {"Add", "Sub", "Mul", "Div"}
_FUSABLE = _ACTIVATIONS | _AFFINE | {"BatchNormalization", "Pad"}

# Bytes per element of each TensorProto data type (4-bit and smaller types rounded up to 1).
_ELEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 8: 8, 9: 1, 10: 2, 11: 8, 12: 4,
               13: 8, 14: 8, 15: 16, 16: 2}

_Shape = tuple[int, ...] | None   # None = unknown rank
# Operator domains ONNX Runtime implements; a node from any other domain fails to load there.
_RUNTIME_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}


def _numel(shape: _Shape) -> int | None:
    if shape is None or any(d < 0 for d in shape):
        return None
    return math.prod(shape)


class _Tensors:
    """Shapes, element sizes and constness of the graph's tensors after shape inference."""

    def __init__(self, graph) -> None:
        self.shape: dict[str, _Shape] = {}
        self.elem: dict[str, int] = {}
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            t = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                continue
            self.elem[vi.name] = _ELEM_BYTES.get(t.elem_type, 1 if t.elem_type > 16 else 4)
            if t.HasField("shape"):
                self.shape[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else -1
                                            for d in t.shape.dim)
            else:
                self.shape.setdefault(vi.name, None)
        inputs = {i.name for i in graph.input}
        self.constant: set[str] = set()
        for init in graph.initializer:
            self.shape[init.name] = tuple(init.dims)
            self.elem[init.name] = _ELEM_BYTES.get(init.data_type, 4)
            if init.name not in inputs:       # an initializer that is also an input can be fed
                self.constant.add(init.name)

        # Values of small constants (a Loop's trip count, an If's condition), as Python scalars.
        self.values: dict[str, float | int | bool] = {}
        for init in graph.initializer:
            if init.name in self.constant:
                self._keep_value(init.name, init)
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                attr = next((a for a in node.attribute if a.name == "value" and a.HasField("t")), None)
                if attr is not None:
                    self._keep_value(node.output[0], attr.t)

    def _keep_value(self, name: str, tensor) -> None:
        from onnx import numpy_helper

        if math.prod(tensor.dims) == 1:
            try:
                self.values[name] = numpy_helper.to_array(tensor).reshape(-1)[0].item()
            except (ValueError, TypeError, IndexError):
                pass

    def value_of(self, name: str) -> float | int | bool | None:
        """The scalar value of a constant tensor, or None when it is not a known constant."""
        return self.values.get(name)

    def inner(self, graph) -> "_Tensors":
        """The scope of a subgraph: its own tensors, then the enclosing graph's."""
        child = _Tensors(graph)
        own = set(child.shape) | {i.name for i in graph.input}
        for d in ("shape", "elem", "values"):
            for k, v in getattr(self, d).items():
                if k not in own:
                    getattr(child, d).setdefault(k, v)
        child.constant |= self.constant - own
        return child

    def nbytes(self, name: str, fallback: int = 0) -> int:
        n = _numel(self.shape.get(name))
        return fallback if n is None else n * self.elem.get(name, 4)

    def numel(self, name: str) -> int | None:
        return _numel(self.shape.get(name))


def analyse_onnx(data: bytes, *, max_nodes: int = 20_000) -> GraphCost:
    """Cost every node of a serialized ONNX model; raises ``GraphError`` with a typed status."""
    model = _load(data, max_nodes=max_nodes)
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    tensors = _Tensors(graph)
    warnings: list[str] = []
    names = _unique_names(graph)
    folded = _fold(graph, tensors, names)
    costs = {}
    for node, name in zip(graph.node, names):
        costs[name] = _node_cost(node, name, tensors, folded.get(name, ""), warnings)
    fused = _fuse(graph, tensors, names, folded)
    nodes = tuple(_with_fusion(costs[n], fused.get(n, "")) for n in names)
    inputs = [i.name for i in graph.input if i.name not in tensors.constant
              and i.name not in {x.name for x in graph.initializer}]
    largest = max(tensors.shape, key=tensors.nbytes, default="")
    return GraphCost(nodes=nodes,
                     input_bytes=sum(tensors.nbytes(i) for i in inputs),
                     output_bytes=sum(tensors.nbytes(o.name) for o in graph.output),
                     opset=opset, warnings=tuple(dict.fromkeys(warnings)),
                     largest_tensor_bytes=tensors.nbytes(largest) if largest else 0, largest_tensor=largest)


def _load(data: bytes, *, max_nodes: int):
    """Parse, check and shape-infer the model (symbolic dims set to 1)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise GraphError(Status.INVALID_MODEL, f"not an ONNX model: {exc}") from None
    if model.functions:
        # ONNX Runtime inlines model-local functions at load; cost the graph it then runs (the
        # agent's model check has already bounded the inlined size).
        try:
            import onnx.inliner

            model = onnx.inliner.inline_local_functions(model)
        except Exception as exc:  # noqa: BLE001 - onnx raises C++-bound errors for odd functions
            raise GraphError(Status.INVALID_MODEL, f"cannot inline the model's functions: {_first_line(exc)}") from None
    if len(model.graph.node) > max_nodes:
        raise GraphError(Status.INVALID_MODEL,
                         f"the graph has {len(model.graph.node)} nodes; the limit is {max_nodes}")
    standard = {"", "ai.onnx"}
    for node in _all_nodes(model.graph):
        if node.domain in standard and not onnx.defs.has(node.op_type):
            raise GraphError(Status.UNSUPPORTED_OP, f"operator {node.op_type!r} is not an ONNX operator")
        if node.domain not in _RUNTIME_DOMAINS:
            raise GraphError(Status.UNSUPPORTED_OP,
                             f"operator {node.domain}.{node.op_type} is in a domain the runtime does not implement")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise GraphError(Status.INVALID_MODEL, f"invalid ONNX model: {_first_line(exc)}") from None
    from hilnas.agent.backends.onnxrt import FEEDABLE_ELEM_TYPES

    initializers = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        elem = inp.type.tensor_type.elem_type if inp.type.HasField("tensor_type") else None
        if elem not in FEEDABLE_ELEM_TYPES:
            # The host's worker feeds numeric and boolean tensors only; it refuses the model so.
            raise GraphError(Status.UNSUPPORTED_OP, f"input {inp.name!r} is not a numeric or boolean tensor, "
                                                    "which the agent cannot feed")
        for dim in inp.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value") or dim.dim_value < 0:   # symbolic: fed as 1, as the host does
                dim.Clear()
                dim.dim_value = 1
    # Strict inference catches what a runtime rejects at load time (e.g. MatMul shape mismatches);
    # ops outside the standard domain have no shape functions, so those graphs go non-strict.
    strict = all(n.domain in standard for n in model.graph.node)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=strict)
        if not _safe_to_propagate(inferred):
            return inferred
        # Data propagation resolves shapes computed in the graph (Shape -> Concat -> Reshape).
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=strict, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError) as exc:
        raise GraphError(Status.INVALID_MODEL, f"shape inference failed: {_first_line(exc)}") from None


# ONNX's data propagation computes the values of constant tensors in the analysing process: a
# ConstantOfShape or Range of 4e9 elements hangs it for ever, an Add of two 16 M-element weights
# takes 7 s. It only matters for small shape tensors, so it runs only when every constant and
# every generated tensor is small.
_PROPAGATE_MAX_ELEMENTS = 1 << 16
_GENERATORS = ("ConstantOfShape", "Range", "Expand", "Tile")


def _safe_to_propagate(model) -> bool:
    graph = model.graph
    if any(math.prod(i.dims) > _PROPAGATE_MAX_ELEMENTS for i in graph.initializer):
        return False
    shapes = {vi.name: [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
              for vi in [*graph.value_info, *graph.output] if vi.type.tensor_type.HasField("shape")}
    for node in _all_nodes(graph):
        if node.op_type in _GENERATORS:
            for out in node.output:
                dims = shapes.get(out)
                if dims is None or any(d < 0 for d in dims) or math.prod(dims) > _PROPAGATE_MAX_ELEMENTS:
                    return False
    return True


def _all_nodes(graph):
    """Every node of a graph and of the subgraphs of its control-flow nodes."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _all_nodes(g)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _unique_names(graph) -> list[str]:
    names, seen = [], set()
    for i, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{i}"
        if name in seen:
            name = f"{name}#{i}"
        seen.add(name)
        names.append(name)
    return names


def _fold(graph, tensors: _Tensors, names: list[str]) -> dict[str, str]:
    """Nodes a runtime removes before running (constant subgraphs, identities, common
    subexpressions, dead nodes). Rewrites node inputs past removed nodes, as the runtime does."""
    folded: dict[str, str] = {}
    outputs = {o.name for o in graph.output}
    alias: dict[str, str] = {}
    seen: dict[tuple, object] = {}
    # Only nodes the outputs need (before any merging) take part in merging, so "duplicate"
    # marks exactly what a runtime without common-subexpression elimination computes on top.
    needed_before = _live(graph, names)
    for node, name in zip(graph.node, names):
        for k, i in enumerate(node.input):
            if i in alias:
                node.input[k] = alias[i]
        ins = [i for i in node.input if i]
        keeps_output = bool(set(node.output) & outputs)
        static_shape = node.op_type in ("Shape", "Size") and ins and tensors.numel(ins[0]) is not None
        if node.op_type in _NONDETERMINISTIC or node.op_type in CONTROL_FLOW:
            continue   # control flow runs at every inference (ONNX Runtime folds no subgraphs)
        if all(i in tensors.constant for i in ins) or static_shape:
            folded[name] = "constant"
            tensors.constant.update(o for o in node.output if o)
        elif node.op_type in _IDENTITY and ins and not keeps_output and not any(node.output[1:]):
            folded[name] = "identity"
            alias[node.output[0]] = ins[0]
        else:
            key = (node.domain, node.op_type, tuple(node.input),
                   tuple(a.SerializeToString() for a in node.attribute))
            if name not in needed_before:
                continue
            if key in seen and not keeps_output:
                folded[name] = "duplicate"   # ORT's common-subexpression elimination
                alias.update(zip(node.output, seen[key].output))
            else:
                seen[key] = node
    live = _live(graph, names)
    for name in names:
        if name not in live and name not in folded:
            folded[name] = "dead"
    return folded


def _live(graph, names: list[str]) -> set[str]:
    """Names of the nodes the graph outputs depend on (walk back from the outputs)."""
    producer = {o: (node, name) for node, name in zip(graph.node, names) for o in node.output if o}
    needed = [o.name for o in graph.output]
    live: set[str] = set()
    while needed:
        tensor = needed.pop()
        if tensor not in producer or producer[tensor][1] in live:
            continue
        node, name = producer[tensor]
        live.add(name)
        needed.extend(i for i in node.input if i)
    return live


def _node_cost(node, name: str, t: _Tensors, folded: str, warnings: list[str]) -> NodeCost:
    """FLOPs and bytes of one node by its operator's formula."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    ins = [i for i in node.input if i]
    outs = [o for o in node.output if o]
    act_in = [i for i in ins if i not in t.constant]
    in_bytes = sum(t.nbytes(i) for i in act_in)
    params = sum(t.nbytes(i) for i in ins if i in t.constant)
    out_bytes = sum(t.nbytes(o, fallback=max([t.nbytes(i) for i in ins] or [0])) for o in outs)
    out0 = outs[0] if outs else ""
    shape = t.shape.get(out0) or ()
    out_n = t.numel(out0) if out0 else 0
    if out_n is None:
        out_n = out_bytes // max(1, t.elem.get(out0, 4))
        warnings.append(f"{node.op_type}: output shape unknown; costed from input sizes")
    op = node.op_type
    flops, variant, view = 0.0, "", False
    if op in CONTROL_FLOW:
        trips, body = control_flow_cost(node, name, t, warnings, _node_cost)
        return NodeCost(op_type=op, name=name, flops=0.0, bytes_read=0, bytes_written=out_bytes, params_bytes=params,
                        output_shape=tuple(shape), folded=folded, trips=trips, body=body)
    if op in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv"):
        w = ins[3] if op == "QLinearConv" else ins[1]
        w_shape = t.shape.get(w) or ()
        w_n = _numel(w_shape) or 0
        per_out = w_n / w_shape[0] if w_shape and w_shape[0] else 0
        x_n = t.numel(ins[0]) or 0
        macs = (x_n if op == "ConvTranspose" else out_n) * per_out
        has_bias = len(ins) > (8 if op == "QLinearConv" else 2)
        flops = 2.0 * macs + (out_n if has_bias else 0)
        group = int(attrs.get("group", 1))
        cin = (w_shape[1] * group if op != "ConvTranspose" else w_shape[0]) if len(w_shape) > 1 else 0
        x_shape = t.shape.get(ins[0]) or ()
        if len(x_shape) > 1 and x_shape[1] > 0 and cin and x_shape[1] != cin:
            # ONNX shape inference does not check this; a runtime refuses the model at load.
            raise GraphError(Status.INVALID_MODEL, f"{op} {name!r}: input has {x_shape[1]} channels, "
                                                   f"the weights expect {cin}")
        kernel = w_shape[2:]
        if group > 1:
            variant = "depthwise" if group == cin else "grouped"
        elif kernel and all(k == 1 for k in kernel):
            variant = "pointwise"
    elif op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
        a = t.shape.get(ins[0]) or ()
        if op == "Gemm" and len(a) == 2:
            k = a[0] if attrs.get("transA", 0) else a[1]
        else:
            k = a[-1] if a else 0
        flops = 2.0 * out_n * max(k, 0) + (out_n if op == "Gemm" and len(ins) > 2 else 0)
    elif op in ("MaxPool", "AveragePool", "LpPool"):
        k = math.prod(attrs.get("kernel_shape", [1]))
        flops = float(out_n * k + (out_n if op == "AveragePool" else 0))
    elif op in ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool") or op in _REDUCE:
        flops = float((t.numel(ins[0]) or out_n) + out_n)
    elif op == "Resize" or op == "Upsample":
        flops = float(out_n * (1 if attrs.get("mode", b"nearest") in (b"nearest", "nearest") else 4))
    elif op in _VIEWS:
        view = True
    elif op in _MEMORY:
        if op in ("Slice", "Gather", "GatherND", "GatherElements"):
            in_bytes = out_bytes          # only the selected part is read
    elif op in _ELEMENTWISE:
        flops = float(out_n * _ELEMENTWISE[op])
    elif op not in ("Shape", "Size", "Constant", "ConstantOfShape"):
        flops = float(out_n)              # unknown op: one FLOP per output element, bytes moved
        warnings.append(f"{op}: no cost formula; costed as one FLOP per output element")
    if view:
        in_bytes = out_bytes = 0
    return NodeCost(op_type=op, name=name, flops=flops, bytes_read=in_bytes,
                    bytes_written=out_bytes, params_bytes=params, output_shape=tuple(shape),
                    variant=variant, fusable=op in _FUSABLE, folded=folded, view=view)


def _fuse(graph, t: _Tensors, names: list[str], folded: dict[str, str]) -> dict[str, str]:
    """Map fused node name -> head node name, as ORT's Conv/Gemm fusions do."""
    run = [(n, name) for n, name in zip(graph.node, names) if name not in folded]
    consumers: dict[str, list] = {}
    for node, name in run:
        for i in node.input:
            consumers.setdefault(i, []).append((node, name))
    outputs = {o.name for o in graph.output}
    fused: dict[str, str] = {}

    def single_consumer(tensor: str):
        users = consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in outputs else None

    for node, name in run:
        if name in fused:
            continue
        if node.op_type == "Pad":   # Pad(constant 0) + Conv -> Conv with pads
            nxt = single_consumer(node.output[0])
            mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
            if nxt and nxt[0].op_type == "Conv" and mode == b"constant" and \
                    all(i in t.constant for i in node.input[1:] if i):
                fused[name] = nxt[1]
            continue
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        conv = node.op_type in ("Conv", "ConvTranspose")
        cur = node
        while True:
            nxt = single_consumer(cur.output[0])
            if nxt is None or nxt[1] in fused:
                break
            n2 = nxt[0]
            others = [i for i in n2.input if i and i != cur.output[0]]
            const = all(i in t.constant for i in others)
            if n2.op_type == "BatchNormalization" and conv and n2.input[0] == cur.output[0] and const:
                ok = True
            elif n2.op_type in _AFFINE and const and len(others) == 1 and (conv or n2.op_type == "Add"):
                ok = True
            elif n2.op_type in _ACTIVATIONS and const:
                fused[nxt[1]] = name
                break                      # nothing fuses after the activation
            else:
                ok = False
            if not ok:
                break
            fused[nxt[1]] = name
            cur = n2
    return fused


def _with_fusion(cost: NodeCost, head: str) -> NodeCost:
    if not head:
        return cost
    from dataclasses import replace
    return replace(cost, fused_into=head)
