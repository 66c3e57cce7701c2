"""Evaluation: a model's mean cross-entropy and accuracy over a loader, without gradients."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from hilnas.searchers.train.types import Batch

if TYPE_CHECKING:
    import torch
    from torch import nn


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """Every BatchNorm of ``model`` normalises with the current batch's own statistics; its running
    statistics are left as they were.

    Why: a supernet's running statistics average over every path the weight steps ran, so in eval mode
    one path is normalised with the wrong mean and variance and predicts near chance while its losses
    on batch statistics (what the search itself judges) are far below a constant's.
    """
    from torch import nn

    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            tracked = m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None
            saved.append((m, m.training, m.momentum, tracked))
            m.train(True)
            m.momentum = 0.0   # running = (1 - 0) x running + 0 x batch: unchanged
    try:
        yield model
    finally:
        for m, training, momentum, tracked in saved:
            m.train(training)
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def evaluate(model: nn.Module, loader: Iterable[Batch], *, device: torch.device | None = None,
             max_batches: int | None = None, bn: str = "running") -> tuple[float, float]:
    """Return (mean cross-entropy, accuracy in [0, 1]) of ``model`` over ``loader``.

    ``bn="running"``: eval mode, BatchNorm on its running statistics; ``"batch"``: on each batch's own
    (``batch_statistics``), for supernets whose running statistics mix many paths.
    """
    import torch
    import torch.nn.functional as F

    if bn not in ("running", "batch"):
        raise ValueError(f"bn must be 'running' or 'batch', got {bn!r}")
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad(), (batch_statistics(model) if bn == "batch" else contextlib.nullcontext()):
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
