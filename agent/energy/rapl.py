"""Intel/AMD RAPL energy counters through the Linux powercap sysfs.

Layout (kernel ``drivers/powercap``): ``/sys/class/powercap/intel-rapl:N`` is a top-level zone
(``name`` = ``package-N`` or ``psys``), ``intel-rapl:N:M`` its sub-zones (``core``, ``uncore``,
``dram``); each has ``energy_uj`` (a µJ counter) and ``max_energy_range_uj`` (where it wraps).
Zones are found by their ``name`` file, never by their number, which differs between machines.
Since Linux 5.10 ``energy_uj`` is mode 0400 (root only; CVE-2020-8694), so the usual failure is
a permission error, reported with the fix.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hilnas.agent.energy.base import (COUNTER, COUNTER_BACKWARDS, COUNTER_WRAPPED,
                                      MAX_PLAUSIBLE_POWER_W, EnergyMeter, EnergyReading,
                                      MeterPermissionError, MeterUnavailableError,
                                      MeterVanishedError)
from hilnas.agent.energy.sysfs import Reader, natural_key, read_text, sys_path, try_read
from hilnas.agent.results import EnergyMeterInfo

POWERCAP = "/sys/class/powercap"
# The RAPL energy status unit is 2^-16 J (15.3 µJ) on most Intel parts (MSR_RAPL_POWER_UNIT);
# sysfs shows µJ, but the counter only moves in these steps.
RAPL_UNIT_MJ = 1000.0 / 65536
_TOP = re.compile(r"^(intel-rapl(?:-mmio)?):(\d+)$")
_SCOPES = {"psys": "platform", "dram": "dram", "core": "cpu", "uncore": "uncore"}


@dataclass(frozen=True)
class RaplZone:
    """One top-level powercap zone and its sub-zones, as found by name."""

    name: str                                   # e.g. "package-0", "psys"
    path: Path                                  # the zone directory (under root)
    subzones: tuple[tuple[str, Path], ...] = ()  # (name, directory)


def find_rapl_zones(root: Path = Path("/"), reader: Reader = read_text) -> list[RaplZone]:
    """Every top-level RAPL zone that has an energy counter, MSR zones before MMIO duplicates."""
    base = sys_path(root, POWERCAP)
    if not base.is_dir():
        return []
    zones: dict[str, RaplZone] = {}
    # MSR zones first: intel-rapl-mmio:N repeats a package counter and is kept only if alone.
    for top in sorted(base.iterdir(), key=lambda p: ("mmio" in p.name, natural_key(p))):
        m = _TOP.match(top.name)
        if not m or not (top / "energy_uj").exists():
            continue
        name = try_read(reader, top / "name")
        if not name or name in zones:
            continue
        subs = []
        for sub in sorted(base.glob(f"{top.name}:*"), key=natural_key):
            sub_name = try_read(reader, sub / "name")
            if sub_name and (sub / "energy_uj").exists():
                subs.append((sub_name, sub))
        zones[name] = RaplZone(name=name, path=top, subzones=tuple(subs))
    return sorted(zones.values(), key=lambda z: (not z.name.startswith("package"), z.name))


def _sys_display(root: Path, path: Path) -> str:
    """The path as it is on the real device (without the test root)."""
    try:
        return "/" + str(path.relative_to(root))
    except ValueError:
        return str(path)


def permission_note(path: str) -> str:
    return (f"{path} is readable only by root: since Linux 5.10 RAPL energy counters are mode "
            "0400 (CVE-2020-8694). Fix: `sudo chmod o+r /sys/class/powercap/intel-rapl:*/"
            "energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj` (until reboot), or a udev "
            "rule in /etc/udev/rules.d/70-hilnas-rapl.rules: "
            'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chgrp power /sys%p/energy_uj", '
            'RUN+="/bin/chmod g+r /sys%p/energy_uj" with the agent user in group `power` '
            "(then `sudo udevadm trigger --subsystem-match=powercap`)")


class RaplMeter(EnergyMeter):
    """A RAPL zone (``package-0``, ``psys``...) as a counter, its sub-zones as extra domains.

    Wrap-around: a counter that drops is unwrapped with ``max_energy_range_uj`` when the
    implied power is plausible (<= ``max_power_w``); otherwise it went backwards (a reset or a
    bad read), which is flagged and not counted. Read at least once per wrap period
    (max_energy_range_uj / power: minutes at the very least) -- the protocol reads every second.
    """

    kind = COUNTER
    privileges = ("read access to /sys/class/powercap/intel-rapl:*/energy_uj "
                  "(root-only since Linux 5.10)")

    def __init__(self, zone: str = "package-0", *, root: Path = Path("/"),
                 reader: Reader = read_text, clock: Callable[[], float] = time.monotonic,
                 max_power_w: float = MAX_PLAUSIBLE_POWER_W):
        self.zone_name = zone
        self._root = Path(root)
        self._reader = reader
        self._clock = clock
        self._max_power_w = max_power_w
        self._zone: RaplZone | None = None
        self._ranges: dict[str, int] = {}
        self._last_raw: dict[str, int] = {}
        self._acc_uj: dict[str, int] = {}
        self._last_t: float | None = None

    @property
    def name(self) -> str:
        return f"rapl:{self.zone_name}"

    def _find(self) -> RaplZone:
        if self._zone is None:
            for zone in find_rapl_zones(self._root, self._reader):
                if zone.name == self.zone_name:
                    self._zone = zone
                    break
            else:
                raise MeterUnavailableError(f"no RAPL zone named {self.zone_name!r} under "
                                            f"{POWERCAP}")
        return self._zone

    def _domains(self) -> list[tuple[str, Path]]:
        zone = self._find()
        return [(zone.name, zone.path)] + [(f"{zone.name}/{n}", p) for n, p in zone.subzones]

    def _read_uj(self, path: Path) -> int:
        try:
            return int(self._reader(path))
        except PermissionError as exc:
            raise MeterPermissionError(permission_note(_sys_display(self._root, path))) from exc
        except (OSError, ValueError) as exc:
            raise MeterVanishedError(f"{_sys_display(self._root, path)}: {exc}") from exc

    def info(self) -> EnergyMeterInfo:
        scope = _SCOPES.get(self.zone_name, "package" if self.zone_name.startswith("package")
                            else self.zone_name)
        try:
            zone = self._find()
            self._read_uj(zone.path / "energy_uj")
        except (MeterUnavailableError, MeterVanishedError) as exc:
            return EnergyMeterInfo(self.name, COUNTER, scope, RAPL_UNIT_MJ, False, str(exc))
        return EnergyMeterInfo(self.name, COUNTER, scope, RAPL_UNIT_MJ, True)

    def read(self) -> EnergyReading:
        domains_dirs = self._domains()
        raws = [self._read_uj(path / "energy_uj") for _, path in domains_dirs]
        now = self._clock()
        flags: set[str] = set()
        for (name, path), raw in zip(domains_dirs, raws):
            last = self._last_raw.get(name)
            if last is None:
                self._acc_uj[name] = 0
            else:
                delta = raw - last
                if delta < 0:
                    wrapped = self._range(name, path) - last + raw
                    dt = now - (self._last_t if self._last_t is not None else now)
                    if dt > 0 and wrapped / 1e6 / dt <= self._max_power_w:
                        delta = wrapped
                        flags.add(COUNTER_WRAPPED)
                    else:
                        delta = 0
                        flags.add(COUNTER_BACKWARDS)
                self._acc_uj[name] += delta
            self._last_raw[name] = raw
        self._last_t = now
        domains = {name: uj / 1e6 for name, uj in self._acc_uj.items()}
        return EnergyReading(timestamp_s=now, energy_j=domains[self.zone_name], domains_j=domains,
                             flags=tuple(sorted(flags)))

    def _range(self, name: str, path: Path) -> int:
        if name not in self._ranges:
            self._ranges[name] = self._read_uj(path / "max_energy_range_uj")
        return self._ranges[name]
