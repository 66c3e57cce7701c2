"""The relaxed supernet of the DARTS and NAS-Bench-201 spaces, with DCA-NAS's speed-ups as options.

Every cell edge mixes all candidate ops with the softmax of its alphas (one alpha set per cell
type: "normal"/"reduce" for DARTS, "cell" for NB201). Seed 001's speed-ups, each an option:

- weight sharing (seed Eq. 5): edges leaving the same node share one module per op, so each op
  runs once per source node instead of once per edge; only the mixing weights differ per edge.
- channel bottleneck: only 1/K of a node's channels go through the candidate ops, the rest
  bypass the edge and are shuffled back in (partial channels, as in PC-DARTS, which seed 001
  builds on); K=1 turns it off.
- derived cells: only the first normal and first reduction cell (NB201: the first cell) mix ops;
  the other cells run, at every step, the discrete cell derived from the current alphas (one op
  per kept edge), so they cost a fraction of a mixed cell and pass no gradient to the alphas.
- edge normalisation (DARTS only): per-node edge weights beta, as PC-DARTS uses with partial
  channels; the derived cell keeps each node's two strongest edges by beta x best op weight.

``genotype()`` derives the discrete architecture: NB201 takes the argmax op per edge (``none``
included), DARTS the two strongest incoming edges per node with their best non-``none`` op.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hilnas.searchers.cost import cell_types, darts_edge_strength
from hilnas.searchers.genotype import Genotype, NB201Genotype
from hilnas.searchers.ops import (OPS, BNReLU, ClassifierHead, ConvBN, FactorizedReduce, ReLUConvBN,
                                  ResNetBlock)
from hilnas.searchers.spaces import DartsSpace, NB201Space, SearchSpace, SpaceError


@dataclass(frozen=True)
class SupernetOptions:
    """Which of seed 001's search-time savings the supernet uses (all on = DCA-NAS, all off = DARTS)."""
    weight_sharing: bool = True   # one module per (source node, op) instead of per (edge, op)
    bottleneck: int = 4           # K: 1/K of the channels pass through the candidate ops; 1 = off
    derived_cells: bool = True    # mix ops in one normal + one reduction cell only; derive the rest
    edge_norm: bool = True        # DARTS: learn per-node edge weights (ignored for NB201)

    def __post_init__(self) -> None:
        if self.bottleneck < 1:
            raise ValueError(f"bottleneck must be >= 1, got {self.bottleneck}")


DCA_OPTIONS = SupernetOptions()
DARTS_OPTIONS = SupernetOptions(weight_sharing=False, bottleneck=1, derived_cells=False, edge_norm=False)

Choice = list[tuple[int, int]]  # (edge index, op index) pairs a derived cell computes


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape  # (B, C, H, W) -> same shape, channels interleaved across groups
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class OpSet(nn.Module):
    """The candidate ops (``none`` excepted) on one input; computes only the ops asked for."""

    def __init__(self, ops: tuple[str, ...], C: int, stride: int):
        super().__init__()
        self.ops = nn.ModuleDict()
        for op in ops:
            if op == "none":
                continue
            m = OPS[op](C, C, stride, False)
            if "pool" in op:  # as DARTS: a BN after the pool keeps its scale comparable to the convs
                m = nn.Sequential(m, nn.BatchNorm2d(C, affine=False))
            self.ops[op] = m

    def forward(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        return {n: self.ops[n](x) for n in names}


class SearchCell(nn.Module):
    """One cell of the supernet: mixed edges (searched) or the derived discrete edges.

    ``edges`` are (src, dst) node pairs; nodes below ``num_inputs`` are the (preprocessed)
    inputs; the output is the concat of ``outputs`` (DARTS) or the single output node (NB201).
    """

    def __init__(self, edges: tuple[tuple[int, int], ...], num_inputs: int, outputs: tuple[int, ...],
                 ops: tuple[str, ...], C: int, strides: list[int], options: SupernetOptions,
                 preprocess: list[nn.Module] | None = None):
        super().__init__()
        self.edges, self.num_inputs, self.outputs, self.op_names, self.C = edges, num_inputs, outputs, ops, C
        self.K = options.bottleneck
        if C % self.K:
            raise SpaceError(f"bottleneck K={self.K} must divide every cell's channels; a cell has C={C}")
        self.preprocess = nn.ModuleList(preprocess or [])
        # op set of each edge: shared by source node (weight sharing) or one per edge
        self.set_of = [src if options.weight_sharing else e for e, (src, _) in enumerate(edges)]
        self.sets = nn.ModuleDict()
        for e, (src, _) in enumerate(edges):
            if str(self.set_of[e]) not in self.sets:
                self.sets[str(self.set_of[e])] = OpSet(ops, C // self.K, strides[e])
        self.strides = strides
        self.nodes = sorted({d for _, d in edges})

    def _bypass(self, x: torch.Tensor, stride: int) -> torch.Tensor:
        rest = x[:, self.C // self.K:]
        return F.max_pool2d(rest, 2, 2, ceil_mode=True) if stride == 2 else rest  # odd sizes: ceil, as the ops

    def forward(self, inputs: list[torch.Tensor], weights: torch.Tensor | None = None,
                edge_w: torch.Tensor | None = None, choice: Choice | None = None) -> torch.Tensor:
        """Mixed mode: ``weights`` (E, O) and optional ``edge_w`` (E,). Derived mode: ``choice``."""
        states = {i: (self.preprocess[i](x) if len(self.preprocess) else x) for i, x in enumerate(inputs)}
        if choice is not None:
            wanted = {}
            for e, o in choice:
                wanted.setdefault(e, []).append(o)
        else:
            assert weights is not None
            keep = [o for o, n in enumerate(self.op_names) if n != "none"]
            wanted = {e: keep for e in range(len(self.edges))}
        cache: dict[tuple[int, str], torch.Tensor] = {}  # (op set, op) -> output: shared ops run once
        ref = states[0]
        for node in self.nodes:
            terms = []
            for e, (src, dst) in enumerate(self.edges):
                if dst != node or e not in wanted or src not in states:
                    continue
                x = states[src]
                xp = x[:, : self.C // self.K] if self.K > 1 else x
                names = [self.op_names[o] for o in wanted[e]]
                todo = [n for n in names if (self.set_of[e], n) not in cache]
                if todo:
                    for n, y in self.sets[str(self.set_of[e])](xp, todo).items():
                        cache[(self.set_of[e], n)] = y
                if weights is not None:
                    mixed = sum(weights[e, o] * cache[(self.set_of[e], self.op_names[o])] for o in wanted[e])
                else:
                    mixed = sum(cache[(self.set_of[e], n)] for n in names)
                if self.K > 1:
                    mixed = channel_shuffle(torch.cat([mixed, self._bypass(x, self.strides[e])], dim=1), self.K)
                terms.append(mixed * edge_w[e] if edge_w is not None else mixed)
            if terms:
                states[node] = sum(terms)
        outs = []
        for o in self.outputs:
            if o in states:
                outs.append(states[o])
            else:  # a node without any computed input is zero (derived NB201 cells with none edges)
                size = -(-ref.shape[2] // 2) if max(self.strides) == 2 else ref.shape[2]  # 'same' padding
                outs.append(ref.new_zeros(ref.shape[0], self.C, size, size))
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]


class Supernet(nn.Module):
    """A space's relaxed network: mixed (and derived) cells, alphas per cell type, genotype derivation."""

    def __init__(self, space: SearchSpace, options: SupernetOptions = DCA_OPTIONS):
        super().__init__()
        if not isinstance(space, (DartsSpace, NB201Space)):
            raise SpaceError(f"no supernet for space {type(space).__name__}")
        self.space, self.options = space, options
        self.types = cell_types(space)
        E, O = len(space.edges), len(space.ops)
        self.alphas = nn.ParameterDict({t: nn.Parameter(1e-3 * torch.randn(E, O)) for t in dict.fromkeys(self.types)})
        # softmax temperature of the op weights: annealing it below 1 sharpens the mixture, so the
        # relaxed network (and its expected cost) approaches the derived one; derivation is unaffected
        self.temperature = 1.0
        # edges already decided (cell type -> {edge: op index}): their op weights are one-hot from then
        # on (progressive discretisation, as SGAS; DCA-NAS decides NB201 edges one at a time)
        self.fixed: dict[str, dict[int, int]] = {t: {} for t in self.alphas}
        self.use_edge_norm = options.edge_norm and isinstance(space, DartsSpace)
        self.betas = nn.ParameterDict({t: nn.Parameter(1e-3 * torch.randn(E)) for t in dict.fromkeys(self.types)}
                                      if self.use_edge_norm else {})
        first = {t: self.types.index(t) for t in dict.fromkeys(self.types)}
        self.searched = [not options.derived_cells or first[t] == c for c, t in enumerate(self.types)]
        self.in_edges: dict[int, list[int]] = {}
        for e, (_, d) in enumerate(space.edges):
            self.in_edges.setdefault(d, []).append(e)
        if isinstance(space, DartsSpace):
            self._build_darts(space)
        else:
            self._build_nb201(space)

    # -- construction -------------------------------------------------------------------------
    def _build_darts(self, space: DartsSpace) -> None:
        self.stem = ConvBN(space.in_channels, space.stem_channels)
        cells = []
        for spec in space.cells():
            pre0 = (FactorizedReduce(spec.C_prev_prev, spec.C, affine=False) if spec.reduction_prev
                    else ReLUConvBN(spec.C_prev_prev, spec.C, 1, 1, 0, affine=False))
            pre1 = ReLUConvBN(spec.C_prev, spec.C, 1, 1, 0, affine=False)
            strides = [2 if spec.reduction and src < 2 else 1 for src, _ in space.edges]
            cells.append(SearchCell(space.edges, 2, tuple(range(2, space.steps + 2)), space.ops, spec.C, strides,
                                    self.options, [pre0, pre1]))
        self.cells = nn.ModuleList(cells)
        self.head = ClassifierHead(space.head_channels, space.num_classes)

    def _build_nb201(self, space: NB201Space) -> None:
        self.stem = ConvBN(space.in_channels, space.stem_channels)
        layers = []
        for layer in space.layers():
            if layer.kind == "resblock":
                layers.append(ResNetBlock(layer.C_in, layer.C_out, layer.stride))
            else:
                layers.append(SearchCell(space.edges, 1, (3,), space.ops, layer.C_out, [1] * len(space.edges),
                                         self.options))
        self.layers = nn.ModuleList(layers)
        self.lastact = BNReLU(space.head_channels)
        self.head = ClassifierHead(space.head_channels, space.num_classes)

    # -- architecture -------------------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas.values()) + list(self.betas.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def op_weights(self) -> dict[str, torch.Tensor]:
        """Cell type -> (edges, ops) softmax of the alphas (at ``temperature``); decided edges one-hot."""
        out = {}
        for t, a in self.alphas.items():
            w = (a / self.temperature).softmax(dim=-1)
            if self.fixed.get(t):
                mask = torch.zeros_like(w, dtype=torch.bool)
                one_hot = torch.zeros_like(w)
                for e, o in self.fixed[t].items():
                    mask[e] = True
                    one_hot[e, o] = 1.0
                w = torch.where(mask, one_hot, w)
            out[t] = w
        return out

    def edge_weights(self) -> dict[str, torch.Tensor] | None:
        """Cell type -> (edges,) softmax of the betas over each node's incoming edges; None without."""
        if not self.use_edge_norm:
            return None
        order = torch.argsort(torch.tensor([e for idx in self.in_edges.values() for e in idx]))
        return {t: torch.cat([b[idx].softmax(0) for idx in self.in_edges.values()])[order]
                for t, b in self.betas.items()}

    def choices(self) -> dict[str, Choice]:
        """Cell type -> the (edge, op) pairs of the currently derived cell."""
        with torch.no_grad():
            return {t: _choice(self.space, g) for t, g in _derive(self.space, self.op_weights(),
                                                                    self.edge_weights()).items()}

    def genotype(self) -> Genotype | NB201Genotype:
        with torch.no_grad():
            return derive_genotype(self.space, self.op_weights(), self.edge_weights())

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_channels, H, W) -> (B, num_classes)
        w, ew = self.op_weights(), self.edge_weights()
        choice = self.choices() if not all(self.searched) else {}
        s = self.stem(x)
        if isinstance(self.space, DartsSpace):
            s0 = s1 = s
            for c, cell in enumerate(self.cells):
                t = self.types[c]
                out = (cell([s0, s1], w[t], ew[t] if ew else None) if self.searched[c]
                       else cell([s0, s1], choice=choice[t]))
                s0, s1 = s1, out
            return self.head(s1)
        c = 0
        for layer in self.layers:
            if isinstance(layer, SearchCell):
                s = layer([s], w["cell"]) if self.searched[c] else layer([s], choice=choice["cell"])
                c += 1
            else:
                s = layer(s)
        return self.head(self.lastact(s))


def build_supernet(space: SearchSpace, options: SupernetOptions = DCA_OPTIONS) -> Supernet:
    return Supernet(space, options)


# -- derivation ---------------------------------------------------------------------------------
def _derive(space: SearchSpace, op_weights: dict[str, torch.Tensor],
            edge_weights: dict[str, torch.Tensor] | None) -> dict[str, Any]:
    """Cell type -> derived cell: DARTS a tuple of (op, src) edges, NB201 a tuple of ops."""
    out: dict[str, Any] = {}
    ops = space.ops
    for t, w in op_weights.items():
        if isinstance(space, NB201Space):
            out[t] = _nb201_valid_cell(ops, w)
            continue
        keep = [i for i, op in enumerate(ops) if op != "none"]
        strength = darts_edge_strength(w, edge_weights.get(t) if edge_weights else None, ops)
        edges = []
        for node in range(space.steps):
            idx = [e for e, (_, d) in enumerate(space.edges) if d == node + 2]
            top = sorted(sorted(idx, key=lambda e: -float(strength[e]))[:2], key=lambda e: space.edges[e][0])
            for e in top:
                op = ops[keep[int(w[e, keep].argmax())]]
                edges.append((op, space.edges[e][0]))
        out[t] = tuple(edges)
    return out


def _nb201_valid_cell(ops: tuple[str, ...], w: torch.Tensor) -> tuple[str, ...]:
    """The per-edge argmax cell, or, when ``none`` edges cut its output off from its input, the
    connected cell with the largest product of op weights (a cut-off cell outputs zeros: its network
    predicts a constant, and its cost is a fiction)."""
    from hilnas.searchers.cost import _nb201_connected

    cell = tuple(ops[int(i)] for i in w.argmax(dim=1))
    if _nb201_connected(cell):
        return cell
    archs, valid = _nb201_cells(ops, w.shape[0])
    logw = w.detach().double().clamp_min(1e-30).log().cpu().numpy()  # (E, O)
    score = logw[np.arange(w.shape[0]), archs].sum(axis=1)
    score[~valid] = -np.inf
    return tuple(ops[o] for o in archs[int(np.argmax(score))])


@functools.lru_cache(maxsize=4)
def _nb201_cells(ops: tuple[str, ...], edges: int):
    """Every NB201 cell as op indices (N, E), and which of them connect input to output."""
    from hilnas.searchers.cost import _nb201_connected

    archs = np.array(list(itertools.product(range(len(ops)), repeat=edges)), dtype=np.int64)
    valid = np.array([_nb201_connected(tuple(ops[o] for o in a)) for a in archs])
    return archs, valid


def derive_genotype(space: SearchSpace, op_weights: dict[str, torch.Tensor],
                    edge_weights: dict[str, torch.Tensor] | None = None) -> Genotype | NB201Genotype:
    """The discrete genotype the (softmaxed) architecture weights point to."""
    cells = _derive(space, op_weights, edge_weights)
    if isinstance(space, NB201Space):
        return NB201Genotype(cells["cell"])
    full = tuple(range(2, space.steps + 2))
    normal = cells.get("normal", cells.get("reduce"))
    reduce = cells.get("reduce", normal)
    return Genotype(normal, full, reduce, full)


def _choice(space: SearchSpace, cell: Any) -> Choice:
    if isinstance(space, NB201Space):
        return [(e, space.ops.index(op)) for e, op in enumerate(cell) if op != "none"]
    index = {e: i for i, e in enumerate(space.edges)}
    return [(index[(src, k // 2 + 2)], space.ops.index(op)) for k, (op, src) in enumerate(cell)]
