"""Typed configuration of the agent: how to time a model, and what the agent accepts.

Library code takes these objects; only ``hilnas.agent.cli`` parses flags.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class MeasureConfig:
    """How to time one model (TVM's ``number``/``repeat``/``min_repeat_ms`` idea, one object)."""

    warmup_runs: int = 10          # untimed runs: caches, allocator and lazy kernels settle
    min_runs: int = 30             # at least this many timed runs ...
    min_seconds: float = 0.5       # ... and at least this much timed wall time (s)
    max_runs: int = 10_000         # cap so a 1 us model does not loop forever
    threads: int = 0               # intra-op threads; 0 = backend default
    cpu_affinity: tuple[int, ...] = ()  # pin the worker to these CPUs; () = no pinning
    cooldown_seconds: float = 0.0  # idle after measuring, so the next model starts cool
    energy: bool = False           # also measure energy when a meter is available
    cv_threshold: float = 0.10     # robust CV (MAD-based) at or above this makes a result unstable
    remeasure_unstable: bool = True  # re-measure an unstable result once before flagging it
    timeout_s: float = 0.0         # wall-time limit for the model; 0 = agent default
    # The energy protocol (when ``energy``): idle | windows x window | idle. 0 = the default.
    energy_window_s: float = 0.0   # one window of back-to-back inferences, s; 0 = 1.0, at least 1.0
    energy_windows: int = 0        # windows (the CI's sample size); 0 = 5, at least 5
    energy_idle_s: float = 0.0     # idle-power phase before and after the windows, each, s; 0 = 1.0

    def with_defaults(self, *, default_timeout_s: float) -> "MeasureConfig":
        """Fill the 0 = default fields with the agent's values (the energy protocol's only when
        energy is asked for, so a latency-only config stays as it was)."""
        filled = replace(
            self,
            max_runs=self.max_runs or 10_000,
            cv_threshold=self.cv_threshold or 0.10,
            timeout_s=self.timeout_s or default_timeout_s,
        )
        if not self.energy:
            return filled
        idle_s, window_s, windows = self.energy_protocol()
        return replace(filled, energy_idle_s=idle_s, energy_window_s=window_s, energy_windows=windows)

    def energy_protocol(self) -> tuple[float, float, int]:
        """(idle_s, window_s, windows) of the energy protocol, 0 = default filled in."""
        return (self.energy_idle_s or 1.0, self.energy_window_s or 1.0, self.energy_windows or 5)


@dataclass(frozen=True)
class AgentLimits:
    """What the agent accepts; every check happens before a model runs."""

    max_model_bytes: int = 256 * 1024 * 1024   # largest model accepted (bytes)
    max_message_bytes: int = 272 * 1024 * 1024  # gRPC send/receive limit: model limit + 16 MiB of framing
    max_nodes: int = 20_000                    # operators in one graph
    max_tensor_elements: int = 256 * 1024 * 1024  # elements in any one declared tensor (1 GiB fp32)
    worker_timeout_s: float = 120.0            # default wall-time limit per model (s)
    worker_memory_mb: int = 4096               # address-space limit of the worker process (MiB)
    worker_recycle_mb: int = 512               # a worker resident above this after a request is replaced (MiB; 0 = never)
    queue_size: int = 16                       # requests that may wait for the measurement slot
    cache_bytes: int = 1024 * 1024 * 1024      # model cache on disk (bytes), least recently used evicted


@dataclass(frozen=True)
class ServeConfig:
    """Where and how the gRPC server listens."""

    host: str = "127.0.0.1"
    port: int = 50061
    token: str | None = None          # required from clients when set
    insecure: bool = False            # allow a non-loopback bind without a token
    tls_cert: str | None = None       # server certificate chain (PEM path)
    tls_key: str | None = None        # server private key (PEM path)
    tls_client_ca: str | None = None  # when set, clients must present a certificate signed by it
    backend: str = "onnxruntime"      # default backend
    simulate: str | None = None       # simulated device profile name or path; None = real device
    seed: int = 0                     # seed of the simulated device's noise
    realtime: bool = False            # the simulated device takes the time it reports (False: instant)
    cache_dir: str | None = None      # model cache folder; None = a per-user temp folder
    limits: AgentLimits = field(default_factory=AgentLimits)
