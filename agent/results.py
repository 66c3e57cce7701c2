"""Plain result objects of the agent core. The servicer converts them to and from the proto.

Failures are data: every outcome carries a typed ``Status`` instead of raising across layers.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from hilnas.agent.config import MeasureConfig


class Status(enum.Enum):
    """Mirrors ``hilnas.v1.Status`` (value = proto number)."""

    OK = 1
    INVALID_MODEL = 2
    UNSUPPORTED_OP = 3
    TIMEOUT = 4
    CRASHED = 5
    THROTTLED = 6
    UNSTABLE = 7
    HASH_MISMATCH = 8
    MODEL_TOO_LARGE = 9
    MODEL_NOT_CACHED = 10
    BACKEND_UNAVAILABLE = 11
    BUSY = 12

    @property
    def measured(self) -> bool:
        """True when the result carries latency numbers (possibly flagged)."""
        return self in (Status.OK, Status.THROTTLED, Status.UNSTABLE)


class ModelFormat(enum.Enum):
    ONNX = 1
    TFLITE = 2


@dataclass(frozen=True)
class LatencyStats:
    n: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    ci95_low_ms: float
    ci95_high_ms: float
    cv: float                 # std / mean
    robust_cv: float = 0.0    # 1.4826 * MAD / median; the stability rule uses this


@dataclass(frozen=True)
class EnergyResult:
    meter: str
    meter_kind: str
    gross_mj: float
    net_mj: float
    net_ci95_low_mj: float
    net_ci95_high_mj: float
    idle_power_mw: float
    active_power_mw: float
    windows: int
    estimated: bool = False
    flags: tuple[str, ...] = ()
    note: str = ""            # why the energy is NaN and how to fix it; "" when measured


@dataclass(frozen=True)
class Conditions:
    timestamp_s: float = 0.0
    temperatures_c: dict[str, float] = field(default_factory=dict)
    cpu_freq_khz: dict[str, float] = field(default_factory=dict)
    governor: str = ""
    throttled_bits: int = 0
    throttled: bool = False
    load_avg_1m: float = 0.0
    power_source: str = "unknown"
    runtime_versions: dict[str, str] = field(default_factory=dict)  # package -> version
    thread_affinity: tuple[int, ...] = ()  # CPUs the measurement worker may run on; () = unknown


@dataclass(frozen=True)
class EnergyMeterInfo:
    name: str
    kind: str
    scope: str
    resolution_mj: float
    available: bool
    note: str = ""


@dataclass(frozen=True)
class DeviceInfo:
    fingerprint: str
    hostname: str
    cpu_model: str
    cpu_cores: int
    memory_bytes: int
    os: str
    backends: tuple[str, ...]
    runtime_versions: dict[str, str]
    agent_version: str
    energy_meters: tuple[EnergyMeterInfo, ...] = ()
    simulated: bool = False
    profile: str = ""
    default_backend: str = "onnxruntime"
    max_model_bytes: int = 0
    queue_size: int = 0
    max_message_bytes: int = 0


@dataclass(frozen=True)
class BenchmarkRequest:
    sha256: str
    model: bytes = b""               # empty = take it from the cache
    format: ModelFormat = ModelFormat.ONNX
    backend: str = ""                # "" = the agent's default
    config: MeasureConfig = field(default_factory=MeasureConfig)
    request_id: str = ""
    op_key: str = ""


@dataclass(frozen=True)
class BenchmarkResult:
    status: Status
    error: str = ""
    request_id: str = ""
    sha256: str = ""
    backend: str = ""
    runtime_version: str = ""
    samples_ms: tuple[float, ...] = ()
    latency: LatencyStats | None = None
    energy: EnergyResult | None = None
    conditions_before: Conditions | None = None
    conditions_after: Conditions | None = None
    simulated: bool = False
    remeasured: bool = False
    config: MeasureConfig | None = None
    device_fingerprint: str = ""
    measure_wall_s: float = 0.0
    total_wall_s: float = 0.0
    op_key: str = ""

    @classmethod
    def failure(cls, status: Status, error: str, request: BenchmarkRequest | None = None) -> "BenchmarkResult":
        return cls(status=status, error=error,
                   request_id=request.request_id if request else "",
                   sha256=request.sha256 if request else "",
                   op_key=request.op_key if request else "")
