"""The MobileNetV1 backbone as plain data: a width per layer is the architecture.

Layer 0 is the stem (3x3 conv-BN-ReLU), layer i >= 1 a depthwise-separable block (3x3 depthwise
conv-BN-ReLU at the block's stride, then 1x1 pointwise conv-BN-ReLU to ``widths[i]`` channels),
then global average pooling and a linear classifier (Howard et al., 2017, Table 1). The default
layout is MobileNetV1's 13 blocks with the 32x32 adaptation common for CIFAR (stem and first
block at stride 1, four stride-2 blocks), so 28x28 Fashion-MNIST and 32x32 CIFAR-10 images end
at 2x2. ``widths_at(alpha)`` is the paper's width multiplier; a splitting search grows the
widths one neuron (output channel) at a time from ``widths_at(0.3)``, as seed 003 does.

A LUT cannot hold every width the growth may reach, so the space names a grid: each layer's
base width times ``grid_multipliers``. The op keys of the grid are what ``hilnas lut build
--space mobilenet`` measures; widths between grid points are priced by bilinear interpolation
(``mobilenet.grid``), and a growth never leaves the grid's range.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from hilnas.searchers.genotype import GenotypeError, register_genotype_kind
from hilnas.searchers.spaces.base import SearchSpace, SpaceError, register_space

# MobileNetV1 at width 1.0: the stem, then the pointwise output of each of the 13 blocks.
MOBILENET_V1_WIDTHS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
# ImageNet's strides are 2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1 (224 -> 7); small images keep the
# stem at stride 1 and end at 2x2.
SMALL_INPUT_STRIDES = (1, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)


def out_size(size: int, stride: int) -> int:
    """Spatial size after a 3x3 conv with padding 1 ('same'): ceil(H / s)."""
    return -(-size // stride)


@register_genotype_kind
@dataclass(frozen=True)
class MobileNetWidths:
    """A MobileNet architecture: the output channels of the stem and of every block, in order.

    Saved as ``{"space": "mobilenet", "widths": [10, 19, 38, ...]}``.
    """
    kind: ClassVar[str] = "mobilenet"
    widths: tuple[int, ...]

    def __post_init__(self) -> None:
        try:
            widths = tuple(self.widths)
        except TypeError:
            raise GenotypeError(f"widths must be a sequence of ints, got {self.widths!r}") from None
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise GenotypeError(f"widths must be ints >= 1, one per layer, got {self.widths!r}")
        object.__setattr__(self, "widths", widths)

    def __len__(self) -> int:
        return len(self.widths)

    def grown(self, layer: int, by: int = 1) -> MobileNetWidths:
        """The same widths with ``by`` more neurons in ``layer``."""
        w = list(self.widths)
        w[layer] += by
        return MobileNetWidths(tuple(w))

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.kind, "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MobileNetWidths:
        if d.get("space", cls.kind) != cls.kind or "widths" not in d:
            raise GenotypeError(f"expected a mobilenet genotype with 'widths', got {d!r}")
        return cls(tuple(d["widths"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> MobileNetWidths:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, AttributeError) as e:
            raise GenotypeError(f"not a mobilenet genotype: {e}") from None


@dataclass(frozen=True)
class MobileNetLayer:
    """One layer of a MobileNet at given widths: the stem or a depthwise-separable block."""
    index: int
    kind: Literal["stem", "block"]
    cin: int
    cout: int
    size: int      # H == W of the input
    stride: int

    @property
    def out_size(self) -> int:
        return out_size(self.size, self.stride)


@register_space
@dataclass(frozen=True, kw_only=True)
class MobileNetSpace(SearchSpace):
    """MobileNetV1 with a free width per layer; ``base_widths`` are the widths at multiplier 1.0.

    Reusing the backbone (seed 004's pruning puts channel-group gates on it): the spec stays plain
    data; ``mobilenet.net.MobileNet`` is the one builder, with the stem and each block a module
    (``stem``, ``blocks[i].depthwise``, ``blocks[i].pointwise``, each a conv-BN-ReLU ``Unit``), so
    a gate wraps or follows a unit without touching the others.
    """
    name: ClassVar[str] = "mobilenet"
    ops: tuple[str, ...] = ("mobilenet_stem", "dws_block", "gap_linear")  # the op types of its layers
    base_widths: tuple[int, ...] = MOBILENET_V1_WIDTHS   # stem, then each block's pointwise output
    strides: tuple[int, ...] = SMALL_INPUT_STRIDES       # stem, then each block's depthwise stride
    grid_multipliers: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5)  # LUT grid: base width x these

    def __post_init__(self) -> None:
        super().__post_init__()
        for f in ("ops", "base_widths", "strides", "grid_multipliers"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        if len(self.base_widths) < 2 or any(not isinstance(w, int) or w < 1 for w in self.base_widths):
            raise SpaceError(f"mobilenet: base_widths must be >= 2 ints >= 1 (stem and blocks), got {self.base_widths}")
        if len(self.strides) != len(self.base_widths) or any(s not in (1, 2) for s in self.strides):
            raise SpaceError(f"mobilenet: strides must be 1 or 2, one per layer ({len(self.base_widths)}), "
                             f"got {self.strides}")
        if len(self.grid_multipliers) < 2 or any(m <= 0 for m in self.grid_multipliers) \
                or list(self.grid_multipliers) != sorted(set(self.grid_multipliers)):
            raise SpaceError(f"mobilenet: grid_multipliers must be >= 2 increasing positive numbers, "
                             f"got {self.grid_multipliers}")
        from hilnas.searchers.spaces.mobilenet import keys  # noqa: F401 - registers the op keys with op_key

    # -- the SearchSpace interface --------------------------------------------------------------
    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        return ()  # no cells: the widths are the whole architecture

    @property
    def stem_channels(self) -> int:
        return self.base_widths[0]

    @property
    def head_channels(self) -> int:
        return self.base_widths[-1]

    @property
    def head_size(self) -> int:
        size = self.input_size
        for s in self.strides:
            size = out_size(size, s)
        return size

    @property
    def num_layers(self) -> int:
        return len(self.base_widths)

    def check(self, genotype: Any) -> None:
        if not isinstance(genotype, MobileNetWidths):
            raise SpaceError(f"mobilenet: expected MobileNetWidths, got {type(genotype).__name__}")
        if len(genotype) != self.num_layers:
            raise SpaceError(f"mobilenet: the space has {self.num_layers} layers (stem + {self.num_layers - 1} "
                             f"blocks), the widths name {len(genotype)}")

    def build_network(self, genotype: MobileNetWidths) -> Any:
        """The torch network of ``genotype`` (``model.build_network`` delegates here)."""
        from hilnas.searchers.spaces.mobilenet.net import MobileNet
        return MobileNet(self, genotype)

    def sample(self, rng: random.Random) -> MobileNetWidths:
        """Each layer's width uniform over the LUT grid's range."""
        return MobileNetWidths(tuple(rng.randint(self.min_width(i), self.max_width(i)) for i in range(self.num_layers)))

    # -- widths ---------------------------------------------------------------------------------
    def widths_at(self, multiplier: float) -> MobileNetWidths:
        """MobileNet's width multiplier: every base width times ``multiplier``, rounded, at least 1."""
        if not multiplier > 0:
            raise SpaceError(f"mobilenet: a width multiplier must be > 0, got {multiplier}")
        return MobileNetWidths(tuple(max(1, round(w * multiplier)) for w in self.base_widths))

    def grid(self, layer: int) -> tuple[int, ...]:
        """The widths of ``layer`` the LUT measures (sorted, distinct)."""
        return tuple(sorted({max(1, round(self.base_widths[layer] * m)) for m in self.grid_multipliers}))

    def min_width(self, layer: int) -> int:
        return self.grid(layer)[0]

    def max_width(self, layer: int) -> int:
        """The widest ``layer`` may grow: the top of its LUT grid."""
        return self.grid(layer)[-1]

    def layers(self, widths: MobileNetWidths) -> tuple[MobileNetLayer, ...]:
        """The stem and the blocks at ``widths``, with their input channels and sizes."""
        self.check(widths)
        out, cin, size = [], self.in_channels, self.input_size
        for i, (w, s) in enumerate(zip(widths.widths, self.strides)):
            out.append(MobileNetLayer(i, "stem" if i == 0 else "block", cin, w, size, s))
            cin, size = w, out_size(size, s)
        return tuple(out)
