"""MobileNet widths -> torch network, built from the backbone's op keys (``mobilenet.keys``).

Every module is ``op_key.build_op_module`` of one of the network's keys, so the network and
``network_op_keys(space, widths)`` list the same ops: a stem ``Unit``, one ``DepthwiseSeparable``
per block, and ``gap_linear`` (``ops.ClassifierHead``). The splitting search reads and rewrites
exactly these modules: a layer's neurons are the output channels of its ``splittable`` unit (the
stem, or a block's pointwise unit).
"""
from __future__ import annotations

import torch
from torch import nn

from hilnas.searchers.spaces.mobilenet.spec import MobileNetSpace, MobileNetWidths


class Unit(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU; ``groups == cin`` makes the conv depthwise."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    """MobileNet's block: 3x3 depthwise unit at the block's stride, then a 1x1 pointwise unit."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.depthwise = Unit(cin, cin, 3, stride, groups=cin)
        self.pointwise = Unit(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, cin, H, W) -> (B, cout, H/s, W/s)
        return self.pointwise(self.depthwise(x))


class MobileNet(nn.Module):
    """Stem, depthwise-separable blocks, global pool + linear head, at the given widths."""

    def __init__(self, space: MobileNetSpace, widths: MobileNetWidths):
        super().__init__()
        from hilnas.searchers.op_key import build_op_module
        from hilnas.searchers.spaces.mobilenet.keys import network_keys

        space.check(widths)
        self.space, self.widths = space, widths
        stem, *blocks, head = network_keys(space, widths)
        self.stem = build_op_module(stem)
        self.blocks = nn.ModuleList(build_op_module(k) for k in blocks)
        self.head = build_op_module(head)

    def splittable(self) -> list[Unit]:
        """The unit of each layer whose output channels are the layer's neurons: stem, then pointwise units."""
        return [self.stem] + [b.pointwise for b in self.blocks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_channels, H, W) -> (B, num_classes)
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def build_mobilenet(space: MobileNetSpace, widths: MobileNetWidths) -> MobileNet:
    return MobileNet(space, widths)
