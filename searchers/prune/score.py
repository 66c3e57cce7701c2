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
        self._sums: dict[GatePattern, list[float]] = {}   # pattern -> summed cross-entropy on batches 0, 1, ...
        self._sizes = [len(y) for _, y in batches]
        self.block_passes = 0          # block forwards run (the work the prefixes save shows here)

    def __call__(self, pattern: GatePattern) -> float:
        return self.losses([pattern])[pattern]

    def losses(self, patterns: Iterable[GatePattern], *, batches: int | None = None) -> dict[GatePattern, float]:
        """pattern -> held-out cross-entropy (nats) on the first ``batches`` batches (default: all), what is missing
        computed batch by batch with the patterns run together. A pattern scored on fewer batches before (a screen,
        ``confirm``) is extended by the batches it lacks: no batch is run twice for a pattern."""
        patterns = list(patterns)
        upto = len(self.batches) if batches is None else batches
        if not 1 <= upto <= len(self.batches):
            raise ValueError(f"batches must lie in [1, {len(self.batches)}], got {batches}")
        todo = sorted({p for p in patterns if len(self._sums.get(p, ())) < upto}, key=lambda p: p.masks)
        if todo:
            stems = self._stem_outputs()
            with torch.no_grad():
                for i in range(min(len(self._sums.get(p, ())) for p in todo), upto):
                    y = self.batches[i][1]
                    acts: list[torch.Tensor] = [stems[i]]   # acts[b]: the input of block b for the previous pattern
                    prev: tuple[tuple[bool, ...], ...] = ()
                    for p in todo:
                        sums = self._sums.setdefault(p, [])
                        if len(sums) != i:      # scored on this batch before
                            continue
                        shared = next((b for b, (m, q) in enumerate(zip(p.masks, prev)) if m != q), len(prev))
                        del acts[shared + 1:]
                        for b in range(shared, len(p.masks)):
                            acts.append(self._block(b, p.masks[b])(acts[b]))
                            self.block_passes += 1
                        sums.append(float(F.cross_entropy(self.net.head(acts[-1]), y, reduction="sum")))
                        prev = p.masks
        n = sum(self._sizes[:upto])
        return {p: sum(self._sums[p][:upto]) / n for p in patterns}

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
