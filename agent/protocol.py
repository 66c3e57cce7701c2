"""The timing loop the worker runs around one loaded model: warm-up, timed runs, cooldown."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class TimingPlan:
    """How long to time (the fields of ``MeasureConfig`` that concern the loop)."""

    warmup_runs: int = 10
    min_runs: int = 30            # at least this many timed runs (at least 1 is always made) ...
    min_seconds: float = 0.5      # ... and at least this much timed wall time, s
    max_runs: int = 10_000        # hard cap on timed runs; <= 0 = no cap
    cooldown_seconds: float = 0.0  # sleep after timing, s (not part of measure_wall_s)
    budget_s: float = math.inf    # no run starts after this much time from the call, s


@dataclass(frozen=True)
class Timing:
    samples_ms: tuple[float, ...]  # one per timed run, ms
    measure_wall_s: float          # warm-up + timed runs, s
    warmup_runs: int               # warm-up runs actually made
    stopped: str                   # "done" (both minimums met), "max_runs" or "budget"


def time_runs(run: Callable[[], object], plan: TimingPlan, *,
              sleep: Callable[[float], None] = time.sleep) -> Timing:
    """Call ``run`` per ``plan`` and time each call with ``time.perf_counter_ns``.

    The budget is checked before every run (a single run is never interrupted here: the host
    enforces the hard wall-time limit by killing the worker).
    """
    clock = time.perf_counter_ns
    start = clock()
    end = start + plan.budget_s * 1e9 if plan.budget_s < math.inf else math.inf
    min_runs = max(1, plan.min_runs)
    max_runs = plan.max_runs if plan.max_runs > 0 else math.inf
    min_ns = plan.min_seconds * 1e9

    warmups, stopped = 0, ""
    while warmups < plan.warmup_runs:
        if clock() >= end:
            stopped = "budget"
            break
        run()
        warmups += 1

    samples: list[float] = []
    timed_start = last = clock()
    while not stopped:
        if last >= end:
            stopped = "budget"
            break
        t0 = clock()
        run()
        last = clock()
        samples.append((last - t0) / 1e6)
        if len(samples) >= max_runs:
            stopped = "max_runs"
        elif len(samples) >= min_runs and last - timed_start >= min_ns:
            stopped = "done"
    wall_s = (clock() - start) / 1e9
    if plan.cooldown_seconds > 0:
        sleep(plan.cooldown_seconds)
    return Timing(samples_ms=tuple(samples), measure_wall_s=wall_s, warmup_runs=warmups, stopped=stopped)
