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


class AgentError(Exception):
    """A request the agent refuses, with the typed status the client will see."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
