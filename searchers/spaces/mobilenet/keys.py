"""The backbone's op keys: one per layer, and the grid of widths a LUT measures.

``mobilenet_stem|cin=1|cout=10|h=28|w=28|s=1`` is the stem (3x3 conv-BN-ReLU at the stride; a
name of its own, since ``op_key`` has one builder per name and another space's conv-BN-ReLU stem
may build a different module), ``dws_block|cin=10|cout=19|h=28|w=28|s=1`` a depthwise-separable
block (its depthwise conv has ``cin`` channels), and the head is the shared ``gap_linear``. A network's keys (``network_op_keys``) are its layers at its exact
widths. ``enumerate_op_keys`` lists the grid instead: the stem and the head at every grid width of
their layer, and each block at every (grid width of the layer before, grid width of its own
layer) pair, since a block's cost depends on both. Splitting can reach any width in between,
which no LUT could hold, so ``mobilenet.grid`` interpolates between these measured keys.

Registered with ``op_key`` on the first ``MobileNetSpace()`` (the space imports this module), so
``decode``, ``build_op_module`` and the singledispatch functions know the backbone whenever one
of its spaces exists.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hilnas.searchers.op_key import (OpKey, OpKeyError, enumerate_op_keys, fixed_op_keys, network_op_keys,
                                     register_op_builder)
from hilnas.searchers.spaces.mobilenet.spec import MobileNetLayer, MobileNetSpace, MobileNetWidths, out_size

if TYPE_CHECKING:
    from torch import nn

STEM_OP, BLOCK_OP, HEAD_OP = "mobilenet_stem", "dws_block", "gap_linear"


def _stem(key: OpKey) -> nn.Module:
    from hilnas.searchers.spaces.mobilenet.net import Unit
    if key.stride not in (1, 2):
        raise OpKeyError(f"{key.encode()}: the stem takes stride 1 or 2")
    return Unit(key.cin, key.cout, 3, key.stride)


def _block(key: OpKey) -> nn.Module:
    from hilnas.searchers.spaces.mobilenet.net import DepthwiseSeparable
    if key.stride not in (1, 2):
        raise OpKeyError(f"{key.encode()}: a depthwise-separable block takes stride 1 or 2")
    return DepthwiseSeparable(key.cin, key.cout, key.stride)


register_op_builder(STEM_OP, _stem)
register_op_builder(BLOCK_OP, _block)


def layer_key(layer: MobileNetLayer) -> OpKey:
    op = STEM_OP if layer.kind == "stem" else BLOCK_OP
    return OpKey(op, layer.cin, layer.cout, layer.size, layer.size, layer.stride)


def head_key(space: MobileNetSpace, width: int) -> OpKey:
    n = space.head_size
    return OpKey(HEAD_OP, width, space.num_classes, n, n, 1)


def network_keys(space: MobileNetSpace, widths: MobileNetWidths) -> list[OpKey]:
    """Stem, blocks, head: the keys the network of ``widths`` is built from."""
    return [layer_key(layer) for layer in space.layers(widths)] + [head_key(space, widths.widths[-1])]


def grid_keys(space: MobileNetSpace) -> list[OpKey]:
    """Every key a LUT of the space measures, in network order (see the module docstring)."""
    keys: list[OpKey] = []
    size = space.input_size
    for i, s in enumerate(space.strides):
        cins = (space.in_channels,) if i == 0 else space.grid(i - 1)
        op = STEM_OP if i == 0 else BLOCK_OP
        keys += [OpKey(op, cin, cout, size, size, s) for cin in cins for cout in space.grid(i)]
        size = out_size(size, s)
    keys += [head_key(space, w) for w in space.grid(space.num_layers - 1)]
    return list(dict.fromkeys(keys))


@network_op_keys.register
def _(space: MobileNetSpace, genotype: Any) -> list[OpKey]:
    return network_keys(space, genotype)


@enumerate_op_keys.register
def _(space: MobileNetSpace) -> list[OpKey]:
    return grid_keys(space)


@fixed_op_keys.register
def _(space: MobileNetSpace) -> list[OpKey]:
    return []  # every layer's key depends on the widths
