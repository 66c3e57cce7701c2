"""Held-out cross-entropy of many gate patterns at once, run as the pruned networks (the member choice's score).

The band search and the device loop rank every candidate near a budget by its held-out loss
(``band``, ``confirm``); that scoring was most of the member choice's time (issue 12: 37.7 s CPU
of a 155 s run on the CIFAR-10 subset, each candidate run gated at full width on 8 batches). The
same numbers, computed with less work:

- each candidate runs as its real smaller network (``network.PrunedBlock``: the gated-off channels
  and branches are not computed), with the frozen weights and BatchNorm on batch statistics as the
  search runs them (``gates.freeze``). With 0/1 gates this is what the gated network computes: a
  dropped group's channels are zero after ``bn1`` and contribute nothing to ``conv2``, and every
  BatchNorm's batch statistics are per channel;
- the stem does not depend on the pattern: its output on each batch is computed once;
- the candidates are run together in lexicographic order of their masks, so a block's output is
  computed once for all candidates that share every block before it and its own mask (a prefix).

``pattern_loss_accuracy`` (the gated run) stays the definition: the tests compare the two.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch
import torch.nn.functional as F

from hilnas.searchers.prune.network import GatedResNet, PrunedBlock

if TYPE_CHECKING:
    from hilnas.searchers.spaces.resnet import GatePattern
    from hilnas.searchers.train import Batch


class HeldOutLoss:
    """Mean cross-entropy on fixed held-out ``batches`` per pattern, cached (see the module)."""

    def __init__(self, net: GatedResNet, batches: list[Batch]):
        if not batches:
            raise ValueError("held-out scoring needs at least one batch")
        self.net, self.batches = net, batches
        self._stem: list[torch.Tensor] | None = None
        self._blocks: dict[tuple[int, tuple[bool, ...]], torch.nn.Module] = {}
        self._loss: dict[GatePattern, float] = {}
        self.block_passes = 0          # block forwards run (the work the prefixes save shows here)

    def __call__(self, pattern: GatePattern) -> float:
        return self.losses([pattern])[pattern]

    def losses(self, patterns: Iterable[GatePattern]) -> dict[GatePattern, float]:
        """pattern -> held-out cross-entropy (nats), the new ones computed in one pass over the batches."""
        patterns = list(patterns)
        new = sorted({p for p in patterns if p not in self._loss}, key=lambda p: p.masks)
        if new:
            totals = dict.fromkeys(new, 0.0)
            n = 0
            with torch.no_grad():
                for x0, (_, y) in zip(self._stem_outputs(), self.batches):
                    acts: list[torch.Tensor] = [x0]     # acts[b]: the input of block b for the previous pattern
                    prev: tuple[tuple[bool, ...], ...] = ()
                    for p in new:
                        shared = next((b for b, (m, q) in enumerate(zip(p.masks, prev)) if m != q), len(prev))
                        del acts[shared + 1:]
                        for b in range(shared, len(p.masks)):
                            acts.append(self._block(b, p.masks[b])(acts[b]))
                            self.block_passes += 1
                        totals[p] += float(F.cross_entropy(self.net.head(acts[-1]), y, reduction="sum"))
                        prev = p.masks
                    n += len(y)
            self._loss.update({p: t / n for p, t in totals.items()})
        return {p: self._loss[p] for p in patterns}

    def _stem_outputs(self) -> list[torch.Tensor]:
        if self._stem is None:
            with torch.no_grad():
                self._stem = [self.net.stem(x) for x, _ in self.batches]
        return self._stem

    def _block(self, b: int, mask: tuple[bool, ...]) -> torch.nn.Module:
        key = (b, mask)
        if key not in self._blocks:
            block = PrunedBlock(self.net.blocks[b], mask)
            for p in block.parameters():
                p.requires_grad_(False)
            for m in block.modules():           # as ``gates.freeze``: batch statistics, running ones untouched
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.momentum = 0.0
            self._blocks[key] = block.train()
        return self._blocks[key]
