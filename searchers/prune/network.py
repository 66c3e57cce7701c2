"""The gated ResNet (the pre-trained network with seed 004's gates) and the real smaller network of a pattern.

``GatedResNet`` is the full network; its forward takes gates ``(block (B,), group (B, G))`` in [0, 1]
(or per sample, ``(N, B)`` and ``(N, B, G)``: phase 2 runs several lambdas' patterns in one batch):
block ``b`` computes ``relu(shortcut(x) + g_b * branch(x; group mask))`` with the branch's inner
channels scaled by their group's gate and the branch gated by

    g_b = block_b * (1 - prod_g (1 - group_bg)),

i.e. a block whose groups are all off is off, as a ``GatePattern`` says. With 0/1 gates the gated
network computes exactly what ``prune(pattern)`` computes: ``PrunedResNet`` has the gated-off parts
removed, not multiplied by zero (a dropped branch is gone, a dropped group's channels are cut from
both convs), its modules built from the pattern's op keys (``keys``) and its weights copied from the
gated network. Exported to ONNX it is what the device measures.
"""
from __future__ import annotations

import torch
from torch import nn

from hilnas.searchers.op_key import build_op_module, head_key
from hilnas.searchers.prune.blocks import Branch, Projection
from hilnas.searchers.prune.keys import branch_key, shortcut_key, stem_key
from hilnas.searchers.spaces.resnet import GatePattern, ResNetBlock, ResNetSpace

Gates = tuple[torch.Tensor, torch.Tensor]  # block gates (B,), group gates (B, G); or per sample (N, B), (N, B, G)


class GatedBlock(nn.Module):
    """A BasicBlock at full width whose branch and channel groups are gated."""

    def __init__(self, spec: ResNetBlock):
        super().__init__()
        self.spec = spec
        self.branch: Branch = build_op_module(branch_key(spec, spec.groups))
        key = shortcut_key(spec)
        self.shortcut: nn.Module = build_op_module(key) if key else nn.Identity()

    def forward(self, x: torch.Tensor, block: torch.Tensor | None = None, groups: torch.Tensor | None = None
                ) -> torch.Tensor:
        if block is None:
            return torch.relu(self.shortcut(x) + self.branch(x))
        mask = groups.repeat_interleave(self.spec.group_width, dim=-1)  # (G,) -> (mid,), or (N, G) -> (N, mid)
        gate = block * (1 - torch.prod(1 - groups, dim=-1))            # a block without groups is off
        if gate.dim():
            gate = gate.view(-1, 1, 1, 1)                                # one gate per sample
        return torch.relu(self.shortcut(x) + gate * self.branch(x, mask))


class GatedResNet(nn.Module):
    """The ResNet of a space at full width, with gates; ``prune(pattern)`` gives the real smaller network."""

    def __init__(self, space: ResNetSpace):
        super().__init__()
        self.space = space
        self.stem = build_op_module(stem_key(space))
        self.blocks = nn.ModuleList(GatedBlock(b) for b in space.layers())
        self.head = build_op_module(head_key(space))

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor, gates: Gates | None = None) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, num_classes); ``gates=None`` runs the whole network."""
        x = self.stem(x)
        for b, block in enumerate(self.blocks):
            x = block(x) if gates is None else block(x, gates[0][..., b], gates[1][..., b, :])
        return self.head(x)

    def prune(self, pattern: GatePattern) -> PrunedResNet:
        """The network without the parts ``pattern`` gates off, with this network's weights."""
        self.space.check(pattern)
        return PrunedResNet(self, pattern)


class PrunedBlock(nn.Module):
    """A block as the pattern keeps it: with a narrower branch, or without its branch."""

    def __init__(self, gated: GatedBlock, mask: tuple[bool, ...]):
        super().__init__()
        spec = gated.spec
        kept = [g for g, on in enumerate(mask) if on]
        key = shortcut_key(spec)
        self.shortcut: nn.Module = build_op_module(key) if key else nn.Identity()
        self.shortcut.load_state_dict(gated.shortcut.state_dict())
        self.branch: nn.Module | None = None
        if kept:
            self.branch = build_op_module(branch_key(spec, len(kept)))
            idx = torch.cat([torch.arange(g * spec.group_width, (g + 1) * spec.group_width) for g in kept])
            _copy_sliced(self.branch, gated.branch, idx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch is not None:
            return torch.relu(self.shortcut(x) + self.branch(x))
        if isinstance(self.shortcut, Projection):
            return torch.relu(self.shortcut(x))
        return x  # an identity block without its branch: relu(x) = x, since x is a ReLU's output


class PrunedResNet(nn.Module):
    """The real smaller network of a gate pattern (what is exported and measured)."""

    def __init__(self, gated: GatedResNet, pattern: GatePattern):
        super().__init__()
        self.space, self.pattern = gated.space, pattern
        self.stem = build_op_module(stem_key(gated.space))
        self.stem.load_state_dict(gated.stem.state_dict())
        self.blocks = nn.ModuleList(PrunedBlock(b, m) for b, m in zip(gated.blocks, pattern.masks))
        self.head = build_op_module(head_key(gated.space))
        self.head.load_state_dict(gated.head.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_channels, H, W) -> (B, num_classes)
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def _copy_sliced(dst: Branch, src: Branch, idx: torch.Tensor) -> None:
    """Copy ``src``'s weights into the narrower ``dst``, keeping inner channels ``idx``."""
    with torch.no_grad():
        dst.conv1.weight.copy_(src.conv1.weight[idx])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst.bn1, name).copy_(getattr(src.bn1, name)[idx])
        dst.bn1.num_batches_tracked.copy_(src.bn1.num_batches_tracked)
        dst.conv2.weight.copy_(src.conv2.weight[:, idx])
        dst.bn2.load_state_dict(src.bn2.state_dict())
