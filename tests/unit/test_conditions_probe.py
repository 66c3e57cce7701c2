"""probe_conditions on fake sysfs trees: frequencies, governor, temperatures, Pi throttling
bits, load, power source; missing files never raise."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest
from fixtures.energy_sysfs import cpus, power_supply, thermal_zone

from hilnas.agent.conditions import (is_throttled, parse_throttled, probe_conditions,
                                     runtime_versions, thread_affinity)
from hilnas.agent.energy.base import measurement_window
from hilnas.agent.energy.sysfs import CommandError, CommandNotFound, read_text
from hilnas.agent.results import Conditions


def not_a_pi(argv):
    raise CommandNotFound("vcgencmd not found on PATH")


def test_full_tree(tmp_path):
    cpus(tmp_path, [1_500_000, 1_500_000, 600_000, 2_400_000], governor="schedutil")
    thermal_zone(tmp_path, 0, "cpu-thermal", 52_300)
    thermal_zone(tmp_path, 1, "acpitz", 40_000)
    thermal_zone(tmp_path, 2, "acpitz", 41_000)
    bad = thermal_zone(tmp_path, 3, "gpu-thermal", 45_000)
    power_supply(tmp_path, "usb", "USB", online=1)
    seen = []

    def reader(path: Path) -> str:
        if path == bad:       # a disabled zone: reading temp fails with EIO/ENODATA
            raise OSError(errno.ENODATA, "No data available", str(path))
        return read_text(path)

    def runner(argv):
        seen.append(tuple(argv))
        return "throttled=0x50005\n"

    c = probe_conditions(tmp_path, runner, reader=reader, loadavg=lambda: (1.5, 1.0, 0.5),
                         clock=lambda: 1234.5)
    assert c.cpu_freq_khz == {"cpu0": 1_500_000, "cpu1": 1_500_000, "cpu2": 600_000,
                              "cpu3": 2_400_000}
    assert c.governor == "schedutil"
    assert c.temperatures_c == {"cpu-thermal": 52.3, "acpitz": 40.0,
                                "acpitz:thermal_zone2": 41.0}
    assert c.throttled_bits == 0x50005 and c.throttled
    assert c.load_avg_1m == 1.5 and c.power_source == "usb" and c.timestamp_s == 1234.5
    assert seen == [("vcgencmd", "get_throttled")]


def test_only_past_throttling_is_not_throttled_now(tmp_path):
    c = probe_conditions(tmp_path, lambda argv: "throttled=0x50000")
    assert c.throttled_bits == 0x50000 and not c.throttled


def test_passive_trip_point_reached_is_throttled(tmp_path):
    thermal_zone(tmp_path, 0, "x86_pkg_temp", 96_000, passive_trip_mc=95_000)
    assert probe_conditions(tmp_path, not_a_pi).throttled
    thermal_zone(tmp_path, 0, "x86_pkg_temp", 60_000, passive_trip_mc=95_000)
    assert not probe_conditions(tmp_path, not_a_pi).throttled


@pytest.mark.parametrize("runner", [
    not_a_pi,
    lambda argv: (_ for _ in ()).throw(CommandError("vcgencmd: Can't open device file: /dev/vcio")),
    lambda argv: "garbage",
])
def test_empty_tree_and_failing_vcgencmd_never_raise(tmp_path, runner):
    def no_loadavg():
        raise OSError("no loadavg")

    c = probe_conditions(tmp_path / "nothing", runner, loadavg=no_loadavg)
    assert c.cpu_freq_khz == {} and c.temperatures_c == {} and c.governor == ""
    assert c.throttled_bits == 0 and not c.throttled and c.load_avg_1m == 0.0
    assert c.power_source == "unknown"


def test_parse_throttled():
    assert parse_throttled("throttled=0x0\n") == 0
    assert parse_throttled("throttled=0xe0000") == 0xE0000
    assert parse_throttled("error") is None


def test_is_throttled():
    calm = Conditions(throttled_bits=0x0)
    assert not is_throttled(calm, calm)
    assert is_throttled(calm, Conditions(throttled_bits=0x4, throttled=True))
    assert is_throttled(Conditions(throttled=True), calm)
    # A sticky "throttling has occurred" bit that appeared during the measurement.
    assert is_throttled(calm, Conditions(throttled_bits=0x40000))
    assert not is_throttled(Conditions(throttled_bits=0x40000), Conditions(throttled_bits=0x40000))
    assert not is_throttled(None, None)


def test_affinity_and_versions_of_this_process():
    assert thread_affinity() == () or all(isinstance(c, int) for c in thread_affinity())
    versions = runtime_versions()
    assert "python" in versions and "numpy" in versions


def test_no_vcgencmd_fork_inside_a_window(tmp_path):
    calls = []
    with measurement_window():
        c = probe_conditions(tmp_path, lambda argv: calls.append(argv) or "throttled=0x4")
    assert calls == [] and c.throttled_bits == 0
