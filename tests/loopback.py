"""Helpers for tests that run agents on loopback (port 0) with real channels.

A plain module, not a conftest: test files import these by name, and two conftest modules
(tests/ and tests/integration/) would shadow each other under one import name.
"""
from __future__ import annotations

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


def client_for(running, **kw) -> AgentClient:
    return AgentClient(ClientConfig(**{"address": f"127.0.0.1:{running.port}", "retries": 1, "backoff_s": 0.05, **kw}))


def build_lut(store, client, space, device_key: str = "pi", *, skip: tuple[str, ...] = ()) -> None:
    """Measure every op key of ``space`` (but those in ``skip``) on the client's agent into ``store`` (quick settings)."""
    from hilnas.searchers.op_key import decode, enumerate_op_keys, export_op_onnx
    from hilnas.server.lut.builder import LutBuildConfig, LutBuilder

    keys = [k.encode() for k in enumerate_op_keys(space) if k.encode() not in skip]
    LutBuilder(store, device_key, [client], LutBuildConfig(measure=FAST)).build(
        keys, lambda k: export_op_onnx(decode(k)))


# The small NB201 space (8x8 inputs, 4 classes) the search runs of the integration tests use.
SEARCH_OVERRIDES = {"C": 4, "N": 1}


def search_space():
    from hilnas.searchers.spaces import create_space

    return create_space("nb201", in_channels=1, input_size=8, num_classes=4, **SEARCH_OVERRIDES)

