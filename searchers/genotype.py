"""Architectures as plain data: the DARTS genotype and the NAS-Bench-201 cell.

A genotype names the discrete choice a search made and nothing else: no weights, no torch. Both
kinds are frozen dataclasses that validate themselves on construction (``GenotypeError`` names
the bad field) and save to / load from JSON. ``genotype_from_json`` reads either kind.

NAS-Bench-201 cells also have their benchmark identity: the canonical ``arch_str``
(``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``) and the benchmark ``index`` (0..15624) in the
benchmark's own order. That order is the product order of the 5 ops over the 6 edges (first
edge most significant), shuffled with Python's ``random.Random(88)`` as the benchmark's authors
did when they generated it; ``tests/unit/test_space_genotype.py`` checks it against every row of
``shared/data/nb201_device_latency_calibration.csv`` (HayeonLee/HELP, see PROVENANCE.md).
"""
from __future__ import annotations

import functools
import itertools
import json
import operator
import random
from dataclasses import dataclass
from typing import Any, Sequence

# The DARTS primitives in the paper's order (index i of an alpha row is DARTS_OPS[i]).
DARTS_OPS: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                              "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
# The NAS-Bench-201 primitives in the benchmark's order (this order defines the index).
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# NB201 cell edges as (src, dst) node pairs, in arch_str order: node 1 <- 0; 2 <- 0, 1; 3 <- 0, 1, 2.
NB201_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NB201_NUM_ARCHS = len(NB201_OPS) ** len(NB201_EDGES)  # 15625


class GenotypeError(ValueError):
    """A genotype (or its JSON / arch_str) is malformed."""


# -- DARTS --------------------------------------------------------------------------------------
Edge = tuple[str, int]  # (op name, input node); inputs 0 and 1 are the cell inputs


def _int(value: Any, field: str) -> int:
    """An integer node number; numpy/torch integers pass, strings, floats and bools do not."""
    if isinstance(value, bool):
        raise GenotypeError(f"{field}: node numbers must be ints, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise GenotypeError(f"{field}: node numbers must be ints, got {value!r}") from None


def _edges(value: Any, field: str) -> tuple[Edge, ...]:
    try:
        pairs = [(op, src) for op, src in value]
    except (TypeError, ValueError):
        raise GenotypeError(f"{field}: expected a list of (op, input) pairs, got {value!r}") from None
    return tuple((str(op), _int(src, field)) for op, src in pairs)


@dataclass(frozen=True)
class Genotype:
    """A discrete DARTS architecture: two edges per intermediate node, for normal and reduction cells.

    Edge ``k`` feeds intermediate node ``k // 2`` (node number ``k // 2 + 2``); its input is a
    node number below that. ``*_concat`` lists the node numbers concatenated into the cell output.
    """
    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("normal", "reduce"):
            edges = _edges(getattr(self, name), name)
            object.__setattr__(self, name, edges)
            if not edges or len(edges) % 2:
                raise GenotypeError(f"{name}: need two edges per node, got {len(edges)} edges")
            for k, (op, src) in enumerate(edges):
                if op not in DARTS_OPS:
                    raise GenotypeError(f"{name}[{k}]: unknown op {op!r}; DARTS ops are {', '.join(DARTS_OPS)}")
                node = k // 2 + 2
                if not 0 <= src < node:
                    raise GenotypeError(f"{name}[{k}]: node {node} cannot take input {src} (valid: 0..{node - 1})")
        if len(self.normal) != len(self.reduce):
            raise GenotypeError(f"normal has {len(self.normal) // 2} nodes but reduce has {len(self.reduce) // 2}")
        for name in ("normal_concat", "reduce_concat"):
            raw = getattr(self, name)
            if isinstance(raw, (str, bytes)) or not hasattr(raw, "__iter__"):
                raise GenotypeError(f"{name}: expected a list of node numbers, got {raw!r}")
            concat = tuple(_int(i, name) for i in raw)
            object.__setattr__(self, name, concat)
            last = self.steps + 1
            if not concat or len(set(concat)) != len(concat) or not all(2 <= i <= last for i in concat):
                raise GenotypeError(f"{name}: {list(concat)} must be distinct node numbers in 2..{last}")

    @property
    def steps(self) -> int:
        """Intermediate nodes per cell."""
        return len(self.normal) // 2

    def cell(self, reduction: bool) -> tuple[tuple[Edge, ...], tuple[int, ...]]:
        return (self.reduce, self.reduce_concat) if reduction else (self.normal, self.normal_concat)

    def to_dict(self) -> dict[str, Any]:
        return {"space": "darts", "normal": [list(e) for e in self.normal], "normal_concat": list(self.normal_concat),
                "reduce": [list(e) for e in self.reduce], "reduce_concat": list(self.reduce_concat)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Genotype:
        _check_kind(d, "darts")
        missing = {"normal", "normal_concat", "reduce", "reduce_concat"} - d.keys()
        if missing:
            raise GenotypeError(f"DARTS genotype is missing {sorted(missing)}")
        return cls(d["normal"], d["normal_concat"], d["reduce"], d["reduce_concat"])

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        return cls.from_dict(_load(text))


DartsGenotype = Genotype

# The genotype the DARTS paper reports (second order, CIFAR-10), handy as a reference network.
DARTS_V2 = Genotype(
    normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)),
    normal_concat=(2, 3, 4, 5),
    reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)),
    reduce_concat=(2, 3, 4, 5))


# -- NAS-Bench-201 --------------------------------------------------------------------------------
@dataclass(frozen=True)
class NB201Genotype:
    """A NAS-Bench-201 cell: one op per edge, edges in ``NB201_EDGES`` (arch_str) order."""
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.ops, str):
            raise GenotypeError("ops must be a sequence of 6 op names (use from_arch_str for a string)")
        ops = tuple(self.ops)
        object.__setattr__(self, "ops", ops)
        if len(ops) != len(NB201_EDGES):
            raise GenotypeError(f"an NB201 cell has {len(NB201_EDGES)} edges, got {len(ops)} ops")
        for (src, dst), op in zip(NB201_EDGES, ops):
            if op not in NB201_OPS:
                raise GenotypeError(f"edge {src}->{dst}: unknown op {op!r}; NB201 ops are {', '.join(NB201_OPS)}")

    @property
    def arch_str(self) -> str:
        nodes, k = [], 0
        for dst in range(1, 4):
            nodes.append("|" + "|".join(f"{self.ops[k + src]}~{src}" for src in range(dst)) + "|")
            k += dst
        return "+".join(nodes)

    @classmethod
    def from_arch_str(cls, text: str) -> NB201Genotype:
        """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (inputs of a node may come in any order)."""
        nodes = text.strip().split("+")
        if len(nodes) != 3:
            raise GenotypeError(f"arch_str needs 3 nodes separated by '+', got {len(nodes)}: {text!r}")
        ops: list[str] = []
        for dst, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")) or len(node) < 2:
                raise GenotypeError(f"node {dst} of arch_str must look like |op~i|...|, got {node!r}")
            by_src: dict[int, str] = {}
            for item in node[1:-1].split("|"):
                op, sep, src = item.partition("~")
                if not sep or not src.isdigit():
                    raise GenotypeError(f"node {dst}: bad edge {item!r} (expected op~input)")
                if int(src) in by_src:
                    raise GenotypeError(f"node {dst}: input {src} appears twice")
                by_src[int(src)] = op
            if sorted(by_src) != list(range(dst)):
                raise GenotypeError(f"node {dst} must have inputs {list(range(dst))}, got {sorted(by_src)}")
            ops += [by_src[src] for src in range(dst)]
        return cls(tuple(ops))

    @property
    def index(self) -> int:
        """Index of this cell in NAS-Bench-201 (0..15624)."""
        return _nb201_index_of()[self.ops]

    @classmethod
    def from_index(cls, index: int) -> NB201Genotype:
        if not isinstance(index, int) or not 0 <= index < NB201_NUM_ARCHS:
            raise GenotypeError(f"NB201 index must be an int in 0..{NB201_NUM_ARCHS - 1}, got {index!r}")
        return cls(_nb201_order()[index])

    def to_dict(self) -> dict[str, Any]:
        return {"space": "nb201", "arch_str": self.arch_str}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NB201Genotype:
        _check_kind(d, "nb201")
        if "arch_str" not in d:
            raise GenotypeError("NB201 genotype needs an 'arch_str'")
        return cls.from_arch_str(d["arch_str"])

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> NB201Genotype:
        return cls.from_dict(_load(text))


@functools.lru_cache(maxsize=1)
def _nb201_order() -> tuple[tuple[str, ...], ...]:
    archs = list(itertools.product(NB201_OPS, repeat=len(NB201_EDGES)))
    random.Random(88).shuffle(archs)  # the benchmark's seed; Mersenne Twister shuffle is stable across Pythons
    return tuple(archs)


@functools.lru_cache(maxsize=1)
def _nb201_index_of() -> dict[tuple[str, ...], int]:
    return {ops: i for i, ops in enumerate(_nb201_order())}


# -- shared ---------------------------------------------------------------------------------------
AnyGenotype = Genotype | NB201Genotype


def _load(text: str) -> dict[str, Any]:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise GenotypeError(f"genotype JSON does not parse: {e}") from None
    if not isinstance(d, dict):
        raise GenotypeError(f"genotype JSON must be an object, got {type(d).__name__}")
    return d


def _check_kind(d: dict[str, Any], kind: str) -> None:
    if d.get("space", kind) != kind:
        raise GenotypeError(f"expected a {kind!r} genotype, got space={d.get('space')!r}")


_KINDS: dict[str, Any] = {"darts": Genotype, "nb201": NB201Genotype}


def register_genotype_kind(cls: Any) -> Any:
    """Class decorator: ``genotype_from_json`` reads results whose ``space`` field is ``cls.kind`` with
    ``cls.from_dict`` (for result types defined beside other spaces, e.g. a ResNet's gate pattern)."""
    _KINDS[cls.kind] = cls
    return cls


def genotype_from_json(text: str) -> AnyGenotype:
    """Read a genotype of any registered kind, chosen by its ``space`` field."""
    d = _load(text)
    if d.get("space") not in _KINDS:
        raise GenotypeError(f"genotype JSON needs 'space' in {sorted(_KINDS)}, got {d.get('space')!r}")
    return _KINDS[d["space"]].from_dict(d)


@dataclass(frozen=True)
class CellWiring:
    """Which edges of a discrete cell compute something that reaches the output, and which nodes are zero.

    An edge is live when its op is not ``none``, its source carries a value, and its destination
    reaches an output. Dead edges are left out of the network, its ONNX graph and its op keys alike.
    """
    live: tuple[bool, ...]          # per edge, in the order given
    zero_nodes: frozenset[int]      # intermediate nodes without any live input (their value is 0)
    used_inputs: frozenset[int]     # cell inputs that feed a live edge


def wire_cell(edges: Sequence[tuple[int, int, str]], num_inputs: int, outputs: Sequence[int]) -> CellWiring:
    """Liveness of a cell given as ``(src, dst, op)`` edges; nodes below ``num_inputs`` are the inputs."""
    nodes = sorted({d for _, d, _ in edges} | set(outputs))
    valued = set(range(num_inputs))
    for node in nodes:  # edges always point to a higher node, so one forward pass suffices
        if any(d == node and op != "none" and s in valued for s, d, op in edges):
            valued.add(node)
    useful = {o for o in outputs if o in valued}
    for node in reversed(nodes):
        if node in useful:
            useful |= {s for s, d, op in edges if d == node and op != "none" and s in valued}
    live = tuple(op != "none" and s in valued and d in useful for s, d, op in edges)
    return CellWiring(live=live, zero_nodes=frozenset(n for n in nodes if n not in valued),
                      used_inputs=frozenset(s for (s, _, _), ok in zip(edges, live) if ok and s < num_inputs))
