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
Lagrangian is symmetric: on its own it prefers 10 % over the budget to 50 % under it.) Nothing
forces the last decision into the band: when no op of the last edge lands there, the cell lands
outside it and the result says so.
"""
from __future__ import annotations

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
    ``scale()`` turns a predicted cost into the device's (None: 1); ``measure(genotype)`` gives the
    device's cost of a whole cell, used for the last decision (None: the scaled prediction).
    """

    def __init__(self, model: Supernet, tables: CostTables, steps: list[int], penalty: Callable[[float], float],
                 within: Callable[[float], bool] | None = None, scale: Callable[[], float] | None = None,
                 measure: Callable[[NB201Genotype], float] | None = None):
        self.model, self.steps, self.penalty, self.within = model, sorted(steps), penalty, within
        self.scale, self.measure = scale, measure
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
            best: tuple[float, int, int, torch.Tensor] | None = None
            device_costs: dict[str, float] = {}   # the last decision's candidates, as the device shows them
            for e in free:
                scores = torch.empty(w.shape[1], dtype=torch.float64)
                feasible = torch.zeros(w.shape[1], dtype=torch.bool)
                for o in range(w.shape[1]):
                    trial = w.clone()
                    trial[e] = 0.0
                    trial[e, o] = 1.0
                    cost = nb201_exact_expected_cost(self.cells, self.costs, trial)
                    if not torch.isfinite(cost):   # the cell would be cut off from its input
                        scores[o] = -torch.inf
                        continue
                    device = self._device_cost(float(cost), {**fixed, e: o} if last else None)
                    if last:
                        device_costs[self.model.space.ops[o]] = device
                    scores[o] = w[e, o].clamp_min(1e-30).log() - self.penalty(device)
                    feasible[o] = self.within is None or self.within(device)
                if last and feasible.any():  # the cell is decided now: the budget is hard (module docstring)
                    scores = torch.where(feasible, scores, torch.full_like(scores, -torch.inf))
                certainty = float(scores.softmax(0).max())   # the most certain edge is decided first
                if best is None or certainty > best[0]:
                    best = (certainty, e, int(scores.argmax()), scores)
        assert best is not None
        _, e, o, scores = best
        fixed[e] = o
        self.decisions.append({"arch_step": arch_step, "edge": e, "op": self.model.space.ops[o],
                               "certainty": best[0], "expected_cost": float(self.expected_cost().detach()),
                               **({"device_costs": device_costs} if last else {})})

    def _device_cost(self, predicted: float, cell: dict[int, int] | None) -> float:
        """The device's cost: measured for a whole ``cell`` (edge -> op index) when it can be, else scaled."""
        if cell is not None and self.measure is not None:
            ops = self.model.space.ops
            return float(self.measure(NB201Genotype(tuple(ops[cell[i]] for i in range(len(cell))))))
        return predicted * (self.scale() if self.scale is not None else 1.0)


def decision_steps(edges: int, arch_steps: int) -> list[int]:
    """Evenly spaced architecture steps for ``edges`` decisions, the last on the last step."""
    return [max(0, round(arch_steps * (k + 1) / edges) - 1) for k in range(edges)]
