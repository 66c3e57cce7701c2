"""The NAS-Bench-201 search space (Dong & Yang, 2020): one 4-node cell repeated, 5 candidate ops."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from hilnas.searchers.genotype import NB201_EDGES, NB201_OPS, NB201Genotype
from hilnas.searchers.spaces.base import SearchSpace, SpaceError, register_space


@dataclass(frozen=True)
class NB201Layer:
    """One position of the NB201 macro skeleton: a searched cell or a fixed ResNet reduction block."""
    index: int
    kind: Literal["cell", "resblock"]
    C_in: int
    C_out: int
    size: int      # H == W of the input
    stride: int


@register_space
@dataclass(frozen=True, kw_only=True)
class NB201Space(SearchSpace):
    """Stem, then 3 stages of N cells (C, 2C, 4C channels) joined by stride-2 ResNet blocks, BN-ReLU, head.

    The defaults are the benchmark's CIFAR-10 network: C=16, N=5, 32x32 input, 10 classes.
    """
    name: ClassVar[str] = "nb201"
    ops: tuple[str, ...] = NB201_OPS
    C: int = 16    # channels of the first stage; doubled by each ResNet block
    N: int = 5     # cells per stage

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "ops", tuple(self.ops))
        unknown = [op for op in self.ops if op not in NB201_OPS]
        if unknown or len(set(self.ops)) != len(self.ops) or not self.ops:
            raise SpaceError(f"nb201: ops must be distinct names from {NB201_OPS}; got {self.ops}")
        if self.C < 1 or self.N < 1:
            raise SpaceError(f"nb201: C and N must be >= 1, got C={self.C}, N={self.N}")
        if self.input_size % 4:
            # the ResNet block's 2x2 average-pool shortcut and its strided conv disagree on odd sizes
            raise SpaceError(f"nb201: input_size must be a multiple of 4, got {self.input_size}")

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        return NB201_EDGES

    @property
    def stem_channels(self) -> int:
        return self.C

    def layers(self) -> tuple[NB201Layer, ...]:
        out: list[NB201Layer] = []
        C, size = self.C, self.input_size
        for stage in range(3):
            if stage:
                out.append(NB201Layer(len(out), "resblock", C, 2 * C, size, 2))
                C, size = 2 * C, size // 2
            out += [NB201Layer(len(out) + i, "cell", C, C, size, 1) for i in range(self.N)]
        return tuple(out)

    @property
    def head_channels(self) -> int:
        return 4 * self.C

    @property
    def head_size(self) -> int:
        return self.input_size // 4

    def check(self, genotype: Any) -> None:
        if not isinstance(genotype, NB201Genotype):
            raise SpaceError(f"nb201: expected an NB201Genotype, got {type(genotype).__name__}")
        bad = sorted({op for op in genotype.ops if op not in self.ops})
        if bad:
            raise SpaceError(f"nb201: ops {bad} are not in this space's ops {self.ops}")

    def sample(self, rng: random.Random) -> NB201Genotype:
        return NB201Genotype(tuple(rng.choice(self.ops) for _ in NB201_EDGES))
