"""Checks a model before it is cached or run: size, hash, structure and sanity limits.

Nothing here executes the model. Operators the runtime cannot run are not detected here: the
runtime reports those (UNSUPPORTED_OP) when the worker loads the model.
"""
from __future__ import annotations

import hashlib
import math
import re
import struct

from hilnas.agent.config import AgentLimits
from hilnas.agent.device import AgentError
from hilnas.agent.results import ModelFormat, Status

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
TFLITE_IDENTIFIER = b"TFL3"
TFLITE_SCHEMA_VERSION = 3
# A legitimate graph has a few tensors per operator (outputs, weights, constants); this bounds
# the work a hostile flatbuffer can cause the checker while leaving room for wide concats.
TENSORS_PER_NODE = 16


def is_sha256(value: str) -> bool:
    """True for a 64-character lowercase hex string, the only form the agent accepts."""
    return isinstance(value, str) and _SHA256_RE.fullmatch(value) is not None


def check_sha256(sha256: str) -> None:
    """The one rule for the hash a client sends, on every path (unary, stream, hash-only, cache):
    anything but 64 lowercase hex characters is HASH_MISMATCH, as no bytes can hash to it."""
    if not is_sha256(sha256):
        shown = sha256[:80] if isinstance(sha256, str) else type(sha256).__name__
        raise AgentError(Status.HASH_MISMATCH, f"sha256 must be 64 lowercase hex characters, got {shown!r}")


def check_model(data: bytes, sha256: str, fmt: ModelFormat, limits: AgentLimits) -> None:
    """Raise ``AgentError`` with a typed status if ``data`` must not be cached or run."""
    check_sha256(sha256)
    if len(data) > limits.max_model_bytes:
        raise AgentError(Status.MODEL_TOO_LARGE,
                         f"model is {len(data)} bytes, over the limit of {limits.max_model_bytes} bytes")
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise AgentError(Status.HASH_MISMATCH, f"sha256 mismatch: expected {sha256}, got {got}")
    if not data:
        raise AgentError(Status.INVALID_MODEL, "model is empty (0 bytes)")
    if fmt == ModelFormat.ONNX:
        _check_onnx(data, limits)
    elif fmt == ModelFormat.TFLITE:
        _check_tflite(data, limits)
    else:
        raise AgentError(Status.INVALID_MODEL, f"unknown model format {fmt!r}")


def _invalid(message: str) -> AgentError:
    return AgentError(Status.INVALID_MODEL, message)


# ----------------------------------------------------------------------------------- ONNX ----

def _check_onnx(data: bytes, limits: AgentLimits) -> None:
    import onnx  # heavy; only when an ONNX model arrives

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise _invalid(f"not a valid ONNX model (garbage or truncated bytes): {exc}") from None

    # Graphs and functions, including the subgraphs of control-flow nodes (Loop, If, Scan).
    nodes = 0
    work: list = [model.graph, *model.functions]
    while work:
        item = work.pop()
        nodes += len(item.node)
        if nodes > limits.max_nodes:
            raise _invalid(f"model has more than {limits.max_nodes} nodes (agent limit)")
        if isinstance(item, onnx.GraphProto):
            for tensor in [*item.initializer, *(s.values for s in item.sparse_initializer)]:
                _check_onnx_tensor(tensor, limits, "initializer")
            for vi in [*item.input, *item.output, *item.value_info]:
                _check_onnx_value_info(vi, limits)
        for node in item.node:
            where = f"attribute of node {node.name or node.op_type!r}"
            for attr in node.attribute:
                for tensor in [attr.t] if attr.HasField("t") else []:
                    _check_onnx_tensor(tensor, limits, where)
                for tensor in attr.tensors:
                    _check_onnx_tensor(tensor, limits, where)
                if attr.HasField("g"):
                    work.append(attr.g)
                work.extend(attr.graphs)

    _check_inlined_size(model, limits)
    # The cheap sanity limits above come first; the checker walks the whole model.
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError, or a C++ error for odd input
        raise _invalid(f"ONNX checker rejected the model: {_first_line(exc)}") from None


def _check_inlined_size(model, limits: AgentLimits) -> None:
    """Refuse a model whose local functions expand past ``max_nodes`` once inlined (a runtime
    inlines them at load: f_k calling f_(k-1) twice is 2^k nodes from k small functions), and a
    function that calls itself, which can never be inlined."""
    functions = {(f.domain, f.name): f for f in model.functions}
    expanded: dict[tuple[str, str], int] = {}
    cap = limits.max_nodes + 1

    def size(nodes, stack: tuple) -> int:
        total = 0
        for node in nodes:
            key = (node.domain, node.op_type)
            if key in functions:
                if key in stack:
                    raise _invalid(f"local function {key[0]}.{key[1]} calls itself; it cannot be inlined")
                if key not in expanded:
                    expanded[key] = size(functions[key].node, stack + (key,))
                total += expanded[key]
            else:
                total += 1
            for attr in node.attribute:   # control-flow bodies may call functions too
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    total += size(g.node, stack)
            if total >= cap:
                return cap   # enough to refuse; never count to 2^k
        return total

    if size(model.graph.node, ()) >= cap:
        raise _invalid(f"model has more than {limits.max_nodes} nodes once its local functions are inlined "
                       "(agent limit)")


def _check_onnx_tensor(tensor, limits: AgentLimits, what: str) -> None:
    from onnx import TensorProto

    if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
        # External data names files next to the model: a path-traversal hazard on the agent.
        raise _invalid(f"{what} {tensor.name!r} uses external data, which the agent does not accept")
    if any(d < 0 for d in tensor.dims):
        raise _invalid(f"{what} {tensor.name!r} has a negative dimension {list(tensor.dims)}")
    _check_elements(math.prod(tensor.dims), limits, f"{what} {tensor.name!r}")


def _check_onnx_value_info(vi, limits: AgentLimits) -> None:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return
    # Symbolic or unknown dimensions count as 1: the worker feeds them with 1.
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
    if any(d < 0 for d in dims):
        raise _invalid(f"tensor {vi.name!r} has a negative dimension {dims}")
    _check_elements(math.prod(dims), limits, f"tensor {vi.name!r}")


def _check_elements(elements: int, limits: AgentLimits, what: str) -> None:
    if elements > limits.max_tensor_elements:
        raise _invalid(f"{what} has {elements} elements, over the limit of "
                       f"{limits.max_tensor_elements}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------- TFLite ----

class _Malformed(Exception):
    pass


class _FlatBuffer:
    """A bounds-checked reader of just enough of the FlatBuffers wire format.

    The ``flatbuffers`` package trusts its input; a hostile file could make it read out of
    range or loop. Every offset here is checked against the buffer first.
    """

    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)

    def _read(self, fmt: str, pos: int):
        n = struct.calcsize(fmt)
        if pos < 0 or pos + n > self.size:
            raise _Malformed(f"offset {pos} out of range")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def root(self) -> int:
        return self._table_at(self._read("<I", 0))

    def _table_at(self, pos: int) -> int:
        self._read("<i", pos)  # the table itself must be in range
        return pos

    def _field(self, table: int, field_id: int) -> int:
        """Absolute position of a field, or 0 when absent (default value)."""
        vtable = table - self._read("<i", table)
        vt_size = self._read("<H", vtable)
        if vt_size < 4 or vt_size % 2:
            raise _Malformed("bad vtable")
        slot = 4 + 2 * field_id
        if slot + 2 > vt_size:
            return 0
        off = self._read("<H", vtable + slot)
        if off == 0:
            return 0
        self._read("<B", table + off)
        return table + off

    def scalar(self, table: int, field_id: int, fmt: str, default: int = 0) -> int:
        pos = self._field(table, field_id)
        return self._read(fmt, pos) if pos else default

    def _indirect(self, pos: int) -> int:
        return pos + self._read("<I", pos)

    def vector(self, table: int, field_id: int, elem_size: int) -> tuple[int, int]:
        """(start, length) of a vector field; (0, 0) when absent."""
        pos = self._field(table, field_id)
        if not pos:
            return 0, 0
        vec = self._indirect(pos)
        length = self._read("<I", vec)
        start = vec + 4
        if start + length * elem_size > self.size:
            raise _Malformed("vector runs past the end of the file")
        return start, length

    def tables(self, table: int, field_id: int) -> list[int]:
        start, length = self.vector(table, field_id, 4)
        return [self._table_at(self._indirect(start + 4 * i)) for i in range(length)]

    def vector_length(self, table: int, field_id: int) -> int:
        return self.vector(table, field_id, 4)[1]

    def ints(self, table: int, field_id: int) -> tuple[int, ...]:
        start, length = self.vector(table, field_id, 4)
        return struct.unpack_from(f"<{length}i", self.data, start) if length else ()


# Field ids from the TFLite schema (schema.fbs); the slot is 4 + 2 * id.
_MODEL_VERSION, _MODEL_OPCODES, _MODEL_SUBGRAPHS, _MODEL_BUFFERS = 0, 1, 2, 4
_SG_TENSORS, _SG_INPUTS, _SG_OUTPUTS, _SG_OPERATORS = 0, 1, 2, 3
_TENSOR_SHAPE, _TENSOR_BUFFER = 0, 2
_OP_OPCODE, _OP_INPUTS, _OP_OUTPUTS = 0, 1, 2
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


def _check_tflite(data: bytes, limits: AgentLimits) -> None:
    if len(data) < 16:
        raise _invalid(f"not a TFLite model: only {len(data)} bytes")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise _invalid(f"not a TFLite model: file identifier is {data[4:8]!r}, expected b'TFL3'")
    try:
        counts = _walk_tflite(_FlatBuffer(data), limits)
    except _Malformed as exc:
        raise _invalid(f"truncated or malformed TFLite flatbuffer: {exc}") from None
    if counts["subgraphs"] == 0:
        raise _invalid("TFLite model has no subgraphs")


def _walk_tflite(fb: _FlatBuffer, limits: AgentLimits) -> dict[str, int]:
    model = fb.root()
    version = fb.scalar(model, _MODEL_VERSION, "<I")
    if version != TFLITE_SCHEMA_VERSION:
        raise _invalid(f"TFLite schema version {version}, the runtime reads version {TFLITE_SCHEMA_VERSION}")
    n_opcodes = fb.vector_length(model, _MODEL_OPCODES)
    buffers = fb.tables(model, _MODEL_BUFFERS)
    subgraphs = fb.tables(model, _MODEL_SUBGRAPHS)

    # Count first from vector lengths (cheap), so a hostile file cannot make us walk millions.
    n_ops = sum(fb.vector_length(sg, _SG_OPERATORS) for sg in subgraphs)
    if n_ops > limits.max_nodes:
        raise _invalid(f"model has {n_ops} operators, over the limit of {limits.max_nodes}")
    n_tensors_total = sum(fb.vector_length(sg, _SG_TENSORS) for sg in subgraphs)
    if n_tensors_total > TENSORS_PER_NODE * max(limits.max_nodes, 1) + 1024:
        raise _invalid(f"model declares {n_tensors_total} tensors, implausibly many")

    for buf in buffers:
        fb.vector(buf, _BUFFER_DATA, 1)  # in range
        offset = fb.scalar(buf, _BUFFER_OFFSET, "<Q")
        size = fb.scalar(buf, _BUFFER_SIZE, "<Q")
        if offset > 1 and offset + size > fb.size:  # weights stored after the flatbuffer
            raise _Malformed(f"buffer data [{offset}, {offset + size}) past the end of the file")

    for s, sg in enumerate(subgraphs):
        tensors = fb.tables(sg, _SG_TENSORS)
        n_t = len(tensors)
        for t, tensor in enumerate(tensors):
            shape = fb.ints(tensor, _TENSOR_SHAPE)
            if any(d < -1 for d in shape):
                raise _invalid(f"subgraph {s} tensor {t} has a negative dimension {list(shape)}")
            _check_elements(math.prod(max(d, 1) for d in shape), limits, f"subgraph {s} tensor {t}")
            if fb.scalar(tensor, _TENSOR_BUFFER, "<I") >= max(len(buffers), 1):
                raise _invalid(f"subgraph {s} tensor {t} refers to a missing buffer")
        for field in (_SG_INPUTS, _SG_OUTPUTS):
            if any(not 0 <= i < n_t for i in fb.ints(sg, field)):
                raise _invalid(f"subgraph {s} inputs/outputs refer to a missing tensor")
        for o, op in enumerate(fb.tables(sg, _SG_OPERATORS)):
            if fb.scalar(op, _OP_OPCODE, "<I") >= n_opcodes:
                raise _invalid(f"subgraph {s} operator {o} refers to a missing operator code")
            for field in (_OP_INPUTS, _OP_OUTPUTS):
                if any(not -1 <= i < n_t for i in fb.ints(op, field)):  # -1 = optional input
                    raise _invalid(f"subgraph {s} operator {o} refers to a missing tensor")
    return {"subgraphs": len(subgraphs), "operators": n_ops, "tensors": n_tensors_total}


def tflite_summary(data: bytes) -> dict[str, int]:
    """Counts of subgraphs, operators and tensors of a TFLite model (raises AgentError if bad)."""
    if data[4:8] != TFLITE_IDENTIFIER:
        raise _invalid("not a TFLite model")
    try:
        return _walk_tflite(_FlatBuffer(data), AgentLimits(max_nodes=1 << 62,
                                                           max_tensor_elements=1 << 62))
    except _Malformed as exc:
        raise _invalid(f"truncated or malformed TFLite flatbuffer: {exc}") from None
