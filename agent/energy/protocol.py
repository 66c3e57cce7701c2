"""The energy protocol: idle, windows of back-to-back inferences, idle again.

    idle (idle_s) | window 1 (>= 1 s) | ... | window k (k >= 5) | idle (idle_s)

Each window's mean power P_i comes from two meter readings; with n_i inferences in a window of
duration d_i, energy per inference is gross_i = P_i d_i / n_i and net_i = (P_i - P_idle) d_i / n_i,
where P_idle is the mean of the idle power before and after. Reported: the means over windows
and a 95 % confidence interval of net from the t-distribution (k - 1 degrees of freedom). The CI
covers window-to-window spread only; idle drift beyond 20 % is flagged instead.

A measurement whose numbers would not be energy -- the meter vanished, a counter went backwards,
a reading was absurd (negative or above ``max_power_w``), the battery was charging, a window ran
no inference -- is returned as data, not raised: an ``EnergyResult`` whose energy fields are NaN
and whose ``flags`` say why (``energy_valid`` tells the two apart). A net energy per window
smaller than ten meter steps is still reported, but ``estimated`` and flagged
``below_resolution``: it is the best estimate, not a resolved measurement.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

from hilnas.agent.energy.base import (ABSURD_READING, BELOW_RESOLUTION, COUNTER,
                                      COUNTER_BACKWARDS, ESTIMATE, ESTIMATED, IDLE_DRIFT,
                                      INVALIDATING_FLAGS, MAX_PLAUSIBLE_POWER_W,
                                      METER_STALLED, METER_UNAVAILABLE, NO_INFERENCES,
                                      NOT_ABOVE_IDLE, EnergyMeter, EnergyReading, MeterError,
                                      SamplingInsideWindowError, measurement_window, window_open)
from hilnas.agent.results import EnergyMeterInfo, EnergyResult

MIN_WINDOW_S = 1.0          # shorter windows see too few counter updates / rail samples
MIN_WINDOWS = 5             # fewer windows make the t-interval too wide to be useful
IDLE_DRIFT_FRACTION = 0.20  # idle before vs after differing by more than this is flagged
RESOLUTION_STEPS = 10.0     # net energy per window must span this many meter steps

# Two-sided 95 % quantiles of Student's t, df = 1..30.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # Cornish-Fisher expansion around the normal quantile; < 1e-3 off for df > 30
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def energy_valid(result: EnergyResult) -> bool:
    """True when the result's energy numbers are real measurements (possibly estimated)."""
    return not (set(result.flags) & INVALIDATING_FLAGS) and math.isfinite(result.net_mj)


def invalid_result(info: EnergyMeterInfo, flags: set[str] | frozenset[str], windows: int = 0,
                   note: str = "") -> EnergyResult:
    """An energy result that is not energy: NaN numbers, the flags and a note saying why."""
    nan = math.nan
    return EnergyResult(meter=info.name, meter_kind=info.kind, gross_mj=nan, net_mj=nan,
                        net_ci95_low_mj=nan, net_ci95_high_mj=nan, idle_power_mw=nan,
                        active_power_mw=nan, windows=windows, estimated=info.kind == ESTIMATE,
                        flags=tuple(sorted(flags)), note=note)


class _Readings:
    """Reads a meter and turns reading pairs into mean power, collecting quality flags."""

    def __init__(self, meter: EnergyMeter, kind: str, max_power_w: float):
        self.meter = meter
        self.kind = kind
        self.max_power_w = max_power_w
        self.flags: set[str] = set()

    def read(self) -> EnergyReading:
        r = self.meter.read()
        self.flags.update(r.flags)
        return r

    def power_w(self, r0: EnergyReading, r1: EnergyReading) -> float:
        dt = r1.timestamp_s - r0.timestamp_s
        de = r1.energy_j - r0.energy_j
        if dt <= 0:
            self.flags.add(METER_STALLED)
            return math.nan
        if de < 0:
            self.flags.add(COUNTER_BACKWARDS if self.kind == COUNTER else ABSURD_READING)
        p = de / dt
        if p > self.max_power_w:
            self.flags.add(ABSURD_READING)
        return p


def measure_energy(meter: EnergyMeter, run_for: Callable[[float], int], *, idle_s: float = 1.0,
                   window_s: float = 1.0, windows: int = 5,
                   clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep,
                   max_power_w: float = MAX_PLAUSIBLE_POWER_W) -> EnergyResult:
    """Energy per inference of whatever ``run_for(seconds) -> inferences run`` executes.

    ``run_for`` runs inferences back to back for about ``seconds`` and returns how many it
    ran; it is called inside ``measurement_window()``. Samplers are started before the first
    idle phase and stopped after the last (only if this call started them). Exceptions from
    ``run_for`` propagate (the meter is stopped first); meter failures become flags.
    Raises ValueError for windows shorter than 1 s or fewer than 5, and
    ``SamplingInsideWindowError`` when called from inside a measurement window.
    """
    if window_s < MIN_WINDOW_S or windows < MIN_WINDOWS:
        raise ValueError(f"the energy protocol needs windows of >= {MIN_WINDOW_S} s and >= "
                         f"{MIN_WINDOWS} of them (got {window_s} s x {windows})")
    if idle_s <= 0:
        raise ValueError("idle_s must be positive: net energy needs an idle baseline")
    if window_open():
        raise SamplingInsideWindowError("measure_energy called inside a measurement window")
    info = meter.info()
    if not info.available:
        return invalid_result(info, {METER_UNAVAILABLE}, 0, info.note)

    rd = _Readings(meter, info.kind, max_power_w)
    powers: list[float] = []
    durations: list[float] = []
    counts: list[int] = []
    started = False
    try:
        started = meter.start()
        r0 = rd.read()
        sleep(idle_s)
        idle_before = rd.power_w(r0, rd.read())
        for _ in range(windows):
            r0 = rd.read()
            t0 = clock()
            with measurement_window():
                n = int(run_for(window_s))
            t1 = clock()
            powers.append(rd.power_w(r0, rd.read()))
            durations.append(t1 - t0)
            counts.append(n)
            if n <= 0:
                rd.flags.add(NO_INFERENCES)
        r0 = rd.read()
        sleep(idle_s)
        idle_after = rd.power_w(r0, rd.read())
    except MeterError as exc:
        rd.flags.add(exc.flag)
        return invalid_result(info, rd.flags, len(counts), f"{info.name}: {exc}")
    finally:
        if started:
            meter.stop()

    flags = rd.flags
    if flags & INVALIDATING_FLAGS:
        return invalid_result(info, flags, len(counts),
                              f"{info.name}: the readings are not energy "
                              f"({', '.join(sorted(flags & INVALIDATING_FLAGS))})")
    idle_w = 0.5 * (idle_before + idle_after)
    if abs(idle_before - idle_after) > IDLE_DRIFT_FRACTION * abs(idle_w):
        flags.add(IDLE_DRIFT)

    gross = [p * d / n * 1e3 for p, d, n in zip(powers, durations, counts)]
    net = [(p - idle_w) * d / n * 1e3 for p, d, n in zip(powers, durations, counts)]
    k = len(net)
    net_mean = statistics.fmean(net)
    half = t_quantile_975(k - 1) * statistics.stdev(net) / math.sqrt(k)

    estimated = info.kind == ESTIMATE
    if estimated:
        flags.add(ESTIMATED)
    net_window_mj = statistics.fmean((p - idle_w) * d * 1e3 for p, d in zip(powers, durations))
    if net_window_mj < RESOLUTION_STEPS * info.resolution_mj:
        flags.add(BELOW_RESOLUTION)
        estimated = True
    if net_mean - half <= 0:
        flags.add(NOT_ABOVE_IDLE)

    return EnergyResult(meter=info.name, meter_kind=info.kind, gross_mj=statistics.fmean(gross),
                        net_mj=net_mean, net_ci95_low_mj=net_mean - half,
                        net_ci95_high_mj=net_mean + half, idle_power_mw=idle_w * 1e3,
                        active_power_mw=statistics.fmean(powers) * 1e3, windows=k,
                        estimated=estimated, flags=tuple(sorted(flags)))
