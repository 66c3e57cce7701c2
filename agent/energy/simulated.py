"""Meters without a sensor: a simulated one (a power function of time, for tests and the
simulated device) and a CPU-utilisation estimate (for devices with no meter at all)."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from hilnas.agent.energy.base import (ESTIMATE, SIMULATED, EnergyMeter, EnergyReading,
                                      MeterUnavailableError, MeterVanishedError)
from hilnas.agent.energy.sysfs import Reader, read_text, sys_path
from hilnas.agent.results import EnergyMeterInfo


class SimulatedMeter(EnergyMeter):
    """Integrates ``power_w(t)`` over the injected clock, quantised to ``resolution_mj``.

    ``vanish_at_s`` makes reads fail from that clock time on, like an unplugged sensor.
    """

    kind = SIMULATED

    def __init__(self, power_w: Callable[[float], float], *,
                 clock: Callable[[], float] = time.monotonic, resolution_mj: float = 0.001,
                 name: str = "simulated", scope: str = "board", step_s: float = 1e-3,
                 vanish_at_s: float | None = None):
        self._power_w = power_w
        self._clock = clock
        self._resolution_j = resolution_mj / 1e3
        self._name = name
        self._scope = scope
        self._step_s = step_s
        self._vanish_at_s = vanish_at_s
        self._t: float | None = None
        self._energy_j = 0.0

    def info(self) -> EnergyMeterInfo:
        return EnergyMeterInfo(self._name, SIMULATED, self._scope, self._resolution_j * 1e3, True)

    def read(self) -> EnergyReading:
        now = self._clock()
        if self._vanish_at_s is not None and now >= self._vanish_at_s:
            raise MeterVanishedError(f"{self._name}: sensor gone at t={self._vanish_at_s} s")
        if self._t is not None and now > self._t:
            n = min(max(1, math.ceil((now - self._t) / self._step_s)), 100_000)
            h = (now - self._t) / n
            # Midpoint rule: exact for piecewise-constant power whose steps fall on read times.
            self._energy_j += h * sum(self._power_w(self._t + (i + 0.5) * h) for i in range(n))
        self._t = now
        q = self._resolution_j
        energy = math.floor(self._energy_j / q) * q if q > 0 else self._energy_j
        return EnergyReading(timestamp_s=now, energy_j=energy, domains_j={self._name: energy})


class UtilisationEstimateMeter(EnergyMeter):
    """Estimated energy from CPU utilisation (``/proc/stat``): P = idle + u x (busy - idle).

    A model, not a sensor: results from it are marked estimated. ``idle_w``/``busy_w`` are the
    whole device's power idle and with every core busy (from a datasheet or a profile).
    """

    kind = ESTIMATE

    def __init__(self, idle_w: float, busy_w: float, *, root: Path = Path("/"),
                 reader: Reader = read_text, clock: Callable[[], float] = time.monotonic):
        self.idle_w = idle_w
        self.busy_w = busy_w
        self._stat = sys_path(Path(root), "/proc/stat")
        self._reader = reader
        self._clock = clock
        self._last: tuple[float, float, float] | None = None   # (t, busy jiffies, all jiffies)
        self._energy_j = 0.0

    def info(self) -> EnergyMeterInfo:
        name = "estimate:cpu-utilisation"
        try:
            self._jiffies()
        except MeterUnavailableError as exc:
            return EnergyMeterInfo(name, ESTIMATE, "board", 0.0, False, str(exc))
        return EnergyMeterInfo(name, ESTIMATE, "board", 0.0, True,
                               f"model: {self.idle_w} W idle .. {self.busy_w} W all cores busy")

    def _jiffies(self) -> tuple[float, float]:
        try:
            first = self._reader(self._stat).splitlines()[0].split()
            vals = [float(v) for v in first[1:]]
        except (OSError, ValueError, IndexError) as exc:
            raise MeterUnavailableError(f"/proc/stat unreadable: {exc}") from exc
        # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
        total = sum(vals[:8])
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)
        return total - idle, total

    def read(self) -> EnergyReading:
        try:
            busy, total = self._jiffies()
        except MeterUnavailableError as exc:
            if self._last is None:
                raise
            raise MeterVanishedError(str(exc)) from exc
        now = self._clock()
        if self._last is not None:
            t0, b0, a0 = self._last
            u = (busy - b0) / (total - a0) if total > a0 else 0.0
            u = min(max(u, 0.0), 1.0)
            self._energy_j += (now - t0) * (self.idle_w + u * (self.busy_w - self.idle_w))
        self._last = (now, busy, total)
        return EnergyReading(timestamp_s=now, energy_j=self._energy_j,
                             domains_j={"estimate": self._energy_j})
