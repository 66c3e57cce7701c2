"""Candidate ops of the DARTS and NAS-Bench-201 cells, and the fixed blocks of their networks.

``OPS[name](C_in, C_out, stride, affine)`` builds one op. The definitions follow the papers:
convs are ReLU -> Conv -> BN; separable convs are two depthwise-pointwise stacks; dilated convs
one stack with dilation 2; pools use 'same' padding (3x3, pad 1, average without the padding);
a strided or channel-changing skip is a FactorizedReduce. The two spaces share names with the
same meaning (``skip_connect``, ``avg_pool_3x3``, ``none``), so one dict serves both.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU, a (possibly dilated) conv without bias, BatchNorm."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                 affine: bool = True):
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(C_in, C_out, kernel, stride, padding, dilation=dilation, bias=False),
                         nn.BatchNorm2d(C_out, affine=affine))


class DilConv(nn.Sequential):
    """ReLU, depthwise conv (dilated), pointwise conv, BatchNorm."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool = True):
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(C_in, C_in, kernel, stride, padding, dilation=dilation, groups=C_in, bias=False),
                         nn.Conv2d(C_in, C_out, 1, bias=False),
                         nn.BatchNorm2d(C_out, affine=affine))


class SepConv(nn.Sequential):
    """Two depthwise-separable stacks; only the first is strided and only the second changes channels."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(DilConv(C_in, C_in, kernel, stride, padding, 1, affine),
                         DilConv(C_in, C_out, kernel, 1, padding, 1, affine))


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape. Discrete networks drop it; supernets need it."""

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        self.C_out, self.stride = C_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        if x.shape[1] == self.C_out:
            return x.mul(0.0)
        return x.new_zeros(x.shape[0], self.C_out, x.shape[2], x.shape[3])


class FactorizedReduce(nn.Module):
    """Halve H and W with two 1x1 stride-2 convs on pixel grids offset by one, concatenated, then BN."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out - C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, ceil(H/2), ceil(W/2))
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:]
        if x.shape[2] % 2 or x.shape[3] % 2:  # odd sizes: pad so both grids give ceil(H/2) positions
            shifted = F.pad(shifted, (0, x.shape[3] % 2, 0, x.shape[2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Pool(nn.Sequential):
    """3x3 max or average pool with 'same' padding; a 1x1 ReLUConvBN first if channels change (as NB201)."""

    def __init__(self, kind: str, C_in: int, C_out: int, stride: int, affine: bool = True):
        layers: list[nn.Module] = []
        if C_in != C_out:
            layers.append(ReLUConvBN(C_in, C_out, 1, 1, 0, affine=affine))
        if kind == "avg":
            layers.append(nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False))
        else:
            layers.append(nn.MaxPool2d(3, stride=stride, padding=1))
        super().__init__(*layers)


def skip_connect(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
    """Identity when shapes allow, FactorizedReduce when strided, a 1x1 ReLUConvBN when only channels change."""
    if stride == 1 and C_in == C_out:
        return nn.Identity()
    if stride == 2:
        return FactorizedReduce(C_in, C_out, affine)
    if stride == 1:
        return ReLUConvBN(C_in, C_out, 1, 1, 0, affine=affine)
    raise ValueError(f"skip_connect supports stride 1 or 2, got {stride}")


OpConstructor = Callable[[int, int, int, bool], nn.Module]  # (C_in, C_out, stride, affine) -> module

OPS: dict[str, OpConstructor] = {
    "none": lambda C_in, C_out, stride, affine: Zero(C_in, C_out, stride),
    "skip_connect": skip_connect,
    "max_pool_3x3": lambda C_in, C_out, stride, affine: Pool("max", C_in, C_out, stride, affine),
    "avg_pool_3x3": lambda C_in, C_out, stride, affine: Pool("avg", C_in, C_out, stride, affine),
    "sep_conv_3x3": lambda C_in, C_out, stride, affine: SepConv(C_in, C_out, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C_in, C_out, stride, affine: SepConv(C_in, C_out, 5, stride, 2, affine),
    "dil_conv_3x3": lambda C_in, C_out, stride, affine: DilConv(C_in, C_out, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C_in, C_out, stride, affine: DilConv(C_in, C_out, 5, stride, 4, 2, affine),
    "nor_conv_1x1": lambda C_in, C_out, stride, affine: ReLUConvBN(C_in, C_out, 1, stride, 0, affine=affine),
    "nor_conv_3x3": lambda C_in, C_out, stride, affine: ReLUConvBN(C_in, C_out, 3, stride, 1, affine=affine),
}


# -- fixed blocks of the networks ------------------------------------------------------------------
class ConvBN(nn.Sequential):
    """The stem of both networks: a 3x3 conv without bias, then BatchNorm (no ReLU)."""

    def __init__(self, C_in: int, C_out: int, stride: int = 1, affine: bool = True):
        super().__init__(nn.Conv2d(C_in, C_out, 3, stride, 1, bias=False), nn.BatchNorm2d(C_out, affine=affine))


class ResNetBlock(nn.Module):
    """NB201's reduction block: two 3x3 ReLUConvBN (the first strided) plus a 2x2 avg-pool + 1x1 conv shortcut."""

    def __init__(self, C_in: int, C_out: int, stride: int = 2, affine: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride, 1, affine=affine)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, affine=affine)
        if stride == 2:
            self.shortcut: nn.Module = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(C_in, C_out, 1, bias=False))
        elif C_in != C_out:
            self.shortcut = ReLUConvBN(C_in, C_out, 1, 1, 0, affine=affine)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class BNReLU(nn.Sequential):
    """NB201's last activation before the head."""

    def __init__(self, C: int, affine: bool = True):
        super().__init__(nn.BatchNorm2d(C, affine=affine), nn.ReLU(inplace=False))


class ClassifierHead(nn.Module):
    """Global average pool and a linear classifier: (B, C, H, W) -> (B, num_classes)."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(x), 1))


class Add(nn.Module):
    """Stand-in for one node sum, for timing: adds a tensor to itself (same shape and traffic as a + b)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x


class Concat(nn.Module):
    """Stand-in for a DARTS cell output, for timing: ``n`` copies of the input joined on channels."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x] * self.n, dim=1)
