"""Which number stands for a model's latency: the latency statistic, one knob for LUTs and networks.

A LUT row and a whole-network measurement are each one or more *windows* of timed runs (a LUT
pass, a fidelity round), interleaved with the other models so that a slow minute hits many
models a little rather than one model fully. The statistic decides both levels at once:

- ``median`` (default; a dedicated device): the median run of each window, and the median
  window. The usual figure, and the one to use where windows scatter both ways, e.g. under DVFS
  or thermal throttling.
- ``min`` (a shared or noisy host): the fastest run, over all windows. Interference from other
  processes only ever *adds* time, so the fastest run is the closest to the device's own cost;
  this is Python's ``timeit`` advice ("higher values are typically not caused by variability in
  Python's speed, but by other processes interfering"). On this project's shared VM whole
  windows run ~1.6x slower for seconds at a time, invisible to steal-time counters; see
  docs/performance.md.

The LUT and the networks it is checked against must use the same statistic; the correction a
fidelity run fits records the one it used, and ``hilnas validate`` follows it.
"""
from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from hilnas.agent.results import LatencyStats

STATISTICS = ("median", "min")
DEFAULT_STATISTIC = "median"
_COMBINE: dict[str, Callable[[Sequence[float]], float]] = {"median": statistics.median, "min": min}


def check_statistic(name: str) -> str:
    if name not in STATISTICS:
        raise ValueError(f"latency statistic must be one of {', '.join(STATISTICS)}, got {name!r}")
    return name


def window_value(latency: "LatencyStats", statistic: str = DEFAULT_STATISTIC) -> float:
    """One window's latency under ``statistic`` (its median run, or its fastest run)."""
    check_statistic(statistic)
    return float(latency.min_ms if statistic == "min" else latency.median_ms)


def combine_rounds(values: Sequence[float], statistic: str = DEFAULT_STATISTIC) -> float:
    """One latency from the per-window values of one model (finite, positive values only)."""
    check_statistic(statistic)
    if not values:
        raise ValueError("combine_rounds needs at least one value")
    bad = [v for v in values if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"window values must be finite and positive, got {bad[:3]}")
    return float(_COMBINE[statistic](list(values)))


def windows_agree(values: Sequence[float], tolerance: float) -> bool:
    """True when the two lowest windows lie within ``tolerance`` (relative) of each other.

    One window can be disturbed from start to end and still look steady inside; the least
    disturbed window is trusted once a second window confirms it. Fewer than two: not yet.
    """
    if len(values) < 2:
        return False
    a, b = sorted(values)[:2]
    return b <= a * (1.0 + tolerance)
