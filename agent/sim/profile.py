"""Device profiles of the simulated device: data files (``profiles/*.toml``) read into frozen
dataclasses. Each TOML section maps onto one dataclass below; every field is documented in the
profile files themselves. Unknown keys are errors, so a typo cannot silently keep a default.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10: the API-compatible backport, when installed
    import tomli as tomllib  # type: ignore[no-redef]

PROFILE_DIR = Path(__file__).parent / "profiles"
# Bumped when the cost model changes what a profile means, so LUTs keyed by the fingerprint
# of a simulated device are not mixed across simulator versions.
SIM_MODEL_VERSION = 2


class ProfileError(ValueError):
    """A profile that does not exist or does not parse."""


@dataclass(frozen=True)
class DeviceSpec:
    """What the simulated device says about itself (DeviceInfo / Conditions)."""

    cpu_model: str
    cpu_cores: int
    memory_bytes: int
    os: str
    cpu_freq_khz: float
    governor: str = "performance"
    power_source: str = "ac"
    pi_throttled_bits: bool = False   # report Raspberry Pi `vcgencmd get_throttled` bits


@dataclass(frozen=True)
class ComputeModel:
    """Roofline parameters and the fixed costs a runtime adds."""

    peak_gflops: float
    mem_bandwidth_gbs: float
    cache_bytes: int
    cache_bandwidth_gbs: float
    dispatch_us: float
    model_overhead_us: float
    default_efficiency: float
    default_memory_efficiency: float = 1.0
    # The runtime merges identical nodes (same op, inputs and attributes), as ONNX Runtime does;
    # the TFLite pipeline measured on the boards of HW-NAS-Bench did not (duplicated pooling of
    # one input costs twice there), so their profiles turn it off.
    cse: bool = True
    # Peak FLOP/s scales with the threads a measurement asks for (CPU cores); a GPU delegate's
    # does not.
    scales_with_threads: bool = True
    # Output elements a kernel needs to fill the device; smaller kernels reach a proportional
    # share of its FLOP/s (GPU occupancy). 0 = any kernel fills it (CPUs).
    parallel_outputs: float = 0.0
    efficiency: tuple[tuple[str, float], ...] = ()         # ("Conv.depthwise", 0.1), ...
    memory_efficiency: tuple[tuple[str, float], ...] = ()  # ("Transpose", 0.5), ...

    @cached_property
    def _eff(self) -> dict[str, float]:
        return dict(self.efficiency)

    @cached_property
    def _mem_eff(self) -> dict[str, float]:
        return dict(self.memory_efficiency)

    def efficiency_of(self, op_type: str, variant: str = "") -> float:
        """Fraction of peak FLOP/s the op reaches: "Op.variant", then "Op", then the default."""
        eff = self._eff
        return eff.get(f"{op_type}.{variant}") or eff.get(op_type) or self.default_efficiency

    def memory_efficiency_of(self, op_type: str) -> float:
        """Fraction of the memory bandwidth the op reaches (strided copies reach less)."""
        return self._mem_eff.get(op_type) or self.default_memory_efficiency


@dataclass(frozen=True)
class NoiseModel:
    """Run-to-run variability of the timed samples."""

    cv: float                       # coefficient of variation of one sample (lognormal)
    run_cv: float = 0.0             # CV of a per-measurement offset (between calls)
    outlier_rate: float = 0.0       # share of samples hit by an OS interruption
    outlier_factor: float = 2.0     # how much slower such a sample is
    first_run_factor: float = 1.0   # the first warm-up run is this many times slower


@dataclass(frozen=True)
class EnergyModel:
    """Power = idle + static (while running) + dynamic energy per work done."""

    idle_power_w: float             # the whole board idle
    static_power_w: float           # extra while the cores are busy, independent of work
    dynamic_mj_per_gflop: float     # energy per 1e9 FLOPs
    dynamic_mj_per_gb: float        # energy per 1e9 bytes moved to or from memory
    cv: float = 0.02                # CV of one energy window
    resolution_mj: float = 0.0      # meter step; readings are floored to it (0 = exact)
    counter_wrap_mj: float = 0.0    # the energy counter wraps at this value (0 = never)
    scope: str = "board"


@dataclass(frozen=True)
class ThermalModel:
    """Heat builds with load and decays when idle; beyond a point the clock is cut."""

    enabled: bool = False
    idle_c: float = 40.0                 # temperature when cool
    max_c: float = 80.0                  # temperature after very long load
    tau_s: float = 120.0                 # heating / cooling time constant
    throttle_after_s: float = 600.0      # continuous load before the clock is cut
    throttle_freq_fraction: float = 1.0  # clock while throttled, fraction of nominal


@dataclass(frozen=True)
class DeviceProfile:
    """One simulated device: a named, documented set of model parameters."""

    name: str
    description: str
    device: DeviceSpec
    compute: ComputeModel
    noise: NoiseModel
    energy: EnergyModel
    thermal: ThermalModel = ThermalModel()
    source: str = field(default="", compare=False)   # file it was read from

    def to_dict(self) -> dict:
        """The contents (without ``source``), JSON-ready."""
        data = dataclasses.asdict(self)
        data.pop("source")
        return data

    @cached_property
    def fingerprint(self) -> str:
        """Stable id from the contents: same profile -> same id; any changed number -> new id."""
        blob = json.dumps({"sim_model": SIM_MODEL_VERSION, **self.to_dict()}, sort_keys=True)
        return "sim-" + hashlib.sha256(blob.encode()).hexdigest()[:24]


def list_profiles() -> tuple[str, ...]:
    """Names of the profiles shipped with hilnas."""
    return tuple(sorted(p.stem for p in PROFILE_DIR.glob("*.toml")))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A shipped profile by name (``raspi4``) or any profile file by path."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(name_or_path)
        if not path.is_file():
            raise ProfileError(f"no simulated device profile file at {path}")
    else:
        path = PROFILE_DIR / f"{text}.toml"
        if not path.is_file():
            raise ProfileError(f"unknown simulated device profile {text!r}; available: "
                               f"{', '.join(list_profiles())} (or the path of a .toml file)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    return parse_profile(data, source=str(path))


def parse_profile(data: dict, *, source: str = "") -> DeviceProfile:
    """Build and validate a profile from parsed TOML."""
    where = source or "profile"
    data = dict(data)
    if data.pop("schema", 1) != 1:
        raise ProfileError(f"{where}: unsupported profile schema (this hilnas reads schema 1)")
    compute = dict(_table(data, "compute", where))
    for key in ("efficiency", "memory_efficiency"):
        table = compute.pop(key, {})
        if not isinstance(table, dict):
            raise ProfileError(f"{where}: [compute.{key}] must be a table of op -> fraction")
        for op, value in table.items():
            if not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ProfileError(f"{where}: compute.{key}.{op} must be in (0, 1], got {value!r}")
        compute[key] = tuple(sorted((str(k), float(v)) for k, v in table.items()))
    try:
        profile = DeviceProfile(
            name=str(data.pop("name")), description=str(data.pop("description", "")),
            device=_build(DeviceSpec, _table(data, "device", where), f"{where} [device]"),
            compute=_build(ComputeModel, compute, f"{where} [compute]"),
            noise=_build(NoiseModel, _table(data, "noise", where), f"{where} [noise]"),
            energy=_build(EnergyModel, _table(data, "energy", where), f"{where} [energy]"),
            thermal=_build(ThermalModel, data.pop("thermal", {}), f"{where} [thermal]"),
            source=source)
    except KeyError as exc:
        raise ProfileError(f"{where}: missing key {exc}") from None
    if data:
        raise ProfileError(f"{where}: unknown keys {sorted(data)}")
    _validate(profile, where)
    return profile


def _table(data: dict, key: str, where: str) -> dict:
    if key not in data or not isinstance(data[key], dict):
        raise ProfileError(f"{where}: missing section [{key}]")
    return data.pop(key)


def _build(cls, table: dict, where: str):
    """Instantiate a section dataclass, converting types and rejecting unknown keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ProfileError(f"{where}: unknown keys {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for key, value in table.items():
        kind = fields[key].type
        try:
            if kind in ("float", float):
                if isinstance(value, bool):
                    raise TypeError
                value = float(value)
            elif kind in ("int", int):
                if isinstance(value, bool) or value != int(value):
                    raise TypeError
                value = int(value)
            elif kind in ("bool", bool) and not isinstance(value, bool):
                raise TypeError
            elif kind in ("str", str) and not isinstance(value, str):
                raise TypeError
        except (TypeError, ValueError):
            raise ProfileError(f"{where}: {key} must be {kind}, got {value!r}") from None
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ProfileError(f"{where}: {exc}") from None


def _validate(p: DeviceProfile, where: str) -> None:
    positive = {
        "device.cpu_cores": p.device.cpu_cores, "device.cpu_freq_khz": p.device.cpu_freq_khz,
        "compute.peak_gflops": p.compute.peak_gflops,
        "compute.mem_bandwidth_gbs": p.compute.mem_bandwidth_gbs,
        "compute.cache_bandwidth_gbs": p.compute.cache_bandwidth_gbs,
        "compute.default_efficiency": p.compute.default_efficiency,
        "compute.default_memory_efficiency": p.compute.default_memory_efficiency,
        "thermal.tau_s": p.thermal.tau_s,
        "thermal.throttle_freq_fraction": p.thermal.throttle_freq_fraction,
        "noise.outlier_factor": p.noise.outlier_factor,
        "noise.first_run_factor": p.noise.first_run_factor,
    }
    non_negative = {
        "compute.cache_bytes": p.compute.cache_bytes, "compute.dispatch_us": p.compute.dispatch_us,
        "compute.model_overhead_us": p.compute.model_overhead_us, "noise.cv": p.noise.cv,
        "compute.parallel_outputs": p.compute.parallel_outputs,
        "noise.run_cv": p.noise.run_cv, "noise.outlier_rate": p.noise.outlier_rate,
        "energy.idle_power_w": p.energy.idle_power_w, "energy.static_power_w": p.energy.static_power_w,
        "energy.dynamic_mj_per_gflop": p.energy.dynamic_mj_per_gflop,
        "energy.dynamic_mj_per_gb": p.energy.dynamic_mj_per_gb, "energy.cv": p.energy.cv,
        "energy.resolution_mj": p.energy.resolution_mj,
        "energy.counter_wrap_mj": p.energy.counter_wrap_mj,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ProfileError(f"{where}: {key} must be > 0, got {value}")
    for key, value in non_negative.items():
        if not value >= 0:
            raise ProfileError(f"{where}: {key} must be >= 0, got {value}")
    for key in ("default_efficiency", "default_memory_efficiency"):
        if getattr(p.compute, key) > 1:
            raise ProfileError(f"{where}: compute.{key} must be in (0, 1]")
    if p.thermal.throttle_freq_fraction > 1 or p.noise.outlier_rate >= 1:
        raise ProfileError(f"{where}: thermal.throttle_freq_fraction must be <= 1 and "
                           "noise.outlier_rate < 1")
