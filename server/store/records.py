"""What the run store holds, as plain frozen records, and the errors it raises.

``LutId`` names one LUT, ``LutRow`` is one measured op, ``LutInfo`` summarises a LUT; the
``*Record`` classes are what the store returns for devices, runs and models. ``config_hash``
names a measurement config inside a ``LutId``. The ``_check_*`` helpers refuse values SQLite
would store silently wrong (NaN as NULL, multi-line keys) before any write.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hilnas.server.store import schema
from hilnas.server.store.frames import _json_default, _plain

if TYPE_CHECKING:  # pragma: no cover
    from hilnas.agent.results import BenchmarkResult

# Statuses whose rows carry latency numbers (mirrors agent.results.Status.measured).
MEASURED_STATUSES = frozenset({"ok", "throttled", "unstable"})
_FLOAT_FIELDS = ("median_ms", "p90_ms", "mean_ms", "std_ms", "ci95_low_ms", "ci95_high_ms",
                 "energy_mj", "energy_net_mj", "min_ms")


class StoreError(Exception):
    """The store cannot do what was asked; the message says why and what to do."""


class UnknownDeviceError(StoreError):
    """A device key the store has never seen."""


class LutNotFoundError(StoreError):
    """No LUT matches what the caller asked for."""


class AmbiguousLutError(StoreError):
    """Several LUTs match and the caller did not say which one; rows are never mixed."""


def config_hash(config: Mapping[str, Any] | Any, *, exclude: Iterable[str] = ()) -> str:
    """Stable 16-hex-digit hash of a measurement config (a mapping or a dataclass).

    Canonical JSON: sorted keys, no whitespace, tuples as lists; NaN/inf are refused. Leave out
    fields that do not change what is measured (e.g. a timeout) with ``exclude``.
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"config_hash takes a mapping or a dataclass, not {type(config).__name__}")
    dropped = set(exclude)
    data = {str(k): v for k, v in config.items() if k not in dropped}
    try:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False, default=_json_default)
    except ValueError as exc:
        raise ValueError(f"config_hash: config has a non-finite number: {exc}") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class LutId:
    """Names one LUT: rows of different LutIds are never mixed."""

    fingerprint: str       # the device fingerprint the agents report
    runtime: str           # backend, e.g. "onnxruntime", "tflite", "ofa-yaml"
    runtime_version: str   # e.g. "1.31.1"
    config_hash: str       # config_hash() of the measurement config

    def __post_init__(self) -> None:
        for name in ("fingerprint", "runtime", "runtime_version", "config_hash"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or _has_newline(value):
                raise ValueError(f"LutId.{name} must be a non-empty one-line string, got {value!r}")

    @classmethod
    def from_result(cls, result: "BenchmarkResult", config_hash: str) -> "LutId":
        """The LutId a benchmark result belongs to (fingerprint, backend and version it reports)."""
        return cls(result.device_fingerprint, result.backend, result.runtime_version, config_hash)

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return (f"{self.runtime} {self.runtime_version} / config {self.config_hash} "
                f"/ fingerprint {self.fingerprint}")


@dataclass(frozen=True)
class LutRow:
    """One op instance measured on one device (latencies in ms, energies in mJ per inference)."""

    op_key: str                        # opaque op key
    device_key: str                    # the device key whose agent measured it
    n: int                             # timed runs
    median_ms: float | None            # None only when the status is a failure
    p90_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    ci95_low_ms: float | None = None
    ci95_high_ms: float | None = None
    energy_mj: float | None = None     # gross; None = not measured
    energy_net_mj: float | None = None  # idle-subtracted
    min_ms: float | None = None        # fastest timed run (over all passes); None in rows from schema 1
    passes: int | None = None          # measurement passes combined into this row (0 for a failure);
                                       # None = unknown (rows from before schema 3, imports)
    energy_estimated: bool = False
    status: str = "ok"                 # lower-case agent Status name
    conditions: Mapping[str, Any] = field(default_factory=dict)
    simulated: bool = False
    measured_at: float = 0.0           # epoch s; 0 = the time of writing
    schema_version: int = schema.SCHEMA_VERSION  # filled on read; writes use the current one

    @property
    def measured(self) -> bool:
        """True when the row carries latency numbers (ok, throttled or unstable)."""
        return self.status in MEASURED_STATUSES

    @property
    def passes_done(self) -> int:
        """Passes this row stands for; a measured row of unknown count (before schema 3) counts
        as one, so a resumed ``--repeats N`` build measures it again rather than trust it."""
        if self.passes is not None:
            return self.passes
        return 1 if self.measured else 0

    @classmethod
    def from_result(cls, result: "BenchmarkResult", *, device_key: str,
                    op_key: str | None = None) -> "LutRow":
        """Turn an agent's ``BenchmarkResult`` into a row (failures become rows without latency)."""
        lat, energy = result.latency, result.energy
        conditions: dict[str, Any] = {
            "before": _plain(result.conditions_before), "after": _plain(result.conditions_after),
            "backend": result.backend, "sha256": result.sha256, "remeasured": result.remeasured}
        if result.error:
            conditions["error"] = result.error
        if energy is not None:
            conditions["energy_meter"] = {"meter": energy.meter, "kind": energy.meter_kind,
                                          "flags": list(energy.flags)}
        return cls(
            op_key=op_key if op_key is not None else result.op_key, device_key=device_key,
            n=lat.n if lat else 0,
            median_ms=lat.median_ms if lat else None, p90_ms=lat.p90_ms if lat else None,
            mean_ms=lat.mean_ms if lat else None, std_ms=lat.std_ms if lat else None,
            ci95_low_ms=lat.ci95_low_ms if lat else None,
            ci95_high_ms=lat.ci95_high_ms if lat else None,
            energy_mj=energy.gross_mj if energy else None,
            energy_net_mj=energy.net_mj if energy else None,
            energy_estimated=bool(energy and energy.estimated),
            min_ms=lat.min_ms if lat else None, passes=1 if lat and result.status.measured else 0,
            status=result.status.name.lower(), conditions=conditions,
            simulated=result.simulated, measured_at=time.time())


@dataclass(frozen=True)
class LutInfo:
    """A LUT and what it holds."""

    lut_id: LutId
    rows: int                  # all rows, failures included
    measured_rows: int         # rows with latency (ok / throttled / unstable)
    device_keys: tuple[str, ...]
    simulated: bool
    first_measured_at: float
    last_measured_at: float


@dataclass(frozen=True)
class WriteCount:
    inserted: int = 0
    replaced: int = 0
    skipped: int = 0           # already present and not replaced


@dataclass(frozen=True)
class DeviceRecord:
    key: str
    fingerprint: str
    info: dict[str, Any]
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class RunRecord:
    id: int
    kind: str
    config: dict[str, Any]
    status: str
    started_at: float
    finished_at: float | None
    result: Any
    pid: int | None = None             # the process that ran it (None in runs from before schema 3)
    host: str | None = None            # ... on which machine
    parent_id: int | None = None       # the run file / sweep run it belongs to


@dataclass(frozen=True)
class ModelRecord:
    id: int
    run_id: int | None
    name: str
    genotype: Any
    onnx_sha256: str | None
    path: str | None
    device_key: str | None
    lut_id: LutId | None
    predicted_latency_ms: float | None
    predicted_energy_mj: float | None
    created_at: float


# ---------------------------------------------------------------------- checks
def _check_row(row: LutRow) -> None:
    if not isinstance(row, LutRow):
        raise TypeError(f"expected a LutRow, got {type(row).__name__}")
    _check_text("op key", row.op_key)
    _check_text("device key", row.device_key)
    if isinstance(row.n, bool) or not isinstance(row.n, int) or row.n < 0:
        raise ValueError(f"{row.op_key}: n must be an int >= 0, got {row.n!r}")
    if not row.status or row.status != row.status.strip().lower() or " " in row.status:
        raise ValueError(f"{row.op_key}: status must be a lower-case word, got {row.status!r}")
    _check_floats(**{f: getattr(row, f) for f in _FLOAT_FIELDS}, measured_at=row.measured_at)
    if row.passes is not None and (isinstance(row.passes, bool) or not isinstance(row.passes, int)
                                   or row.passes < (1 if row.measured else 0)):
        raise ValueError(f"{row.op_key}: passes must be None or an int >= {1 if row.measured else 0} "
                         f"for a {row.status!r} row, got {row.passes!r}")
    if row.measured:
        if row.median_ms is None or row.median_ms < 0 or row.n < 1:
            raise ValueError(f"{row.op_key}: a {row.status!r} row needs n >= 1 and a "
                             f"median_ms >= 0 (n={row.n}, median_ms={row.median_ms})")


def _check_text(what: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip() or _has_newline(value):
        raise ValueError(f"{what} must be a non-empty one-line string, got {value!r}")


def _check_floats(**values: Any) -> None:
    for name, v in values.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            # SQLite would store NaN as NULL without a word: refuse instead.
            raise ValueError(f"{name} must be a finite number or None, got {v!r}")


def _has_newline(s: str) -> bool:
    return "\n" in s or "\r" in s
