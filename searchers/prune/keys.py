"""Op keys of the ResNet spaces: one key per gateable module, so the device measures T(e) of each.

A pruned network's cost is the sum over ``network_op_keys(space, pattern)``:

- ``conv_bn_relu_3x3`` the stem, ``gap_linear`` the head (``op_key.head_key``);
- per kept block: ``res_branch|...|mid=m`` its branch with the ``m`` inner channels the pattern keeps
  (one key per number of kept groups, so the LUT holds T of every width a search can derive),
  ``res_shortcut`` its 1x1 projection when the block changes the shape, and ``add_relu`` the join;
- per dropped block: nothing when its shortcut is the identity (its input is already a ReLU's
  output, so ``relu(x) = x``), else ``res_shortcut`` and ``relu``.

``prune.network`` builds every module of a pruned network from these keys, so its ops and its keys
cannot drift apart. Imported when a ResNet space is made (``spaces/resnet.py``); torch only inside
the builders.
"""
from __future__ import annotations

from typing import Any

from hilnas.searchers.op_key import (OpKey, OpKeyError, enumerate_op_keys, fixed_op_keys, head_key,
                                     network_op_keys, register_op_builder)
from hilnas.searchers.spaces.resnet import ResNetBlock, ResNetSpace


def stem_key(space: ResNetSpace) -> OpKey:
    n = space.input_size
    return OpKey("conv_bn_relu_3x3", space.in_channels, space.C, n, n, 1)


def branch_key(block: ResNetBlock, kept_groups: int) -> OpKey:
    """The block's branch keeping ``kept_groups`` of its channel groups (>= 1)."""
    n = block.size
    return OpKey("res_branch", block.C_in, block.C_out, n, n, block.stride, (("mid", kept_groups * block.group_width),))


def shortcut_key(block: ResNetBlock) -> OpKey | None:
    n = block.size
    return OpKey("res_shortcut", block.C_in, block.C_out, n, n, block.stride) if block.projection else None


def join_key(block: ResNetBlock) -> OpKey:
    n = block.out_size
    return OpKey("add_relu", block.C_out, block.C_out, n, n, 1)


def relu_key(block: ResNetBlock) -> OpKey:
    n = block.out_size
    return OpKey("relu", block.C_out, block.C_out, n, n, 1)


def block_keys(block: ResNetBlock, kept_groups: int) -> list[OpKey]:
    """The keys of one block that keeps ``kept_groups`` channel groups (0 = the block is dropped)."""
    short = shortcut_key(block)
    if kept_groups:
        return [branch_key(block, kept_groups)] + ([short] if short else []) + [join_key(block)]
    return [short, relu_key(block)] if short else []


@fixed_op_keys.register
def _(space: ResNetSpace) -> list[OpKey]:
    return [stem_key(space)] + [k for b in space.layers() if (k := shortcut_key(b))] + [head_key(space)]


@enumerate_op_keys.register
def _(space: ResNetSpace) -> list[OpKey]:
    keys = [stem_key(space)]
    for b in space.layers():
        keys += [branch_key(b, k) for k in range(space.groups, 0, -1)] + block_keys(b, 0) + [join_key(b)]
    return list(dict.fromkeys(keys + [head_key(space)]))


@network_op_keys.register
def _(space: ResNetSpace, genotype: Any) -> list[OpKey]:
    space.check(genotype)
    keys = [stem_key(space)]
    for b, kept in zip(space.layers(), genotype.kept_groups):
        keys += block_keys(b, kept)
    return keys + [head_key(space)]


# -- building one op ---------------------------------------------------------------------------------
def _check(key: OpKey, ok: bool, what: str) -> None:
    if not ok:
        raise OpKeyError(f"{key.encode()}: {what}")


def _stem(key: OpKey) -> Any:
    from hilnas.searchers.prune.blocks import Stem
    _check(key, key.stride == 1, "conv_bn_relu_3x3 has stride 1")
    return Stem(key.cin, key.cout)


def _branch(key: OpKey) -> Any:
    from hilnas.searchers.prune.blocks import Branch
    mid = dict(key.params).get("mid")
    _check(key, isinstance(mid, int) and mid >= 1, "res_branch needs mid >= 1 (its inner channels)")
    _check(key, key.stride in (1, 2), "res_branch takes stride 1 or 2")
    return Branch(key.cin, key.cout, key.stride, mid)


def _shortcut(key: OpKey) -> Any:
    from hilnas.searchers.prune.blocks import Projection
    _check(key, key.stride in (1, 2), "res_shortcut takes stride 1 or 2")
    return Projection(key.cin, key.cout, key.stride)


def _add_relu(key: OpKey) -> Any:
    from hilnas.searchers.prune.blocks import AddReLU
    _check(key, key.cin == key.cout and key.stride == 1, "add_relu keeps the shape (cin == cout, s=1)")
    return AddReLU()


def _relu(key: OpKey) -> Any:
    from torch import nn
    _check(key, key.cin == key.cout and key.stride == 1, "relu keeps the shape (cin == cout, s=1)")
    return nn.ReLU(inplace=False)


register_op_builder("conv_bn_relu_3x3", _stem)   # the ResNet stem
register_op_builder("res_branch", _branch)       # a block's branch, with its kept inner width (mid)
register_op_builder("res_shortcut", _shortcut)   # a projection shortcut
register_op_builder("add_relu", _add_relu)       # a block's join
register_op_builder("relu", _relu)               # a dropped projection block's activation
