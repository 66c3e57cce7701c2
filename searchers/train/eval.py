"""Evaluation: a model's mean cross-entropy and accuracy over a loader, without gradients."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hilnas.searchers.train.types import Batch

if TYPE_CHECKING:
    import torch
    from torch import nn


def evaluate(model: nn.Module, loader: Iterable[Batch], *, device: torch.device | None = None,
             max_batches: int | None = None) -> tuple[float, float]:
    """Return (mean cross-entropy, accuracy in [0, 1]) of ``model`` over ``loader``."""
    import torch
    import torch.nn.functional as F

    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
            count += len(y)
    model.train(was_training)
    if count == 0:
        return math.nan, math.nan
    return total_loss / count, correct / count
