"""Op keys: the name of one operator instance, the unit a latency/energy LUT is keyed by.

A key is an op name plus the shape it runs at, encoded as
``sep_conv_3x3|cin=16|cout=16|h=32|w=32|s=1`` (h, w: input size; s: stride; batch is always 1).
Kernel size and dilation are implied by the op name. Ops of future spaces that need more
integers (an expansion ratio, groups) carry them in ``params``, encoded after ``s`` in name order.

The keys of a network add up to the whole network: its stem, the DARTS preprocessing, every
live cell edge, each binary node sum (``add``), the DARTS cell output (``concat``), NB201's ResNet
reduction blocks and last BN-ReLU, and the head (``gap_linear``). ``none`` edges cost nothing and
have no key; neither do edges that are dead because ``none`` cut them off (see
``genotype.wire_cell``), nor the zeros an NB201 cell without a path to its output returns.
``hilnas.searchers.model.build_network`` builds every module it contains from these same keys,
so a network's ops and its keys cannot drift apart.

This module imports torch only inside the functions that build modules, so the LUT store and
the CLI can encode and decode keys without it.
"""
from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from hilnas.searchers.genotype import NB201_EDGES, CellWiring, Genotype, NB201Genotype, wire_cell
from hilnas.searchers.spaces import DartsCellSpec, DartsSpace, NB201Layer, NB201Space, SearchSpace, SpaceError

if TYPE_CHECKING:
    from torch import nn

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_CORE = ("cin", "cout", "h", "w", "s")


class OpKeyError(ValueError):
    """An op key string is malformed, or names an op or shape that cannot be built."""


@dataclass(frozen=True)
class OpKey:
    """One operator instance: op name, channels in/out, input H and W, stride, and any extra integers."""
    op: str
    cin: int
    cout: int
    h: int
    w: int
    stride: int = 1
    params: tuple[tuple[str, int], ...] = ()  # extra integer fields, kept sorted by name

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or not _NAME.match(self.op):
            raise OpKeyError(f"op name must match [a-z][a-z0-9_]*, got {self.op!r}")
        for f in ("cin", "cout", "h", "w", "stride"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise OpKeyError(f"{self.op}: {f} must be a positive int, got {v!r}")
        try:
            params = tuple(sorted((str(k), v) for k, v in dict(self.params).items()))
        except (TypeError, ValueError):
            raise OpKeyError(f"{self.op}: params must be (name, int) pairs, got {self.params!r}") from None
        if len(params) != len(tuple(self.params)):
            raise OpKeyError(f"{self.op}: duplicate params in {self.params!r}")
        for k, v in params:
            if not _NAME.match(k) or k in _CORE:
                raise OpKeyError(f"{self.op}: bad param name {k!r}")
            if not isinstance(v, int) or isinstance(v, bool):
                raise OpKeyError(f"{self.op}: param {k} must be an int, got {v!r}")
        object.__setattr__(self, "params", params)

    def encode(self) -> str:
        core = f"{self.op}|cin={self.cin}|cout={self.cout}|h={self.h}|w={self.w}|s={self.stride}"
        return core + "".join(f"|{k}={v}" for k, v in self.params)

    def __str__(self) -> str:
        return self.encode()

    @classmethod
    def decode(cls, text: str, *, known_only: bool = True) -> OpKey:
        return decode(text, known_only=known_only)


def encode(key: OpKey) -> str:
    return key.encode()


def decode(text: str, *, known_only: bool = True) -> OpKey:
    """Parse an encoded key (fields after the name in any order). ``known_only``: the op must be buildable."""
    if not isinstance(text, str) or not text.strip():
        raise OpKeyError(f"op key must be a non-empty string, got {text!r}")
    op, *fields = text.strip().split("|")
    values: dict[str, int] = {}
    for field in fields:
        name, sep, value = field.partition("=")
        if not sep or not name:
            raise OpKeyError(f"op key {text!r}: field {field!r} is not name=value")
        if name in values:
            raise OpKeyError(f"op key {text!r}: field {name!r} appears twice")
        if not re.fullmatch(r"-?\d+", value):
            raise OpKeyError(f"op key {text!r}: {name}={value!r} is not an integer")
        values[name] = int(value)
    missing = [f for f in _CORE if f not in values]
    if missing:
        raise OpKeyError(f"op key {text!r}: missing {', '.join(missing)} (expected op|cin=..|cout=..|h=..|w=..|s=..)")
    extra = tuple((k, v) for k, v in values.items() if k not in _CORE)
    key = OpKey(op, values["cin"], values["cout"], values["h"], values["w"], values["s"], extra)
    if known_only and op not in _BUILDERS:
        raise OpKeyError(f"op key {text!r}: unknown op {op!r}; known: {', '.join(sorted(_BUILDERS))}")
    return key


# -- building one op --------------------------------------------------------------------------------
Builder = Callable[[OpKey], "nn.Module"]
_BUILDERS: dict[str, Builder] = {}
_FLAT_OUTPUT: set[str] = set()  # ops whose output is (1, cout) rather than (1, cout, H', W')


def register_op_builder(name: str, builder: Builder, *, flat_output: bool = False) -> None:
    """Teach ``build_op_module`` a new op name (for spaces added later)."""
    if not _NAME.match(name):
        raise OpKeyError(f"op name must match [a-z][a-z0-9_]*, got {name!r}")
    _BUILDERS[name] = builder
    if flat_output:
        _FLAT_OUTPUT.add(name)


def known_ops() -> list[str]:
    return sorted(_BUILDERS)


def _require(key: OpKey, ok: bool, what: str) -> None:
    if not ok:
        raise OpKeyError(f"{key.encode()}: {what}")


def _cell_op(key: OpKey) -> nn.Module:
    from hilnas.searchers.ops import OPS
    _require(key, key.stride in (1, 2), "cell ops take stride 1 or 2")
    _require(key, key.op not in ("max_pool_3x3", "avg_pool_3x3") or key.cin == key.cout,
             "a pool keeps the channel count (cin == cout)")
    return OPS[key.op](key.cin, key.cout, key.stride, True)


def _conv_bn_3x3(key: OpKey) -> nn.Module:
    from hilnas.searchers.ops import ConvBN
    return ConvBN(key.cin, key.cout, key.stride)


def _relu_conv_bn_1x1(key: OpKey) -> nn.Module:
    from hilnas.searchers.ops import ReLUConvBN
    return ReLUConvBN(key.cin, key.cout, 1, key.stride, 0)


def _factorized_reduce(key: OpKey) -> nn.Module:
    from hilnas.searchers.ops import FactorizedReduce
    _require(key, key.stride == 2 and key.cout >= 2, "factorized_reduce has stride 2 and cout >= 2")
    return FactorizedReduce(key.cin, key.cout)


def _resnet_block(key: OpKey) -> nn.Module:
    from hilnas.searchers.ops import ResNetBlock
    _require(key, key.stride in (1, 2), "resnet_block takes stride 1 or 2")
    _require(key, key.stride == 1 or (key.h % 2 == 0 and key.w % 2 == 0), "a stride-2 resnet_block needs even h, w")
    return ResNetBlock(key.cin, key.cout, key.stride)


def _bn_relu(key: OpKey) -> nn.Module:
    from hilnas.searchers.ops import BNReLU
    _require(key, key.cin == key.cout and key.stride == 1, "bn_relu keeps the shape (cin == cout, s=1)")
    return BNReLU(key.cin)


def _gap_linear(key: OpKey) -> nn.Module:
    from hilnas.searchers.ops import ClassifierHead
    return ClassifierHead(key.cin, key.cout)


def _add(key: OpKey) -> nn.Module:
    from hilnas.searchers.ops import Add
    _require(key, key.cin == key.cout and key.stride == 1, "add keeps the shape (cin == cout, s=1)")
    return Add()


def _concat(key: OpKey) -> nn.Module:
    from hilnas.searchers.ops import Concat
    _require(key, key.cout % key.cin == 0 and key.stride == 1, "concat joins cout/cin inputs of cin channels, s=1")
    return Concat(key.cout // key.cin)


for _op in ("skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
            "dil_conv_5x5", "nor_conv_1x1", "nor_conv_3x3"):
    register_op_builder(_op, _cell_op)
register_op_builder("conv_bn_3x3", _conv_bn_3x3)            # stems
register_op_builder("relu_conv_bn_1x1", _relu_conv_bn_1x1)  # DARTS preprocessing of a cell input
register_op_builder("factorized_reduce", _factorized_reduce)  # DARTS preprocessing after a reduction
register_op_builder("resnet_block", _resnet_block)          # NB201 reduction between stages
register_op_builder("bn_relu", _bn_relu)                    # NB201 last activation
register_op_builder("gap_linear", _gap_linear, flat_output=True)  # head: global pool + classifier
register_op_builder("add", _add)                            # one binary sum at a node
register_op_builder("concat", _concat)                      # DARTS cell output


def build_op_module(key: OpKey) -> nn.Module:
    """A fresh torch module for the key (training mode, default init)."""
    if key.op not in _BUILDERS:
        raise OpKeyError(f"{key.encode()}: unknown op {key.op!r}; known: {', '.join(known_ops())}")
    return _BUILDERS[key.op](key)


def op_input_shape(key: OpKey) -> tuple[int, int, int, int]:
    return (1, key.cin, key.h, key.w)  # (B, C, H, W)


def op_output_shape(key: OpKey) -> tuple[int, ...]:
    if key.op in _FLAT_OUTPUT:
        return (1, key.cout)
    return (1, key.cout, -(-key.h // key.stride), -(-key.w // key.stride))  # 'same' padding: ceil(H / s)


def _seeded_module(key: OpKey) -> nn.Module:
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(key.encode().encode()))  # same key -> same bytes -> agent cache hit
        module = build_op_module(key)
    return module.eval()


def export_op_onnx(key: OpKey, *, opset: int = 17) -> bytes:
    """A batch-1 ONNX micro-model of one op, deterministic for a given key."""
    from hilnas.searchers.export import export_onnx
    return export_onnx(_seeded_module(key), op_input_shape(key), None, opset=opset)


def export_op_tflite(key: OpKey) -> bytes:
    """A batch-1 TFLite micro-model of one op; needs the optional converter (see ``export.export_tflite``)."""
    from hilnas.searchers.export import export_tflite
    return export_tflite(_seeded_module(key), op_input_shape(key), None)


# -- the keys of a space ----------------------------------------------------------------------------
def stem_key(space: SearchSpace) -> OpKey:
    n = space.input_size
    return OpKey("conv_bn_3x3", space.in_channels, space.stem_channels, n, n, 1)


def head_key(space: SearchSpace) -> OpKey:
    n = space.head_size
    return OpKey("gap_linear", space.head_channels, space.num_classes, n, n, 1)


def darts_preprocess_keys(cell: DartsCellSpec) -> tuple[OpKey, OpKey]:
    """Keys that bring cell inputs s0, s1 to (C, size_prev)."""
    n = cell.size_prev
    if cell.reduction_prev:
        k0 = OpKey("factorized_reduce", cell.C_prev_prev, cell.C, cell.size_prev_prev, cell.size_prev_prev, 2)
    else:
        k0 = OpKey("relu_conv_bn_1x1", cell.C_prev_prev, cell.C, n, n, 1)
    return k0, OpKey("relu_conv_bn_1x1", cell.C_prev, cell.C, n, n, 1)


def darts_edge_key(cell: DartsCellSpec, src: int, op: str) -> OpKey | None:
    """Key of op on an edge from node ``src``; edges from the inputs of a reduction cell are strided."""
    if op == "none":
        return None
    if src < 2:
        n, s = cell.size_prev, (2 if cell.reduction else 1)
    else:
        n, s = cell.size, 1
    return OpKey(op, cell.C, cell.C, n, n, s)


def darts_add_key(cell: DartsCellSpec) -> OpKey:
    return OpKey("add", cell.C, cell.C, cell.size, cell.size, 1)


def darts_concat_key(cell: DartsCellSpec, n_inputs: int) -> OpKey | None:
    return OpKey("concat", cell.C, n_inputs * cell.C, cell.size, cell.size, 1) if n_inputs > 1 else None


def nb201_edge_key(layer: NB201Layer, op: str) -> OpKey | None:
    return None if op == "none" else OpKey(op, layer.C_in, layer.C_out, layer.size, layer.size, 1)


def nb201_add_key(layer: NB201Layer) -> OpKey:
    return OpKey("add", layer.C_out, layer.C_out, layer.size, layer.size, 1)


def nb201_resblock_key(layer: NB201Layer) -> OpKey:
    return OpKey("resnet_block", layer.C_in, layer.C_out, layer.size, layer.size, layer.stride)


def nb201_lastact_key(space: NB201Space) -> OpKey:
    n = space.head_size
    return OpKey("bn_relu", space.head_channels, space.head_channels, n, n, 1)


@functools.singledispatch
def fixed_op_keys(space: SearchSpace) -> list[OpKey]:
    """Keys every network of the space contains whatever its genotype (a multiset, in network order).

    A DARTS genotype that leaves a cell input unused drops that input's preprocessing; ``add``
    keys depend on the genotype and are not here.
    """
    raise SpaceError(f"no op keys defined for space {type(space).__name__}")


@fixed_op_keys.register
def _(space: DartsSpace) -> list[OpKey]:
    keys = [stem_key(space)]
    for cell in space.cells():
        keys += darts_preprocess_keys(cell)
        keys += _optional(darts_concat_key(cell, space.steps))
    return keys + [head_key(space)]


@fixed_op_keys.register
def _(space: NB201Space) -> list[OpKey]:
    keys = [stem_key(space)] + [nb201_resblock_key(l) for l in space.layers() if l.kind == "resblock"]
    return keys + [nb201_lastact_key(space), head_key(space)]


@functools.singledispatch
def edge_op_keys(space: SearchSpace) -> dict[tuple[int, int, str], OpKey]:
    """Key of every (cell, edge, op) the space can place, ``none`` excluded.

    cell: ordinal among the cells (0..num_cells-1, fixed blocks not counted); edge: index into
    ``space.edges``; op: a name from ``space.ops``. This is what a differentiable LUT cost
    model needs: the expected cost of a relaxed cell is sum over edges and ops of weight x LUT[key].
    """
    raise SpaceError(f"no op keys defined for space {type(space).__name__}")


@edge_op_keys.register
def _(space: DartsSpace) -> dict[tuple[int, int, str], OpKey]:
    out = {}
    for cell in space.cells():
        for e, (src, _) in enumerate(space.edges):
            for op in space.ops:
                key = darts_edge_key(cell, src, op)
                if key is not None:
                    out[(cell.index, e, op)] = key
    return out


@edge_op_keys.register
def _(space: NB201Space) -> dict[tuple[int, int, str], OpKey]:
    out = {}
    for i, layer in enumerate(l for l in space.layers() if l.kind == "cell"):
        for e in range(len(space.edges)):
            for op in space.ops:
                key = nb201_edge_key(layer, op)
                if key is not None:
                    out[(i, e, op)] = key
    return out


@functools.singledispatch
def enumerate_op_keys(space: SearchSpace) -> list[OpKey]:
    """Every distinct op instance the space can place (fixed parts, edges, adds), in network order."""
    raise SpaceError(f"no op keys defined for space {type(space).__name__}")


def _optional(key: OpKey | None) -> list[OpKey]:
    return [] if key is None else [key]


def _distinct(keys: list[OpKey]) -> list[OpKey]:
    return list(dict.fromkeys(keys))


@enumerate_op_keys.register
def _(space: DartsSpace) -> list[OpKey]:
    edges = edge_op_keys(space)
    keys = [stem_key(space)]
    for cell in space.cells():
        keys += darts_preprocess_keys(cell)
        keys += [k for (c, _, _), k in edges.items() if c == cell.index]
        keys.append(darts_add_key(cell))
        keys += _optional(darts_concat_key(cell, space.steps))
    return _distinct(keys + [head_key(space)])


@enumerate_op_keys.register
def _(space: NB201Space) -> list[OpKey]:
    edges = edge_op_keys(space)
    keys, cell_i = [stem_key(space)], 0
    for layer in space.layers():
        if layer.kind == "resblock":
            keys.append(nb201_resblock_key(layer))
            continue
        keys += [k for (c, _, _), k in edges.items() if c == cell_i]
        keys.append(nb201_add_key(layer))
        cell_i += 1
    return _distinct(keys + [nb201_lastact_key(space), head_key(space)])


@functools.singledispatch
def network_op_keys(space: SearchSpace, genotype: Any) -> list[OpKey]:
    """The keys of one discrete network, with repeats: its predicted cost is the sum of their LUT values."""
    raise SpaceError(f"no op keys defined for space {type(space).__name__}")


def darts_cell_wiring(genotype: Genotype, reduction: bool
                      ) -> tuple[list[tuple[int, int, str]], tuple[int, ...], CellWiring]:
    """A DARTS cell as (src, dst, op) edges, its concat, and which edges are live."""
    edges, concat = genotype.cell(reduction)
    triples = [(src, k // 2 + 2, op) for k, (op, src) in enumerate(edges)]
    return triples, concat, wire_cell(triples, 2, concat)


def nb201_cell_wiring(genotype: NB201Genotype) -> tuple[list[tuple[int, int, str]], CellWiring]:
    """An NB201 cell as (src, dst, op) edges and which edges are live."""
    triples = [(s, d, op) for (s, d), op in zip(NB201_EDGES, genotype.ops)]
    return triples, wire_cell(triples, 1, (3,))


@network_op_keys.register
def _(space: DartsSpace, genotype: Any) -> list[OpKey]:
    space.check(genotype)
    keys = [stem_key(space)]
    for cell in space.cells():
        triples, concat, wiring = darts_cell_wiring(genotype, cell.reduction)
        pre = darts_preprocess_keys(cell)
        keys += [pre[i] for i in (0, 1) if i in wiring.used_inputs]
        for node in range(2, space.steps + 2):
            live = [darts_edge_key(cell, s, op) for (s, d, op), ok in zip(triples, wiring.live) if ok and d == node]
            keys += live + [darts_add_key(cell)] * max(0, len(live) - 1)
        keys += _optional(darts_concat_key(cell, len(concat)))
    return keys + [head_key(space)]


@network_op_keys.register
def _(space: NB201Space, genotype: Any) -> list[OpKey]:
    space.check(genotype)
    triples, wiring = nb201_cell_wiring(genotype)
    keys = [stem_key(space)]
    for layer in space.layers():
        if layer.kind == "resblock":
            keys.append(nb201_resblock_key(layer))
            continue
        for node in (1, 2, 3):
            live = [nb201_edge_key(layer, op) for (s, d, op), ok in zip(triples, wiring.live) if ok and d == node]
            keys += live + [nb201_add_key(layer)] * max(0, len(live) - 1)
    return keys + [nb201_lastact_key(space), head_key(space)]
