"""Bring an over-budget genotype within budget by the cheapest changes along the alpha ranking.

A relaxed search meets its budget in expectation, not necessarily after the discrete
derivation. ``repair`` makes one change at a time (NB201: the op of one edge; DARTS: the input
and op of one kept edge of a node) and picks the change that loses the least architecture
log-weight per unit of cost saved, until the exact cost fits; an NB201 cell is never cut off from
its input on the way (a ``none`` too many makes its output a constant: 10 % on CIFAR-10). If no single change lowers the
cost any further, it falls back to the exact cheapest genotype (which the caller has checked
fits). Each change is reported, so the user is told what moved.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from hilnas.searchers.cost import CostModel, _nb201_connected, darts_edge_strength, extremes, table_cost
from hilnas.searchers.genotype import Genotype, NB201Genotype
from hilnas.searchers.spaces import DartsSpace, SearchSpace

_TINY = 1e-12


@dataclass(frozen=True)
class Repair:
    genotype: Any
    cost: float
    moves: tuple[str, ...]   # human-readable changes, in order


def _log(x: float) -> float:
    return math.log(max(x, _TINY))


def repair(space: SearchSpace, cost_model: CostModel, genotype: Any, budget: float,
           op_weights: Mapping[str, torch.Tensor], edge_weights: Mapping[str, torch.Tensor] | None = None,
           *, max_moves: int = 200) -> Repair:
    """The genotype moved within ``budget`` (exact cost), changing as little of the ranking as it can."""
    tables = cost_model.tables(space)
    cost = table_cost(space, tables, genotype)
    moves: list[str] = []
    score = _scorer(space, op_weights, edge_weights)
    while cost > budget and len(moves) < max_moves:
        best: tuple[float, float, Any, str] | None = None
        for cand, what in _neighbours(space, genotype):
            c = table_cost(space, tables, cand)
            saved = cost - c
            if saved <= 1e-12 * max(1.0, abs(cost)):
                continue
            key = (score(genotype) - score(cand)) / saved
            if best is None or key < best[0] or (key == best[0] and c < best[1]):
                best = (key, c, cand, what)
        if best is None:
            ex = extremes(space, cost_model)
            moves.append(f"no single change lowers the cost below {cost:.6g}; took the cheapest genotype")
            return Repair(ex.cheapest, ex.cheapest_cost, tuple(moves))
        _, cost, genotype, what = best
        moves.append(f"{what} (cost now {cost:.6g})")
    return Repair(genotype, cost, tuple(moves))


def _scorer(space: SearchSpace, op_weights: Mapping[str, torch.Tensor],
            edge_weights: Mapping[str, torch.Tensor] | None):
    """genotype -> sum of log architecture weights of its choices (higher = closer to the alphas)."""
    ops = space.ops
    logw = {t: w.detach().double().clamp_min(_TINY).log() for t, w in op_weights.items()}
    if not isinstance(space, DartsSpace):
        def nb201(g: NB201Genotype) -> float:
            return sum(float(logw["cell"][e, ops.index(op)]) for e, op in enumerate(g.ops))
        return nb201
    index = {e: i for i, e in enumerate(space.edges)}
    keep = [i for i, op in enumerate(ops) if op != "none"]
    edge_log: dict[str, list[float]] = {}
    for t, w in op_weights.items():
        s = darts_edge_strength(w.detach().double(), edge_weights[t].detach().double() if edge_weights else None, ops)
        per = [0.0] * len(space.edges)
        for node in range(space.steps):
            idx = [i for i, (_, d) in enumerate(space.edges) if d == node + 2]
            total = float(s[idx].sum())
            for i in idx:
                per[i] = _log(float(s[i]) / max(total, _TINY))
        edge_log[t] = per
    op_log = {}
    for t, w in op_weights.items():
        real = w.detach().double()[:, keep]  # renormalised over the non-none ops, as the derivation sees them
        op_log[t] = (real / real.sum(1, keepdim=True)).clamp_min(_TINY).log()

    def darts(g: Genotype) -> float:
        total = 0.0
        for t, edges in (("normal", g.normal), ("reduce", g.reduce)):
            tt = t if t in op_weights else next(iter(op_weights))
            for k, (op, src) in enumerate(edges):
                e = index[(src, k // 2 + 2)]
                total += edge_log[tt][e] + float(op_log[tt][e, keep.index(ops.index(op))])
        return total
    return darts


def _neighbours(space: SearchSpace, g: Any):
    ops = space.ops
    if isinstance(g, NB201Genotype):
        for e, cur in enumerate(g.ops):
            for op in ops:
                if op != cur:
                    new = tuple(g.ops[:e]) + (op,) + tuple(g.ops[e + 1:])
                    if _nb201_connected(new):   # a cell cut off from its input predicts a constant
                        yield NB201Genotype(new), f"edge {e}: {cur} -> {op}"
        return
    choices = [op for op in ops if op != "none"]
    for t in ("normal", "reduce"):
        edges = list(getattr(g, t))
        for k, (op, src) in enumerate(edges):
            node = k // 2 + 2
            other = edges[k ^ 1][1]
            for s in range(node):
                if s == other:
                    continue
                for o in choices:
                    if (o, s) == (op, src):
                        continue
                    new = list(edges)
                    new[k] = (o, s)
                    cand = Genotype(tuple(new), g.normal_concat, g.reduce, g.reduce_concat) if t == "normal" else \
                        Genotype(g.normal, g.normal_concat, tuple(new), g.reduce_concat)
                    yield cand, f"{t} node {node}: {op} from {src} -> {o} from {s}"


def edges_changed(before: Any, after: Any) -> int:
    """How many cell edges differ between two genotypes (NB201: ops per edge; DARTS: (op, input) per kept edge)."""
    if isinstance(before, NB201Genotype):
        return sum(a != b for a, b in zip(before.ops, after.ops))
    return sum(a != b for t in ("normal", "reduce") for a, b in zip(getattr(before, t), getattr(after, t)))
