"""Raspberry Pi 5 PMIC rails through ``vcgencmd pmic_read_adc``.

The Pi 5's PMIC (Renesas DA9091 "Gilmour") reports per-rail current and voltage:

    VDD_CORE_A current(7)=0.73280000A
    ...
    VDD_CORE_V volt(15)=0.88730000V

Rail power is I x V, paired by rail name; the meter's total is the sum over paired rails. The
PMIC does not see the 5 V input current (``EXT5V_V`` has a voltage only), so the scope is the
board's PMIC rails: USB devices and conversion losses are not included.

Trade-off, documented because it is unavoidable: each sample forks ``vcgencmd`` (a few ms of CPU
on one core). The sampler therefore runs only in its own thread, on a fixed schedule set up in
``start()`` before any measurement window (``SampledMeter`` refuses to start inside a window),
and at a modest rate (10 Hz default). Its cost is the same in the idle phases and the windows,
so idle subtraction removes its mean power; it can still perturb latency, so latency should be
timed in a run without energy sampling. Talking to ``/dev/vcio`` directly (the mailbox ioctl
vcgencmd uses) would avoid the fork; it is not done here.
"""
from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from hilnas.agent.energy.base import (MAX_PLAUSIBLE_POWER_W, SAMPLED_RAIL,
                                      MeterUnavailableError, MeterVanishedError, PowerSample,
                                      SampledMeter, window_open)
from hilnas.agent.energy.sysfs import CommandError, CommandNotFound, Runner, run_command
from hilnas.agent.results import EnergyMeterInfo

PMIC_COMMAND = ("vcgencmd", "pmic_read_adc")
_LINE = re.compile(r"^\s*(?P<rail>\S+)_(?P<q>[AV])\s+(?:current|volt)\(\d+\)="
                   r"(?P<value>[-+0-9.eE]+)[AV]\s*$")


def parse_pmic_adc(text: str) -> dict[str, float]:
    """Rail name -> power (W) from ``vcgencmd pmic_read_adc`` output; rails with both I and V."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            (amps if m["q"] == "A" else volts)[m["rail"]] = float(m["value"])
    return {rail: amps[rail] * volts[rail] for rail in sorted(amps.keys() & volts.keys())}


def _fix_for(error: str) -> str:
    low = error.lower()
    if "not found" in low:
        return "vcgencmd is not installed (Raspberry Pi OS: apt install libraspberrypi-bin)"
    if "vcio" in low or "vchi" in low or "permission" in low:
        return (f"vcgencmd cannot open /dev/vcio ({error}); add the agent's user to group `video` "
                "(`sudo usermod -aG video USER`, then log in again)")
    if "command not registered" in low or "error=" in low:
        return (f"this board's firmware has no PMIC ADC ({error}); only the Raspberry Pi 5 / CM5 "
                "report rail currents")
    return error


class PiPmicMeter(SampledMeter):
    """The Pi 5's PMIC rails, sampled by forking vcgencmd from a sampling thread."""

    kind = SAMPLED_RAIL
    spawns_process = True
    privileges = "membership of group `video` (vcgencmd opens /dev/vcio)"
    name = "pmic:rpi5"

    def __init__(self, *, runner: Runner | None = None, root: Path = Path("/"),
                 clock: Callable[[], float] = time.monotonic, period_s: float = 0.1,
                 max_power_w: float = MAX_PLAUSIBLE_POWER_W):
        super().__init__(period_s=period_s, clock=clock, max_power_w=max_power_w)
        self._runner = runner or run_command
        self._root = Path(root)   # unused: vcgencmd talks to the firmware, not to sysfs
        self._info: EnergyMeterInfo | None = None
        self._ever_read = False
        self.installed: bool | None = None   # known after probe(): is vcgencmd on PATH

    def _sample(self) -> PowerSample:
        try:
            rails = parse_pmic_adc(self._runner(PMIC_COMMAND))
        except CommandError as exc:
            cls = MeterVanishedError if self._ever_read else MeterUnavailableError
            raise cls(_fix_for(str(exc))) from exc
        if not rails:
            cls = MeterVanishedError if self._ever_read else MeterUnavailableError
            raise cls(_fix_for("error=no rails in vcgencmd pmic_read_adc output"))
        self._ever_read = True
        return PowerSample(total_w=sum(rails.values()), domains_w=rails)

    def probe(self) -> EnergyMeterInfo:
        """Run vcgencmd once (outside any window) to learn whether the PMIC answers.

        Inside a window it does not fork: it only looks vcgencmd up on PATH (default runner)
        and returns an uncached 'not probed' info.
        """
        if window_open():
            self.installed = (shutil.which(PMIC_COMMAND[0]) is not None
                              if self._runner is run_command else None)
            return EnergyMeterInfo(self.name, SAMPLED_RAIL, "board_rails", 0.0, False,
                                   "not probed (probing forks vcgencmd; not inside a window)")
        try:
            rails = parse_pmic_adc(self._runner(PMIC_COMMAND))
            note = "" if rails else _fix_for("error=no rails in vcgencmd pmic_read_adc output")
            self.installed = True
        except CommandNotFound as exc:
            rails, note = {}, _fix_for(str(exc))
            self.installed = False
        except CommandError as exc:
            rails, note = {}, _fix_for(str(exc))
            self.installed = True
        # ~1 mA ADC step on a ~1 V rail, per rail, over one sample period.
        resolution_mj = 1e-3 * max(len(rails), 1) * self.period_s * 1e3
        self._info = EnergyMeterInfo(self.name, SAMPLED_RAIL, "board_rails", resolution_mj,
                                     bool(rails), note)
        return self._info

    def info(self) -> EnergyMeterInfo:
        # Cached: info() must not fork during a measurement (probe() refuses inside a window).
        return self._info if self._info is not None else self.probe()
