"""The one energy-meter interface: cumulative energy (J) with a timestamp.

Every meter -- a hardware counter (RAPL), a sampled power rail (INA2xx/INA3221 hwmon, the Pi 5
PMIC), a battery fuel gauge, a utilisation estimate or a simulation -- answers ``read()`` with the
energy it has seen since it was first read. Counters read their register; sampled meters
integrate power samples (trapezoid rule) in a thread started before the measurement. The
protocol (``protocol.measure_energy``) only ever subtracts two readings, so it cannot tell the
kinds apart, except to refuse starting a process-spawning sampler inside a measurement window.

Failures to read are typed exceptions (``MeterError``) inside this package; the protocol turns
them into result flags, so nothing above it sees an exception for a meter problem.
"""
from __future__ import annotations

import abc
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from hilnas.agent.results import EnergyMeterInfo

# Meter kinds, as in the proto's EnergyMeterInfo.kind.
COUNTER = "counter"
SAMPLED_RAIL = "sampled_rail"
BATTERY = "battery"
ESTIMATE = "estimate"
SIMULATED = "simulated"
NONE = "none"

# Quality flags carried by readings and results. The proto's EnergyResult.flags holds these.
COUNTER_WRAPPED = "counter_wrapped"        # a counter wrapped and was unwrapped (harmless)
COUNTER_BACKWARDS = "counter_backwards"    # a counter decreased by more than a wrap explains
ABSURD_READING = "absurd_reading"          # negative power, or above the plausible maximum
METER_VANISHED = "meter_vanished"          # the sensor disappeared mid-measurement
METER_UNAVAILABLE = "meter_unavailable"    # not readable (permission, missing, none)
METER_STALLED = "meter_stalled"            # no new sample between two readings
CHARGING = "charging"                      # battery is charging: its current is not our load
EXTERNAL_POWER = "external_power"          # a charger is online: the battery does not see the load
NO_INFERENCES = "no_inferences"            # a window ran no inference
SIGN_INVERTED = "sign_inverted"            # battery reports discharge as positive current (vendor)
CURRENT_UNIT_MA = "current_unit_ma"        # battery current_now looked like mA, not the ABI's uA
IDLE_DRIFT = "idle_drift"                  # idle power before and after differ by > 20 %
BELOW_RESOLUTION = "below_resolution"      # net energy per window too close to the meter's step
NOT_ABOVE_IDLE = "not_above_idle"          # net energy's 95 % CI includes zero
ESTIMATED = "estimated"                    # the meter is a model, not a sensor
RUN_FAILED = "run_failed"                  # the model failed, hung or crashed during a window
OVER_TIME_LIMIT = "over_time_limit"        # the protocol would not fit in the wall-time limit

# A result carrying any of these has NaN energy: the numbers would not be energy.
INVALIDATING_FLAGS = frozenset({
    COUNTER_BACKWARDS, ABSURD_READING, METER_VANISHED, METER_UNAVAILABLE, METER_STALLED,
    CHARGING, EXTERNAL_POWER, NO_INFERENCES, RUN_FAILED, OVER_TIME_LIMIT,
})

# Above this, a power reading is a broken sensor, not a device we measure (W).
MAX_PLAUSIBLE_POWER_W = 5000.0


class MeterError(Exception):
    """A meter could not be read. ``flag`` is what the protocol records."""

    flag: ClassVar[str] = METER_UNAVAILABLE


class MeterUnavailableError(MeterError):
    """Not readable at all: missing, no permission, or the explicit ``none`` meter."""


class MeterPermissionError(MeterUnavailableError):
    """The sensor exists but this user may not read it; the message says how to fix it."""


class MeterVanishedError(MeterError):
    """The sensor was readable and then disappeared (driver unbound, device unplugged)."""

    flag = METER_VANISHED


class SamplingInsideWindowError(RuntimeError):
    """A process-spawning sampler was asked to start while a measurement window is open."""


@dataclass(frozen=True)
class EnergyReading:
    """Cumulative energy since the meter's first reading, at ``timestamp_s`` (meter clock, s)."""

    timestamp_s: float
    energy_j: float                                   # the meter's whole scope, J
    domains_j: Mapping[str, float] = field(default_factory=dict)  # per domain, J
    flags: tuple[str, ...] = ()                       # quality flags raised since the last read


class EnergyMeter(abc.ABC):
    """An energy meter: ``info()`` says what it is, ``read()`` returns cumulative energy.

    ``start()``/``stop()`` bracket a measurement; counters need neither, samplers run their
    sampling thread between them. ``spawns_process`` marks meters that fork a process per
    sample (vcgencmd); the protocol starts them before any window and never inside one.
    """

    kind: ClassVar[str] = NONE
    spawns_process: ClassVar[bool] = False
    privileges: ClassVar[str] = ""    # what the agent's user needs to read it

    @abc.abstractmethod
    def info(self) -> EnergyMeterInfo:
        """Name, kind, scope, resolution and availability (with a note saying how to fix it)."""

    @abc.abstractmethod
    def read(self) -> EnergyReading:
        """Cumulative energy now. Raises ``MeterError``; never spawns a process."""

    def start(self) -> bool:
        """Begin sampling; True if this call started it (so the caller should stop it)."""
        return False

    def stop(self) -> None:
        """End sampling (idempotent)."""


class NoneMeter(EnergyMeter):
    """The explicit 'no meter': listed when a device has nothing that can measure energy."""

    kind = NONE

    def __init__(self, note: str = "no energy meter found on this device"):
        self._note = note

    def info(self) -> EnergyMeterInfo:
        return EnergyMeterInfo(name="none", kind=NONE, scope="", resolution_mj=0.0,
                               available=False, note=self._note)

    def read(self) -> EnergyReading:
        raise MeterUnavailableError(self._note)


class UnavailableMeter(EnergyMeter):
    """A meter that exists on the device but cannot be used now; carries why and the fix."""

    def __init__(self, info: EnergyMeterInfo):
        self._info = info

    def info(self) -> EnergyMeterInfo:
        return self._info

    def read(self) -> EnergyReading:
        raise MeterUnavailableError(self._info.note)


# --- measurement windows ---------------------------------------------------------------------
_window_lock = threading.Lock()
_windows_open = 0


@contextlib.contextmanager
def measurement_window() -> Iterator[None]:
    """Mark a timed measurement in progress in this process (nestable, thread-safe).

    While any window is open, a process-spawning sampler refuses to start: its fork/exec
    schedule must be set up before the timed work begins.
    """
    global _windows_open
    with _window_lock:
        _windows_open += 1
    try:
        yield
    finally:
        with _window_lock:
            _windows_open -= 1


def window_open() -> bool:
    """True while some measurement window is open in this process."""
    return _windows_open > 0


# --- sampled meters --------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerSample:
    """One instantaneous reading of a sampled meter (W)."""

    total_w: float
    domains_w: Mapping[str, float] = field(default_factory=dict)
    flags: tuple[str, ...] = ()


class SampledMeter(EnergyMeter):
    """A power sensor turned into cumulative energy by trapezoid integration of its samples.

    A daemon thread samples every ``period_s`` on a fixed-rate schedule fixed at ``start()``
    (overrun slots are skipped, never bunched). Meters whose sample is a cheap sysfs read also
    sample synchronously in ``read()`` so window edges are exact; meters that spawn a process
    per sample (``spawns_process``) sample only in the thread, and ``read()`` returns the
    integral up to the latest sample (edges late by up to one period).
    """

    kind = SAMPLED_RAIL
    trace_len: ClassVar[int] = 100_000  # samples kept for ``trace()``

    def __init__(self, *, period_s: float, clock: Callable[[], float] = time.monotonic,
                 max_power_w: float = MAX_PLAUSIBLE_POWER_W):
        if period_s <= 0:
            raise ValueError("period_s must be positive")
        self.period_s = period_s
        self._clock = clock
        self._max_power_w = max_power_w
        self._lock = threading.Lock()
        self._last: tuple[float, PowerSample] | None = None
        self._energy_j = 0.0
        self._domains_j: dict[str, float] = {}
        self._pending_flags: set[str] = set()
        self._error: MeterError | None = None
        self._trace: deque[tuple[float, float]] = deque(maxlen=self.trace_len)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._first_sample = threading.Event()

    @abc.abstractmethod
    def _sample(self) -> PowerSample:
        """Read the sensor once. Raises ``MeterError`` (mapped from OSError by the subclass)."""

    def poll(self) -> None:
        """Take one sample and integrate it (thread-safe). Records, never raises, errors."""
        if self._error is not None:
            return
        # Sample outside the lock: a slow vcgencmd must not block read(). Stamp the midpoint.
        t_before = self._clock()
        try:
            sample = self._sample()
        except MeterError as exc:
            with self._lock:
                self._error = self._error or exc
            self._first_sample.set()
            return
        now = 0.5 * (t_before + self._clock())
        with self._lock:
            if self._error is not None or (self._last is not None and now <= self._last[0]):
                return      # failed meanwhile, or a concurrent poll already covered this instant
            flags = set(sample.flags)
            if not (0.0 <= sample.total_w <= self._max_power_w):
                flags.add(ABSURD_READING)
            self._pending_flags |= flags
            if self._last is not None:
                t0, s0 = self._last
                dt = now - t0
                self._energy_j += 0.5 * (s0.total_w + sample.total_w) * dt
                for name, p in sample.domains_w.items():
                    p0 = s0.domains_w.get(name, p)
                    self._domains_j[name] = self._domains_j.get(name, 0.0) + 0.5 * (p0 + p) * dt
            else:
                for name in sample.domains_w:
                    self._domains_j.setdefault(name, 0.0)
            self._last = (now, sample)
            self._trace.append((now, sample.total_w))
        self._first_sample.set()

    def read(self) -> EnergyReading:
        if not self.spawns_process:
            self.poll()
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._last is None:
                raise MeterUnavailableError(f"{type(self).__name__}: no sample yet; call start()")
            flags = tuple(sorted(self._pending_flags))
            self._pending_flags.clear()
            return EnergyReading(timestamp_s=self._last[0], energy_j=self._energy_j,
                                 domains_j=MappingProxyType(dict(self._domains_j)), flags=flags)

    def start(self) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return False
        if self.spawns_process and window_open():
            raise SamplingInsideWindowError(
                f"{type(self).__name__} spawns a process per sample; start it before the "
                "measurement window, never inside one")
        with self._lock:   # a fresh run: forget an old failure and don't integrate the gap
            self._error = None
            self._last = None
        self._stop.clear()
        self._first_sample.clear()
        self._thread = threading.Thread(target=self._run, name=f"{type(self).__name__}-sampler",
                                        daemon=True)
        self._thread.start()
        # The first sample comes from the thread too; wait for it so errors surface here.
        self._first_sample.wait(timeout=max(2.0, 5 * self.period_s))
        with self._lock:
            if self._error is not None:
                err = self._error
            else:
                err = None
        if err is not None:
            self.stop()
            raise err
        return True

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(2.0, 5 * self.period_s))

    def trace(self) -> tuple[tuple[float, float], ...]:
        """The recent (timestamp_s, total W) samples, oldest first."""
        with self._lock:
            return tuple(self._trace)

    def _run(self) -> None:
        # Fixed-rate schedule on the real monotonic clock (the injectable clock only stamps).
        t0 = time.monotonic()
        k = 0
        while not self._stop.is_set():
            self.poll()
            if self._error is not None:
                return
            k += 1
            now = time.monotonic()
            next_t = t0 + k * self.period_s
            if next_t < now:   # overran: skip the missed slots instead of bursting
                k = int((now - t0) / self.period_s) + 1
                next_t = t0 + k * self.period_s
            self._stop.wait(next_t - now)
