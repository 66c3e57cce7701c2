"""Channel-group gates on the MobileNet backbone (``spaces/mobilenet``), and the real narrower network.

MobileNet has no shortcuts, so its modules cannot be dropped whole; what a gate can remove is a
group of a layer's output channels. Layer ``i``'s output channels (the stem's, or block ``i``'s
pointwise unit's) are split into ``G`` groups; gate ``(i, g)`` keeps or drops group ``g``. A dropped
channel leaves three places at once: the pointwise (or stem) unit that makes it, the depthwise unit
of the next block that filters it (depthwise convolutions are per channel), and the next pointwise
unit (or the head) that reads it. The gated network therefore multiplies the mask after the unit
that makes the channel *and* after the next depthwise unit: masking only the first would leave the
depthwise unit's BatchNorm shift ``beta`` on a zeroed channel, and the next layer would read a
constant instead of nothing.

Each layer's first group is never gated (a layer with no channels would break the graph), so every
pattern is a valid network, as the ResNet's ungated shortcuts make every ResNet pattern valid.
``prune(masks)`` is the MobileNet at the kept widths (``MobileNetWidths``, built from the space's op
keys like any MobileNet) with the kept channels' weights copied: what is exported and measured.

Not done (issue 12): the search over these gates (a differentiable expected cost of the widths for
the LUT grid's interpolated prices, and ``hilnas search prune --model mobilenet``).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from hilnas.searchers.spaces.mobilenet import MobileNetSpace, MobileNetWidths
from hilnas.searchers.spaces.mobilenet.net import MobileNet, Unit

Masks = Sequence[Sequence[bool]]   # per layer (stem, then blocks), per channel group: kept


def group_channels(width: int, groups: int) -> list[torch.Tensor]:
    """The channel indices of each of ``groups`` contiguous groups of a ``width``-channel layer."""
    if not 1 <= groups <= width:
        raise ValueError(f"cannot split {width} channels into {groups} groups")
    bounds = [round(width * g / groups) for g in range(groups + 1)]
    return [torch.arange(bounds[g], bounds[g + 1]) for g in range(groups)]


class GatedMobileNet(nn.Module):
    """A (pre-trained) MobileNet whose layers' output channel groups are gated; ``prune`` gives the real network."""

    def __init__(self, net: MobileNet, groups: int):
        super().__init__()
        self.net, self.groups = net, groups
        self.channels = [group_channels(w, groups) for w in net.widths.widths]

    def channel_mask(self, layer: int, gates: torch.Tensor) -> torch.Tensor:
        """(G,) gates of a layer -> (1, width, 1, 1) channel mask, the first group always 1."""
        gates = torch.cat([torch.ones(1, dtype=gates.dtype), gates[1:]])
        sizes = torch.tensor([len(c) for c in self.channels[layer]])
        return gates.repeat_interleave(sizes).view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor, gates: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, classes); ``gates`` (layers, G) in [0, 1] (column 0 is ignored: never gated)."""
        if gates is None:
            return self.net(x)
        mask = self.channel_mask(0, gates[0])
        x = self.net.stem(x) * mask
        for i, block in enumerate(self.net.blocks, start=1):
            x = block.depthwise(x) * mask          # the next depthwise unit filters the same channels
            mask = self.channel_mask(i, gates[i])
            x = block.pointwise(x) * mask
        return self.net.head(x)

    def kept(self, masks: Masks) -> list[torch.Tensor]:
        """Each layer's kept channel indices (its first group always kept)."""
        if len(masks) != len(self.channels) or any(len(m) != self.groups for m in masks):
            raise ValueError(f"masks must name {self.groups} groups for each of {len(self.channels)} layers")
        return [torch.cat([c for g, c in enumerate(chs) if g == 0 or m[g]]) for chs, m in zip(self.channels, masks)]

    def prune(self, masks: Masks) -> MobileNet:
        """The MobileNet at the kept widths with the kept channels' weights (the gated-off ones are gone)."""
        kept = self.kept(masks)
        space: MobileNetSpace = self.net.space
        small = MobileNet(space, MobileNetWidths(tuple(len(k) for k in kept)))
        with torch.no_grad():
            _copy_unit(small.stem, self.net.stem, out=kept[0], inp=None)
            for i, (dst, src) in enumerate(zip(small.blocks, self.net.blocks), start=1):
                _copy_unit(dst.depthwise, src.depthwise, out=kept[i - 1], inp=None)   # per channel: (C, 1, 3, 3)
                _copy_unit(dst.pointwise, src.pointwise, out=kept[i], inp=kept[i - 1])
            small.head.classifier.weight.copy_(self.net.head.classifier.weight[:, kept[-1]])
            small.head.classifier.bias.copy_(self.net.head.classifier.bias)
        return small


def _copy_unit(dst: Unit, src: Unit, *, out: torch.Tensor, inp: torch.Tensor | None) -> None:
    w = src.conv.weight[out]
    dst.conv.weight.copy_(w if inp is None else w[:, inp])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst.bn, name).copy_(getattr(src.bn, name)[out])
    dst.bn.num_batches_tracked.copy_(src.bn.num_batches_tracked)
