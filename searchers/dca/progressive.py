"""Progressive discretisation of an NB201 cell under the budget: one edge decided at a time.

An NB201 cell has 6 edges and one op on an edge recurs in every cell of the network, so one
edge's op moves the network's cost by a large step (on the simulated Raspberry Pi 4, a 3x3
conv in place of a 1x1 conv adds ~13 ms to a full-size network). Derived all at once from the
alphas, the cell's cost jumps: Adam moves every alpha at its own full step, so under the
multiplier the edges flip together and the derived cost crosses the budget band back and forth.
As SGAS decides one edge at a time during the search, ``Progressive`` fixes the edges one by
one at evenly spaced architecture steps, the last at the very end, and what dual ascent holds
in the band is the exact expected cost of the cell (``cost.nb201_exact_expected_cost``): the
decided edges as they are, the others as the alphas weigh them. Each decision is the
Lagrangian's: the undecided edge whose choice is the most certain takes the op maximising

    log w_eo - penalty(E[cost | edge e has op o])       (the multipliers' term of the Lagrangian),

(with the augmented Lagrangian, ``rho / 2 * violation^2`` of that expected cost too), so the later
edges compensate for the earlier ones while the multiplier keeps the expectation in the band.
The last decision fixes the cell, so its expected cost is exact there and the budget is a hard
constraint: the last edge takes the best-scoring op among those that keep the cell within the
budget (as the device will show it) when there is one. With the device in the loop, the (at
most 5) cells the last decision chooses between are measured on it, and their measured costs
are what the penalty and the budget see: the ratio measured / predicted of another network is
off by up to ~25 % for a cell of other ops on the simulated devices. (The quadratic term of the augmented
Lagrangian is symmetric: on its own it prefers 10 % over the budget to 50 % under it.)

Decisions look ahead to the band. A greedy decision can strand the cell: each edge takes the op
whose *expected* cost scores best, but the cell is a discrete choice, and after five decisions no
op of the last edge may land the cell in the band (the benchmark's misses before this rule were
of this kind, systematically per budget). So every decision chooses only among the feasible ops:
those for which some completion of the still-undecided edges lands the cell's cost, as the device
will show it (the full-size, corrected prediction times the device's current ratio), in the band
``lo * B <= c <= hi * B``. NB201 has at most 5^5 completions per op; they are enumerated exactly
(all 15,625 cells are costed once). The Lagrangian still chooses among the feasible ops. The last
decision's feasible ops are those whose cell, measured on the device when it is in the loop, lies
in the band. This is how the cell is derived, not a repair of it: ``repaired`` stays false, and
each decision records whether the rule removed ops (``restricted``). When no completion lands in
the band (the device's ratio moved since the earlier decisions, or the last edge's measured
cells all miss it), the decision falls back to the ops of the completions *nearest* the band
(the last decision: the nearest cell within the budget when there is one) and records it
(``fallback``, and ``miss``: by how much, in the device's unit). (A first version fell back to the
greedy rule without look-ahead; on the benchmark that left most of its fallbacks far from the band.)
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch

from hilnas.searchers.cost import CostTables, nb201_cell_costs, nb201_cells, nb201_exact_expected_cost
from hilnas.searchers.genotype import NB201Genotype

if TYPE_CHECKING:
    from hilnas.searchers.supernet import Supernet


class Progressive:
    """Fixes the supernet's NB201 edges one at a time at the given architecture steps; see the module docstring.

    ``penalty(cost)`` is the Lagrangian's cost term at the current multipliers and ``within(cost)``
    whether a cost is within the budget (None: no hard constraint), both for the device's cost;
    ``band = (lo * B, hi * B)`` is the device cost the decisions look ahead to (None: no look-ahead);
    ``scale()`` turns a predicted cost into the device's (None: 1); ``measure(genotype)`` gives the
    device's cost of a whole cell, used for the last decision (None: the scaled prediction).
    """

    def __init__(self, model: Supernet, tables: CostTables, steps: list[int], penalty: Callable[[float], float],
                 within: Callable[[float], bool] | None = None, scale: Callable[[], float] | None = None,
                 measure: Callable[[NB201Genotype], float] | None = None,
                 band: tuple[float, float] | None = None):
        self.model, self.steps, self.penalty, self.within = model, sorted(steps), penalty, within
        self.scale, self.measure, self.band = scale, measure, band
        self.cells = nb201_cells(model.space.ops)
        costs = torch.as_tensor(nb201_cell_costs(self.cells, tables), dtype=torch.float64)
        self.costs = torch.where(torch.as_tensor(self.cells.valid), costs, torch.full_like(costs, float("nan")))
        self.decisions: list[dict] = []
        self.taken = 0

    def expected_cost(self) -> torch.Tensor:
        """The exact expected cost of the cell (decided edges fixed), differentiable in the alphas."""
        return nb201_exact_expected_cost(self.cells, self.costs, self.model.op_weights()["cell"])

    def after_step(self, arch_step: int) -> None:
        """Decide the next edge when ``arch_step`` (0-based, counted over the whole search) is due."""
        while self.taken < len(self.steps) and arch_step >= self.steps[self.taken]:
            self.decide(arch_step)
            self.taken += 1

    def decide(self, arch_step: int) -> None:
        fixed = self.model.fixed["cell"]
        free = [e for e in range(len(self.model.space.edges)) if e not in fixed]
        if not free:
            return
        last = len(free) == 1
        with torch.no_grad():
            w = self.model.op_weights()["cell"].double()
            scores = torch.full(w.shape, -torch.inf, dtype=torch.float64)   # (edges, ops); decided edges stay -inf
            within = torch.zeros(w.shape, dtype=torch.bool)
            device_costs: dict[str, float] = {}   # the last decision's candidates, as the device shows them
            for e in free:
                for o in range(w.shape[1]):
                    trial = w.clone()
                    trial[e] = 0.0
                    trial[e, o] = 1.0
                    cost = nb201_exact_expected_cost(self.cells, self.costs, trial)
                    if not torch.isfinite(cost):   # the cell would be cut off from its input
                        continue
                    device = self._device_cost(float(cost), {**fixed, e: o} if last else None)
                    if last:
                        device_costs[self.model.space.ops[o]] = device
                    scores[e, o] = w[e, o].clamp_min(1e-30).log() - self.penalty(device)
                    within[e, o] = self.within is None or self.within(device)
            possible = torch.isfinite(scores)
            # without look-ahead: any op, and the last decision keeps the cell within the budget when it can
            greedy = within & possible if last and (within & possible).any() else possible
            feasible, miss = self._feasible(fixed, device_costs if last else None) if self.band else (greedy, 0.0)
            feasible &= possible
            fallback = miss > 0 or not feasible.any()
            if not feasible.any():   # nothing to choose from (module docstring)
                feasible = greedy
            unrestricted = self._choose(scores, greedy)
            e, o, certainty = self._choose(scores, feasible)
        fixed[e] = o
        self.decisions.append({"arch_step": arch_step, "edge": e, "op": self.model.space.ops[o],
                               "certainty": certainty, "expected_cost": float(self.expected_cost().detach()),
                               "feasible_ops": [self.model.space.ops[i] for i in range(w.shape[1]) if feasible[e, i]],
                               "restricted": bool((greedy[e] & ~feasible[e]).any()),
                               "changed": (e, o) != unrestricted[:2], "fallback": fallback,
                               "miss": miss if math.isfinite(miss) else None,   # None: no completion at all
                               **({"device_costs": device_costs} if last else {})})

    def _feasible(self, fixed: dict[int, int], device_costs: dict[str, float] | None) -> tuple[torch.Tensor, float]:
        """(edges, ops) mask of the feasible ops, and by how much (device cost) the nearest completion misses the band.

        Feasible: some completion of the undecided edges lands the device's cost in the band (miss 0);
        when none does, the ops of the completions nearest the band (miss > 0). ``device_costs`` (the
        last decision): the candidate cells' device costs, op name -> cost; when none is in the band,
        the nearest within the budget (or, if none is within it, the nearest of all).
        """
        ops = self.model.space.ops
        edges = len(self.model.space.edges)
        lo, hi = self.band
        if device_costs is not None:
            (e,) = [i for i in range(edges) if i not in fixed]
            within = {n: c for n, c in device_costs.items() if self.within is None or self.within(c)}
            candidates = within or device_costs   # never over the budget when a candidate is within it
            miss = {n: max(lo - c, c - hi, 0.0) for n, c in candidates.items()}
            nearest = min(miss.values(), default=math.inf)
            out = torch.zeros(edges, len(ops), dtype=torch.bool)
            for name, m in miss.items():
                out[e, ops.index(name)] = m <= nearest
            return out, nearest
        arch = torch.as_tensor(self.cells.arch)
        device = self.costs * (self.scale() if self.scale is not None else 1.0)
        miss = torch.nan_to_num((lo - device).clamp_min(0) + (device - hi).clamp_min(0), nan=math.inf)  # 0 in band
        for e, o in fixed.items():
            miss = torch.where(arch[:, e] == o, miss, torch.full_like(miss, math.inf))
        nearest = float(miss.min())
        if not math.isfinite(nearest):
            return torch.zeros(edges, len(ops), dtype=torch.bool), math.inf
        reach = miss <= nearest
        # op o is feasible on edge e when a nearest cell has it there: an (edges, ops) histogram of those cells
        return torch.stack([torch.bincount(arch[reach, e], minlength=len(ops)) > 0 for e in range(edges)]), nearest

    @staticmethod
    def _choose(scores: torch.Tensor, allowed: torch.Tensor) -> tuple[int, int, float]:
        """The most certain edge (softmax over its allowed ops) and its best allowed op."""
        best: tuple[int, int, float] | None = None
        for e in range(scores.shape[0]):
            if not allowed[e].any():
                continue
            s = torch.where(allowed[e], scores[e], torch.full_like(scores[e], -torch.inf))
            certainty = float(s.softmax(0).max())
            if best is None or certainty > best[2]:
                best = (e, int(s.argmax()), certainty)
        assert best is not None, "every op of every undecided edge would cut the cell off from its input"
        return best

    def _device_cost(self, predicted: float, cell: dict[int, int] | None) -> float:
        """The device's cost: measured for a whole ``cell`` (edge -> op index) when it can be, else scaled."""
        if cell is not None and self.measure is not None:
            ops = self.model.space.ops
            return float(self.measure(NB201Genotype(tuple(ops[cell[i]] for i in range(len(cell))))))
        return predicted * (self.scale() if self.scale is not None else 1.0)


def decision_steps(edges: int, arch_steps: int) -> list[int]:
    """Evenly spaced architecture steps for ``edges`` decisions, the last on the last step."""
    return [max(0, round(arch_steps * (k + 1) / edges) - 1) for k in range(edges)]
