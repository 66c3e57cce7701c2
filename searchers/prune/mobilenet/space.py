"""The MobileNet as a prunable space: channel-group gates on its layers, their op keys and the pruned widths.

``MobileNetGroups(backbone, groups)`` gates the pre-trained MobileNet at the backbone's base widths
(``spaces/mobilenet``): each layer's output channels (the stem's, then each block's pointwise unit's)
are split into ``groups + 1`` contiguous groups, the first never gated (a layer with no channels would
break the graph) and the other ``groups`` gated. A gate pattern is the ResNet's ``GatePattern`` with one
mask per layer over its gated groups, so Algorithm 1's phases, the lambda sweep and the family run on it
unchanged (``search``): it offers what they ask of a space (``layers``, ``groups``, ``sample``,
``check``, the data shape) plus ``gated_network`` and ``module_costs``, which ``pretrain`` and
``cost.ModuleCosts.of`` call for a space that is not a ResNet. With the layout's ``"groups"``
granularity a layer also has a gate of its own (off: the layer keeps only its first group); with
``"blocks"`` that is its only gate.

A pattern's network is the MobileNet at the kept widths (``widths_of``), so its op keys are the
backbone's keys at those widths (``network_op_keys``); the LUT holds the backbone's grid
(``hilnas lut build --space mobilenet``) and widths between grid points are interpolated, as the
splitting search prices them (``spaces.mobilenet.grid``). ``price_points`` are the grid widths that
bracket each layer's reachable widths: the keys at their pairs are what the search needs from the LUT
(``enumerate_op_keys``), and what ``cost`` interpolates between. An exported pruned network
carries ``PrunedWidths`` (the widths, which ``hilnas validate`` prices like any MobileNet, and the masks).

Torch-free: the network (``network``) and the costs (``cost``) import torch.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from hilnas.searchers.op_key import OpKey, enumerate_op_keys, fixed_op_keys, network_op_keys
from hilnas.searchers.prune.mobilenet.genotype import PrunedWidths
from hilnas.searchers.spaces.base import SpaceError
from hilnas.searchers.spaces.mobilenet import MobileNetSpace, MobileNetWidths
from hilnas.searchers.spaces.mobilenet.keys import BLOCK_OP, STEM_OP, head_key, network_keys
from hilnas.searchers.spaces.resnet import GatePattern

DEFAULT_GROUPS = 3   # quarters: the narrowest layer keeps 1/4 of its width, the bottom of the default LUT grid


def group_bounds(width: int, parts: int) -> list[int]:
    """The first channel of each of ``parts`` contiguous groups of a ``width``-channel layer, and ``width``."""
    if not 1 <= parts <= width:
        raise SpaceError(f"cannot split {width} channels into {parts} groups")
    return [round(width * g / parts) for g in range(parts + 1)]


@dataclass(frozen=True)
class GroupLayer:
    """One gated layer: its full width and the first channel of each of its groups (``bounds[-1] == width``)."""
    index: int
    width: int
    bounds: tuple[int, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Channels per group, the fixed first group first."""
        return tuple(b - a for a, b in zip(self.bounds, self.bounds[1:]))

    def kept(self, mask: tuple[bool, ...]) -> int:
        return self.sizes[0] + sum(s for s, on in zip(self.sizes[1:], mask) if on)


@dataclass(frozen=True)
class MobileNetGroups:
    """The pre-trained MobileNet (``backbone`` at its base widths) with ``groups`` gated channel groups per layer."""
    name: ClassVar[str] = "mobilenet"
    backbone: MobileNetSpace
    groups: int = DEFAULT_GROUPS

    def __post_init__(self) -> None:
        if not isinstance(self.groups, int) or self.groups < 1:
            raise SpaceError(f"mobilenet pruning: groups (gated channel groups per layer) must be an int >= 1, "
                             f"got {self.groups!r}")
        for i, w in enumerate(self.backbone.base_widths):
            if w < self.groups + 1:
                raise SpaceError(f"mobilenet pruning: layer {i} has {w} channels, too few for {self.groups} gated "
                                 f"groups and a fixed one; use fewer groups or wider base_widths")

    # -- what the pruning search asks of a space ---------------------------------------------------
    @property
    def in_channels(self) -> int:
        return self.backbone.in_channels

    @property
    def input_size(self) -> int:
        return self.backbone.input_size

    @property
    def num_classes(self) -> int:
        return self.backbone.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return self.backbone.input_shape

    @property
    def full_widths(self) -> MobileNetWidths:
        return MobileNetWidths(self.backbone.base_widths)

    def layers(self) -> tuple[GroupLayer, ...]:
        return tuple(GroupLayer(i, w, tuple(group_bounds(w, self.groups + 1)))
                     for i, w in enumerate(self.backbone.base_widths))

    def check(self, pattern: Any) -> None:
        if not isinstance(pattern, GatePattern):
            raise SpaceError(f"mobilenet pruning: expected a GatePattern, got {type(pattern).__name__}")
        if len(pattern.masks) != self.backbone.num_layers or len(pattern.masks[0]) != self.groups:
            raise SpaceError(f"mobilenet pruning: a pattern has {self.groups} gated groups for each of "
                             f"{self.backbone.num_layers} layers, got {len(pattern.masks)} x {len(pattern.masks[0])}")

    def sample(self, rng: random.Random) -> GatePattern:
        """Every gated group kept with probability 1/2."""
        return GatePattern(tuple(tuple(rng.random() < 0.5 for _ in range(self.groups))
                                 for _ in range(self.backbone.num_layers)))

    def gated_network(self) -> Any:
        from hilnas.searchers.prune.mobilenet.network import GatedMobileNet
        return GatedMobileNet(self)

    def module_costs(self, model: Any) -> Any:
        from hilnas.searchers.prune.mobilenet.cost import ChannelCosts
        return ChannelCosts.of(self, model)

    # -- widths, keys, metadata -------------------------------------------------------------------
    def widths_of(self, pattern: GatePattern) -> MobileNetWidths:
        self.check(pattern)
        return MobileNetWidths(tuple(layer.kept(m) for layer, m in zip(self.layers(), pattern.masks)))

    def exported(self, pattern: GatePattern) -> tuple[MobileNetSpace, PrunedWidths]:
        """The space and genotype an exported pruned network carries in its ONNX metadata."""
        return self.backbone, PrunedWidths(self.widths_of(pattern).widths, tuple(pattern.to_dict()["masks"]))

    def price_points(self) -> list[tuple[int, ...]]:
        """Per layer, the widths its keys are priced at: the grid widths from the one at or below the layer's
        narrowest (its first group) to the one at or above its full width; a width beyond the grid stays itself
        (the LUT cannot price it: ``check`` names the key)."""
        points = []
        for layer in self.layers():
            lo, hi, grid = layer.sizes[0], layer.width, self.backbone.grid(layer.index)
            below = [g for g in grid if g <= lo] or [lo]
            above = [g for g in grid if g >= hi] or [hi]
            points.append(tuple(sorted({below[-1], above[0], *(g for g in grid if lo < g < hi)})))
        return points

    def price_keys(self) -> list[list[OpKey]]:
        """Per layer (then the head), the keys at every pair of its input's and its own price points."""
        b, points = self.backbone, self.price_points()
        out, size = [], b.input_size
        for i, s in enumerate(b.strides):
            cins = (b.in_channels,) if i == 0 else points[i - 1]
            op = STEM_OP if i == 0 else BLOCK_OP
            out.append([OpKey(op, c, o, size, size, s) for c in cins for o in points[i]])
            size = -(-size // s)
        out.append([head_key(b, w) for w in points[-1]])
        return out


@network_op_keys.register
def _(space: MobileNetGroups, genotype: Any) -> list[OpKey]:
    return network_keys(space.backbone, space.widths_of(genotype))


@enumerate_op_keys.register
def _(space: MobileNetGroups) -> list[OpKey]:
    return list(dict.fromkeys(k for keys in space.price_keys() for k in keys))


@fixed_op_keys.register
def _(space: MobileNetGroups) -> list[OpKey]:
    return []
