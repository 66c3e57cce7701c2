"""The architecture step, apart from the weight step: a ``TrainHooks`` that updates the alphas.

Before every weight step of ``train``, ``Architect`` takes one first-order step of Adam on the
architecture parameters with the loss on a validation batch plus a cost term, the term being
the method's own: nothing (DARTS), a fixed-weight penalty (FBNet/ProxylessNAS style) or the
Lagrangian of a budget constraint with a multiplier learned by dual ascent (DCA-NAS, ``dca.py``).
The term is a ``CostTerm``; after each step it sees the new expected cost (its ``update``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from hilnas.searchers.cost import CostModel
from hilnas.searchers.supernet import Supernet
from hilnas.searchers.train import Batch, StepContext, TrainHooks


class CostTerm(Protocol):
    """What a method adds to the architecture loss, given the differentiable expected cost."""

    def penalty(self, expected: torch.Tensor) -> torch.Tensor: ...

    def update(self, expected: float) -> None: ...

    @property
    def multiplier(self) -> float: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class _Stateless:
    """A cost term with nothing to learn: no update, nothing to checkpoint."""

    def update(self, expected: float) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class NoCost(_Stateless):
    """DARTS: the architecture loss is the validation loss alone."""
    multiplier = 0.0

    def penalty(self, expected: torch.Tensor) -> torch.Tensor:
        return expected.new_zeros(())


@dataclass
class FixedPenalty(_Stateless):
    """A hand-set trade-off (ProxylessNAS's CE + w * E[cost]): ``weight * expected / reference``.

    ``reference`` makes the weight unit-free (the budget when there is one).
    """
    weight: float
    reference: float

    @property
    def multiplier(self) -> float:
        return self.weight

    def penalty(self, expected: torch.Tensor) -> torch.Tensor:
        return self.weight * expected / self.reference


@dataclass(frozen=True)
class ArchConfig:
    """The architecture optimiser (Adam, as DARTS and PC-DARTS)."""
    lr: float = 6e-3                  # PC-DARTS uses 6e-4 over ~10^4 steps; CPU searches take ~10^2
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-3
    warmup_epochs: int = 0            # weight-only epochs before the first architecture step


class Architect(TrainHooks):
    """Takes the architecture step on a validation batch before each weight step; records histories.

    ``constraint_value(model, expected)`` is what the term's ``update`` sees after each step
    (None = the expected cost itself); ``temperature(epoch)`` sets the supernet's softmax
    temperature at the start of every epoch (None = leave it at 1); ``relaxed_cost()`` replaces
    the cost model's relaxation (``CostModel.expected_cost``); ``on_step(i)`` runs after the i-th
    architecture step (0-based); ``cost_scale()`` multiplies the relaxed cost inside the penalty (the
    device's measured / predicted ratio, so every term of the penalty, the augmented one included,
    sees the cost the device will show; None = 1).
    """

    def __init__(self, model: Supernet, cost_model: CostModel, term: CostTerm, config: ArchConfig,
                 on_epoch: Callable[[int, Supernet], Mapping[str, float]] | None = None,
                 constraint_value: Callable[[Supernet, float], float] | None = None,
                 temperature: Callable[[int], float] | None = None,
                 relaxed_cost: Callable[[], torch.Tensor] | None = None, on_step: Callable[[int], None] | None = None,
                 cost_scale: Callable[[], float] | None = None):
        self.model, self.cost_model, self.term, self.config = model, cost_model, term, config
        self.constraint_value = constraint_value
        self.temperature, self.relaxed_cost, self.on_step = temperature, relaxed_cost, on_step
        self.cost_scale = cost_scale
        self.constraint_history: list[float] = []
        self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=config.lr, betas=config.betas,
                                          weight_decay=config.weight_decay)
        self.cost_history: list[float] = []
        self.multiplier_history: list[float] = []
        self.on_epoch = on_epoch

    def expected_cost(self) -> torch.Tensor:
        if self.relaxed_cost is not None:
            return self.relaxed_cost()
        m = self.model
        return self.cost_model.expected_cost(m.space, m.op_weights(), m.edge_weights())

    def excluded_parameters(self, model: nn.Module) -> Iterable[torch.nn.Parameter]:
        return self.model.arch_parameters()

    def progress_metrics(self) -> Mapping[str, float]:
        """The multiplier and the expected cost after the last architecture step (and the budget, if any)."""
        if not self.cost_history:
            return {}
        out = {"multiplier": self.multiplier_history[-1], "cost": self.cost_history[-1]}
        budget = getattr(self.term, "budget", None)
        if isinstance(budget, (int, float)):
            out["budget"] = float(budget)
        return out

    def before_step(self, ctx: StepContext, model: nn.Module, train_batch: Batch,
                    next_val_batch: Callable[[], Batch]) -> None:
        if ctx.epoch < self.config.warmup_epochs:
            return
        x, y = next_val_batch()
        cost = self.expected_cost()
        if self.cost_scale is not None:
            cost = cost * self.cost_scale()
        loss = F.cross_entropy(self.model(x), y) + self.term.penalty(cost)
        params = self.model.arch_parameters()
        # gradients for the alphas only: the weights' .grad stays untouched for the weight step
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = g
        self.optimizer.step()
        with torch.no_grad():
            expected = float(self.expected_cost())
        value = self.constraint_value(self.model, expected) if self.constraint_value is not None else expected
        self.term.update(value)
        self.constraint_history.append(value)
        self.cost_history.append(expected)
        self.multiplier_history.append(self.term.multiplier)
        if self.on_step is not None:
            self.on_step(len(self.cost_history) - 1)

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None:
        if self.temperature is not None:
            self.model.temperature = self.temperature(epoch)

    def on_epoch_end(self, epoch: int, model: nn.Module) -> Mapping[str, float] | None:
        return self.on_epoch(epoch, self.model) if self.on_epoch else None

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "term": self.term.state_dict(),
                "cost_history": torch.tensor(self.cost_history, dtype=torch.float64),
                "multiplier_history": torch.tensor(self.multiplier_history, dtype=torch.float64),
                "constraint_history": torch.tensor(self.constraint_history, dtype=torch.float64)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.term.load_state_dict(state["term"])
        self.cost_history = state["cost_history"].tolist()
        self.multiplier_history = state["multiplier_history"].tolist()
        self.constraint_history = state["constraint_history"].tolist()
