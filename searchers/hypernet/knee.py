"""Lambda at the family's knee: the scale where the trained family reaches the cheap end (``knee="family"``).

Lambda from the sweep (or Theorem 1) bounds the discrete problem; the relaxed family a hypernetwork learns can
reach the cheap end far below it. On the full-size NB201 (seed 3, pinned anchor, relaxed step) Lambda was 0.20 and
every member from 0.0012 up was one cheap cell: the family changed over 0.6 % of the scale range, about 5 % of the
draws, and 7 of the 12 grid points at its changes landed on that one cell (docs/performance.md, sixth session).
Drawing from [0, margin x knee] instead puts the draws where the family changes, so the hypernetwork is trained
there and can resolve members between the two ends.

``family_knee`` probes the family at log-spaced scales (fine near 0, where such families change), then bisects
between the last probe short of the cheap end and the first within it. The cheap end is the space's: a member
within ``reach`` of the valid cells' cost range above the cheapest cell. ``next_Lambda`` is the rule: margin x the
knee, capped by the estimate (sweep or Theorem 1); no knee below Lambda (the family reaches the cheap end only at
Lambda, or not at all) -> margin x Lambda, capped alike, so a Lambda shrunk too far grows back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hilnas.searchers.hypernet.derive import derive
from hilnas.searchers.hypernet.tradeoff import ScaleMap, TradeOff, center

if TYPE_CHECKING:
    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.hypernet import Hypernetwork, ValidSupernet
    from hilnas.searchers.hypernet.bound import CostSpan


@dataclass(frozen=True)
class Knee:
    """Where the family reached the cheap end: the scale (None: not below Lambda; 0: already at lambda = 0), and the
    probed (scale, cost) pairs it was read from, bisection's included."""
    scale: float | None
    probes: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "probes": [list(p) for p in self.probes]}


def family_knee(supernet: ValidSupernet, hypernet: Hypernetwork, model: CostModel, span: CostSpan, num_coeffs: int,
                Lambda: float, smap: ScaleMap, *, points: int, floor: float, reach: float, bisect_steps: int) -> Knee:
    """The family's knee along the simplex's centre ray (see the module doc).

    ``smap`` is the map the hypernetwork was trained with (how a scale is encoded); the probes are ``points``
    scales ``Lambda * ScaleMap(floor).fraction(i / (points - 1))``, whatever that map is, then ``bisect_steps``
    of bisection.
    """
    w = center(num_coeffs)
    target = span.cheapest_cost + reach * (span.dearest_cost - span.cheapest_cost)
    probes: list[tuple[float, float]] = []

    def cheap(s: float) -> bool:
        c = model.genotype_cost(supernet.space, derive(supernet, hypernet, TradeOff(w, s), Lambda, smap)[0])
        probes.append((s, c))
        return c <= target

    probe_map = ScaleMap(floor)
    scales = [Lambda * probe_map.fraction(i / (points - 1)) for i in range(points)]
    first = next((i for i, s in enumerate(scales) if cheap(s)), None)
    if first is None or first == 0:
        return Knee(None if first is None else 0.0, tuple(probes))
    lo, hi = scales[first - 1], scales[first]
    for _ in range(bisect_steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if cheap(mid) else (mid, hi)
    return Knee(hi if hi < Lambda else None, tuple(probes))


def next_Lambda(knee: Knee, Lambda: float, cap: float, margin: float) -> float:
    """Lambda for the next epoch: ``margin`` x the knee (x Lambda when there is none below it), at most ``cap``; a
    knee at 0 (the family cheap at lambda = 0 already: nothing to place) keeps Lambda."""
    if knee.scale == 0.0:
        return Lambda
    return min(cap, margin * (Lambda if knee.scale is None else knee.scale))


__all__ = ["family_knee", "Knee", "next_Lambda"]
