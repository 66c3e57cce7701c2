"""The simulated device: the ``Device`` protocol over a device model instead of a runtime.

Nothing runs: the latency of a model comes from ``DeviceModel`` and the samples from seeded
noise, so a LUT of hundreds of ops builds in seconds in CI. Results are reproducible: the noise
of a measurement depends only on the seed, the model's sha256 and how many times this device has
measured that model; the thermal state depends on the call sequence.

``realtime=True`` (``hilnas-agent serve --simulate PROFILE --realtime``) makes a measurement take
the wall time it reports: the warm-up and the timed runs (``measure_wall_s``; the time limit when
it times out), then the cooldown the host's worker would sleep. The agent holds its measurement
slot meanwhile, so queues, streams and deadlines behave as on a real board. Deviation: the energy
protocol's idle phases and windows (the host's ``energy_idle_s``/``energy_window_s``) are not
slept; the simulated meter reads over the timed runs only, as it does without ``realtime``.
"""
from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path

from hilnas import __version__
from hilnas.agent.config import MeasureConfig
from hilnas.agent.device import MeasureOutcome, StoredModel, check_config
from hilnas.agent.results import Conditions, DeviceInfo, EnergyMeterInfo, EnergyResult, ModelFormat, Status
from hilnas.agent.sim.graph import GraphCost, GraphError, analyse_onnx
from hilnas.agent.sim.model import DeviceModel
from hilnas.agent.sim.profile import DeviceProfile, list_profiles, load_profile

__all__ = ["SimulatedDevice", "list_profiles"]

BACKEND = "simulated"
# "onnxruntime" is accepted too: the profile models an ONNX runtime on that board, and an agent
# whose default backend is onnxruntime keeps working when switched to --simulate.
_ACCEPTED_BACKENDS = (BACKEND, "onnxruntime", "")
_GRAPH_CACHE = 256                 # analysed graphs kept, by sha256
_MAX_NODES = 20_000
_ENERGY_WINDOW_S = 0.1             # the simulated meter integrates over windows this long
_PI_THROTTLED_NOW = 0x4 | 0x8      # vcgencmd get_throttled: throttled + soft temperature limit
_PI_THROTTLED_EVER = 0x40000 | 0x80000
# Two-sided 95 % Student t quantiles by degrees of freedom (1.96 beyond the table).
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
        10: 2.23, 12: 2.18, 15: 2.13, 20: 2.09, 30: 2.04}


class SimulatedDevice:
    """A device whose measurements a device model of a profile produces, not hardware."""

    def __init__(self, profile: str | Path, *, seed: int = 0, memory_limit_mb: int = 0, realtime: bool = False):
        self.profile: DeviceProfile = load_profile(profile)
        self.seed = seed
        self.realtime = realtime
        self._closed = threading.Event()  # ends a realtime sleep when the agent stops
        # What a model may hold, as on the host: the worker's address-space limit, and never more
        # than the board's memory (0 = the board's memory only).
        board = self.profile.device.memory_bytes
        self.memory_limit_bytes = min(board, memory_limit_mb * 2 ** 20) if memory_limit_mb > 0 else board
        self.model = DeviceModel(self.profile)
        self.runtime_version = f"simulated {self.profile.name} (hilnas {__version__})"
        self._graphs: OrderedDict[str, GraphCost | GraphError] = OrderedDict()
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()
        self._heat_s = 0.0               # effective seconds of continuous load (thermal state)
        self._pending_cooldown_s = 0.0   # idle time owed before the next measurement
        self._throttled_ever = False
        self._load_avg = 0.0
        wrap = self.profile.energy.counter_wrap_mj
        self._counter_mj = (_rng(seed, "energy-counter", 0).uniform(0, wrap) if wrap else 0.0)

    # -- Device protocol -------------------------------------------------------------------

    def info(self) -> DeviceInfo:
        p, e = self.profile, self.profile.energy
        meter = EnergyMeterInfo(name="simulated", kind="simulated", scope=e.scope,
                                resolution_mj=e.resolution_mj, available=True,
                                note=f"energy model of simulated profile {p.name}")
        return DeviceInfo(fingerprint=p.fingerprint, hostname=f"simulated-{p.name}",
                          cpu_model=p.device.cpu_model, cpu_cores=p.device.cpu_cores,
                          memory_bytes=p.device.memory_bytes, os=p.device.os,
                          backends=(BACKEND,), runtime_versions={BACKEND: self.runtime_version},
                          agent_version=__version__, energy_meters=(meter,), simulated=True,
                          profile=p.name, default_backend=BACKEND)

    def conditions(self) -> Conditions:
        d, th = self.profile.device, self.profile.thermal
        with self._lock:
            heat, ever, load = self._heat_s, self._throttled_ever, self._load_avg
        throttled = self._throttled(heat)
        temp = th.idle_c
        if th.enabled:
            temp += (th.max_c - th.idle_c) * (1 - math.exp(-heat / th.tau_s))
        freq = d.cpu_freq_khz * (th.throttle_freq_fraction if throttled else 1.0)
        bits = 0
        if d.pi_throttled_bits:
            bits = (_PI_THROTTLED_NOW if throttled else 0) | (_PI_THROTTLED_EVER if ever else 0)
        return Conditions(timestamp_s=time.time(), temperatures_c={"cpu-thermal": round(temp, 2)},
                          cpu_freq_khz={f"cpu{i}": freq for i in range(d.cpu_cores)},
                          governor=d.governor, throttled_bits=bits, throttled=throttled,
                          load_avg_1m=round(load, 3), power_source=d.power_source)

    def measure(self, model: StoredModel, backend: str, config: MeasureConfig, *,
                timeout_s: float) -> MeasureOutcome:
        if backend not in _ACCEPTED_BACKENDS:
            return MeasureOutcome(Status.BACKEND_UNAVAILABLE,
                                  f"backend {backend!r} is not available on the simulated device "
                                  f"(backends: {BACKEND})")
        if model.format != ModelFormat.ONNX:
            return MeasureOutcome(Status.BACKEND_UNAVAILABLE,
                                  "the simulated device costs ONNX graphs; "
                                  f"{model.format.name} models are not supported")
        check_config(config, set(range(self.profile.device.cpu_cores)))
        graph = self._analyse(model)
        if isinstance(graph, GraphError):
            return MeasureOutcome(graph.status, graph.message)
        held = graph.params_bytes + graph.input_bytes + graph.largest_tensor_bytes
        if held > self.memory_limit_bytes:
            # The host's worker fails the allocation (CRASHED, "out of memory") and is replaced.
            # Deviation: the host also spends address space on the runtime itself, so it may fail
            # a little earlier than this.
            return MeasureOutcome(Status.CRASHED,
                                  f"out of memory (simulated): the weights, inputs and tensor "
                                  f"{graph.largest_tensor!r} need {held / 2 ** 20:.0f} MiB, over the "
                                  f"{self.memory_limit_bytes / 2 ** 20:.0f} MiB a model may use on this device",
                                  runtime_version=self.runtime_version)
        with self._lock:
            outcome = self._measure(model.sha256, graph, config, timeout_s)
        if self.realtime:
            # Outside the lock: conditions() stays answerable while the "board" is busy.
            self._closed.wait(outcome.measure_wall_s + max(0.0, config.cooldown_seconds))
        return outcome

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._graphs.clear()

    # -- internals -------------------------------------------------------------------------

    def _analyse(self, model: StoredModel) -> GraphCost | GraphError:
        with self._lock:
            if model.sha256 in self._graphs:
                self._graphs.move_to_end(model.sha256)
                return self._graphs[model.sha256]
        try:
            result: GraphCost | GraphError = analyse_onnx(Path(model.path).read_bytes(), max_nodes=_MAX_NODES)
        except GraphError as exc:
            result = exc
        except OSError as exc:
            return GraphError(Status.MODEL_NOT_CACHED, f"cannot read the model file: {exc}")
        except Exception as exc:  # onnx raises assorted C++-bound errors on hostile input
            result = GraphError(Status.INVALID_MODEL, f"cannot analyse the model: {type(exc).__name__}: {exc}")
        with self._lock:
            self._graphs[model.sha256] = result
            while len(self._graphs) > _GRAPH_CACHE:
                self._graphs.popitem(last=False)
        return result

    def _throttled(self, heat_s: float) -> bool:
        th = self.profile.thermal
        return th.enabled and th.throttle_freq_fraction < 1 and heat_s >= th.throttle_after_s

    def _measure(self, sha: str, graph: GraphCost, config: MeasureConfig, timeout_s: float) -> MeasureOutcome:
        import numpy as np

        noise, th = self.profile.noise, self.profile.thermal
        call = self._calls.get(sha, 0)
        self._calls[sha] = call + 1
        rng = _rng(self.seed, sha, call)
        self._cool(self._pending_cooldown_s)
        self._pending_cooldown_s = max(0.0, config.cooldown_seconds)

        base_ms = max(self.model.latency_ms(graph, threads=config.threads), 1e-6)
        slow_ms = base_ms
        if th.enabled and th.throttle_freq_fraction < 1:
            slow_ms = self.model.latency_ms(graph, freq_scale=th.throttle_freq_fraction, threads=config.threads)
        # The host's timed loop: at least min_runs and min_seconds, but max_runs caps both.
        n = max(config.min_runs, math.ceil(config.min_seconds * 1e3 / base_ms), 1)
        if config.max_runs > 0:
            n = min(n, config.max_runs)
        # Lognormal samples with mean base_ms and the profile's CV, a per-call offset, outliers.
        sigma = math.sqrt(math.log1p(noise.cv ** 2))
        offset = math.exp(rng.normal(0.0, noise.run_cv)) if noise.run_cv else 1.0
        factors = rng.lognormal(-sigma ** 2 / 2, sigma, n) * offset
        if noise.outlier_rate:
            factors = np.where(rng.random(n) < noise.outlier_rate, factors * noise.outlier_factor, factors)
        warmup_ms = base_ms * offset * (noise.first_run_factor + config.warmup_runs - 1) if config.warmup_runs > 0 else 0.0
        samples = base_ms * factors
        if slow_ms != base_ms:
            # Samples that start after the heat threshold run at the throttled clock.
            start_s = self._heat_s + (warmup_ms + np.concatenate(([0.0], np.cumsum(samples)[:-1]))) / 1e3
            samples = np.where(start_s >= th.throttle_after_s, samples * (slow_ms / base_ms), samples)
        wall_s = (warmup_ms + float(samples.sum())) / 1e3
        if timeout_s > 0 and wall_s > timeout_s:
            self._load(timeout_s)
            return MeasureOutcome(Status.TIMEOUT,
                                  f"the simulated measurement would take {wall_s:.3g} s "
                                  f"(warm-up + {n} runs of ~{base_ms:.4g} ms); the limit is {timeout_s:g} s",
                                  runtime_version=self.runtime_version, measure_wall_s=timeout_s)
        self._load(wall_s)
        energy = self._energy(graph, samples, rng, config) if config.energy else None
        return MeasureOutcome(Status.OK, samples_ms=tuple(float(s) for s in samples),
                              runtime_version=self.runtime_version, measure_wall_s=wall_s,
                              energy=energy)

    def _load(self, seconds: float) -> None:
        self._heat_s += seconds
        self._throttled_ever |= self._throttled(self._heat_s)
        decay = math.exp(-seconds / 60.0)
        self._load_avg = self._load_avg * decay + (1 - decay)

    def _cool(self, seconds: float) -> None:
        if seconds > 0:
            self._heat_s *= math.exp(-seconds / self.profile.thermal.tau_s)
            self._load_avg *= math.exp(-seconds / 60.0)

    def _energy(self, graph: GraphCost, samples, rng, config: MeasureConfig) -> EnergyResult:
        """Read a simulated meter over windows of runs, with its resolution and counter wrap."""
        import numpy as np

        e = self.profile.energy
        n = len(samples)
        mean_ms = float(np.mean(samples))
        net_per_run = self.model.energy_mj(graph, latency_ms=mean_ms, threads=config.threads)
        total_gross = (e.idle_power_w * mean_ms + net_per_run) * n
        windows = max(2, min(n, 50, math.ceil(float(samples.sum()) / 1e3 / _ENERGY_WINDOW_S)))
        if e.counter_wrap_mj:   # a meter must be read more often than the counter wraps
            windows = max(windows, min(n, math.ceil(2 * total_gross / e.counter_wrap_mj)))
        windows = min(windows, n)
        idle_w = e.idle_power_w * float(np.exp(rng.normal(0.0, e.cv)))   # measured idle power
        flags: list[str] = []
        nets, grosses = [], []
        for chunk in np.array_split(samples, windows):
            t_ms = float(chunk.sum())
            active = (e.static_power_w * t_ms + (net_per_run - e.static_power_w * mean_ms) * len(chunk))
            true_mj = e.idle_power_w * t_ms + active * float(np.exp(rng.normal(0.0, e.cv)))
            read_mj, wrapped = self._read_counter(true_mj)
            if wrapped:
                flags.append("counter_wrapped")
            grosses.append(read_mj / len(chunk))
            nets.append((read_mj - idle_w * t_ms) / len(chunk))
        net = float(np.mean(nets))
        half = _T95.get(windows - 1, 1.96) * float(np.std(nets, ddof=1)) / math.sqrt(windows) if windows > 1 else 0.0
        if net <= 0:
            flags.append("absurd_reading")
        gross = float(np.mean(grosses))
        return EnergyResult(meter="simulated", meter_kind="simulated", gross_mj=gross, net_mj=net,
                            net_ci95_low_mj=net - half, net_ci95_high_mj=net + half,
                            idle_power_mw=idle_w * 1e3, active_power_mw=gross / mean_ms * 1e3,
                            windows=windows, estimated=False, flags=tuple(dict.fromkeys(flags)))

    def _read_counter(self, energy_mj: float) -> tuple[float, bool]:
        """Advance the energy counter; return the reading difference (wrap-corrected) and
        whether the counter wrapped in between, as a real RAPL-style counter reads."""
        e = self.profile.energy
        res = e.resolution_mj

        def quantise(x: float) -> float:
            return math.floor(x / res) * res if res else x

        before = quantise(self._counter_mj)
        self._counter_mj += energy_mj
        wrapped = False
        if e.counter_wrap_mj and self._counter_mj >= e.counter_wrap_mj:
            self._counter_mj %= e.counter_wrap_mj
            wrapped = True
        delta = quantise(self._counter_mj) - before
        if wrapped:
            delta += e.counter_wrap_mj
        return delta, wrapped


def _rng(seed: int, key: str, call: int):
    """A generator fixed by (seed, key, call): reproducible, independent across models."""
    import numpy as np

    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], "big")
    return np.random.default_rng(np.random.SeedSequence([seed % 2 ** 63, digest, call]))
