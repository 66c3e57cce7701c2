"""The ResNet's building blocks in torch, each one op key's module (``keys``) and a part of the networks.

``Stem`` conv3x3-BN-ReLU; ``Branch`` a BasicBlock's residual branch conv3x3-BN-ReLU-conv3x3-BN, whose
inner width ``mid`` is what channel-group pruning shrinks; ``Projection`` the 1x1 conv + BN shortcut of
a block that changes the shape; ``AddReLU`` the block's join ``relu(a + b)``, timed as ``relu(x + x)``.
"""
from __future__ import annotations

import torch
from torch import nn


class Stem(nn.Sequential):
    """3x3 conv without bias, BatchNorm, ReLU (the CIFAR ResNet's stem: no max-pool)."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__(nn.Conv2d(C_in, C_out, 3, 1, 1, bias=False), nn.BatchNorm2d(C_out), nn.ReLU(inplace=False))


class Branch(nn.Module):
    """conv3x3(stride) - BN - ReLU - conv3x3 - BN, ``C_in -> mid -> C_out``."""

    def __init__(self, C_in: int, C_out: int, stride: int, mid: int):
        super().__init__()
        self.conv1 = nn.Conv2d(C_in, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, C_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(C_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H/s, W/s); ``mask`` (mid,) or per sample (B, mid) scales the inner
        channels (the group gates)."""
        h = torch.relu(self.bn1(self.conv1(x)))
        if mask is not None:
            h = h * (mask.view(1, -1, 1, 1) if mask.dim() == 1 else mask[:, :, None, None])
        return self.bn2(self.conv2(h))


class Projection(nn.Sequential):
    """The shortcut of a block that changes the shape: 1x1 conv (stride) without bias, BatchNorm."""

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__(nn.Conv2d(C_in, C_out, 1, stride, 0, bias=False), nn.BatchNorm2d(C_out))


class AddReLU(nn.Module):
    """Stand-in for a block's join ``relu(shortcut + branch)``, for timing: ``relu(x + x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + x)
