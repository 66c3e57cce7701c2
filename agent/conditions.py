"""Measurement conditions: the device state around a result (frequencies, governor,
temperatures, Pi throttling bits, load, power source), cheap to probe and never raising.

Everything is read under ``root`` (tests point it at fake sysfs trees); ``vcgencmd`` goes
through an injectable ``runner``. Missing or unreadable files simply leave fields out.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path

from hilnas.agent.energy.base import window_open
from hilnas.agent.energy.battery import power_source
from hilnas.agent.energy.sysfs import (CommandError, Reader, Runner, natural_key, read_text,
                                       run_command, sys_path, try_read, try_read_number)
from hilnas.agent.results import Conditions

CPU_DIR = "/sys/devices/system/cpu"
THERMAL_DIR = "/sys/class/thermal"
THROTTLED_NOW_MASK = 0xF        # under-voltage, freq capped, throttled, soft temp limit: now
THROTTLED_SINCE_MASK = 0xF0000  # the same four, sticky since boot ("has occurred")
MAX_THERMAL_ZONES = 64          # some phones expose ~100 zones; each read can hit a bus
_CPU = re.compile(r"^cpu\d+$")
_ZONE = re.compile(r"^thermal_zone\d+$")


def parse_throttled(text: str) -> int | None:
    """The bits of ``vcgencmd get_throttled`` output (``throttled=0x50005``), or None."""
    m = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text)
    return int(m.group(1), 0) if m else None


def _cpu_freqs(root: Path, reader: Reader) -> tuple[dict[str, float], str]:
    base = sys_path(root, CPU_DIR)
    freqs: dict[str, float] = {}
    governor = ""
    if not base.is_dir():
        return freqs, governor
    for cpu in sorted((p for p in base.iterdir() if _CPU.match(p.name)), key=natural_key):
        khz = try_read_number(reader, cpu / "cpufreq" / "scaling_cur_freq")
        if khz is not None:
            freqs[cpu.name] = khz
        if not governor:
            governor = try_read(reader, cpu / "cpufreq" / "scaling_governor") or ""
    return freqs, governor


def _celsius(raw: float) -> float | None:
    # The ABI says millidegrees; a few (Android) zones report whole degrees.
    c = raw / 1000.0 if abs(raw) >= 200 else raw
    return c if -60.0 <= c <= 200.0 else None


def _thermal(root: Path, reader: Reader) -> tuple[dict[str, float], bool]:
    """Zone type -> temperature (C), and whether any zone is at or above a passive trip."""
    base = sys_path(root, THERMAL_DIR)
    temps: dict[str, float] = {}
    passive = False
    if not base.is_dir():
        return temps, passive
    zones = sorted((p for p in base.iterdir() if _ZONE.match(p.name)), key=natural_key)
    for zone in zones[:MAX_THERMAL_ZONES]:
        raw = try_read_number(reader, zone / "temp")
        c = _celsius(raw) if raw is not None else None
        if c is None:
            continue
        kind = try_read(reader, zone / "type") or zone.name
        key = kind if kind not in temps else f"{kind}:{zone.name}"
        temps[key] = c
        for trip in sorted(zone.glob("trip_point_*_type")):
            if try_read(reader, trip) != "passive":
                continue
            limit = try_read_number(reader, trip.with_name(trip.name.replace("_type", "_temp")))
            if limit is not None and limit > 0 and raw >= limit:
                passive = True    # the kernel is cooling this zone by throttling it
    return temps, passive


def probe_conditions(root: Path = Path("/"), runner: Runner | None = None, *,
                     reader: Reader = read_text,
                     loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg,
                     clock: Callable[[], float] = time.time) -> Conditions:
    """The device state now. ``throttled`` is set by the Pi's current throttling bits (0-3) or
    a thermal zone at its passive trip point. Never raises. Called inside a measurement window
    it skips ``vcgencmd get_throttled`` (a fork), so probe before and after, not during."""
    root = Path(root)
    freqs, governor = _cpu_freqs(root, reader)
    temps, passive = _thermal(root, reader)
    bits = 0
    if not window_open():   # forking vcgencmd would disturb a running measurement
        try:
            parsed = parse_throttled((runner or run_command)(("vcgencmd", "get_throttled")))
            bits = parsed or 0
        except CommandError:
            pass    # not a Pi, or vcgencmd without /dev/vcio access
    try:
        load = float(loadavg()[0])
    except (OSError, AttributeError, IndexError):
        load = 0.0
    return Conditions(timestamp_s=clock(), temperatures_c=temps, cpu_freq_khz=freqs,
                      governor=governor, throttled_bits=bits,
                      throttled=bool(bits & THROTTLED_NOW_MASK) or passive,
                      load_avg_1m=load, power_source=power_source(root, reader))


def is_throttled(before: Conditions | None, after: Conditions | None) -> bool:
    """True when the device throttled around a measurement: throttled at either probe, or a
    sticky 'has occurred' bit that appeared between them."""
    b = before or Conditions()
    a = after or Conditions()
    new_sticky = a.throttled_bits & ~b.throttled_bits & THROTTLED_SINCE_MASK
    return b.throttled or a.throttled or bool(new_sticky)


def thread_affinity() -> tuple[int, ...]:
    """CPUs this process may run on (empty where the OS does not say)."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return ()


def runtime_versions(packages: tuple[str, ...] = ("onnxruntime", "ai-edge-litert", "numpy")
                     ) -> dict[str, str]:
    """Installed versions of the runtimes, read from package metadata (no heavy imports)."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
