from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_FORMAT_UNSPECIFIED: _ClassVar[ModelFormat]
    MODEL_FORMAT_ONNX: _ClassVar[ModelFormat]
    MODEL_FORMAT_TFLITE: _ClassVar[ModelFormat]

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[Status]
    STATUS_OK: _ClassVar[Status]
    STATUS_INVALID_MODEL: _ClassVar[Status]
    STATUS_UNSUPPORTED_OP: _ClassVar[Status]
    STATUS_TIMEOUT: _ClassVar[Status]
    STATUS_CRASHED: _ClassVar[Status]
    STATUS_THROTTLED: _ClassVar[Status]
    STATUS_UNSTABLE: _ClassVar[Status]
    STATUS_HASH_MISMATCH: _ClassVar[Status]
    STATUS_MODEL_TOO_LARGE: _ClassVar[Status]
    STATUS_MODEL_NOT_CACHED: _ClassVar[Status]
    STATUS_BACKEND_UNAVAILABLE: _ClassVar[Status]
    STATUS_BUSY: _ClassVar[Status]
MODEL_FORMAT_UNSPECIFIED: ModelFormat
MODEL_FORMAT_ONNX: ModelFormat
MODEL_FORMAT_TFLITE: ModelFormat
STATUS_UNSPECIFIED: Status
STATUS_OK: Status
STATUS_INVALID_MODEL: Status
STATUS_UNSUPPORTED_OP: Status
STATUS_TIMEOUT: Status
STATUS_CRASHED: Status
STATUS_THROTTLED: Status
STATUS_UNSTABLE: Status
STATUS_HASH_MISMATCH: Status
STATUS_MODEL_TOO_LARGE: Status
STATUS_MODEL_NOT_CACHED: Status
STATUS_BACKEND_UNAVAILABLE: Status
STATUS_BUSY: Status

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MeasurementConfig(_message.Message):
    __slots__ = ("warmup_runs", "min_runs", "min_seconds", "max_runs", "threads", "cpu_affinity", "cooldown_seconds", "energy", "cv_threshold", "no_remeasure", "timeout_s", "energy_window_s", "energy_windows", "energy_idle_s")
    WARMUP_RUNS_FIELD_NUMBER: _ClassVar[int]
    MIN_RUNS_FIELD_NUMBER: _ClassVar[int]
    MIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNS_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    CPU_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    CV_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    NO_REMEASURE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    ENERGY_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    ENERGY_WINDOWS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_IDLE_S_FIELD_NUMBER: _ClassVar[int]
    warmup_runs: int
    min_runs: int
    min_seconds: float
    max_runs: int
    threads: int
    cpu_affinity: _containers.RepeatedScalarFieldContainer[int]
    cooldown_seconds: float
    energy: bool
    cv_threshold: float
    no_remeasure: bool
    timeout_s: float
    energy_window_s: float
    energy_windows: int
    energy_idle_s: float
    def __init__(self, warmup_runs: _Optional[int] = ..., min_runs: _Optional[int] = ..., min_seconds: _Optional[float] = ..., max_runs: _Optional[int] = ..., threads: _Optional[int] = ..., cpu_affinity: _Optional[_Iterable[int]] = ..., cooldown_seconds: _Optional[float] = ..., energy: _Optional[bool] = ..., cv_threshold: _Optional[float] = ..., no_remeasure: _Optional[bool] = ..., timeout_s: _Optional[float] = ..., energy_window_s: _Optional[float] = ..., energy_windows: _Optional[int] = ..., energy_idle_s: _Optional[float] = ...) -> None: ...

class BenchmarkRequest(_message.Message):
    __slots__ = ("request_id", "model", "sha256", "format", "backend", "config", "op_key")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    OP_KEY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: bytes
    sha256: str
    format: ModelFormat
    backend: str
    config: MeasurementConfig
    op_key: str
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[bytes] = ..., sha256: _Optional[str] = ..., format: _Optional[_Union[ModelFormat, str]] = ..., backend: _Optional[str] = ..., config: _Optional[_Union[MeasurementConfig, _Mapping]] = ..., op_key: _Optional[str] = ...) -> None: ...

class LatencyStats(_message.Message):
    __slots__ = ("n", "median_ms", "p90_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "ci95_low_ms", "ci95_high_ms", "cv", "robust_cv")
    N_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_MS_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    STD_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_MS_FIELD_NUMBER: _ClassVar[int]
    CI95_LOW_MS_FIELD_NUMBER: _ClassVar[int]
    CI95_HIGH_MS_FIELD_NUMBER: _ClassVar[int]
    CV_FIELD_NUMBER: _ClassVar[int]
    ROBUST_CV_FIELD_NUMBER: _ClassVar[int]
    n: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    ci95_low_ms: float
    ci95_high_ms: float
    cv: float
    robust_cv: float
    def __init__(self, n: _Optional[int] = ..., median_ms: _Optional[float] = ..., p90_ms: _Optional[float] = ..., mean_ms: _Optional[float] = ..., std_ms: _Optional[float] = ..., min_ms: _Optional[float] = ..., max_ms: _Optional[float] = ..., ci95_low_ms: _Optional[float] = ..., ci95_high_ms: _Optional[float] = ..., cv: _Optional[float] = ..., robust_cv: _Optional[float] = ...) -> None: ...

class EnergyResult(_message.Message):
    __slots__ = ("meter", "meter_kind", "gross_mj", "net_mj", "net_ci95_low_mj", "net_ci95_high_mj", "idle_power_mw", "active_power_mw", "windows", "estimated", "flags", "note")
    METER_FIELD_NUMBER: _ClassVar[int]
    METER_KIND_FIELD_NUMBER: _ClassVar[int]
    GROSS_MJ_FIELD_NUMBER: _ClassVar[int]
    NET_MJ_FIELD_NUMBER: _ClassVar[int]
    NET_CI95_LOW_MJ_FIELD_NUMBER: _ClassVar[int]
    NET_CI95_HIGH_MJ_FIELD_NUMBER: _ClassVar[int]
    IDLE_POWER_MW_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_POWER_MW_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    meter: str
    meter_kind: str
    gross_mj: float
    net_mj: float
    net_ci95_low_mj: float
    net_ci95_high_mj: float
    idle_power_mw: float
    active_power_mw: float
    windows: int
    estimated: bool
    flags: _containers.RepeatedScalarFieldContainer[str]
    note: str
    def __init__(self, meter: _Optional[str] = ..., meter_kind: _Optional[str] = ..., gross_mj: _Optional[float] = ..., net_mj: _Optional[float] = ..., net_ci95_low_mj: _Optional[float] = ..., net_ci95_high_mj: _Optional[float] = ..., idle_power_mw: _Optional[float] = ..., active_power_mw: _Optional[float] = ..., windows: _Optional[int] = ..., estimated: _Optional[bool] = ..., flags: _Optional[_Iterable[str]] = ..., note: _Optional[str] = ...) -> None: ...

class Conditions(_message.Message):
    __slots__ = ("timestamp_s", "temperatures_c", "cpu_freq_khz", "governor", "throttled_bits", "throttled", "load_avg_1m", "power_source", "runtime_versions", "thread_affinity")
    class TemperaturesCEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CpuFreqKhzEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class RuntimeVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIMESTAMP_S_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURES_C_FIELD_NUMBER: _ClassVar[int]
    CPU_FREQ_KHZ_FIELD_NUMBER: _ClassVar[int]
    GOVERNOR_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_BITS_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    LOAD_AVG_1M_FIELD_NUMBER: _ClassVar[int]
    POWER_SOURCE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    THREAD_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    timestamp_s: float
    temperatures_c: _containers.ScalarMap[str, float]
    cpu_freq_khz: _containers.ScalarMap[str, float]
    governor: str
    throttled_bits: int
    throttled: bool
    load_avg_1m: float
    power_source: str
    runtime_versions: _containers.ScalarMap[str, str]
    thread_affinity: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, timestamp_s: _Optional[float] = ..., temperatures_c: _Optional[_Mapping[str, float]] = ..., cpu_freq_khz: _Optional[_Mapping[str, float]] = ..., governor: _Optional[str] = ..., throttled_bits: _Optional[int] = ..., throttled: _Optional[bool] = ..., load_avg_1m: _Optional[float] = ..., power_source: _Optional[str] = ..., runtime_versions: _Optional[_Mapping[str, str]] = ..., thread_affinity: _Optional[_Iterable[int]] = ...) -> None: ...

class BenchmarkResult(_message.Message):
    __slots__ = ("request_id", "status", "error", "sha256", "backend", "runtime_version", "samples_ms", "latency", "energy", "conditions_before", "conditions_after", "simulated", "remeasured", "config", "device_fingerprint", "measure_wall_s", "total_wall_s", "op_key")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_AFTER_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    REMEASURED_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MEASURE_WALL_S_FIELD_NUMBER: _ClassVar[int]
    TOTAL_WALL_S_FIELD_NUMBER: _ClassVar[int]
    OP_KEY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    status: Status
    error: str
    sha256: str
    backend: str
    runtime_version: str
    samples_ms: _containers.RepeatedScalarFieldContainer[float]
    latency: LatencyStats
    energy: EnergyResult
    conditions_before: Conditions
    conditions_after: Conditions
    simulated: bool
    remeasured: bool
    config: MeasurementConfig
    device_fingerprint: str
    measure_wall_s: float
    total_wall_s: float
    op_key: str
    def __init__(self, request_id: _Optional[str] = ..., status: _Optional[_Union[Status, str]] = ..., error: _Optional[str] = ..., sha256: _Optional[str] = ..., backend: _Optional[str] = ..., runtime_version: _Optional[str] = ..., samples_ms: _Optional[_Iterable[float]] = ..., latency: _Optional[_Union[LatencyStats, _Mapping]] = ..., energy: _Optional[_Union[EnergyResult, _Mapping]] = ..., conditions_before: _Optional[_Union[Conditions, _Mapping]] = ..., conditions_after: _Optional[_Union[Conditions, _Mapping]] = ..., simulated: _Optional[bool] = ..., remeasured: _Optional[bool] = ..., config: _Optional[_Union[MeasurementConfig, _Mapping]] = ..., device_fingerprint: _Optional[str] = ..., measure_wall_s: _Optional[float] = ..., total_wall_s: _Optional[float] = ..., op_key: _Optional[str] = ...) -> None: ...

class EnergyMeterInfo(_message.Message):
    __slots__ = ("name", "kind", "scope", "resolution_mj", "available", "note")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_MJ_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    scope: str
    resolution_mj: float
    available: bool
    note: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., scope: _Optional[str] = ..., resolution_mj: _Optional[float] = ..., available: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class DeviceInfo(_message.Message):
    __slots__ = ("fingerprint", "hostname", "cpu_model", "cpu_cores", "memory_bytes", "os", "backends", "runtime_versions", "energy_meters", "agent_version", "simulated", "profile", "default_backend", "max_model_bytes", "queue_size", "max_message_bytes")
    class RuntimeVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_METERS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BACKEND_FIELD_NUMBER: _ClassVar[int]
    MAX_MODEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    hostname: str
    cpu_model: str
    cpu_cores: int
    memory_bytes: int
    os: str
    backends: _containers.RepeatedScalarFieldContainer[str]
    runtime_versions: _containers.ScalarMap[str, str]
    energy_meters: _containers.RepeatedCompositeFieldContainer[EnergyMeterInfo]
    agent_version: str
    simulated: bool
    profile: str
    default_backend: str
    max_model_bytes: int
    queue_size: int
    max_message_bytes: int
    def __init__(self, fingerprint: _Optional[str] = ..., hostname: _Optional[str] = ..., cpu_model: _Optional[str] = ..., cpu_cores: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., os: _Optional[str] = ..., backends: _Optional[_Iterable[str]] = ..., runtime_versions: _Optional[_Mapping[str, str]] = ..., energy_meters: _Optional[_Iterable[_Union[EnergyMeterInfo, _Mapping]]] = ..., agent_version: _Optional[str] = ..., simulated: _Optional[bool] = ..., profile: _Optional[str] = ..., default_backend: _Optional[str] = ..., max_model_bytes: _Optional[int] = ..., queue_size: _Optional[int] = ..., max_message_bytes: _Optional[int] = ...) -> None: ...
