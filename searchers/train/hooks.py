"""How a searcher plugs into the one training loop: ``TrainHooks`` and its extension points.

``excluded_parameters`` keeps architecture parameters out of the weight optimiser,
``before_step`` takes the architecture step on a validation batch between weight steps (DARTS),
``loss`` adds cost terms to the weight loss, and ``state_dict``/``load_state_dict`` put the
hook's own state into the checkpoint so a search resumes exactly.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hilnas.searchers.train.types import Batch, StepContext

if TYPE_CHECKING:
    import torch
    from torch import nn


class TrainHooks:
    """Extension points of ``train``; subclass and override what a searcher needs.

    Every method has a do-nothing default, so a plain final training passes no hooks.
    """

    def excluded_parameters(self, model: nn.Module) -> Iterable[torch.nn.Parameter]:
        """Parameters the weight optimiser must not touch (architecture parameters)."""
        return ()

    def on_train_start(self, model: nn.Module, device: torch.device) -> None:
        """Called once after the model moved to ``device`` (move hook-owned modules here)."""

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None:
        """Called before each epoch (anneal a temperature, ...)."""

    def before_step(self, ctx: StepContext, model: nn.Module, train_batch: Batch,
                    next_val_batch: Callable[[], Batch]) -> None:
        """Called before each weight step: the place for an architecture step.

        ``next_val_batch()`` returns the next validation batch, already on the device
        (cycling through the val loader; raises ``RuntimeError`` when there is none).
        """

    def loss(self, ctx: StepContext, model: nn.Module, logits: torch.Tensor,
             targets: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """Return the weight-step loss; ``loss`` is the cross-entropy (or the previous hook's)."""
        return loss

    def after_step(self, ctx: StepContext, model: nn.Module, loss: float) -> None:
        """Called after each weight step with the step's loss."""

    def on_epoch_end(self, epoch: int, model: nn.Module) -> Mapping[str, float] | None:
        """Called after each epoch's evaluation; returned numbers go into ``EpochStats.extra``."""
        return None

    def progress_metrics(self) -> Mapping[str, float]:
        """Numbers worth showing while training runs (a multiplier, the current cost against its
        budget); they travel in ``TrainEvent.metrics``."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Hook state for the checkpoint: tensors and plain containers only."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
