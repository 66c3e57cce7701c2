"""DCA-NAS (seed 001): differentiable search under a device budget, as a constrained problem.

The architecture step minimises the Lagrangian

    L(alpha, lambda) = CE_val(w, alpha) + lambda * (E[cost](alpha) / B - 1)

and the multiplier follows dual ascent, lambda <- max(0, lambda + eta * (E[cost] / B - 1)),
after every architecture step: it grows while the expected cost exceeds the budget B and
shrinks to 0 once the constraint is slack, so no trade-off weight needs tuning. The constraint
is divided by B so that eta means the same for milliseconds, millijoules or parameters.

The search runs with weight sharing, the channel bottleneck and derived cells
(``supernet.DCA_OPTIONS``). The derived genotype's exact cost is checked against B; if it is
over, it is repaired along the alpha ranking and the result says so. A budget no derivable
genotype meets raises ``InfeasibleBudgetError`` with the cheapest reachable cost, before any
training. The lookup graph that turns a device budget into B lives in ``lug.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from hilnas.searchers.dca.bilevel import BilevelConfig, run_bilevel
from hilnas.searchers.cost import CostModel
from hilnas.searchers.result import Budget, SearchResult

if TYPE_CHECKING:
    from hilnas.searchers.data import Loaders
    from hilnas.searchers.spaces import SearchSpace


@dataclass
class LagrangeMultiplier:
    """lambda of the budget constraint E[cost] <= budget, learned by projected dual ascent."""
    budget: float
    lr: float                  # eta: step per unit of relative violation
    value: float = 0.0

    @property
    def multiplier(self) -> float:
        return self.value

    def violation(self, expected: float) -> float:
        """Relative constraint value E[cost] / B - 1: positive when over budget."""
        return expected / self.budget - 1.0

    def penalty(self, expected: Any) -> Any:
        return self.value * (expected / self.budget - 1.0)

    def update(self, expected: float) -> None:
        self.value = max(0.0, self.value + self.lr * self.violation(expected))

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.value = float(state["value"])


@dataclass(frozen=True, kw_only=True)
class DcaConfig(BilevelConfig):
    """DCA-NAS: the shared search settings plus the budget and the multiplier's dual ascent."""
    budget: Budget                  # the search-time budget B (a device budget goes through the LUG first)
    multiplier_lr: float = 0.5      # eta; lambda rises by eta * 0.1 per step at 10 % over budget
    multiplier_init: float = 0.0
    # What dual ascent compares with the budget: "expected" (the relaxed cost, as seed 001) or
    # "derived" (the exact cost of the genotype the alphas point to now; gradients still flow
    # through the relaxed cost, straight-through style).
    constrain: str = "derived"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.constrain not in ("expected", "derived"):
            raise ValueError(f"constrain must be 'expected' or 'derived', got {self.constrain!r}")


def search(space: SearchSpace, cost_model: CostModel, config: DcaConfig, *, seed: int = 0,
           data: Loaders) -> SearchResult:
    """Search ``space`` on ``data`` (with a val split) for the best genotype within ``config.budget``."""
    term = LagrangeMultiplier(config.budget.value, config.multiplier_lr, config.multiplier_init)
    return run_bilevel("dca", space, cost_model, config, term, budget=config.budget, enforce_budget=True,
                       seed=seed, data=data)
