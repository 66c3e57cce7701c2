"""Proto <-> plain dataclasses. The only place that knows both shapes.

Used by the agent's servicer and by the central side's client, so both speak in the same
frozen dataclasses (``hilnas.agent.results``) and never pass protobuf objects around.
"""
from __future__ import annotations

import math

from hilnas.agent.config import MeasureConfig
from hilnas.agent.results import (BenchmarkRequest, BenchmarkResult, Conditions, DeviceInfo, EnergyMeterInfo,
                                  EnergyResult, LatencyStats, ModelFormat, Status)
from hilnas.protos.v1 import agent_pb2 as pb


# -- MeasureConfig ----------------------------------------------------------------------------
def config_to_proto(c: MeasureConfig) -> pb.MeasurementConfig:
    return pb.MeasurementConfig(
        warmup_runs=c.warmup_runs, min_runs=c.min_runs, min_seconds=c.min_seconds, max_runs=c.max_runs,
        threads=c.threads, cpu_affinity=list(c.cpu_affinity), cooldown_seconds=c.cooldown_seconds,
        energy=c.energy, cv_threshold=c.cv_threshold, no_remeasure=not c.remeasure_unstable, timeout_s=c.timeout_s,
        energy_window_s=c.energy_window_s, energy_windows=c.energy_windows, energy_idle_s=c.energy_idle_s)


_DEFAULT_CONFIG = MeasureConfig()
# Proto field -> MeasureConfig field, where the names differ.
_CONFIG_FIELDS = ("warmup_runs", "min_runs", "min_seconds", "max_runs", "threads", "cooldown_seconds", "energy",
                  "cv_threshold", "timeout_s", "energy_window_s", "energy_windows", "energy_idle_s")
# Upper bounds of the float fields (a typo or a hostile value must not hold the device for days).
_CONFIG_MAX = {"min_seconds": 3600.0, "cooldown_seconds": 600.0, "timeout_s": 86400.0, "cv_threshold": 1e6,
               "energy_window_s": 60.0, "energy_idle_s": 60.0}


def config_from_proto(p: pb.MeasurementConfig) -> MeasureConfig:
    """Proto -> config, field by field: a field the sender did not set takes ``MeasureConfig``'s
    default; a set field is used as given (``min_runs`` 0 means 1). Raises ValueError for a value
    out of range (negative, NaN or infinite, or over its bound)."""
    values = {name: getattr(p, name) if p.HasField(name) else getattr(_DEFAULT_CONFIG, name)
              for name in _CONFIG_FIELDS}
    for name, bound in _CONFIG_MAX.items():
        v = values[name]
        if not (math.isfinite(v) and 0 <= v <= bound):
            raise ValueError(f"{name} must be a finite number in [0, {bound:g}], got {v!r}")
    if values["energy_windows"] > 100:
        raise ValueError(f"energy_windows must be <= 100, got {values['energy_windows']}")
    values["min_runs"] = max(1, values["min_runs"])
    remeasure = not p.no_remeasure if p.HasField("no_remeasure") else _DEFAULT_CONFIG.remeasure_unstable
    return MeasureConfig(**values, cpu_affinity=tuple(p.cpu_affinity), remeasure_unstable=remeasure)


# -- requests ---------------------------------------------------------------------------------
def request_to_proto(r: BenchmarkRequest) -> pb.BenchmarkRequest:
    return pb.BenchmarkRequest(request_id=r.request_id, model=r.model, sha256=r.sha256, format=r.format.value,
                               backend=r.backend, config=config_to_proto(r.config), op_key=r.op_key)


def request_from_proto(p: pb.BenchmarkRequest) -> BenchmarkRequest:
    """Raises ValueError for a request that cannot be decoded (unknown format, bad config)."""
    if p.format == pb.MODEL_FORMAT_UNSPECIFIED:
        fmt = ModelFormat.ONNX  # the common case; an explicit format is still recommended
    else:
        try:
            fmt = ModelFormat(p.format)
        except ValueError:
            raise ValueError(f"unknown model format {p.format}") from None
    return BenchmarkRequest(sha256=p.sha256, model=p.model, format=fmt, backend=p.backend,
                            config=config_from_proto(p.config), request_id=p.request_id, op_key=p.op_key)


# -- results ----------------------------------------------------------------------------------
def _conditions_to_proto(c: Conditions | None):
    if c is None:
        return None
    return pb.Conditions(timestamp_s=c.timestamp_s, temperatures_c=c.temperatures_c, cpu_freq_khz=c.cpu_freq_khz,
                         governor=c.governor, throttled_bits=c.throttled_bits, throttled=c.throttled,
                         load_avg_1m=c.load_avg_1m, power_source=c.power_source,
                         runtime_versions=c.runtime_versions, thread_affinity=list(c.thread_affinity))


def _conditions_from_proto(p) -> Conditions:
    return Conditions(timestamp_s=p.timestamp_s, temperatures_c=dict(p.temperatures_c),
                      cpu_freq_khz=dict(p.cpu_freq_khz), governor=p.governor, throttled_bits=p.throttled_bits,
                      throttled=p.throttled, load_avg_1m=p.load_avg_1m, power_source=p.power_source,
                      runtime_versions=dict(p.runtime_versions), thread_affinity=tuple(p.thread_affinity))


def result_to_proto(r: BenchmarkResult) -> pb.BenchmarkResult:
    msg = pb.BenchmarkResult(
        request_id=r.request_id, status=r.status.value, error=r.error, sha256=r.sha256, backend=r.backend,
        runtime_version=r.runtime_version, samples_ms=list(r.samples_ms), simulated=r.simulated,
        remeasured=r.remeasured, device_fingerprint=r.device_fingerprint, measure_wall_s=r.measure_wall_s,
        total_wall_s=r.total_wall_s, op_key=r.op_key)
    if r.latency is not None:
        s = r.latency
        msg.latency.CopyFrom(pb.LatencyStats(
            n=s.n, median_ms=s.median_ms, p90_ms=s.p90_ms, mean_ms=s.mean_ms, std_ms=s.std_ms, min_ms=s.min_ms,
            max_ms=s.max_ms, ci95_low_ms=s.ci95_low_ms, ci95_high_ms=s.ci95_high_ms, cv=s.cv, robust_cv=s.robust_cv))
    if r.energy is not None:
        e = r.energy
        msg.energy.CopyFrom(pb.EnergyResult(
            meter=e.meter, meter_kind=e.meter_kind, gross_mj=e.gross_mj, net_mj=e.net_mj,
            net_ci95_low_mj=e.net_ci95_low_mj, net_ci95_high_mj=e.net_ci95_high_mj, idle_power_mw=e.idle_power_mw,
            active_power_mw=e.active_power_mw, windows=e.windows, estimated=e.estimated, flags=list(e.flags),
            note=e.note))
    if r.conditions_before is not None:
        msg.conditions_before.CopyFrom(_conditions_to_proto(r.conditions_before))
    if r.conditions_after is not None:
        msg.conditions_after.CopyFrom(_conditions_to_proto(r.conditions_after))
    if r.config is not None:
        msg.config.CopyFrom(config_to_proto(r.config))
    return msg


def result_from_proto(p: pb.BenchmarkResult) -> BenchmarkResult:
    try:
        status = Status(p.status)
    except ValueError:
        status = Status.CRASHED
    latency = None
    if p.HasField("latency"):
        s = p.latency
        latency = LatencyStats(n=s.n, median_ms=s.median_ms, p90_ms=s.p90_ms, mean_ms=s.mean_ms, std_ms=s.std_ms,
                               min_ms=s.min_ms, max_ms=s.max_ms, ci95_low_ms=s.ci95_low_ms,
                               ci95_high_ms=s.ci95_high_ms, cv=s.cv, robust_cv=s.robust_cv)
    energy = None
    if p.HasField("energy"):
        e = p.energy
        energy = EnergyResult(meter=e.meter, meter_kind=e.meter_kind, gross_mj=e.gross_mj, net_mj=e.net_mj,
                              net_ci95_low_mj=e.net_ci95_low_mj, net_ci95_high_mj=e.net_ci95_high_mj,
                              idle_power_mw=e.idle_power_mw, active_power_mw=e.active_power_mw, windows=e.windows,
                              estimated=e.estimated, flags=tuple(e.flags), note=e.note)
    return BenchmarkResult(
        status=status, error=p.error, request_id=p.request_id, sha256=p.sha256, backend=p.backend,
        runtime_version=p.runtime_version, samples_ms=tuple(p.samples_ms), latency=latency, energy=energy,
        conditions_before=_conditions_from_proto(p.conditions_before) if p.HasField("conditions_before") else None,
        conditions_after=_conditions_from_proto(p.conditions_after) if p.HasField("conditions_after") else None,
        simulated=p.simulated, remeasured=p.remeasured,
        config=config_from_proto(p.config) if p.HasField("config") else None,
        device_fingerprint=p.device_fingerprint, measure_wall_s=p.measure_wall_s, total_wall_s=p.total_wall_s,
        op_key=p.op_key)


# -- device info ------------------------------------------------------------------------------
def device_info_to_proto(d: DeviceInfo) -> pb.DeviceInfo:
    return pb.DeviceInfo(
        fingerprint=d.fingerprint, hostname=d.hostname, cpu_model=d.cpu_model, cpu_cores=d.cpu_cores,
        memory_bytes=d.memory_bytes, os=d.os, backends=list(d.backends), runtime_versions=d.runtime_versions,
        energy_meters=[pb.EnergyMeterInfo(name=m.name, kind=m.kind, scope=m.scope, resolution_mj=m.resolution_mj,
                                          available=m.available, note=m.note) for m in d.energy_meters],
        agent_version=d.agent_version, simulated=d.simulated, profile=d.profile, default_backend=d.default_backend,
        max_model_bytes=d.max_model_bytes, queue_size=d.queue_size, max_message_bytes=d.max_message_bytes)


def device_info_from_proto(p: pb.DeviceInfo) -> DeviceInfo:
    return DeviceInfo(
        fingerprint=p.fingerprint, hostname=p.hostname, cpu_model=p.cpu_model, cpu_cores=p.cpu_cores,
        memory_bytes=p.memory_bytes, os=p.os, backends=tuple(p.backends), runtime_versions=dict(p.runtime_versions),
        agent_version=p.agent_version,
        energy_meters=tuple(EnergyMeterInfo(name=m.name, kind=m.kind, scope=m.scope, resolution_mj=m.resolution_mj,
                                            available=m.available, note=m.note) for m in p.energy_meters),
        simulated=p.simulated, profile=p.profile, default_backend=p.default_backend,
        max_model_bytes=p.max_model_bytes, queue_size=p.queue_size, max_message_bytes=p.max_message_bytes)


def to_jsonable(obj):
    """A dataclass tree -> JSON-ready dicts (enums by name, tuples as lists)."""
    import dataclasses
    import enum

    if dataclasses.is_dataclass(obj):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not isinstance(getattr(obj, f.name), bytes)}
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    return obj
