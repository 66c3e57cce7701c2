"""Energy meters, energy results and measurement conditions over a real gRPC channel: a host
agent on a fake sysfs tree (meters usable and not, a sensor that vanishes mid-measurement) and
a simulated agent whose energy comes with its interval."""
from __future__ import annotations

import dataclasses
import errno
import math
import os
import time
from pathlib import Path

import pytest
from fixtures.energy_sysfs import (cpus, hwmon, nonroot_reader, power_supply, rapl_package,
                                   rapl_zone, thermal_zone)

from loopback import FAST, client_for
from hilnas.agent.config import AgentLimits, ServeConfig
from hilnas.agent.energy import energy_valid
from hilnas.agent.energy.sysfs import CommandNotFound
from hilnas.agent.host import HostDevice
from hilnas.agent.results import Status
from hilnas.agent.server import create_server
from testmodels import mlp

pytestmark = pytest.mark.integration

LIMITS = AgentLimits(worker_timeout_s=30.0, worker_memory_mb=2048)
ENERGY = dataclasses.replace(FAST, energy=True)
PSYS_W = 3.0


class VanishingPsys:
    """The fake tree's reader: a psys counter growing at ``PSYS_W`` that can be made to vanish
    (ENODEV, as when the driver is unbound) on its n-th next read; other files are read as an
    unprivileged agent would read them."""

    def __init__(self, counter: Path):
        self.counter = counter
        self.t0 = time.monotonic()
        self.reads = 0
        self.vanish_at: int | None = None

    def __call__(self, path: Path) -> str:
        if path != self.counter:
            return nonroot_reader(path)
        self.reads += 1
        if self.vanish_at is not None and self.reads >= self.vanish_at:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), str(path))
        return str(int(PSYS_W * (time.monotonic() - self.t0) * 1e6))


def vcgencmd(argv) -> str:
    if list(argv) == ["vcgencmd", "get_throttled"]:
        return "throttled=0x0\n"
    raise CommandNotFound("vcgencmd: no PMIC here")


@pytest.fixture(scope="module")
def laptop(tmp_path_factory):
    """A host agent on a laptop-like tree: a root-only package counter, a readable psys
    counter, an INA219 rail, two CPUs, a thermal zone and mains power."""
    root = tmp_path_factory.mktemp("laptop")
    os.chmod(rapl_package(root, energy_uj=5, subzones=()), 0o400)
    reader = VanishingPsys(rapl_zone(root, "intel-rapl:1", "psys", 0))
    hwmon(root, 3, "ina219", {"power1_input": 2_500_000, "curr1_input": 500, "in1_input": 5000})
    cpus(root, [2_400_000, 800_000], governor="powersave")
    thermal_zone(root, 0, "x86_pkg_temp", 47_000)
    power_supply(root, "AC", "Mains", online=1)
    device = HostDevice(LIMITS, root=root, runner=vcgencmd, reader=reader)
    cfg = ServeConfig(host="127.0.0.1", port=0, cache_dir=str(root / "cache"), limits=LIMITS)
    running = create_server(cfg, device=device)
    yield running, reader
    running.stop(0)


def test_describe_lists_the_meters_the_device_really_has(laptop):
    running, _ = laptop
    with client_for(running) as c:
        meters = {m.name: m for m in c.describe().energy_meters}
    assert list(meters) == ["rapl:package-0", "rapl:psys", "hwmon:ina219:1-0040"]
    locked = meters["rapl:package-0"]
    assert locked.kind == "counter" and not locked.available
    assert "CVE-2020-8694" in locked.note and "chmod" in locked.note   # why, and the fix
    assert meters["rapl:psys"].available and meters["rapl:psys"].scope == "platform"
    assert meters["hwmon:ina219:1-0040"].kind == "sampled_rail" and meters["hwmon:ina219:1-0040"].available


def test_conditions_arrive_with_every_result(laptop):
    running, _ = laptop
    with client_for(running) as c:
        r = c.benchmark(mlp(16, 1, seed=3), config=FAST)
    assert r.status is Status.OK, r.error
    assert r.energy is None   # not asked for
    for cond in (r.conditions_before, r.conditions_after):
        assert cond.cpu_freq_khz == {"cpu0": 2_400_000, "cpu1": 800_000} and cond.governor == "powersave"
        assert cond.temperatures_c == {"x86_pkg_temp": 47.0} and cond.power_source == "ac"
        assert cond.throttled_bits == 0 and not cond.throttled
        assert cond.runtime_versions["onnxruntime"] and cond.runtime_versions["python"]
        assert cond.thread_affinity and set(cond.thread_affinity) <= set(range(os.cpu_count() or 1))


@pytest.mark.slow
def test_vanishing_meter_gives_nan_and_a_flag_and_latency_stays_ok(laptop):
    running, reader = laptop
    # Reads of the energy protocol: 2 info, start, after idle, window 1 start/end, window 2 start.
    reader.vanish_at = reader.reads + 7
    with client_for(running) as c:
        r = c.benchmark(mlp(16, 1, seed=4), config=ENERGY)
        assert r.status is Status.OK, r.error
        assert r.latency is not None and r.latency.n >= FAST.min_runs
        e = r.energy
        assert e.meter == "rapl:psys" and "meter_vanished" in e.flags and not energy_valid(e)
        assert math.isnan(e.gross_mj) and math.isnan(e.net_mj) and math.isnan(e.net_ci95_low_mj)
        assert e.windows >= 1 and "No such device" in e.note   # vanished after a window ran
        # The sensor stays gone: the next request says so at once, and latency is still measured.
        again = c.benchmark(mlp(16, 1, seed=4), config=ENERGY)
    assert again.status is Status.OK and again.latency is not None
    assert again.energy.flags == ("meter_unavailable",) and math.isnan(again.energy.net_mj)


def test_simulated_device_returns_energy_with_its_interval(sim_agent):
    with client_for(sim_agent) as c:
        info = c.describe()
        r = c.benchmark(mlp(64, 2, seed=5), config=ENERGY)
    assert [m.kind for m in info.energy_meters] == ["simulated"] and info.energy_meters[0].available
    assert r.status is Status.OK and r.simulated
    e = r.energy
    assert e.meter_kind == "simulated" and energy_valid(e) and e.windows >= 2
    assert e.gross_mj > e.net_mj > 0 and e.net_ci95_low_mj <= e.net_mj <= e.net_ci95_high_mj
    assert r.config.energy and r.config.energy_windows == 5   # the effective config comes back
