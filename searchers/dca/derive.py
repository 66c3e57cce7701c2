"""The derived cell as the maximiser of the Lagrangian over discrete cells.

Plain DARTS derives the per-edge argmax of the alphas, and the multiplier can only move that
cell by moving the alphas. Adam moves every alpha at its own full step, so under a strong
multiplier the edges flip together and the derived cost jumps across the budget band, back and
forth. DCA-NAS lets its dual variable price the derivation too: the derived genotype is

    g*(alpha, m) = argmax_g  log P_alpha(g) - m * cost(g) / B,

the most probable genotype under the alphas (P_alpha(g) = prod_e softmax(alpha_e)[g_e]) at the
price ``m`` per budget, ``m`` the net multiplier (lambda - mu). At m = 0 this is the plain
derivation; for fixed alphas its cost falls as m rises (a step function), so dual ascent on m
finds the price at which the derived cell's cost enters the band, as bisection would, while the
alphas keep learning. Nothing guarantees the band: if the cost steps over it, the cell lands on
one side (and a band holding no cell, e.g. between two NB201 latency clusters, cannot be hit).

- NB201: exact, over all 15,625 cells whose output depends on their input (``cost.nb201_cells``).
- DARTS: per edge the non-``none`` op maximising log w - m c / B (c summed over the cells of that
  type), then per node the two edges with the highest log(strength) - m c / B, where strength is
  the plain derivation's (best op weight x edge weight). The preprocessing convs, which depend
  on whether an input is used at all, are left out of the choice (the cost still counts them).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from hilnas.searchers.cost import CostTables, darts_edge_strength, nb201_cell_costs, nb201_cells
from hilnas.searchers.genotype import Genotype, NB201Genotype
from hilnas.searchers.spaces import DartsSpace, SearchSpace

_TINY = 1e-30


class LagrangianDerivation:
    """``(op_weights, edge_weights, m) -> genotype``: see the module docstring. ``budget`` is B in the
    tables' units; ``scale`` multiplies every cost (the device's measured / predicted ratio)."""

    def __init__(self, space: SearchSpace, tables: CostTables, budget: float):
        self.space, self.tables, self.budget = space, tables, budget
        if isinstance(space, DartsSpace):
            types = tables.cell_types
            self.edge_cost = {t: tables.edge[[c for c, ct in enumerate(types) if ct == t]].sum(0).double().numpy()
                              for t in dict.fromkeys(types)}   # (E, O) per cell type
        else:
            self.cells = nb201_cells(space.ops)
            self.costs = np.where(self.cells.valid, nb201_cell_costs(self.cells, tables), np.nan)

    def __call__(self, op_weights: Mapping[str, torch.Tensor], edge_weights: Mapping[str, torch.Tensor] | None,
                 m: float, scale: float = 1.0) -> Any:
        price = m * scale / self.budget
        with torch.no_grad():
            logw = {t: w.detach().double().clamp_min(_TINY).log().cpu().numpy() for t, w in op_weights.items()}
            if not isinstance(self.space, DartsSpace):
                return self._nb201(logw["cell"], price)
            strength = {t: darts_edge_strength(w.detach().double(), edge_weights[t].detach().double()
                                               if edge_weights else None, self.space.ops).clamp_min(_TINY).log().numpy()
                        for t, w in op_weights.items()}
        cells = {t: self._darts_cell(logw[t], strength[t], self.edge_cost[t], price) for t in logw}
        full = tuple(range(2, self.space.steps + 2))
        normal = cells.get("normal", cells.get("reduce"))
        return Genotype(normal, full, cells.get("reduce", normal), full)

    def _nb201(self, logw: np.ndarray, price: float) -> NB201Genotype:
        cells = self.cells
        score = logw[np.arange(cells.arch.shape[1]), cells.arch].sum(axis=1) - price * self.costs
        return cells.genotype(int(np.nanargmax(np.where(cells.valid, score, np.nan))))

    def _darts_cell(self, logw: np.ndarray, log_strength: np.ndarray, cost: np.ndarray, price: float) -> tuple:
        ops, space = self.space.ops, self.space
        keep = [i for i, op in enumerate(ops) if op != "none"]
        per_op = logw[:, keep] - price * cost[:, keep]                      # (E, non-none ops)
        best = per_op.argmax(axis=1)
        rows = np.arange(per_op.shape[0])
        # the edge's score: its plain strength, moved by how much its chosen op differs from the argmax
        score = log_strength + per_op[rows, best] - logw[:, keep].max(axis=1)
        edges = []
        for node in range(space.steps):
            idx = [e for e, (_, d) in enumerate(space.edges) if d == node + 2]
            top = sorted(sorted(idx, key=lambda e: -score[e])[:2], key=lambda e: space.edges[e][0])
            edges += [(ops[keep[int(best[e])]], space.edges[e][0]) for e in top]
        return tuple(edges)
