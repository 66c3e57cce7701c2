"""Power monitors behind the Linux hwmon class: TI INA2xx (e.g. an INA219/INA226 on a Pi's I2C
bus) and INA3221 (the three-channel monitor on NVIDIA Jetson modules).

Units are the hwmon sysfs ABI's (Documentation/hwmon/sysfs-interface): ``powerN_input`` µW,
``currN_input`` mA, ``inN_input`` mV. Sensors are found by their ``name`` file (``ina219``,
``ina3221``) and told apart by their I2C address (``device`` link, e.g. ``1-0040``), never by
the ``hwmonN`` number, which depends on probe order. These are instantaneous readings, so the
meter samples them and integrates (trapezoid rule) in ``SampledMeter``.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hilnas.agent.energy.base import (MAX_PLAUSIBLE_POWER_W, SAMPLED_RAIL, MeterError,
                                      MeterPermissionError, MeterUnavailableError,
                                      MeterVanishedError, PowerSample, SampledMeter)
from hilnas.agent.energy.sysfs import Reader, natural_key, read_text, sys_path, try_read
from hilnas.agent.results import EnergyMeterInfo

HWMON = "/sys/class/hwmon"
_INA2XX = re.compile(r"^ina2\d\d$")   # ina209 ina219 ina220 ina226 ina230 ina231 ina238 ina260 ...
INA3221 = "ina3221"


def is_power_monitor(name: str) -> bool:
    return bool(_INA2XX.match(name)) or name == INA3221


@dataclass(frozen=True)
class HwmonSensor:
    """One hwmon device found by name."""

    name: str        # driver's name, e.g. "ina219"
    device: str      # I2C id from the ``device`` link ("1-0040"), or "" when there is none
    path: Path       # the hwmonN directory (under root)

    @property
    def meter_name(self) -> str:
        return f"hwmon:{self.name}" + (f":{self.device}" if self.device else "")


def find_power_monitors(root: Path = Path("/"), reader: Reader = read_text) -> list[HwmonSensor]:
    """Every INA2xx / INA3221 hwmon device under ``root``."""
    base = sys_path(root, HWMON)
    if not base.is_dir():
        return []
    found = []
    for d in sorted(base.iterdir(), key=natural_key):
        # Old kernels put ``name`` in the device directory rather than in hwmonN itself.
        name = try_read(reader, d / "name") or try_read(reader, d / "device" / "name")
        if not name or not is_power_monitor(name):
            continue
        dev = d / "device"
        device = dev.resolve().name if dev.is_symlink() else ""
        found.append(HwmonSensor(name=name, device=device, path=d))
    return found


class HwmonPowerMeter(SampledMeter):
    """An INA2xx or INA3221 hwmon sensor, sampled every ``period_s`` and integrated.

    INA2xx: ``power1_input`` (µW) when the driver has it, else ``curr1_input`` (mA) x
    ``in1_input`` (bus voltage, mV). INA3221: per channel ``inN_input`` (mV) x ``currN_input``
    (mA), domains named by ``inN_label``; the channel labelled ``*_IN`` (``VDD_IN``,
    ``POM_5V_IN``) is the module's input and is the total, else the channels are summed.
    """

    kind = SAMPLED_RAIL
    privileges = "read access to /sys/class/hwmon/hwmon*/ (world-readable by default)"

    def __init__(self, sensor: str = "ina219", *, device: str = "", root: Path = Path("/"),
                 reader: Reader = read_text, clock: Callable[[], float] = time.monotonic,
                 period_s: float = 0.05, max_power_w: float = MAX_PLAUSIBLE_POWER_W):
        super().__init__(period_s=period_s, clock=clock, max_power_w=max_power_w)
        self.sensor = sensor
        self.device = device
        self._root = Path(root)
        self._reader = reader
        self._found: HwmonSensor | None = None
        self._channels: list[tuple[int, str]] | None = None   # INA3221 (channel, label)

    @property
    def name(self) -> str:
        return HwmonSensor(self.sensor, self.device, Path()).meter_name

    def _find(self) -> HwmonSensor:
        if self._found is None:
            for s in find_power_monitors(self._root, self._reader):
                if s.name == self.sensor and (not self.device or s.device == self.device):
                    self._found = s
                    break
            else:
                what = self.sensor + (f" at {self.device}" if self.device else "")
                raise MeterUnavailableError(
                    f"no hwmon sensor named {what} under {HWMON}: is its driver loaded (and, on a "
                    "Pi, the dtoverlay for it set in config.txt)?")
        return self._found

    def _num(self, path: Path) -> float:
        try:
            return float(self._reader(path))
        except PermissionError as exc:
            raise MeterPermissionError(f"{path}: permission denied; the agent's user needs read "
                                       "access to the hwmon sysfs files") from exc
        except (OSError, ValueError) as exc:
            raise MeterVanishedError(f"{self.name}: {path.name}: {exc}") from exc

    def _ina3221_channels(self, d: Path) -> list[tuple[int, str]]:
        if self._channels is None:
            chans = []
            for ch in (1, 2, 3):
                if try_read(self._reader, d / f"in{ch}_enable") == "0":
                    continue
                if not (d / f"curr{ch}_input").exists():
                    continue
                label = try_read(self._reader, d / f"in{ch}_label") or f"channel{ch}"
                chans.append((ch, label))
            if not chans:
                raise MeterUnavailableError(f"{self.name}: no enabled INA3221 channel")
            self._channels = chans
        return self._channels

    def _sample(self) -> PowerSample:
        sensor = self._find()
        d = sensor.path
        if sensor.name == INA3221:
            domains = {label: self._num(d / f"in{ch}_input") * self._num(d / f"curr{ch}_input")
                       / 1e6 for ch, label in self._ina3221_channels(d)}     # mV x mA -> W
            inputs = [p for label, p in domains.items() if label.upper().endswith("_IN")]
            total = inputs[0] if inputs else sum(domains.values())
            return PowerSample(total_w=total, domains_w=domains)
        if (d / "power1_input").exists():
            p = self._num(d / "power1_input") / 1e6                       # µW -> W
        else:
            p = self._num(d / "curr1_input") * self._num(d / "in1_input") / 1e6   # mA*mV -> W
        return PowerSample(total_w=p, domains_w={sensor.name: p})

    def info(self) -> EnergyMeterInfo:
        try:
            self._sample()            # readable now?
            sensor = self._find()
        except MeterError as exc:
            return EnergyMeterInfo(self.name, SAMPLED_RAIL, "board", 0.0, False, str(exc))
        if sensor.name == INA3221:
            has_input = any(lbl.upper().endswith("_IN") for _, lbl in self._channels or [])
            scope = "board" if has_input else "rails"
            step_w = 1e-3 * 5.0                       # 1 mA at a ~5 V rail
        else:
            scope = "board"
            step_w = 1e-3 if (sensor.path / "power1_input").exists() else 1e-3 * 5.0
        return EnergyMeterInfo(self.name, SAMPLED_RAIL, scope, step_w * self.period_s * 1e3, True)
