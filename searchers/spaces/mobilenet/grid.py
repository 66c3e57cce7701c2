"""A LUT over a grid of widths, read between the grid points by bilinear interpolation.

A LUT of the backbone holds each layer's key at grid widths only (``mobilenet.keys.grid_keys``).
A key at other widths is priced from the four grid keys around it, in (cin, cout)::

    f(cin, cout) = (1-a)(1-b) f(c0, o0) + (1-a) b f(c0, o1) + a (1-b) f(c1, o0) + a b f(c1, o1),
    a = (cin - c0) / (c1 - c0),  b = (cout - o0) / (o1 - o0)

(one-dimensional for the stem, whose cin is the image's, and the head, whose cout is the class
count). A block's multiply-accumulates are H'W'(9 cin + cin cout): bilinear in (cin, cout), so
this is exact for FLOPs and for any cost that grows like them; measured latency also has steps
(SIMD widths, cache sizes) that a grid this coarse smooths over. A width outside its layer's grid
is not extrapolated: it raises ``MissingOpsError`` naming the grid keys it would need.
"""
from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

from hilnas.searchers.cost import LutCost, LutEnergyCost, LutLatencyCost, MissingOpsError
from hilnas.searchers.op_key import OpKey

Family = tuple[str, int, int, int, tuple[tuple[str, int], ...]]  # (op, h, w, stride, params)


def _family(key: OpKey) -> Family:
    return key.op, key.h, key.w, key.stride, key.params


def _bracket(points: Sequence[int], x: int) -> tuple[int, int, float] | None:
    """(lower, upper, weight of upper) of the grid points around x; None outside [first, last]."""
    if not points or x < points[0] or x > points[-1]:
        return None
    i = bisect.bisect_left(points, x)
    if points[i] == x:
        return x, x, 0.0
    lo, hi = points[i - 1], points[i]
    return lo, hi, (x - lo) / (hi - lo)


class GridInterpolation(LutCost):
    """A ``LutCost`` whose keys between grid widths are interpolated (see the module docstring)."""

    def __init__(self, lut: Mapping[str, float], *, name: str | None = None):
        super().__init__(lut, name=name)
        from hilnas.searchers.op_key import decode
        self._grid: dict[Family, dict[tuple[int, int], float]] = {}
        for text, value in self.lut.items():
            try:
                key = decode(text, known_only=False)
            except ValueError:
                continue  # a key of another format: never part of a grid
            self._grid.setdefault(_family(key), {})[(key.cin, key.cout)] = value

    def key_cost(self, key: OpKey) -> float:
        exact = self.lut.get(key.encode())
        if exact is not None:
            return exact
        points = self._grid.get(_family(key), {})
        cins, couts = sorted({c for c, _ in points}), sorted({o for _, o in points})
        bc, bo = _bracket(cins, key.cin), _bracket(couts, key.cout)
        if bc is None or bo is None:
            where = (f"cin {key.cin} outside the grid {cins}" if bc is None and cins else
                     f"cout {key.cout} outside the grid {couts}" if cins else "no grid keys of this shape")
            raise MissingOpsError([key.encode()], lut_name=f"{self.name} LUT ({where})")
        (c0, c1, a), (o0, o1, b) = bc, bo
        corners = {(c, o): wt for c, wc in ((c0, 1 - a), (c1, a)) for o, wo in ((o0, 1 - b), (o1, b))
                   if (wt := wc * wo) > 0}
        missing = [(c, o) for c in (c0, c1) for o in (o0, o1) if (c, o) not in points]
        if missing:
            op, h, w, s, params = _family(key)
            raise MissingOpsError([OpKey(op, c, o, h, w, s, params).encode() for c, o in missing],
                                  lut_name=f"{self.name} LUT")
        return sum(points[c] * wt for c, wt in corners.items())

    def genotype_cost(self, space, genotype) -> float:
        from hilnas.searchers.op_key import network_op_keys
        return float(sum(self.key_cost(k) for k in network_op_keys(space, genotype)))


class GridLatencyCost(GridInterpolation, LutLatencyCost):
    """Latency from a device's grid LUT, interpolated between grid widths."""


class GridEnergyCost(GridInterpolation, LutEnergyCost):
    """Energy from a device's grid LUT, interpolated between grid widths."""
