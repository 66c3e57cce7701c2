"""HostDevice reports the device's conditions with every result (probed under its root, with
runtime versions and the worker's CPU affinity), and a 'has occurred' throttling bit that
appears during a measurement flags the result THROTTLED."""
from __future__ import annotations

import dataclasses
import hashlib
import os

import pytest
from fixtures.energy_sysfs import cpus, power_supply, thermal_zone

from hilnas.agent.backends.onnx_builder import build_mlp_model
from hilnas.agent.cache import ModelCache
from hilnas.agent.conditions import thread_affinity
from hilnas.agent.config import AgentLimits, MeasureConfig
from hilnas.agent.core import Agent
from hilnas.agent.energy.sysfs import CommandNotFound
from hilnas.agent.host import HostDevice
from hilnas.agent.results import BenchmarkRequest, Status

LIMITS = AgentLimits(worker_memory_mb=1024, worker_timeout_s=30.0)
FAST = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=0.0, max_runs=50, threads=1, cv_threshold=5.0)


class FakeVcgencmd:
    """``vcgencmd get_throttled`` answering the queued bits in turn (then the last one again);
    every other vcgencmd command is 'not installed'."""

    def __init__(self) -> None:
        self.bits: list[int] = [0]
        self.calls = 0

    def __call__(self, argv) -> str:
        if list(argv) != ["vcgencmd", "get_throttled"]:
            raise CommandNotFound("vcgencmd: no PMIC here")
        self.calls += 1
        bits = self.bits.pop(0) if len(self.bits) > 1 else self.bits[0]
        return f"throttled={bits:#x}\n"


@pytest.fixture(scope="module")
def pi(tmp_path_factory):
    root = tmp_path_factory.mktemp("pi")
    cpus(root, [1_800_000, 600_000], governor="ondemand")
    thermal_zone(root, 0, "cpu-thermal", 51_500)
    power_supply(root, "rpi-usb", "USB", online=1)
    vcgencmd = FakeVcgencmd()
    dev = HostDevice(LIMITS, root=root, runner=vcgencmd)
    agent = Agent(dev, ModelCache(tmp_path_factory.mktemp("models"), max_bytes=1 << 24), LIMITS)
    yield dev, agent, vcgencmd
    agent.close()


def _request(config: MeasureConfig = FAST) -> BenchmarkRequest:
    data = build_mlp_model(16, (32,), 4)
    return BenchmarkRequest(sha256=hashlib.sha256(data).hexdigest(), model=data, config=config)


def test_conditions_wiring_probe_under_root(pi):
    dev, _, vcgencmd = pi
    vcgencmd.bits = [0x50000]
    c = dev.conditions()
    assert c.cpu_freq_khz == {"cpu0": 1_800_000, "cpu1": 600_000} and c.governor == "ondemand"
    assert c.temperatures_c == {"cpu-thermal": 51.5}
    assert c.throttled_bits == 0x50000 and not c.throttled     # only 'has occurred' bits
    assert c.power_source == "usb" and c.timestamp_s > 0
    assert c.runtime_versions["python"] and c.runtime_versions["onnxruntime"]
    if dev.worker_pid is None:   # no worker yet: the one to come inherits this process's CPUs
        assert c.thread_affinity == thread_affinity()
    vcgencmd.bits = [0x4]        # throttled now
    assert dev.conditions().throttled


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU pinning on this OS")
def test_conditions_wiring_thread_affinity_is_the_workers(pi):
    dev, agent, vcgencmd = pi
    vcgencmd.bits = [0]
    cpu = min(os.sched_getaffinity(0))
    res = agent.benchmark(_request(dataclasses.replace(FAST, cpu_affinity=(cpu,))))
    assert res.status is Status.OK, res.error
    assert res.conditions_after.thread_affinity == (cpu,)
    assert res.conditions_after.runtime_versions == res.conditions_before.runtime_versions
    res = agent.benchmark(_request())     # unpinned again
    assert res.conditions_after.thread_affinity == thread_affinity()


def test_conditions_wiring_sticky_bit_during_measurement_is_throttled(pi):
    _, agent, vcgencmd = pi
    vcgencmd.bits = [0x0, 0x50000]        # under-voltage/throttling 'has occurred' while measuring
    res = agent.benchmark(_request())
    assert res.status is Status.THROTTLED and "throttling" in res.error
    assert (res.conditions_before.throttled_bits, res.conditions_after.throttled_bits) == (0x0, 0x50000)
    assert res.latency is not None and res.samples_ms   # measured, but flagged


def test_conditions_wiring_old_sticky_bit_is_not_throttled(pi):
    _, agent, vcgencmd = pi
    vcgencmd.bits = [0x50000]              # happened before this measurement, not during it
    res = agent.benchmark(_request())
    assert res.status is Status.OK, res.error
    assert res.conditions_before.throttled_bits == res.conditions_after.throttled_bits == 0x50000
