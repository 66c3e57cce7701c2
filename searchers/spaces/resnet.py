"""ResNet-18-style networks for 32x32 images (He et al., 2016), as plain data, with the gates seed 004 prunes.

The network: a 3x3 conv-BN-ReLU stem with ``C`` channels, four stages of ``blocks[i]`` BasicBlocks
with C, 2C, 4C, 8C channels (the first block of stages 2-4 halves H and W and has a 1x1 conv + BN
projection shortcut), global average pooling and a linear classifier: the CIFAR variant of
ResNet-18 (3x3 stem, no max-pool) with ``C=64``. ``resnet18-narrow`` is the same network with
``C=16``, which trains in minutes on two CPU cores.

A block is ``relu(shortcut(x) + branch(x))`` with ``branch = conv3x3-BN-ReLU-conv3x3-BN``. Seed 004
prunes modules of a pre-trained network; here the gateable modules are

- each block's *branch* (the shortcut stays, so the graph never breaks: a dropped block is the
  identity, or its projection, and every gate pattern is a valid network), and
- as a second, finer granularity, the branch's inner channels in ``groups`` equal channel groups
  (a group dropped removes its output channels of the first conv and its input channels of the
  second). A block that keeps no group is dropped.

``GatePattern`` is the result of a pruning search, plain data like a genotype: per block, which of
its channel groups it keeps. ``hilnas.searchers.prune`` builds the gated network, its op keys and the
real smaller network of a pattern; constructing a space registers its op keys with ``op_key``.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, ClassVar

from hilnas.searchers.genotype import GenotypeError, register_genotype_kind
from hilnas.searchers.spaces.base import SearchSpace, SpaceError, register_space


@dataclass(frozen=True)
class ResNetBlock:
    """One BasicBlock position: its channels, input resolution and stride."""
    index: int
    stage: int
    C_in: int
    C_out: int
    size: int          # H == W of the input
    stride: int
    groups: int        # channel groups of the branch's inner channels

    @property
    def projection(self) -> bool:
        """The shortcut is a 1x1 conv + BN (the shape changes) rather than the identity."""
        return self.stride != 1 or self.C_in != self.C_out

    @property
    def C_mid(self) -> int:
        return self.C_out  # BasicBlock: the inner width equals the output width

    @property
    def group_width(self) -> int:
        return self.C_mid // self.groups

    @property
    def out_size(self) -> int:
        return -(-self.size // self.stride)  # 'same' padding: ceil(H / s)


@register_genotype_kind
@dataclass(frozen=True)
class GatePattern:
    """Which channel groups each block of a ResNet keeps (``masks[b][g]``); a block keeping none is dropped.

    Saved as ``{"space": "resnet", "masks": ["1111", "0000", "1010", ...]}`` (one bit string per block).
    """
    kind: ClassVar[str] = "resnet"
    masks: tuple[tuple[bool, ...], ...]

    def __post_init__(self) -> None:
        try:
            masks = tuple(tuple(_bit(b) for b in m) for m in self.masks)
        except (TypeError, ValueError):
            raise GenotypeError(f"masks must be one sequence of 0/1 per block, got {self.masks!r}") from None
        if not masks or len({len(m) for m in masks}) != 1 or not masks[0]:
            raise GenotypeError(f"masks must give every block the same number (>= 1) of groups, got {self.masks!r}")
        object.__setattr__(self, "masks", masks)

    @classmethod
    def full(cls, blocks: int, groups: int) -> GatePattern:
        return cls(tuple((True,) * groups for _ in range(blocks)))

    @classmethod
    def empty(cls, blocks: int, groups: int) -> GatePattern:
        return cls(tuple((False,) * groups for _ in range(blocks)))

    @property
    def kept_groups(self) -> tuple[int, ...]:
        return tuple(sum(m) for m in self.masks)

    @property
    def kept_blocks(self) -> tuple[bool, ...]:
        return tuple(any(m) for m in self.masks)

    def bits(self) -> str:
        return " ".join("".join("1" if b else "0" for b in m) for m in self.masks)

    @classmethod
    def from_bits(cls, text: str) -> GatePattern:
        """The pattern ``bits()`` wrote (one bit string per block, space-separated), as reports and results keep it."""
        if not isinstance(text, str):
            raise GenotypeError(f"a gate pattern's bits must be a string, got {text!r}")
        return cls.from_dict({"masks": text.split()})

    @property
    def arch_str(self) -> str:
        """The one-line form reports show (as NB201's arch string): each block's kept groups."""
        return self.bits()

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.kind, "masks": ["".join("1" if b else "0" for b in m) for m in self.masks]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GatePattern:
        if d.get("space", cls.kind) != cls.kind or "masks" not in d:
            raise GenotypeError(f"expected a {cls.kind!r} gate pattern with 'masks', got {d!r}")
        masks = d["masks"]
        if isinstance(masks, str) or not isinstance(masks, (list, tuple)):
            raise GenotypeError(f"masks must be a list of bit strings, got {masks!r}")
        if any(not isinstance(m, str) or set(m) - {"0", "1"} for m in masks):
            raise GenotypeError(f"masks must be bit strings of 0 and 1, got {masks!r}")
        return cls(tuple(tuple(c == "1" for c in m) for m in masks))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> GatePattern:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, AttributeError) as e:
            raise GenotypeError(f"gate pattern JSON does not parse: {e}") from None


def _bit(b: Any) -> bool:
    if isinstance(b, str) or b not in (0, 1):  # True and False compare equal to 1 and 0
        raise ValueError(b)
    return bool(b)


@register_space
@dataclass(frozen=True, kw_only=True)
class ResNetSpace(SearchSpace):
    """ResNet-18 for 32x32 inputs (``C=64``, 2 blocks per stage), prunable by block and channel group."""
    name: ClassVar[str] = "resnet18"
    ops: tuple[str, ...] = ("none", "res_branch")   # a block's branch is dropped or kept
    C: int = 64                                      # channels of the first stage; doubled at each later stage
    blocks: tuple[int, ...] = (2, 2, 2, 2)           # BasicBlocks per stage
    groups: int = 4                                  # channel groups of every branch's inner channels

    def __post_init__(self) -> None:
        super().__post_init__()
        blocks = self.blocks
        try:   # "2,2,2,2" from a command line's --space-opt
            blocks = tuple(int(b) for b in (blocks.split(",") if isinstance(blocks, str) else blocks))
        except (TypeError, ValueError):
            raise SpaceError(f"{self.name}: blocks must be whole numbers per stage, e.g. 2,2,2,2; got {blocks!r}") \
                from None
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "ops", tuple(self.ops))
        if self.C < 1 or not self.blocks or min(self.blocks) < 1 or self.groups < 1:
            raise SpaceError(f"{self.name}: C, groups and every stage's blocks must be >= 1, got C={self.C}, "
                             f"blocks={self.blocks}, groups={self.groups}")
        if self.C % self.groups:
            raise SpaceError(f"{self.name}: groups={self.groups} must divide C={self.C} (every stage's width)")
        # op_key imports the spaces, so the space's op keys register when a space is first made
        import hilnas.searchers.prune.keys  # noqa: F401

    def layers(self) -> tuple[ResNetBlock, ...]:
        out: list[ResNetBlock] = []
        C_in, size = self.C, self.input_size
        for stage, n in enumerate(self.blocks):
            C = self.C * 2 ** stage
            for i in range(n):
                stride = 2 if stage and not i else 1
                out.append(ResNetBlock(len(out), stage, C_in, C, size, stride, self.groups))
                C_in, size = C, out[-1].out_size
        return tuple(out)

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        return ()  # no cells: the gates are on the blocks (``layers``)

    @property
    def stem_channels(self) -> int:
        return self.C

    @property
    def head_channels(self) -> int:
        return self.C * 2 ** (len(self.blocks) - 1)

    @property
    def head_size(self) -> int:
        return self.layers()[-1].out_size

    def check(self, genotype: Any) -> None:
        if not isinstance(genotype, GatePattern):
            raise SpaceError(f"{self.name}: expected a GatePattern, got {type(genotype).__name__}")
        n = len(self.layers())
        if len(genotype.masks) != n or len(genotype.masks[0]) != self.groups:
            raise SpaceError(f"{self.name}: the pattern has {len(genotype.masks)} blocks of {len(genotype.masks[0])} "
                             f"groups; this space has {n} blocks of {self.groups} groups")

    def sample(self, rng: random.Random) -> GatePattern:
        """Each block keeps a uniformly random number (0..groups) of uniformly chosen groups."""
        masks = []
        for _ in self.layers():
            keep = set(rng.sample(range(self.groups), rng.randint(0, self.groups)))
            masks.append(tuple(g in keep for g in range(self.groups)))
        return GatePattern(tuple(masks))

    def build_network(self, genotype: GatePattern) -> Any:
        """The pruned network of ``genotype`` with fresh weights (``hilnas.searchers.model.build_network``)."""
        from hilnas.searchers.prune.network import GatedResNet
        return GatedResNet(self).prune(genotype)


@register_space
@dataclass(frozen=True, kw_only=True)
class NarrowResNetSpace(ResNetSpace):
    """ResNet-18 with a quarter of the width (``C=16``): the same prunable structure, minutes to train on a CPU."""
    name: ClassVar[str] = "resnet18-narrow"
    C: int = 16
