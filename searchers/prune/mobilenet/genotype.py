"""The genotype an exported pruned MobileNet carries: its widths, which price it like any MobileNet, and its masks.

Its own module, torch-free and depending on the MobileNet's spec only, so ``searchers.spaces`` registers the
kind wherever genotypes are read (``hilnas validate`` of an exported pruned network).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from hilnas.searchers.genotype import GenotypeError, register_genotype_kind
from hilnas.searchers.spaces.mobilenet.spec import MobileNetWidths


@register_genotype_kind
@dataclass(frozen=True)
class PrunedWidths(MobileNetWidths):
    """A pruned MobileNet as exported: its widths (priced like any MobileNet's) and the gate masks that made it.

    Saved as ``{"space": "mobilenet_pruned", "widths": [...], "masks": ["101", ...]}``.
    """
    kind: ClassVar[str] = "mobilenet_pruned"
    masks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.kind, "widths": list(self.widths), "masks": list(self.masks)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrunedWidths:
        if d.get("space") != cls.kind or "widths" not in d or not isinstance(d.get("masks"), list):
            raise GenotypeError(f"expected a {cls.kind!r} genotype with 'widths' and 'masks', got {d!r}")
        return cls(tuple(d["widths"]), tuple(str(m) for m in d["masks"]))
