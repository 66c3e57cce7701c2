"""Whole-network cost from a LUT: the sum over operator instances, plus a learned correction.

A runtime does not cost a network as the plain sum of its operators measured one by one: every
micro-model pays its own session overhead (counted once per op in the sum, once per network in
reality) and the runtime fuses or overlaps some work. ``Correction`` captures both with a scale
and an offset, ``measured ~= scale * sum + offset``, fitted by least squares on *relative* error
over networks measured whole. Its error is reported (``fidelity``, cross-validated), never assumed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence


class MissingOps(KeyError):
    """The LUT lacks operator instances a network needs."""

    def __init__(self, keys: Sequence[str]):
        self.keys = tuple(sorted(set(keys)))
        shown = ", ".join(self.keys[:5]) + (f" and {len(self.keys) - 5} more" if len(self.keys) > 5 else "")
        super().__init__(f"the LUT has no rows for {len(self.keys)} op(s) the network needs: {shown}")

    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class Correction:
    """measured ~= scale * (sum of LUT entries) + offset_ms."""

    scale: float = 1.0
    offset_ms: float = 0.0
    fitted_on: int = 0     # networks it was fitted on (0 = identity, nothing learned)
    statistic: str = "median"  # the latency statistic of the LUT values and measurements it was fitted on

    def apply(self, lut_sum_ms: float) -> float:
        return self.scale * lut_sum_ms + self.offset_ms

    def invert(self, measured_ms: float) -> float:
        """The LUT sum whose corrected prediction is ``measured_ms`` (``apply``'s inverse)."""
        return (measured_ms - self.offset_ms) / self.scale

    def to_dict(self) -> dict:
        return {"scale": self.scale, "offset_ms": self.offset_ms, "fitted_on": self.fitted_on,
                "statistic": self.statistic}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Correction":
        return cls(float(d["scale"]), float(d["offset_ms"]), int(d.get("fitted_on", 0)),
                   str(d.get("statistic", "median")))


def lut_sum(op_keys: Iterable[str], lut: Mapping[str, float]) -> float:
    """Sum of LUT values over a network's op instances (a multiset: repeats count)."""
    keys = list(op_keys)
    missing = [k for k in keys if k not in lut]
    if missing:
        raise MissingOps(missing)
    return float(sum(lut[k] for k in keys))


def predict(op_keys: Iterable[str], lut: Mapping[str, float], correction: Correction = Correction()) -> float:
    return correction.apply(lut_sum(op_keys, lut))


def fit_correction(lut_sums: Sequence[float], measured: Sequence[float]) -> Correction:
    """Least squares on relative error: minimise sum(((a*s + b) - m) / m)^2."""
    import numpy as np

    s = np.asarray(lut_sums, float)
    m = np.asarray(measured, float)
    if len(s) != len(m) or len(s) < 2:
        raise ValueError("fit_correction needs at least two (lut_sum, measured) pairs")
    if np.any(m <= 0):
        raise ValueError("measured latencies must be positive")
    design = np.stack([s / m, 1.0 / m], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, np.ones_like(m), rcond=None)
    if not (a > 0 and math.isfinite(a) and math.isfinite(b)):
        return Correction(fitted_on=0)
    return Correction(scale=float(a), offset_ms=float(b), fitted_on=len(s))


@dataclass(frozen=True)
class Fidelity:
    """nn-Meter's metrics: share of networks predicted within +-10%, and RMSPE."""

    n: int
    within_10pct: float      # share in [0, 1]
    within_5pct: float
    rmspe: float             # root mean squared percentage error, %
    mape: float              # mean absolute percentage error, %
    max_ape: float           # worst absolute percentage error, %

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def fidelity(predicted: Sequence[float], measured: Sequence[float]) -> Fidelity:
    import numpy as np

    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    if len(p) == 0 or len(p) != len(m):
        raise ValueError("fidelity needs equally long, non-empty sequences")
    ape = np.abs(p - m) / m * 100.0
    return Fidelity(n=len(p), within_10pct=float(np.mean(ape <= 10.0)), within_5pct=float(np.mean(ape <= 5.0)),
                    rmspe=float(np.sqrt(np.mean(ape ** 2))), mape=float(np.mean(ape)), max_ape=float(np.max(ape)))


def cross_validated_predictions(lut_sums: Sequence[float], measured: Sequence[float], *, folds: int = 5,
                                seed: int = 0) -> list[float]:
    """Predict each network with a correction fitted on the *other* folds (no self-fit)."""
    import numpy as np

    n = len(lut_sums)
    if n < 2 * folds:
        folds = max(2, n // 2)
    order = np.random.default_rng(seed).permutation(n)
    out = [0.0] * n
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        corr = fit_correction([lut_sums[i] for i in train], [measured[i] for i in train])
        for i in test:
            out[int(i)] = corr.apply(lut_sums[int(i)])
    return out
