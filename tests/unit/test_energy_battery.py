"""Battery through /sys/class/power_supply: µA vs mA, inverted signs, charging phones,
external power, missing batteries, and the power source of the conditions."""
from __future__ import annotations

import pytest
from fixtures.energy_sysfs import FakeClock, power_supply, write

from hilnas.agent.energy.base import (CHARGING, CURRENT_UNIT_MA, EXTERNAL_POWER, SIGN_INVERTED,
                                      MeterUnavailableError)
from hilnas.agent.energy.battery import BatteryMeter, find_batteries, power_source
from hilnas.agent.energy.protocol import energy_valid, measure_energy

BAT = "sys/class/power_supply/battery"


def two_reads(meter, clock, seconds=1.0):
    first = meter.read()
    clock.advance(seconds)
    return first, meter.read()


def test_abi_units_microamps_negative_while_discharging(tmp_path):
    power_supply(tmp_path, "battery", "Battery", status="Discharging", current_now=-500_000,
                 voltage_now=3_800_000, present=1)
    clock = FakeClock()
    _, r = two_reads(BatteryMeter(root=tmp_path, clock=clock), clock)
    assert r.energy_j == pytest.approx(1.9)          # 0.5 A x 3.8 V x 1 s
    assert r.flags == ()


def test_vendor_milliamps_positive_discharge_detected_and_flagged(tmp_path):
    power_supply(tmp_path, "battery", "Battery", status="Discharging", current_now=500,
                 voltage_now=3800, present=1)               # mA and mV, discharge positive
    clock = FakeClock()
    first, r = two_reads(BatteryMeter(root=tmp_path, clock=clock), clock)
    assert r.energy_j == pytest.approx(1.9)
    assert {CURRENT_UNIT_MA, SIGN_INVERTED} <= set(first.flags)
    assert CHARGING not in r.flags


def test_explicit_unit_overrides_the_guess(tmp_path):
    power_supply(tmp_path, "battery", "Battery", status="Discharging", current_now=-8000,
                 voltage_now=3_800_000)                    # 8 mA in µA: deep idle
    clock = FakeClock()
    _, r = two_reads(BatteryMeter(root=tmp_path, clock=clock, current_unit="uA"), clock)
    assert r.energy_j == pytest.approx(0.008 * 3.8)


def test_charging_phone_is_refused_by_the_protocol(tmp_path):
    power_supply(tmp_path, "battery", "Battery", status="Charging", current_now=1_200_000,
                 voltage_now=4_200_000, present=1)
    power_supply(tmp_path, "usb", "USB", online=1)
    clock = FakeClock()
    meter = BatteryMeter(root=tmp_path, clock=clock)
    info = meter.info()
    assert info.available and "unplug" in info.note

    def run_for(s):
        clock.advance(s)
        return 100

    result = measure_energy(meter, run_for, clock=clock, sleep=clock.advance)
    assert CHARGING in result.flags and not energy_valid(result)
    assert result.net_mj != result.net_mj              # NaN: not reported as energy
    meter.stop()


def test_plugged_in_but_not_charging_is_external_power(tmp_path):
    power_supply(tmp_path, "battery", "Battery", status="Not charging", current_now=0,
                 voltage_now=4_350_000)
    power_supply(tmp_path, "ac", "Mains", online=1)
    r = BatteryMeter(root=tmp_path, clock=FakeClock()).read()
    assert EXTERNAL_POWER in r.flags


def test_sign_flip_mid_run_means_charging_even_if_status_lags(tmp_path):
    power_supply(tmp_path, "battery", "Battery", current_now=-400_000, voltage_now=3_900_000)
    clock = FakeClock()
    meter = BatteryMeter(root=tmp_path, clock=clock)
    assert CHARGING not in meter.read().flags
    write(tmp_path, f"{BAT}/current_now", 900_000)
    clock.advance(0.5)
    assert CHARGING in meter.read().flags


def test_laptop_battery_power_now(tmp_path):
    power_supply(tmp_path, "BAT0", "Battery", status="Discharging", power_now=12_500_000,
                 voltage_now=11_400_000, present=1)
    clock = FakeClock()
    _, r = two_reads(BatteryMeter("BAT0", root=tmp_path, clock=clock), clock, 2.0)
    assert r.energy_j == pytest.approx(25.0)


def test_missing_battery_is_unavailable(tmp_path):
    power_supply(tmp_path, "usb", "USB", online=0)
    assert find_batteries(tmp_path) == []
    meter = BatteryMeter(root=tmp_path)
    assert not meter.info().available
    with pytest.raises(MeterUnavailableError):
        meter.read()


@pytest.mark.parametrize("supplies, expected", [
    ([("battery", "Battery", {"present": 1, "status": "Discharging"})], "battery"),
    ([("battery", "Battery", {"present": 1}), ("usb", "USB", {"online": 1})], "usb"),
    ([("battery", "Battery", {"present": 1}), ("ac", "Mains", {"online": 1}),
      ("usb", "USB", {"online": 0})], "ac"),
    ([], "unknown"),
])
def test_power_source(tmp_path, supplies, expected):
    for name, kind, files in supplies:
        power_supply(tmp_path, name, kind, **files)
    assert power_source(tmp_path) == expected
