"""The DARTS search space (Liu et al., 2019): stacked normal and reduction cells, 8 candidate ops."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from hilnas.searchers.genotype import DARTS_OPS, Genotype
from hilnas.searchers.spaces.base import SearchSpace, SpaceError, register_space


def halve(size: int) -> int:
    """Spatial size after a stride-2 op with 'same' padding (3x3 pad 1, FactorizedReduce)."""
    return (size + 1) // 2


@dataclass(frozen=True)
class DartsCellSpec:
    """One cell position of a DARTS network: its inputs, channels and resolution."""
    index: int
    reduction: bool
    reduction_prev: bool     # the previous cell halved the resolution, so s0 is twice the size of s1
    C_prev_prev: int         # channels of input s0 (the cell two back)
    C_prev: int              # channels of input s1 (the cell before)
    C: int                   # channels of every node inside the cell
    size_prev_prev: int      # H == W of s0
    size_prev: int           # H == W of s1
    size: int                # H == W of the nodes and the output
    steps: int

    @property
    def C_out(self) -> int:
        return self.steps * self.C  # all intermediate nodes are concatenated


@register_space
@dataclass(frozen=True, kw_only=True)
class DartsSpace(SearchSpace):
    """DARTS cells: ``steps`` nodes, each summing two edges from earlier nodes; reductions at 1/3 and 2/3.

    Defaults are small enough for CPU; the paper searches with C=16, layers=8 and evaluates
    with C=36, layers=20 (override them).
    """
    name: ClassVar[str] = "darts"
    ops: tuple[str, ...] = DARTS_OPS
    C: int = 16                 # channels of the first cells; doubled at each reduction
    layers: int = 8             # cells in the network
    steps: int = 4              # intermediate nodes per cell, all concatenated into the output
    stem_multiplier: int = 3    # the stem conv outputs stem_multiplier * C channels

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "ops", tuple(self.ops))
        unknown = [op for op in self.ops if op not in DARTS_OPS]
        if unknown or len(set(self.ops)) != len(self.ops) or not [op for op in self.ops if op != "none"]:
            raise SpaceError(f"darts: ops must be distinct names from {DARTS_OPS}, with at least one besides none; "
                             f"got {self.ops}")
        for f in ("C", "layers", "steps", "stem_multiplier"):
            if getattr(self, f) < 1:
                raise SpaceError(f"darts: {f} must be >= 1, got {getattr(self, f)}")

    @property
    def reduction_layers(self) -> tuple[int, ...]:
        return tuple(sorted({self.layers // 3, 2 * self.layers // 3}))

    @property
    def stem_channels(self) -> int:
        return self.stem_multiplier * self.C

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        return tuple((src, node + 2) for node in range(self.steps) for src in range(node + 2))

    def cells(self) -> tuple[DartsCellSpec, ...]:
        out = []
        C_pp, C_p, C = self.stem_channels, self.stem_channels, self.C
        s_pp = s_p = self.input_size
        reduction_prev = False
        for i in range(self.layers):
            reduction = i in self.reduction_layers
            if reduction:
                C *= 2
            size = halve(s_p) if reduction else s_p
            out.append(DartsCellSpec(i, reduction, reduction_prev, C_pp, C_p, C, s_pp, s_p, size, self.steps))
            C_pp, C_p = C_p, self.steps * C
            s_pp, s_p = s_p, size
            reduction_prev = reduction
        return tuple(out)

    @property
    def head_channels(self) -> int:
        return self.cells()[-1].C_out

    @property
    def head_size(self) -> int:
        return self.cells()[-1].size

    def check(self, genotype: Any) -> None:
        if not isinstance(genotype, Genotype):
            raise SpaceError(f"darts: expected a Genotype, got {type(genotype).__name__}")
        if genotype.steps != self.steps:
            raise SpaceError(f"darts: genotype has {genotype.steps} nodes per cell, the space has steps={self.steps}")
        full = tuple(range(2, self.steps + 2))
        for reduction in (False, True):
            edges, concat = genotype.cell(reduction)
            bad = sorted({op for op, _ in edges if op not in self.ops})
            if bad:
                raise SpaceError(f"darts: ops {bad} are not in this space's ops {self.ops}")
            if tuple(sorted(concat)) != full:
                raise SpaceError(f"darts: this space concatenates all nodes {list(full)}, genotype has {list(concat)}")

    def sample(self, rng: random.Random) -> Genotype:
        """Two distinct inputs per node, each with a random op other than none (as derived DARTS cells are)."""
        ops = [op for op in self.ops if op != "none"]

        def cell() -> tuple[tuple[str, int], ...]:
            return tuple((rng.choice(ops), src) for node in range(self.steps)
                         for src in sorted(rng.sample(range(node + 2), 2)))

        full = tuple(range(2, self.steps + 2))
        return Genotype(cell(), full, cell(), full)
