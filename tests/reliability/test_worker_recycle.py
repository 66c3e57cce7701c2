"""Defect 4: a worker that ran out of memory is replaced, and so is one that stays large after a
big model; a worker that stays small is kept (LUT builds reuse it)."""
from __future__ import annotations

import psutil
import pytest

from loopback import FAST, client_for, start_agent
from hilnas.agent.config import AgentLimits
from hilnas.agent.results import Status
from testmodels import mlp, oom_model

pytestmark = pytest.mark.integration


def test_worker_is_replaced_after_out_of_memory(tmp_path):
    running = start_agent(tmp_path, limits=AgentLimits(worker_memory_mb=1024, worker_timeout_s=30))
    device = running.agent.device
    try:
        with client_for(running) as c:
            assert c.benchmark(mlp(16, 1), config=FAST).status is Status.OK
            first = device.worker_pid
            assert c.benchmark(mlp(16, 1, seed=1), config=FAST).status is Status.OK
            assert device.worker_pid == first          # a small model keeps its worker
            crashed = c.benchmark(oom_model(), config=FAST)
            assert crashed.status is Status.CRASHED and "out of memory" in crashed.error
            assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
            after = c.benchmark(mlp(16, 1, seed=2), config=FAST)
            assert after.status is Status.OK, after.error
            assert device.worker_pid not in (None, first)
    finally:
        running.stop(0)


def test_worker_that_stays_large_is_replaced(tmp_path):
    running = start_agent(tmp_path, limits=AgentLimits(worker_memory_mb=2048, worker_timeout_s=30,
                                                       worker_recycle_mb=120))
    device = running.agent.device
    try:
        with client_for(running) as c:
            assert c.benchmark(mlp(16, 1), config=FAST).status is Status.OK
            small = device.worker_pid
            assert psutil.Process(small).memory_info().rss < 120 * 2 ** 20
            big = mlp(4000, 1)                          # 61 MiB of weights: ~140 MiB resident
            assert c.benchmark(big, config=FAST).status is Status.OK
            assert device.worker_pid is None            # replaced: nothing large stays behind
            assert not psutil.pid_exists(small) or psutil.Process(small).status() == psutil.STATUS_ZOMBIE
            assert c.benchmark(mlp(16, 1), config=FAST, upload=False).status is Status.OK
            assert device.worker_pid not in (None, small)
    finally:
        running.stop(0)
