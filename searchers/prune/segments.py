"""Several gate patterns in one forward pass: BatchNorm's batch statistics taken per segment of the batch.

Phase 2 trains the hypernetwork at k lambdas per step, each on its own share of the batch. Run as k
separate forward passes over quarter batches, a step cost 11 % more than a fixed-lambda pruning's
whole-batch step on a quiet machine (35 % at load 4: small convolutions suffer most from a shared
core). Run as one pass with per-sample gates (``network.GatedResNet`` takes gates with a leading
sample dimension), the convolutions see the whole batch. The only thing that couples the samples
is BatchNorm on batch statistics (``gates.freeze``): inside ``segment_statistics`` every
BatchNorm of the network normalises each segment with that segment's own statistics, so each
lambda's pattern is judged on its share exactly as its separate pass judged it (same losses and
gradients to float rounding; tested), not on statistics mixed across different patterns.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from torch import nn


def _segment_norm(bn: torch.nn.BatchNorm2d, sizes: Sequence[int]):
    def forward(x: torch.Tensor) -> torch.Tensor:
        # momentum 0 and batch statistics, as ``gates.freeze`` sets them: the running statistics stay as saved
        return torch.cat([F.batch_norm(part, bn.running_mean, bn.running_var, bn.weight, bn.bias, True, 0.0, bn.eps)
                          for part in x.split(list(sizes))])
    return forward


@contextlib.contextmanager
def segment_statistics(net: nn.Module, sizes: Sequence[int]) -> Iterator[None]:
    """Within the block, every BatchNorm2d of ``net`` (in training mode) normalises the batch's consecutive segments
    of ``sizes`` samples each with its own statistics."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d) and m.training]
    for m in norms:
        m.forward = _segment_norm(m, sizes)   # an instance attribute: shadows the class's forward until removed
    try:
        yield
    finally:
        for m in norms:
            del m.forward
