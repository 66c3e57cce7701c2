"""The one device interface: the real host (models run in worker processes) and the simulated
device (a device model costs the graph) both implement ``Device``, so the agent core, the LUT
builder and the searchers cannot tell them apart (TVM's LocalRunner/RPCRunner idea).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hilnas.agent.config import MeasureConfig
from hilnas.agent.results import Conditions, DeviceInfo, EnergyResult, ModelFormat, Status


@dataclass(frozen=True)
class StoredModel:
    """A validated model in the agent's cache."""

    sha256: str
    path: Path          # file holding the bytes; the worker loads from here
    format: ModelFormat
    size_bytes: int


@dataclass(frozen=True)
class MeasureOutcome:
    """One run of the measurement protocol on a device (before the stability check)."""

    status: Status
    error: str = ""
    samples_ms: tuple[float, ...] = ()   # timed samples, ms
    runtime_version: str = ""            # e.g. "onnxruntime 1.31.1"
    measure_wall_s: float = 0.0          # warm-up + timed runs, s (the model's own run time)
    energy: EnergyResult | None = None


class Device(Protocol):
    """Where a model runs. Implementations: ``host.HostDevice``, ``sim.device.SimulatedDevice``."""

    def info(self) -> DeviceInfo:
        """Describe the device (the core fills in the limit fields)."""

    def conditions(self) -> Conditions:
        """The device state now (temperatures, frequencies, throttling, load)."""

    def measure(self, model: StoredModel, backend: str, config: MeasureConfig, *, timeout_s: float) -> MeasureOutcome:
        """Run the measurement protocol once; never raises for a bad model (returns a status)."""

    def close(self) -> None:
        """Release worker processes."""


def check_config(config: MeasureConfig, usable_cpus: set[int] | None) -> None:
    """Raise ValueError for a config no device can honour, or this one cannot (CPU ids it does not
    offer). Every ``Device`` calls it, so the host and the simulated device refuse the same."""
    from hilnas.agent.energy.protocol import MIN_WINDOW_S, MIN_WINDOWS

    if config.threads < 0:
        raise ValueError(f"threads must be >= 0, got {config.threads}")
    idle_s, window_s, windows = config.energy_protocol()
    if window_s < MIN_WINDOW_S or windows < MIN_WINDOWS or idle_s < 0:
        raise ValueError(f"the energy protocol needs windows of >= {MIN_WINDOW_S:g} s, at least "
                         f"{MIN_WINDOWS} of them and a positive idle phase (got {windows} x "
                         f"{window_s:g} s, idle {idle_s:g} s)")
    if config.cpu_affinity and usable_cpus is not None:
        missing = sorted(set(config.cpu_affinity) - usable_cpus)
        if missing:
            raise ValueError(f"cpu_affinity asks for CPUs {missing}, which this device does not "
                             f"offer (usable: {sorted(usable_cpus)})")


class AgentError(Exception):
    """A request the agent refuses, with the typed status the client will see."""

    def __init__(self, status: Status, message: str, request=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.request = request   # what of the refused request to echo (request_id, op_key, sha256), if known
