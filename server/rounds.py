"""How the medians of repeated measurement windows of one model become one number.

A LUT row and a whole-network measurement are each the median of many runs inside one window.
Repeating the window (interleaved with the other models) guards against a window that a
neighbour slowed down. Interference on a shared device only ever *adds* time, so by default the
least disturbed window wins: ``min``, the same reasoning as Python's ``timeit`` ("higher values
are typically not caused by variability in Python's speed, but by other processes interfering").
``median`` is kept for devices whose windows scatter both ways (thermal throttling, DVFS).
The LUT and the networks it is checked against must use the same statistic.
"""
from __future__ import annotations

import math
import statistics
from typing import Callable, Sequence

ROUND_STATISTICS: dict[str, Callable[[Sequence[float]], float]] = {
    "min": min,
    "median": statistics.median,
}
DEFAULT_ROUND_STATISTIC = "min"


def check_round_statistic(name: str) -> str:
    if name not in ROUND_STATISTICS:
        raise ValueError(f"round statistic must be one of {', '.join(ROUND_STATISTICS)}, got {name!r}")
    return name


def combine_rounds(values: Sequence[float], statistic: str = DEFAULT_ROUND_STATISTIC) -> float:
    """One latency from the per-window medians of one model (finite, positive values only)."""
    check_round_statistic(statistic)
    if not values:
        raise ValueError("combine_rounds needs at least one value")
    bad = [v for v in values if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"window medians must be finite and positive, got {bad[:3]}")
    return float(ROUND_STATISTICS[statistic](list(values)))


def windows_agree(values: Sequence[float], tolerance: float) -> bool:
    """True when the two lowest windows lie within ``tolerance`` (relative) of each other.

    One window can be disturbed from start to end and still look steady inside; the least
    disturbed window is trusted once a second window confirms it. Fewer than two: not yet.
    """
    if len(values) < 2:
        return False
    a, b = sorted(values)[:2]
    return b <= a * (1.0 + tolerance)
