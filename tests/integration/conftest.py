"""Agents on loopback (port 0) with real channels."""
from __future__ import annotations


import pytest

from hilnas.agent.config import AgentLimits, MeasureConfig, ServeConfig
from hilnas.agent.server import create_server
from hilnas.server.client import AgentClient, ClientConfig

# Quick but real measurements.
FAST = MeasureConfig(warmup_runs=2, min_runs=5, min_seconds=0.02, cv_threshold=5.0)


def start_agent(tmp_path, **overrides):
    limits = overrides.pop("limits", AgentLimits(worker_timeout_s=20.0, worker_memory_mb=2048))
    overrides.setdefault("host", "127.0.0.1")
    overrides.setdefault("port", 0)
    cfg = ServeConfig(cache_dir=str(tmp_path / "cache"), limits=limits, **overrides)
    return create_server(cfg)


@pytest.fixture
def host_agent(tmp_path):
    running = start_agent(tmp_path)
    yield running
    running.stop(0)


@pytest.fixture
def sim_agent(tmp_path):
    running = start_agent(tmp_path, simulate="raspi4", seed=1)
    yield running
    running.stop(0)


def client_for(running, **kw) -> AgentClient:
    return AgentClient(ClientConfig(address=f"127.0.0.1:{running.port}", retries=1, backoff_s=0.05, **kw))
