"""What every search space declares, and the registry behind ``create_space``."""
from __future__ import annotations

import abc
import dataclasses
import random
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, TypeVar


class SpaceError(ValueError):
    """A search space is configured wrongly, or a genotype does not fit it."""


@dataclass(frozen=True, kw_only=True)
class SearchSpace(abc.ABC):
    """A cell-based search space: which ops a cell edge may take, and the network around the cells.

    Subclasses add the macro layout (channels, cells, where the resolution halves). Everything is
    plain data; ``hilnas.searchers.model.build_network`` turns a space plus a genotype into torch.
    """
    name: ClassVar[str]
    ops: tuple[str, ...]            # candidate ops of every cell edge, "none" first
    in_channels: int = 3            # 1 for Fashion-MNIST, 3 for CIFAR-10
    input_size: int = 32            # H == W of the network input
    num_classes: int = 10

    def __post_init__(self) -> None:
        for f in ("in_channels", "input_size", "num_classes"):
            if getattr(self, f) < 1:
                raise SpaceError(f"{self.name}: {f} must be >= 1, got {getattr(self, f)}")

    @property
    @abc.abstractmethod
    def edges(self) -> tuple[tuple[int, int], ...]:
        """The (src, dst) node pairs of one cell, in the order alphas are indexed."""

    @property
    @abc.abstractmethod
    def stem_channels(self) -> int:
        """Channels out of the stem."""

    @property
    @abc.abstractmethod
    def head_channels(self) -> int:
        """Channels into the classifier head."""

    @property
    @abc.abstractmethod
    def head_size(self) -> int:
        """H == W into the classifier head."""

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.in_channels, self.input_size, self.input_size)  # (B, C, H, W)

    @abc.abstractmethod
    def check(self, genotype: Any) -> None:
        """Raise SpaceError unless the genotype can be placed in this space."""

    @abc.abstractmethod
    def sample(self, rng: random.Random) -> Any:
        """A uniformly random genotype of this space."""

    def replace(self, **overrides: Any) -> SearchSpace:
        return dataclasses.replace(self, **overrides)


S = TypeVar("S", bound=type[SearchSpace])
_REGISTRY: dict[str, Callable[..., SearchSpace]] = {}


def register_space(cls: S) -> S:
    """Class decorator: make ``create_space(cls.name)`` build this space."""
    if cls.name in _REGISTRY:
        raise SpaceError(f"space {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def create_space(name: str, **overrides: Any) -> SearchSpace:
    """The named space with its defaults, any field overridden, e.g. ``create_space("darts", C=8)``."""
    if name not in _REGISTRY:
        raise SpaceError(f"unknown search space {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**overrides)
    except TypeError as e:  # an unknown field name
        raise SpaceError(f"space {name!r}: {e}") from None


def list_spaces() -> list[str]:
    return sorted(_REGISTRY)
