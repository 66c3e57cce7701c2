"""Channel-group gates on the MobileNet backbone (``spaces/mobilenet``), and the real narrower network.

MobileNet has no shortcuts, so its modules cannot be dropped whole; what a gate can remove is a
group of a layer's output channels (``mobilenet.space.MobileNetGroups``: the first group of every
layer is never gated). A dropped channel leaves three places at once: the pointwise (or stem) unit
that makes it, the depthwise unit of the next block that filters it (depthwise convolutions and
BatchNorm are per channel), and the next pointwise unit (or the head) that reads it. The gated
network multiplies the mask where the channel is read: after the next depthwise unit (the last
layer's before the head). Nothing else depends on a dropped channel, so this is the pruned network
exactly. Masking only where the channel is made would be wrong (the depthwise BatchNorm's shift
``beta`` on a zeroed channel: the next layer reads a constant). Masking there as well, as a first
version did, computes the same outputs but starves the gates: at a dropped gate the second mask
(0) cuts the first one's path and itself sees only the constant ``relu(beta)``, so a dropped group
got a gradient of ~1e-9 instead of its real first-order effect (-0.16 to -2.3 on one Fashion-MNIST
batch) and never came back; phase 2 then pruned four of five layers at lambda = 0.0005 (held-out
loss 1.85 against the unpruned 0.43) and the sweep's Lambda fell from 3.05 to 0.099.

Gates come as the ResNet's ``(layer (L,), group (L, G))`` pair, or per sample ``(N, L)``, ``(N, L, G)``
(phase 2 runs several lambdas' patterns in one batch); group ``g`` of layer ``l`` is kept by
``layer_l * group_lg``. ``prune(pattern)`` is the MobileNet at the kept widths (built from the
backbone's op keys like any MobileNet) with the kept channels' weights copied: what is exported and
measured; with 0/1 gates the gated network computes what it computes (tested).
"""
from __future__ import annotations

import torch
from torch import nn

from hilnas.searchers.prune.mobilenet.space import MobileNetGroups
from hilnas.searchers.spaces.mobilenet.net import MobileNet, Unit
from hilnas.searchers.spaces.resnet import GatePattern

Gates = tuple[torch.Tensor, torch.Tensor]


class GatedMobileNet(nn.Module):
    """The (pre-trained) MobileNet of ``space`` at full width, its layers' channel groups gated."""

    def __init__(self, space: MobileNetGroups):
        super().__init__()
        self.space = space
        self.net = MobileNet(space.backbone, space.full_widths)
        layers = space.layers()
        self._sizes = [torch.tensor(layer.sizes) for layer in layers]
        self._bounds = [layer.bounds for layer in layers]

    def channel_mask(self, layer: int, on: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Layer gate () or (N,) and group gates (G,) or (N, G) -> channel mask (1 or N, width, 1, 1)."""
        g = on.unsqueeze(-1) * groups
        g = torch.cat([torch.ones_like(g[..., :1]), g], dim=-1)          # the first group: never gated
        mask = g.repeat_interleave(self._sizes[layer], dim=-1)
        return mask.view(-1, mask.shape[-1], 1, 1)

    def forward(self, x: torch.Tensor, gates: Gates | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, classes); ``gates=None`` runs the whole network."""
        if gates is None:
            return self.net(x)
        on, groups = gates
        x = self.net.stem(x)
        for i, block in enumerate(self.net.blocks):
            # layer i's channels masked where the next layer reads them, after the depthwise unit that filters them
            x = block.pointwise(block.depthwise(x) * self.channel_mask(i, on[..., i], groups[..., i, :]))
        last = len(self.net.blocks)
        return self.net.head(x * self.channel_mask(last, on[..., last], groups[..., last, :]))

    def kept(self, pattern: GatePattern) -> list[torch.Tensor]:
        """Each layer's kept channel indices (its first group always kept)."""
        self.space.check(pattern)
        return [torch.cat([torch.arange(b[g], b[g + 1]) for g in range(len(b) - 1) if g == 0 or mask[g - 1]])
                for b, mask in zip(self._bounds, pattern.masks)]

    def prune(self, pattern: GatePattern) -> MobileNet:
        """The MobileNet at the kept widths with the kept channels' weights (the gated-off ones are gone)."""
        kept = self.kept(pattern)
        small = MobileNet(self.space.backbone, self.space.widths_of(pattern))
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
