"""Cost models: what a network costs in parameters, FLOPs, or a device's LUT latency / energy.

One job: price op keys (``op_key.OpKey``) and add them up. Every model prices one key with
``key_cost``; the rest follows from the op keys of the space:

- ``genotype_cost(space, g)`` is exact: the sum of ``key_cost`` over ``network_op_keys(space, g)``
  (repeats counted, dead edges and unused DARTS preprocessing left out, one ``add`` per binary
  node sum), so for a LUT it is exactly the sum of LUT values the server's predictor adds up.
- ``tables(space)`` holds the same prices as tensors: per (cell, edge, op), per cell ``add`` and
  DARTS preprocessing, and the fixed rest (stem, concat, ResNet blocks, head).
- ``expected_cost(space, op_weights, edge_weights)`` is the differentiable cost of a relaxed
  supernet, the expectation of the exact cost under the way a genotype is derived from it:
  NB201 keeps one op per edge (``none`` included), so each (edge, op) counts with its weight and
  a node pays ``(live inputs - 1)`` adds, in expectation. DARTS keeps, per node, the two
  strongest incoming edges with their best non-``none`` op: edge ``e`` counts with the chance it
  is among two edges drawn without replacement in proportion to its strength, its op cost is the
  non-``none`` renormalised mean, each node pays one add, and a preprocessing conv counts with
  the chance its input is used. At decisive alphas this equals ``genotype_cost`` of the derived
  genotype (tested; for NB201 when no ``none`` edge cuts another edge off, since the relaxation
  still counts edges that such a cut leaves dead); at uniform alphas it is the cost of an average
  derived cell, not the sum over all 14 mixed edges (the over-count seed 001's lookup graph
  otherwise has to absorb).

Units follow the budget metric names: ``latency_ms`` (ms), ``energy_mj`` (mJ per inference),
``params_m`` (millions of parameters), ``mflops`` (millions of multiply-accumulates of convs and
linear layers, the "FLOPs" NAS papers report).
"""
from __future__ import annotations

import abc
import functools
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from hilnas.searchers.genotype import Genotype, NB201Genotype, wire_cell
from hilnas.searchers.op_key import (OpKey, darts_add_key, darts_preprocess_keys, edge_op_keys,
                                     enumerate_op_keys, fixed_op_keys, nb201_add_key, network_op_keys)
from hilnas.searchers.spaces import DartsSpace, NB201Space, SearchSpace, SpaceError

if TYPE_CHECKING:
    import torch

METRICS: dict[str, str] = {"latency_ms": "ms", "energy_mj": "mJ", "params_m": "M params", "mflops": "MFLOPs"}
_EPS = 1e-6


class MissingOpsError(KeyError):
    """A LUT lacks op keys the space needs; ``keys`` names them (sorted)."""

    def __init__(self, keys: Iterable[str], *, lut_name: str = "LUT", fix: str = "`hilnas lut build` for this space"):
        """``fix``: how to measure them (the server, which knows the device and the data, names the command)."""
        self.keys = tuple(sorted(set(keys)))
        shown = ", ".join(self.keys[:8]) + (f" and {len(self.keys) - 8} more" if len(self.keys) > 8 else "")
        super().__init__(f"the {lut_name} has no value for {len(self.keys)} op key(s) the search space needs: "
                         f"{shown}. Measure them first: {fix}")

    def __str__(self) -> str:
        return self.args[0]


def cell_types(space: SearchSpace) -> tuple[str, ...]:
    """The alpha set each searched cell uses, by cell ordinal: "normal"/"reduce" (DARTS) or "cell" (NB201)."""
    if isinstance(space, DartsSpace):
        return tuple("reduce" if c.reduction else "normal" for c in space.cells())
    if isinstance(space, NB201Space):
        return tuple("cell" for l in space.layers() if l.kind == "cell")
    raise SpaceError(f"no cost relaxation for space {type(space).__name__}")


@dataclass(frozen=True)
class CostTables:
    """A cost model's prices for one space, as tensors (float64) indexed like the supernet's alphas."""
    cell_types: tuple[str, ...]    # per cell ordinal
    edge: torch.Tensor             # (cells, edges, ops): op on edge of cell; 0 for "none"
    add: torch.Tensor              # (cells,): one binary add at a node of the cell
    preprocess: torch.Tensor       # (cells, 2): DARTS preprocessing of inputs s0, s1; zeros for NB201
    rest: float                    # stem, concat, ResNet blocks, last activation, head

    @property
    def fixed(self) -> float:
        """Cost of every fixed key (the rest plus all DARTS preprocessing)."""
        return self.rest + float(self.preprocess.sum())

    @functools.cached_property
    def lists(self) -> tuple[list, list, list]:
        """(edge, add, preprocess) as nested Python lists: scalar lookups without tensor overhead."""
        return self.edge.tolist(), self.add.tolist(), self.preprocess.tolist()


class CostModel(abc.ABC):
    """Prices op keys; subclasses define ``key_cost`` (and ``check`` if some keys may be unpriced)."""
    name: str = "cost"
    metric: str = ""       # a key of METRICS; a Budget of the same metric constrains it
    unit: str = ""

    @abc.abstractmethod
    def key_cost(self, key: OpKey) -> float:
        """The cost of one op instance, in ``unit``."""

    def check(self, space: SearchSpace) -> None:
        """Raise MissingOpsError unless every key the space can place has a price."""

    # -- exact ----------------------------------------------------------------------------
    def genotype_cost(self, space: SearchSpace, genotype: Any) -> float:
        """Exact cost of the discrete network: the sum over its op keys (repeats counted)."""
        return float(sum(self.key_cost(k) for k in network_op_keys(space, genotype)))

    # -- tables ---------------------------------------------------------------------------
    def tables(self, space: SearchSpace) -> CostTables:
        """Prices of the space as tensors (cached per space)."""
        cache = self.__dict__.setdefault("_tables", {})
        if space not in cache:
            self.check(space)
            cache[space] = _build_tables(self, space)
        return cache[space]

    def edge_costs(self, space: SearchSpace) -> torch.Tensor:
        """(cells, edges, ops) cost of each op on each edge of each cell; 0 for "none"."""
        return self.tables(space).edge

    def fixed_cost(self, space: SearchSpace) -> float:
        """Cost of the keys every network of the space contains (``op_key.fixed_op_keys``)."""
        return self.tables(space).fixed

    # -- relaxed --------------------------------------------------------------------------
    def expected_cost(self, space: SearchSpace, op_weights: Mapping[str, torch.Tensor],
                      edge_weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Differentiable expected cost of the derived network (see the module docstring).

        op_weights[cell type]: (edges, ops) probabilities (softmax of the alphas, ops in
        ``space.ops`` order). edge_weights[cell type]: (edges,) DARTS edge-normalisation weights
        (softmax over each node's incoming edges), or None for none.
        """
        return expected_cost(space, self.tables(space), op_weights, edge_weights)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(metric={self.metric!r})"


# -- the four cost models -------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _module_stats(encoded: str) -> tuple[int, int]:
    """(parameters, multiply-accumulates) of the op key's module at batch 1."""
    import torch
    from torch import nn

    from hilnas.searchers.op_key import build_op_module, decode, op_input_shape

    key = decode(encoded)
    module = build_op_module(key).eval()
    params = sum(p.numel() for p in module.parameters())
    macs = [0]

    def conv_hook(m: nn.Conv2d, inp: Any, out: torch.Tensor) -> None:
        k = m.kernel_size[0] * m.kernel_size[1]
        macs[0] += out.numel() * (m.in_channels // m.groups) * k

    def linear_hook(m: nn.Linear, inp: Any, out: torch.Tensor) -> None:
        macs[0] += out.numel() * m.in_features

    handles = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
               for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        module(torch.zeros(op_input_shape(key)))
    for h in handles:
        h.remove()
    return params, macs[0]


class ParamsCost(CostModel):
    """Trainable parameters, in millions (BatchNorm's scale and shift included)."""
    name, metric, unit = "params", "params_m", METRICS["params_m"]

    def key_cost(self, key: OpKey) -> float:
        return _module_stats(key.encode())[0] / 1e6


class FlopsCost(CostModel):
    """Multiply-accumulates of convs and linear layers at batch 1, in millions."""
    name, metric, unit = "flops", "mflops", METRICS["mflops"]

    def key_cost(self, key: OpKey) -> float:
        return _module_stats(key.encode())[1] / 1e6


class LutCost(CostModel):
    """A measured value per encoded op key (a device's LUT); unknown keys raise MissingOpsError."""

    def __init__(self, lut: Mapping[str, float], *, name: str | None = None):
        bad = {k: v for k, v in lut.items() if v is None or not math.isfinite(float(v)) or float(v) < 0}
        if bad:
            k, v = next(iter(bad.items()))
            raise ValueError(f"{type(self).__name__}: LUT values must be finite and >= 0; {len(bad)} are not, "
                             f"e.g. {k} = {v!r}")
        self.lut = {str(k): float(v) for k, v in lut.items()}
        if name:
            self.name = name

    def key_cost(self, key: OpKey) -> float:
        try:
            return self.lut[key.encode()]
        except KeyError:
            raise MissingOpsError([key.encode()], lut_name=f"{self.name} LUT") from None

    def missing(self, keys: Iterable[OpKey]) -> list[str]:
        return sorted({k.encode() for k in keys} - self.lut.keys())

    def check(self, space: SearchSpace) -> None:
        missing = self.missing(enumerate_op_keys(space))
        if missing:
            raise MissingOpsError(missing, lut_name=f"{self.name} LUT")

    def genotype_cost(self, space: SearchSpace, genotype: Any) -> float:
        keys = network_op_keys(space, genotype)
        missing = self.missing(keys)
        if missing:
            raise MissingOpsError(missing, lut_name=f"{self.name} LUT")
        return float(sum(self.lut[k.encode()] for k in keys))


class LutLatencyCost(LutCost):
    """Latency from a device LUT: op key -> median ms (``LutRow.median_ms``)."""
    name, metric, unit = "latency", "latency_ms", METRICS["latency_ms"]


class LutEnergyCost(LutCost):
    """Energy from a device LUT: op key -> mJ per inference (``LutRow.energy_net_mj``)."""
    name, metric, unit = "energy", "energy_mj", METRICS["energy_mj"]


# -- wrappers: a device's correction, and a proxy priced at full size --------------------------------
class CorrectedCost(CostModel):
    """``scale * cost + offset`` of another cost model: the LUT sum through a device's correction.

    ``hilnas fidelity`` fits measured ~= scale * (LUT sum) + offset over networks measured whole.
    The map is affine, so the relaxed cost stays differentiable and exact: the tables are the
    base tables times ``scale`` and the offset joins the fixed rest (every network pays it once),
    so ``genotype_cost``, ``table_cost`` and ``expected_cost`` all give the corrected value.
    """

    def __init__(self, base: CostModel, scale: float, offset: float):
        if not (math.isfinite(scale) and scale > 0 and math.isfinite(offset)):
            raise ValueError(f"a correction needs a finite scale > 0 and a finite offset, got {scale!r}, {offset!r}")
        self.base, self.scale, self.offset = base, float(scale), float(offset)
        self.name, self.metric, self.unit = f"{base.name} (corrected)", base.metric, base.unit

    def key_cost(self, key: OpKey) -> float:
        return self.scale * self.base.key_cost(key)

    def check(self, space: SearchSpace) -> None:
        self.base.check(space)

    def genotype_cost(self, space: SearchSpace, genotype: Any) -> float:
        return self.scale * self.base.genotype_cost(space, genotype) + self.offset

    def tables(self, space: SearchSpace) -> CostTables:
        cache = self.__dict__.setdefault("_tables", {})
        if space not in cache:
            t, a = self.base.tables(space), self.scale
            cache[space] = CostTables(t.cell_types, t.edge * a, t.add * a, t.preprocess * a, t.rest * a + self.offset)
        return cache[space]

    def __repr__(self) -> str:
        return f"CorrectedCost({self.base!r}, scale={self.scale:.4g}, offset={self.offset:+.4g})"


class FullSizeCost(CostModel):
    """Prices the genotypes of a small proxy space at the size of ``full``, the network to be deployed.

    A search may train a proxy supernet (fewer channels or cells) to save time; the cell it
    derives is then built at full size, so the constraint must be the full-size network's cost.
    Every method asks its cost model about the space it searches; this one answers for ``full``
    instead. The proxy must have ``full``'s cells: the same kind of space, edges, ops and cell types.
    """

    def __init__(self, base: CostModel, full: SearchSpace):
        self.base, self.full = base, full
        self.name, self.metric, self.unit = base.name, base.metric, base.unit

    def key_cost(self, key: OpKey) -> float:
        return self.base.key_cost(key)

    def _full(self, space: SearchSpace) -> SearchSpace:
        f = self.full
        if (type(space) is not type(f) or space.ops != f.ops or space.edges != f.edges
                or set(cell_types(space)) != set(cell_types(f))):
            raise SpaceError(f"cannot price {space} at the size of {f}: the cells differ (the proxy must have "
                             "the full network's edges, ops and cell types)")
        return f

    def check(self, space: SearchSpace) -> None:
        self.base.check(self._full(space))

    def genotype_cost(self, space: SearchSpace, genotype: Any) -> float:
        return self.base.genotype_cost(self._full(space), genotype)

    def tables(self, space: SearchSpace) -> CostTables:
        return self.base.tables(self._full(space))

    def __repr__(self) -> str:
        return f"FullSizeCost({self.base!r}, full={self.full})"


# -- tables ------------------------------------------------------------------------------------
def _build_tables(model: CostModel, space: SearchSpace) -> CostTables:
    import torch

    types = cell_types(space)
    n_cells, n_edges, n_ops = len(types), len(space.edges), len(space.ops)
    edge = torch.zeros(n_cells, n_edges, n_ops, dtype=torch.float64)
    for (c, e, op), key in edge_op_keys(space).items():
        edge[c, e, space.ops.index(op)] = model.key_cost(key)
    add = torch.zeros(n_cells, dtype=torch.float64)
    pre = torch.zeros(n_cells, 2, dtype=torch.float64)
    if isinstance(space, DartsSpace):
        for cell in space.cells():
            add[cell.index] = model.key_cost(darts_add_key(cell))
            pre[cell.index] = torch.tensor([model.key_cost(k) for k in darts_preprocess_keys(cell)],
                                           dtype=torch.float64)
    else:
        for i, layer in enumerate(l for l in space.layers() if l.kind == "cell"):
            add[i] = model.key_cost(nb201_add_key(layer))
    rest = float(sum(model.key_cost(k) for k in fixed_op_keys(space))) - float(pre.sum())
    return CostTables(types, edge, add, pre, rest)


# -- the relaxation ----------------------------------------------------------------------------
def _in_edges(space: SearchSpace) -> dict[int, list[int]]:
    """Destination node -> indices of its incoming edges."""
    out: dict[int, list[int]] = {}
    for e, (_, dst) in enumerate(space.edges):
        out.setdefault(dst, []).append(e)
    return out


def edge_keep_probability(strength: torch.Tensor, space: SearchSpace, k: int = 2) -> torch.Tensor:
    """P(edge among ``k`` drawn without replacement, in proportion to strength, from its node's in-edges).

    (edges,) -> (edges,). For k=2: P_e = p_e (1 + sum_{f != e} p_f / (1 - p_f)), which sums to 2
    over a node and is 1 for every edge of a node with only two inputs.
    """
    import torch

    if k != 2:
        raise ValueError("only k=2 (DARTS keeps two edges per node) is implemented")
    out = []
    for dst, idx in sorted(_in_edges(space).items()):
        s = strength[idx]
        p = s / s.sum().clamp_min(_EPS)
        if len(idx) <= k:
            out.append(torch.ones_like(p))
            continue
        ratio = p / (1 - p).clamp_min(_EPS)
        out.append(p * (1 + ratio.sum() - ratio))
    return torch.cat(out)


def darts_edge_strength(op_w: torch.Tensor, edge_w: torch.Tensor | None, ops: Sequence[str]) -> torch.Tensor:
    """How strongly each edge is kept when a DARTS cell is derived: best non-none weight (x edge weight)."""
    keep = [i for i, op in enumerate(ops) if op != "none"]
    s = op_w[:, keep].max(dim=1).values
    return s * edge_w if edge_w is not None else s


def expected_cost(space: SearchSpace, tables: CostTables, op_weights: Mapping[str, torch.Tensor],
                  edge_weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """See ``CostModel.expected_cost``."""
    import torch

    ops = list(space.ops)
    none = ops.index("none") if "none" in ops else None
    total = torch.tensor(tables.rest, dtype=torch.float64)
    per_type: dict[str, dict[str, torch.Tensor]] = {}
    for t in dict.fromkeys(tables.cell_types):
        if t not in op_weights:
            raise KeyError(f"op_weights has no entry for cell type {t!r} (has {sorted(op_weights)})")
        w = op_weights[t].to(torch.float64)  # (E, O)
        if w.shape != tables.edge.shape[1:]:
            raise ValueError(f"op_weights[{t!r}] has shape {tuple(w.shape)}, expected {tuple(tables.edge.shape[1:])}")
        if isinstance(space, DartsSpace):
            ew = edge_weights.get(t) if edge_weights else None
            ew = ew.to(torch.float64) if ew is not None else None
            mask = torch.tensor([op != "none" for op in ops], dtype=torch.float64)
            w_op = w * mask
            w_op = w_op / w_op.sum(dim=1, keepdim=True).clamp_min(_EPS)   # renormalised over non-none ops
            keep = edge_keep_probability(darts_edge_strength(w, ew, ops), space)  # (E,)
            src = torch.tensor([s for s, _ in space.edges])
            unused = torch.stack([torch.prod(1 - keep[src == i]) for i in (0, 1)])  # P(input i unused)
            per_type[t] = {"w": w_op * keep[:, None], "adds": torch.tensor(float(space.steps), dtype=torch.float64),
                           "pre": 1 - unused}
        else:
            p_none = w[:, none] if none is not None else torch.zeros(w.shape[0], dtype=torch.float64)
            adds = torch.zeros((), dtype=torch.float64)
            for dst, idx in _in_edges(space).items():
                live = (1 - p_none[idx]).sum()
                adds = adds + live - 1 + torch.prod(p_none[idx])  # E[max(0, live - 1)] for independent edges
            per_type[t] = {"w": w, "adds": adds, "pre": torch.zeros(2, dtype=torch.float64)}
    for c, t in enumerate(tables.cell_types):
        v = per_type[t]
        total = total + (v["w"] * tables.edge[c]).sum() + v["adds"] * tables.add[c] \
            + (v["pre"] * tables.preprocess[c]).sum()
    first = next(iter(op_weights.values()))
    return total.to(first.dtype)


# -- fast exact cost and the cheapest / dearest reachable genotypes -------------------------------
def table_cost(space: SearchSpace, tables: CostTables, genotype: Any) -> float:
    """``genotype_cost`` from the tables (fast; equal up to float rounding, tested)."""
    edge_index = {e: i for i, e in enumerate(space.edges)}
    edge, add, pre = tables.lists
    total = tables.rest
    if isinstance(space, DartsSpace):
        wired = {}
        for reduction in (False, True):
            edges, concat = genotype.cell(reduction)
            triples = [(src, k // 2 + 2, op) for k, (op, src) in enumerate(edges)]
            wiring = wire_cell(triples, 2, concat)
            live = [(edge_index[(s, d)], space.ops.index(op)) for (s, d, op), ok in zip(triples, wiring.live) if ok]
            per_node: dict[int, int] = {}
            for (s, d, op), ok in zip(triples, wiring.live):
                if ok:
                    per_node[d] = per_node.get(d, 0) + 1
            wired[reduction] = (live, sorted(wiring.used_inputs), sum(max(0, n - 1) for n in per_node.values()))
        for c, t in enumerate(tables.cell_types):  # the tables' cells: a proxy space may have fewer
            live, used, adds = wired[t == "reduce"]
            total += sum(pre[c][i] for i in used) + sum(edge[c][e][o] for e, o in live) + add[c] * adds
        return total
    if isinstance(space, NB201Space):
        triples = [(s, d, op) for (s, d), op in zip(space.edges, genotype.ops)]
        wiring = wire_cell(triples, 1, (3,))
        live_idx = [(e, space.ops.index(op)) for e, ((s, d, op), ok) in enumerate(zip(triples, wiring.live)) if ok]
        per_node: dict[int, int] = {}
        for (s, d, op), ok in zip(triples, wiring.live):
            if ok:
                per_node[d] = per_node.get(d, 0) + 1
        adds = sum(max(0, n - 1) for n in per_node.values())
        for c in range(len(tables.cell_types)):
            total += sum(edge[c][e][o] for e, o in live_idx) + adds * add[c]
        return total
    raise SpaceError(f"no cost relaxation for space {type(space).__name__}")


@dataclass(frozen=True)
class Extremes:
    """The cheapest and the dearest genotype a search can derive in a space, with exact costs."""
    cheapest: Any
    cheapest_cost: float
    dearest: Any
    dearest_cost: float


def extremes(space: SearchSpace, model: CostModel) -> Extremes:
    """Exact cheapest and dearest derivable genotypes (cached per space).

    NB201: all ``len(ops) ** 6`` cells. DARTS: every choice of two distinct inputs per node (180
    per cell type at 4 steps) with, per edge, the cheapest (dearest) non-none op summed over the
    cells of that type; the two cell types are independent, so this is exact. MobileNet: every
    layer at the bottom (top) of its LUT grid (a cost that grows with each width).
    """
    from hilnas.searchers.spaces.mobilenet import MobileNetSpace, MobileNetWidths

    if isinstance(space, MobileNetSpace):
        lo, hi = (MobileNetWidths(tuple(f(i) for i in range(space.num_layers)))
                  for f in (space.min_width, space.max_width))
        return Extremes(lo, model.genotype_cost(space, lo), hi, model.genotype_cost(space, hi))
    cache = model.__dict__.setdefault("_extremes", {})
    if space not in cache:
        tables = model.tables(space)
        cache[space] = _darts_extremes(space, tables) if isinstance(space, DartsSpace) else \
            _nb201_extremes(space, tables)
    return cache[space]


def _nb201_extremes(space: NB201Space, tables: CostTables) -> Extremes:
    import numpy as np

    cells = nb201_cells(space.ops)
    costs = np.where(cells.valid, nb201_cell_costs(cells, tables), np.nan)  # a cell cut off from its input is no network
    lo, hi = int(np.nanargmin(costs)), int(np.nanargmax(costs))
    return Extremes(cells.genotype(lo), float(costs[lo]), cells.genotype(hi), float(costs[hi]))


@dataclass(frozen=True)
class NB201Cells:
    """Every cell of an NB201 space at once (``len(ops) ** 6`` rows), wired as ``wire_cell`` wires one."""
    ops: tuple[str, ...]
    arch: Any      # (A, 6) int: op index per edge, in NB201_EDGES order
    live: Any      # (A, 6) bool: the edge computes something that reaches the output
    adds: Any      # (A,) int: binary node sums
    valid: Any     # (A,) bool: the output depends on the input

    def genotype(self, i: int) -> NB201Genotype:
        return NB201Genotype(tuple(self.ops[int(o)] for o in self.arch[i]))


@functools.lru_cache(maxsize=8)
def nb201_cells(ops: tuple[str, ...]) -> NB201Cells:
    """All NB201 cells with their liveness, vectorised (edges 0->1, 0->2, 1->2, 0->3, 1->3, 2->3)."""
    import numpy as np

    arch = np.array(list(itertools.product(range(len(ops)), repeat=6)), dtype=np.int64)
    n = arch != ops.index("none") if "none" in ops else np.ones_like(arch, dtype=bool)  # (A, 6) op is not none
    v1 = n[:, 0]                                                  # node 1 carries a value
    v2 = n[:, 1] | (n[:, 2] & v1)
    v3 = n[:, 3] | (n[:, 4] & v1) | (n[:, 5] & v2)
    u2 = v3 & n[:, 5] & v2                                        # node 2 reaches the (valued) output
    u1 = v1 & ((v3 & n[:, 4]) | (u2 & n[:, 2]))
    src_valued = np.stack([np.ones_like(v1), np.ones_like(v1), v1, np.ones_like(v1), v1, v2], axis=1)
    dst_useful = np.stack([u1, u2, u2, v3, v3, v3], axis=1)
    live = n & src_valued & dst_useful
    per_node = np.stack([live[:, [0]].sum(1), live[:, [1, 2]].sum(1), live[:, [3, 4, 5]].sum(1)], axis=1)
    adds = np.clip(per_node - 1, 0, None).sum(axis=1)
    return NB201Cells(tuple(ops), arch, live, adds, v3)


def nb201_exact_expected_cost(cells: NB201Cells, costs: torch.Tensor, op_weights: torch.Tensor) -> torch.Tensor:
    """E[cost] of the cell drawn edge by edge from ``op_weights`` (6, ops), over all cells at once.

    Unlike ``expected_cost`` this is exact where ``none`` edges leave others dead (each cell's cost
    is its own, liveness included), and it conditions on the cell being connected, as the
    derivation only returns connected cells. ``costs``: (A,) float64 tensor of
    ``nb201_cell_costs``. Differentiable in ``op_weights``.
    """
    import torch

    arch = torch.as_tensor(cells.arch)
    logp = op_weights.to(torch.float64).clamp_min(1e-30).log()
    per_edge = logp[torch.arange(arch.shape[1])[None, :], arch]                                   # (A, 6)
    p = per_edge.sum(dim=1).exp() * torch.as_tensor(cells.valid)                                    # (A,)
    return (p * torch.nan_to_num(costs)).sum() / p.sum()


def nb201_cell_costs(cells: NB201Cells, tables: CostTables) -> Any:
    """(A,) exact cost of every cell's network (``table_cost`` for all cells at once)."""
    import numpy as np

    edge = tables.edge.sum(dim=0).double().numpy()   # (E, O): every cell of the network has the same genotype
    per_edge = edge[np.arange(cells.arch.shape[1]), cells.arch]
    return tables.rest + (per_edge * cells.live).sum(axis=1) + cells.adds * float(tables.add.sum())


@functools.lru_cache(maxsize=16384)
def _nb201_connected(ops: tuple[str, ...]) -> bool:
    """True when the NB201 cell's output depends on its input (some path of non-none edges)."""
    from hilnas.searchers.genotype import NB201_EDGES
    return 3 not in wire_cell([(s, d, op) for (s, d), op in zip(NB201_EDGES, ops)], 1, (3,)).zero_nodes


def _darts_extremes(space: DartsSpace, tables: CostTables) -> Extremes:
    ops = [o for o in space.ops if o != "none"]
    op_idx = [space.ops.index(o) for o in ops]
    edge_index = {e: i for i, e in enumerate(space.edges)}
    choices = [list(itertools.combinations(range(node + 2), 2)) for node in range(space.steps)]
    result: dict[str, dict[str, tuple[float, tuple]]] = {}
    for t in ("normal", "reduce"):
        cells = [c for c, ct in enumerate(tables.cell_types) if ct == t]
        if not cells:
            result[t] = {"min": (0.0, ()), "max": (0.0, ())}
            continue
        e_cost = tables.edge[cells][:, :, op_idx].sum(dim=0)  # (E, non-none ops), summed over cells of type t
        pre = tables.preprocess[cells].sum(dim=0)
        adds = float(tables.add[cells].sum()) * space.steps
        best: dict[str, tuple[float, tuple]] = {}
        for kind, pick in (("min", min), ("max", max)):
            per_edge = {e: pick(range(len(ops)), key=lambda o: float(e_cost[e, o])) for e in range(len(space.edges))}
            found: tuple[float, tuple] | None = None
            for combo in itertools.product(*choices):
                edges = [(src, node + 2) for node, pair in enumerate(combo) for src in pair]
                used = {s for s, _ in edges if s < 2}
                cost = adds + float(sum(pre[i] for i in used)) + \
                    sum(float(e_cost[edge_index[e], per_edge[edge_index[e]]]) for e in edges)
                if found is None or (cost < found[0] if kind == "min" else cost > found[0]):
                    found = (cost, tuple((ops[per_edge[edge_index[e]]], e[0]) for e in edges))
            best[kind] = found  # type: ignore[assignment]
        result[t] = best
    full = tuple(range(2, space.steps + 2))

    def geno(kind: str) -> Genotype:
        normal = result["normal"][kind][1] or result["reduce"][kind][1]
        reduce = result["reduce"][kind][1] or result["normal"][kind][1]
        return Genotype(normal, full, reduce, full)

    lo, hi = geno("min"), geno("max")
    return Extremes(lo, table_cost(space, tables, lo), hi, table_cost(space, tables, hi))
