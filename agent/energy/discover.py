"""Find the energy meters a device really has (for Describe), usable or not, and pick one."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hilnas.agent.energy.base import (BATTERY, COUNTER, ESTIMATE, SAMPLED_RAIL, EnergyMeter,
                                      NoneMeter)
from hilnas.agent.energy.battery import BatteryMeter, find_batteries
from hilnas.agent.energy.hwmon import HwmonPowerMeter, find_power_monitors
from hilnas.agent.energy.pmic import PiPmicMeter
from hilnas.agent.energy.rapl import RaplMeter, find_rapl_zones
from hilnas.agent.energy.simulated import UtilisationEstimateMeter
from hilnas.agent.energy.sysfs import Reader, Runner, read_text

NO_METER_NOTE = ("no energy meter found: no RAPL zone under /sys/class/powercap (a VM, or no "
                 "intel_rapl_msr module), no INA2xx/INA3221 under /sys/class/hwmon, no Pi 5 PMIC "
                 "(vcgencmd), no battery under /sys/class/power_supply")


def discover_meters(root: Path = Path("/"), runner: Runner | None = None, *,
                    reader: Reader = read_text,
                    estimate_w: tuple[float, float] | None = None) -> list[EnergyMeter]:
    """Every meter found under ``root``, unusable ones included (their info() says why/how).

    Order: RAPL zones, hwmon power monitors, the Pi 5 PMIC (only listed where vcgencmd is
    installed; probing it forks vcgencmd once), batteries, then the utilisation estimate when
    ``estimate_w = (idle W, busy W)`` is given. When none is usable, a ``NoneMeter`` is
    appended so Describe always says something. Never raises for a missing or odd sysfs.
    """
    root = Path(root)
    meters: list[EnergyMeter] = []
    meters += [RaplMeter(z.name, root=root, reader=reader) for z in find_rapl_zones(root, reader)]
    meters += [HwmonPowerMeter(s.name, device=s.device, root=root, reader=reader)
               for s in find_power_monitors(root, reader)]
    pmic = PiPmicMeter(runner=runner, root=root)
    pmic.probe()
    if pmic.installed:
        meters.append(pmic)
    meters += [BatteryMeter(d.name, root=root, reader=reader) for d in find_batteries(root, reader)]
    if estimate_w is not None:
        meters.append(UtilisationEstimateMeter(*estimate_w, root=root, reader=reader))
    if not any(m.info().available for m in meters):
        unusable = "; ".join(f"{m.info().name}: {m.info().note}" for m in meters)
        meters.append(NoneMeter(NO_METER_NOTE if not unusable else
                                f"no usable energy meter ({unusable})"))
    return meters


_KIND_RANK = {COUNTER: 0, SAMPLED_RAIL: 1, BATTERY: 2, ESTIMATE: 3}
_SCOPE_RANK = {"platform": 0, "board": 1, "board_rails": 2, "package": 3}


def best_meter(meters: Sequence[EnergyMeter]) -> EnergyMeter | None:
    """The usable meter to measure with: sensors before estimates, counters before samplers,
    the widest scope first (RAPL psys before package). None when nothing is usable."""
    usable = [(m, m.info()) for m in meters]
    usable = [(m, i) for m, i in usable if i.available and i.kind in _KIND_RANK]
    if not usable:
        return None
    return min(usable, key=lambda mi: (_KIND_RANK[mi[1].kind],
                                        _SCOPE_RANK.get(mi[1].scope, 9)))[0]
