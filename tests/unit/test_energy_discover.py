"""discover_meters finds what a (fake) device really has, usable or not, and best_meter picks."""
from __future__ import annotations

from fixtures.energy_sysfs import hwmon, power_supply, rapl_package, rapl_zone

from hilnas.agent.energy.base import NoneMeter
from hilnas.agent.energy.discover import best_meter, discover_meters
from hilnas.agent.energy.sysfs import CommandNotFound


def no_vcgencmd(argv):
    raise CommandNotFound("vcgencmd not found on PATH")


def test_laptop_like_tree(tmp_path):
    rapl_package(tmp_path, energy_uj=1)
    rapl_zone(tmp_path, "intel-rapl:1", "psys", 1)
    hwmon(tmp_path, 0, "acpitz", {"temp1_input": 40000}, device=None)
    power_supply(tmp_path, "BAT0", "Battery", status="Discharging", power_now=9_000_000,
                 voltage_now=11_000_000, present=1)
    power_supply(tmp_path, "AC", "Mains", online=0)
    meters = discover_meters(tmp_path, no_vcgencmd)
    infos = [m.info() for m in meters]
    assert [(i.name, i.kind, i.scope) for i in infos] == [
        ("rapl:package-0", "counter", "package"), ("rapl:psys", "counter", "platform"),
        ("battery:BAT0", "battery", "battery")]
    assert all(i.available for i in infos)
    assert best_meter(meters).info().name == "rapl:psys"


def test_pi_with_ina219(tmp_path):
    hwmon(tmp_path, 2, "ina219", {"power1_input": 3_000_000, "curr1_input": 600,
                                  "in1_input": 5000})
    meters = discover_meters(tmp_path, no_vcgencmd)
    assert [m.info().name for m in meters] == ["hwmon:ina219:1-0040"]
    assert best_meter(meters) is meters[0]


def test_nothing_found_is_an_explicit_none(tmp_path):
    meters = discover_meters(tmp_path, no_vcgencmd)
    assert len(meters) == 1 and isinstance(meters[0], NoneMeter)
    info = meters[0].info()
    assert info.kind == "none" and not info.available and "powercap" in info.note
    assert best_meter(meters) is None


def test_estimate_only_when_asked(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/stat").write_text("cpu  1 0 1 100 0 0 0 0 0 0\n")
    meters = discover_meters(tmp_path, no_vcgencmd, estimate_w=(2.0, 6.0))
    assert [m.info().kind for m in meters] == ["estimate"]
    assert best_meter(meters) is meters[0]
