"""RAPL through powercap sysfs: zones by name, wrap-around, backwards counters, the root-only
energy_uj of Linux >= 5.10, and a zone that disappears."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from fixtures.energy_sysfs import (FakeClock, nonroot_reader, rapl_package, rapl_zone, write)

from hilnas.agent.energy.base import (COUNTER_BACKWARDS, COUNTER_WRAPPED, MeterPermissionError,
                                      MeterVanishedError)
from hilnas.agent.energy.discover import discover_meters
from hilnas.agent.energy.rapl import RaplMeter, find_rapl_zones
from hilnas.agent.energy.sysfs import CommandNotFound


def no_vcgencmd(argv):
    raise CommandNotFound("vcgencmd not found on PATH")


def test_zones_are_found_by_name_not_number(tmp_path):
    # psys got the lower number here; an MMIO duplicate of package-0 and the control dir exist.
    rapl_zone(tmp_path, "intel-rapl:0", "psys", 5)
    rapl_zone(tmp_path, "intel-rapl:1", "package-0", 7)
    rapl_zone(tmp_path, "intel-rapl:1:0", "core", 1)
    rapl_zone(tmp_path, "intel-rapl:1:1", "dram", 2)
    rapl_zone(tmp_path, "intel-rapl-mmio:0", "package-0", 99)
    write(tmp_path, "sys/class/powercap/intel-rapl/enabled", 1)

    zones = find_rapl_zones(tmp_path)
    assert [z.name for z in zones] == ["package-0", "psys"]
    assert zones[0].path.name == "intel-rapl:1"
    assert [n for n, _ in zones[0].subzones] == ["core", "dram"]

    clock = FakeClock()
    meter = RaplMeter("package-0", root=tmp_path, clock=clock)
    first = meter.read()
    assert first.energy_j == 0.0 and set(first.domains_j) == {"package-0", "package-0/core",
                                                              "package-0/dram"}
    write(tmp_path, "sys/class/powercap/intel-rapl:1/energy_uj", 7 + 2_500_000)
    write(tmp_path, "sys/class/powercap/intel-rapl:1:1/energy_uj", 2 + 400_000)
    clock.advance(1.0)
    second = meter.read()
    assert second.energy_j == pytest.approx(2.5)
    assert second.domains_j["package-0/dram"] == pytest.approx(0.4)
    assert second.timestamp_s == clock.t and second.flags == ()
    info = meter.info()
    assert (info.name, info.kind, info.scope, info.available) == ("rapl:package-0", "counter",
                                                                  "package", True)


def test_counter_wrap_is_unwrapped_with_max_energy_range(tmp_path):
    rng = 1_000_000_000            # 1 kJ range, so the wrap is easy to place
    path = rapl_package(tmp_path, energy_uj=rng - 1_000_000, subzones=(), max_range_uj=rng)
    clock = FakeClock()
    meter = RaplMeter(root=tmp_path, clock=clock)
    meter.read()
    path.write_text("2000000\n")   # 1 J to the top, wrapped, 2 J more
    clock.advance(1.0)
    r = meter.read()
    assert r.energy_j == pytest.approx(3.0)
    assert COUNTER_WRAPPED in r.flags


def test_counter_going_backwards_is_flagged_not_counted(tmp_path):
    path = rapl_package(tmp_path, energy_uj=5_000_000, subzones=())
    clock = FakeClock()
    meter = RaplMeter(root=tmp_path, clock=clock)
    meter.read()
    path.write_text("4000000\n")   # as a wrap this would be ~262 kJ in 1 s: not physical
    clock.advance(1.0)
    r = meter.read()
    assert COUNTER_BACKWARDS in r.flags and COUNTER_WRAPPED not in r.flags
    assert r.energy_j == 0.0


def test_root_only_energy_uj_is_unavailable_with_the_fix(tmp_path):
    path = rapl_package(tmp_path, energy_uj=123)
    os.chmod(path, 0o400)          # what Linux >= 5.10 does (owner root, no 'other' read)
    meter = RaplMeter(root=tmp_path, reader=nonroot_reader)
    info = meter.info()
    assert not info.available
    assert "5.10" in info.note and "udev" in info.note and "chmod" in info.note
    assert "/sys/class/powercap/intel-rapl:0/energy_uj" in info.note
    with pytest.raises(MeterPermissionError):
        meter.read()
    meters = discover_meters(tmp_path, no_vcgencmd, reader=nonroot_reader)
    assert [m.info().name for m in meters] == ["rapl:package-0", "none"]
    assert not meters[0].info().available and "udev" in meters[0].info().note


@pytest.mark.skipif(not hasattr(os, "fork") or os.geteuid() != 0,
                    reason="needs root to drop to an unprivileged user")
def test_permission_error_as_a_real_unprivileged_user():
    # The real reader (open()) in a child that dropped to 'nobody', on a chmod 000 counter.
    base = Path(tempfile.mkdtemp(prefix="hilnas-rapl-"))
    try:
        os.chmod(base, 0o755)
        path = rapl_package(base, energy_uj=123, subzones=())
        for p in base.rglob("*"):
            os.chmod(p, 0o755 if p.is_dir() else 0o444)
        os.chmod(path, 0o000)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:   # child: never return into pytest
            status = 1
            try:
                os.close(rfd)
                os.setgid(65534)
                os.setuid(65534)
                info = RaplMeter(root=base).info()
                os.write(wfd, json.dumps([info.available, info.note]).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as f:
            out = f.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        available, note = json.loads(out)
        assert available is False and "root" in note and "udev" in note
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_zone_that_disappears_raises_vanished(tmp_path):
    rapl_package(tmp_path, energy_uj=10, subzones=())
    meter = RaplMeter(root=tmp_path, clock=FakeClock())
    meter.read()
    shutil.rmtree(tmp_path / "sys/class/powercap/intel-rapl:0")
    with pytest.raises(MeterVanishedError):
        meter.read()


def test_missing_zone_is_unavailable(tmp_path):
    info = RaplMeter("package-0", root=tmp_path).info()
    assert not info.available and "package-0" in info.note
