"""Raspberry Pi 5 PMIC rails via vcgencmd: parsing, integration, and that vcgencmd is forked
only from the sampling thread, never from the measuring thread inside a window."""
from __future__ import annotations

import threading

import pytest
from fixtures.energy_sysfs import FakeClock

from hilnas.agent.energy import protocol
from hilnas.agent.energy.base import (MeterUnavailableError, MeterVanishedError,
                                      SamplingInsideWindowError, measurement_window, window_open)
from hilnas.agent.energy.discover import discover_meters
from hilnas.agent.energy.pmic import PiPmicMeter, parse_pmic_adc
from hilnas.agent.energy.protocol import energy_valid, measure_energy
from hilnas.agent.energy.sysfs import CommandError, CommandNotFound

# Shape of a Pi 5's `vcgencmd pmic_read_adc` (values made up, format as printed).
PMIC_OUT = """\
   3V7_WL_SW_A current(0)=0.10000000A
     3V3_SYS_A current(1)=0.05000000A
    VDD_CORE_A current(7)={core_a:.8f}A
   3V7_WL_SW_V volt(8)=3.70000000V
     3V3_SYS_V volt(9)=3.30000000V
    VDD_CORE_V volt(15)=0.80000000V
       EXT5V_V volt(24)=5.12000000V
        BATT_V volt(25)=0.00000000V
"""
BASE_W = 0.1 * 3.7 + 0.05 * 3.3


def out(core_a: float = 1.0) -> str:
    return PMIC_OUT.format(core_a=core_a)


def test_parse_pairs_current_and_voltage_by_rail():
    rails = parse_pmic_adc(out(0.5))
    assert set(rails) == {"3V7_WL_SW", "3V3_SYS", "VDD_CORE"}   # EXT5V/BATT: no current
    assert rails["VDD_CORE"] == pytest.approx(0.4)
    assert sum(rails.values()) == pytest.approx(BASE_W + 0.4)


def test_samples_are_integrated_with_the_trapezoid_rule():
    clock = FakeClock()
    currents = iter([1.0, 3.0])
    meter = PiPmicMeter(runner=lambda argv: out(next(currents)), clock=clock)
    meter.poll()
    clock.advance(2.0)
    meter.poll()
    r = meter.read()        # read() of a process-spawning meter never forks; it just reports
    assert r.energy_j == pytest.approx(2.0 * (BASE_W + 0.5 * (0.8 + 2.4)))
    assert r.domains_j["VDD_CORE"] == pytest.approx(2.0 * 1.6)


def test_refuses_to_start_inside_a_window():
    calls = []
    meter = PiPmicMeter(runner=lambda argv: calls.append(argv) or out())
    with measurement_window():
        with pytest.raises(SamplingInsideWindowError):
            meter.start()
    assert calls == []
    assert not window_open()


def test_protocol_never_forks_from_the_measuring_thread(monkeypatch):
    monkeypatch.setattr(protocol, "MIN_WINDOW_S", 0.05)
    main = threading.current_thread()
    calls: list[tuple[bool, bool]] = []           # (from the measuring thread, window open)

    def runner(argv):
        is_open = window_open()
        calls.append((threading.current_thread() is main, is_open))
        return out(2.0 if is_open else 0.5)       # the core draws more while the model runs

    def run_for(seconds):
        threading.Event().wait(seconds)
        return 10

    meter = PiPmicMeter(runner=runner, period_s=0.005)
    meter.probe()                                 # Describe's probe: before any window
    calls.clear()
    result = measure_energy(meter, run_for, idle_s=0.1, window_s=0.1, windows=5)
    assert calls and not any(from_main for from_main, _ in calls)
    assert any(is_open for _, is_open in calls)   # it did sample beside the measurement
    assert energy_valid(result), result.flags
    assert result.net_mj > 0 and result.meter_kind == "sampled_rail"
    assert meter._thread is None                  # stopped again


def test_vcgencmd_failing_mid_measurement_is_vanished():
    state = {"n": 0}

    def runner(argv):
        state["n"] += 1
        if state["n"] > 2:
            raise CommandError("vcgencmd pmic_read_adc exited 255: VCHI initialization failed")
        return out()

    meter = PiPmicMeter(runner=runner, clock=FakeClock())
    meter.poll()
    meter.poll()
    meter.poll()
    with pytest.raises(MeterVanishedError):
        meter.read()


@pytest.mark.parametrize("error, hint", [
    (CommandError("vcgencmd pmic_read_adc exited 255: Can't open device file: /dev/vcio"), "video"),
    (CommandError('vcgencmd pmic_read_adc exited 0: error=1 error_msg="Command not registered"'),
     "Raspberry Pi 5"),
])
def test_unavailable_pmic_explains_the_fix(error, hint):
    def runner(argv):
        raise error

    meter = PiPmicMeter(runner=runner)
    info = meter.info()
    assert not info.available and hint in info.note
    assert meter.installed
    with pytest.raises(MeterUnavailableError):
        meter.start()


def test_pmic_not_listed_without_vcgencmd_but_listed_on_a_pi(tmp_path):
    def missing(argv):
        raise CommandNotFound("vcgencmd not found on PATH")

    assert [m.info().name for m in discover_meters(tmp_path, missing)] == ["none"]
    names = [m.info().name for m in discover_meters(tmp_path, lambda argv: out())]
    assert names == ["pmic:rpi5"]


def test_describe_during_a_measurement_does_not_fork(tmp_path):
    calls = []
    meter = PiPmicMeter(runner=lambda argv: calls.append(argv) or out())
    with measurement_window():
        info = meter.probe()
        assert not info.available and "not probed" in info.note
        assert [m.info().name for m in discover_meters(tmp_path, lambda a: calls.append(a) or out())
                ] == ["none"]
    assert calls == []
    assert meter.info().available and len(calls) == 1     # probed once outside, then cached
    meter.info()
    assert len(calls) == 1
