"""A phone's (or laptop's) battery as an energy meter, through ``/sys/class/power_supply``.

The ABI (Documentation/ABI/testing/sysfs-class-power) says ``current_now`` is µA, negative
while discharging, and ``voltage_now`` µV. Vendors disagree: many Android kernels report mA, and
many report discharge as positive. Units are detected from magnitude (a phone draws 10 mA-10 A:
above 10 000 the value can only be µA) and sign from ``status``; both are flagged when they
deviate. A battery only measures the device while nothing else powers it, so a charging phone
or an online charger makes the reading invalid (flagged; the protocol refuses the energy).
Fuel gauges often update ``current_now`` only every second or so, which bounds the resolution.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from hilnas.agent.energy.base import (BATTERY, CHARGING, CURRENT_UNIT_MA, EXTERNAL_POWER,
                                      MAX_PLAUSIBLE_POWER_W, SIGN_INVERTED, MeterError,
                                      MeterPermissionError, MeterUnavailableError,
                                      MeterVanishedError, PowerSample, SampledMeter)
from hilnas.agent.energy.sysfs import Reader, natural_key, read_text, sys_path, try_read
from hilnas.agent.results import EnergyMeterInfo

POWER_SUPPLY = "/sys/class/power_supply"
UA_THRESHOLD = 10_000      # |current_now| above this is µA (10 A in mA is not a phone)
UV_THRESHOLD = 100_000     # voltage_now above this is µV, else mV
GAUGE_UPDATE_S = 1.0       # typical fuel-gauge refresh period; bounds the energy resolution
_EXTERNAL_IS_USB = ("USB",)


def _supplies(root: Path) -> list[Path]:
    base = sys_path(root, POWER_SUPPLY)
    return sorted(base.iterdir(), key=natural_key) if base.is_dir() else []


def find_batteries(root: Path = Path("/"), reader: Reader = read_text) -> list[Path]:
    """Supplies of type ``Battery`` that report current and voltage (or power)."""
    out = []
    for d in _supplies(root):
        if try_read(reader, d / "type") != "Battery":
            continue
        has_iv = (d / "current_now").exists() and (d / "voltage_now").exists()
        if has_iv or (d / "power_now").exists():
            out.append(d)
    return out


def external_supplies_online(root: Path = Path("/"), reader: Reader = read_text) -> list[str]:
    """Types of the non-battery supplies (charger, USB, wireless) that are online now."""
    online = []
    for d in _supplies(root):
        kind = try_read(reader, d / "type")
        if kind and kind != "Battery" and try_read(reader, d / "online") == "1":
            online.append(kind)
    return online


def power_source(root: Path = Path("/"), reader: Reader = read_text) -> str:
    """"ac", "usb", "battery" or "unknown" (the proto's Conditions.power_source)."""
    external = external_supplies_online(root, reader)
    if any(k.startswith(_EXTERNAL_IS_USB) for k in external):
        return "usb"
    if external:
        return "ac"
    for d in _supplies(root):
        if try_read(reader, d / "type") == "Battery" and try_read(reader, d / "present") != "0":
            return "battery"
    return "unknown"


class BatteryMeter(SampledMeter):
    """Battery discharge power (|I| x V) sampled every ``period_s`` and integrated."""

    kind = BATTERY
    privileges = ("read access to /sys/class/power_supply/<battery>/ (Android may deny apps "
                  "this through SELinux)")

    def __init__(self, supply: str = "battery", *, root: Path = Path("/"),
                 reader: Reader = read_text, clock: Callable[[], float] = time.monotonic,
                 period_s: float = 0.25, current_unit: str = "auto",
                 max_power_w: float = MAX_PLAUSIBLE_POWER_W):
        if current_unit not in ("auto", "uA", "mA"):
            raise ValueError("current_unit must be 'auto', 'uA' or 'mA'")
        super().__init__(period_s=period_s, clock=clock, max_power_w=max_power_w)
        self.supply = supply
        self.current_unit = current_unit
        self._root = Path(root)
        self._reader = reader
        self._dir = sys_path(self._root, POWER_SUPPLY) / supply
        self._first_sign = 0

    @property
    def name(self) -> str:
        return f"battery:{self.supply}"

    def _num(self, file: str) -> float:
        try:
            return float(self._reader(self._dir / file))
        except PermissionError as exc:
            raise MeterPermissionError(
                f"{POWER_SUPPLY}/{self.supply}/{file}: permission denied (on Android, SELinux "
                "denies apps these files on many devices; Termux:API's termux-battery-status is "
                "the fallback)") from exc
        except FileNotFoundError as exc:
            cls = MeterVanishedError if self._last is not None else MeterUnavailableError
            raise cls(f"{POWER_SUPPLY}/{self.supply}/{file} is missing") from exc
        except (OSError, ValueError) as exc:
            raise MeterVanishedError(f"{POWER_SUPPLY}/{self.supply}/{file}: {exc}") from exc

    def _sample(self) -> PowerSample:
        flags: set[str] = set()
        status = try_read(self._reader, self._dir / "status") or ""
        if status == "Charging":
            flags.add(CHARGING)
        elif (status in ("Full", "Not charging")
              or external_supplies_online(self._root, self._reader)):
            flags.add(EXTERNAL_POWER)
        if (self._dir / "power_now").exists():          # laptops: µW, positive
            p = abs(self._num("power_now")) / 1e6
            return PowerSample(total_w=p, domains_w={self.supply: p}, flags=tuple(sorted(flags)))
        raw_i = self._num("current_now")
        raw_v = self._num("voltage_now")
        volts = raw_v / 1e6 if raw_v > UV_THRESHOLD else raw_v / 1e3 if raw_v > 100 else raw_v
        unit = self.current_unit
        if unit == "auto" and raw_i != 0:
            unit = "uA" if abs(raw_i) > UA_THRESHOLD else "mA"
            if unit == "mA":
                flags.add(CURRENT_UNIT_MA)
        amps = raw_i / (1e3 if unit == "mA" else 1e6)
        sign = (amps > 0) - (amps < 0)
        if sign and abs(amps) > 0.005:   # ignore sign noise around zero
            if status == "Discharging" and sign > 0:
                flags.add(SIGN_INVERTED)    # vendor convention: discharge reported positive
            if self._first_sign == 0:
                self._first_sign = sign
            elif sign != self._first_sign:
                flags.add(CHARGING)         # current reversed: something is charging it
        p = abs(amps) * volts
        return PowerSample(total_w=p, domains_w={self.supply: p}, flags=tuple(sorted(flags)))

    def info(self) -> EnergyMeterInfo:
        resolution_mj = 1e-3 * 3.8 * max(GAUGE_UPDATE_S, self.period_s) * 1e3  # 1 mA at 3.8 V
        saved_sign = self._first_sign    # a probe must not fix the sign convention of a run
        try:
            sample = self._sample()
        except MeterError as exc:
            return EnergyMeterInfo(self.name, BATTERY, "battery", resolution_mj, False, str(exc))
        finally:
            self._first_sign = saved_sign
        note = ""
        if CHARGING in sample.flags or EXTERNAL_POWER in sample.flags:
            note = ("on external power now: the battery does not see the device's load; unplug "
                    "the charger before measuring energy")
        return EnergyMeterInfo(self.name, BATTERY, "battery", resolution_mj, True, note)
