"""hwmon power monitors: INA2xx (µW / mA / mV) and INA3221 (labelled channels), found by name,
integrated with the trapezoid rule, and their failures (missing, vanished, absurd)."""
from __future__ import annotations

import shutil
import time

import pytest
from fixtures.energy_sysfs import FakeClock, hwmon, ina3221, write

from hilnas.agent.energy.base import ABSURD_READING, MeterUnavailableError, MeterVanishedError
from hilnas.agent.energy.hwmon import HwmonPowerMeter, find_power_monitors


def test_found_by_name_whatever_the_number(tmp_path):
    hwmon(tmp_path, 0, "cpu_thermal", {"temp1_input": 45000}, device=None)
    hwmon(tmp_path, 3, "ina219", {"power1_input": 1_000_000}, device="1-0040")
    hwmon(tmp_path, 12, "ina219", {"power1_input": 2_000_000}, device="1-0041")
    found = find_power_monitors(tmp_path)
    assert [(s.name, s.device, s.path.name) for s in found] == [
        ("ina219", "1-0040", "hwmon3"), ("ina219", "1-0041", "hwmon12")]
    assert found[1].meter_name == "hwmon:ina219:1-0041"
    # The sensor at 1-0041 is read from hwmon12, not from "the second hwmon".
    meter = HwmonPowerMeter("ina219", device="1-0041", root=tmp_path, clock=FakeClock())
    meter.read()
    assert meter.info().name == "hwmon:ina219:1-0041" and meter.info().available


def test_power1_input_is_microwatts_and_integrated_by_trapezoid(tmp_path):
    d = hwmon(tmp_path, 1, "ina219", {"power1_input": 2_000_000, "curr1_input": 400,
                                     "in1_input": 5000})
    clock = FakeClock()
    meter = HwmonPowerMeter("ina219", root=tmp_path, clock=clock)
    assert meter.read().energy_j == 0.0
    clock.advance(1.0)
    write(tmp_path, "sys/class/hwmon/hwmon1/power1_input", 4_000_000)
    r = meter.read()
    assert r.energy_j == pytest.approx(3.0)      # (2 W + 4 W) / 2 x 1 s
    assert r.timestamp_s == clock.t
    assert d.name == "hwmon1"


def test_milliamps_times_millivolts_without_a_power_file(tmp_path):
    hwmon(tmp_path, 0, "ina226", {"curr1_input": 500, "in1_input": 5000, "in0_input": 2})
    clock = FakeClock()
    meter = HwmonPowerMeter("ina226", root=tmp_path, clock=clock)
    meter.read()
    clock.advance(2.0)
    assert meter.read().energy_j == pytest.approx(5.0)   # 0.5 A x 5 V x 2 s


def test_ina3221_channels_by_label_input_rail_is_the_total(tmp_path):
    ina3221(tmp_path, 2, [("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 300),
                          ("VDD_SOC", 5000, 200)], device="1-0040")
    clock = FakeClock()
    meter = HwmonPowerMeter("ina3221", root=tmp_path, clock=clock)
    meter.read()
    clock.advance(1.0)
    r = meter.read()
    assert r.energy_j == pytest.approx(5.0)           # VDD_IN, not the sum of all three
    assert r.domains_j["VDD_CPU_GPU_CV"] == pytest.approx(1.5)
    assert r.domains_j["VDD_SOC"] == pytest.approx(1.0)
    assert meter.info().scope == "board"


def test_ina3221_disabled_channel_and_no_input_rail_sums(tmp_path):
    ina3221(tmp_path, 0, [("VDD_GPU", 1000, 2000), ("VDD_CPU", 1000, 1000),
                          ("VDD_DDR", 1000, 500)], disabled=(3,))
    clock = FakeClock()
    meter = HwmonPowerMeter("ina3221", root=tmp_path, clock=clock)
    meter.read()
    clock.advance(1.0)
    r = meter.read()
    assert set(r.domains_j) == {"VDD_GPU", "VDD_CPU"}
    assert r.energy_j == pytest.approx(3.0)
    assert meter.info().scope == "rails"


def test_missing_sensor_is_unavailable(tmp_path):
    hwmon(tmp_path, 0, "coretemp", {"temp1_input": 40000}, device=None)
    meter = HwmonPowerMeter("ina219", root=tmp_path)
    info = meter.info()
    assert not info.available and "ina219" in info.note
    with pytest.raises(MeterUnavailableError):
        meter.read()


def test_vanished_sensor_raises_on_the_next_read(tmp_path):
    hwmon(tmp_path, 0, "ina219", {"power1_input": 1_000_000})
    meter = HwmonPowerMeter("ina219", root=tmp_path, clock=FakeClock())
    meter.read()
    shutil.rmtree(tmp_path / "sys/class/hwmon/hwmon0")
    with pytest.raises(MeterVanishedError):
        meter.read()


@pytest.mark.parametrize("uw", [-1_500_000, 10**12])   # negative power, 1 MW
def test_absurd_samples_are_flagged(tmp_path, uw):
    hwmon(tmp_path, 0, "ina219", {"power1_input": 1_000_000})
    clock = FakeClock()
    meter = HwmonPowerMeter("ina219", root=tmp_path, clock=clock)
    assert meter.read().flags == ()
    write(tmp_path, "sys/class/hwmon/hwmon0/power1_input", uw)
    clock.advance(0.1)
    assert ABSURD_READING in meter.read().flags


def test_sampling_thread_runs_and_stops(tmp_path):
    hwmon(tmp_path, 0, "ina219", {"power1_input": 1_000_000})
    meter = HwmonPowerMeter("ina219", root=tmp_path, period_s=0.002)
    assert meter.start() is True
    assert meter.start() is False          # already running: the caller must not stop it
    deadline = time.monotonic() + 10
    while len(meter.trace()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    meter.stop()
    assert len(meter.trace()) >= 3
    assert all(p == pytest.approx(1.0) for _, p in meter.trace())
    assert meter.read().energy_j > 0
