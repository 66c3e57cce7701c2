"""Load: 20 clients x 50 requests against one real agent process. Every request gets a result or
RESOURCE_EXHAUSTED, no two measurement windows overlap, the agent's memory stays bounded, and
Describe and Health are answered all along while Benchmarks queue."""
from __future__ import annotations

import threading
import time

import grpc
import pytest

from agent_process import AgentProcess
from hilnas.agent.config import MeasureConfig
from hilnas.agent.results import Status
from hilnas.server.client import AgentClient, ClientConfig
from testmodels import mlp

pytestmark = pytest.mark.integration
CLIENTS, REQUESTS = 20, 50
QUICK = MeasureConfig(warmup_runs=0, min_runs=3, min_seconds=0.0, cv_threshold=100.0)


@pytest.fixture
def agent(tmp_path):
    running = AgentProcess(tmp_path / "agent", "--queue-size", "16").start()
    yield running
    running.stop()


def test_twenty_clients_fifty_requests_each(agent):
    model = mlp(32, 1, seed=7)
    with AgentClient(ClientConfig(agent.address)) as c:
        assert c.benchmark(model, config=QUICK).status is Status.OK   # cached once; then hash only
    rss_start = agent.rss_mb()
    results, errors, probes = [], [], []
    done = threading.Event()

    def client(i: int) -> None:
        with AgentClient(ClientConfig(agent.address, retries=0)) as c:
            for j in range(REQUESTS):
                try:
                    results.append(c.benchmark(model, config=QUICK, upload=False, request_id=f"{i}-{j}",
                                               timeout_s=120))
                except Exception as err:  # noqa: BLE001 - any exception fails the test below
                    errors.append(repr(err))

    def prober(name: str) -> None:
        """Describe or Health, each from its own monitoring thread, all along."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from hilnas.protos.v1 import agent_pb2, agent_pb2_grpc

        with grpc.insecure_channel(agent.address) as ch:
            call, req = ((agent_pb2_grpc.DeviceAgentStub(ch).Describe, agent_pb2.DescribeRequest()) if name == "describe"
                         else (health_pb2_grpc.HealthStub(ch).Check, health_pb2.HealthCheckRequest()))
            while not done.is_set():
                start = time.monotonic()
                try:
                    call(req, timeout=5)
                    probes.append((name, time.monotonic() - start, "OK"))
                except grpc.RpcError as err:
                    probes.append((name, time.monotonic() - start, err.code().name))
                time.sleep(0.02)

    rss = [rss_start]
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    probers = [threading.Thread(target=prober, args=(name,)) for name in ("describe", "health")]
    for p in probers:
        p.start()
    start = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss.append(agent.rss_mb())
        time.sleep(0.2)
    wall = time.monotonic() - start
    done.set()
    for p in probers:
        p.join(10)

    assert not errors, errors[:3]
    assert len(results) == CLIENTS * REQUESTS
    statuses = {r.status for r in results}
    assert statuses <= {Status.OK, Status.BUSY}, statuses
    measured = [r for r in results if r.status is Status.OK]
    assert len(measured) >= CLIENTS                       # the device kept measuring
    assert all("queue full" in r.error for r in results if r.status is Status.BUSY)
    # One measurement at a time: the windows [before, after] never overlap.
    windows = sorted((r.conditions_before.timestamp_s, r.conditions_after.timestamp_s) for r in measured)
    overlaps = [(a, b) for a, b in zip(windows, windows[1:]) if b[0] < a[1]]
    assert not overlaps, overlaps[:3]
    # Describe and Health were always answered, promptly, while Benchmarks queued.
    assert probes and all(status == "OK" for _, _, status in probes), \
        [p for p in probes if p[2] != "OK"][:5]
    assert max(t for _, t, _ in probes) < 2.0
    assert max(rss) < rss_start + 200, (rss_start, max(rss))
    print(f"\nload: {len(results)} requests in {wall:.1f} s, {len(measured)} measured, "
          f"{len(results) - len(measured)} BUSY, {len(probes)} probes (max {max(t for _, t, _ in probes):.3f} s), "
          f"agent RSS {rss_start:.0f} -> max {max(rss):.0f} MiB")
