"""The agent core: admission, the measurement slot, the measurement protocol's stability rule.

Plain Python with no gRPC imports: the servicer is a thin adapter over ``Agent``. The same core
runs over the real host (``HostDevice``) and over a simulated device (``SimulatedDevice``).
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Iterable, Iterator

from hilnas.agent.conditions import is_throttled
from hilnas.agent.config import AgentLimits, MeasureConfig
from hilnas.agent.device import AgentError, Device, MeasureOutcome, StoredModel
from hilnas.agent.results import BenchmarkRequest, BenchmarkResult, Conditions, DeviceInfo, ModelFormat, Status
from hilnas.agent.slot import MeasurementSlot
from hilnas.agent.validate import check_sha256

# Which backends can run which format.
_FORMAT_BACKENDS = {
    ModelFormat.ONNX: ("onnxruntime", "simulated"),
    ModelFormat.TFLITE: ("tflite",),
}


class Agent:
    """Measures models on one device, one at a time, and describes that device."""

    def __init__(self, device: Device, cache, limits: AgentLimits, *, default_backend: str = "onnxruntime"):
        self.device = device
        self.cache = cache
        self.limits = limits
        self.slot = MeasurementSlot(limits.queue_size)
        self._info: DeviceInfo | None = None
        self._info_lock = threading.Lock()
        self.default_backend = default_backend

    # -- Describe ---------------------------------------------------------------------------
    def describe(self) -> DeviceInfo:
        with self._info_lock:
            if self._info is None:
                info = self.device.info()
                default = self.default_backend if self.default_backend in info.backends else (
                    info.backends[0] if info.backends else "")
                self._info = dataclasses.replace(
                    info, default_backend=default, max_model_bytes=self.limits.max_model_bytes,
                    queue_size=self.limits.queue_size, max_message_bytes=self.limits.max_message_bytes)
            return self._info

    # -- Benchmark --------------------------------------------------------------------------
    def benchmark(self, request: BenchmarkRequest, *, deadline: float | None = None) -> BenchmarkResult:
        """Measure one model. ``deadline`` is a ``time.monotonic()`` instant (the client's)."""
        start = time.monotonic()
        try:
            self._precheck(request)
            with self.slot.hold(deadline):
                result = self._admit_and_measure(request, deadline)
        except AgentError as err:
            result = BenchmarkResult.failure(err.status, err.message, request)
        return self._answer(result, start)

    def benchmark_stream(self, requests: Iterable[BenchmarkRequest | AgentError], *,
                         deadline: float | None = None) -> Iterator[BenchmarkResult]:
        """Measure many models, holding the slot once for the whole stream.

        An item may be an ``AgentError`` (a request the servicer could not even decode); it is
        answered in-band so that one bad item never ends the stream. A full queue raises
        ``AgentError(BUSY)`` before the first result.
        """
        with self.slot.hold(deadline):
            for request in requests:
                start = time.monotonic()
                if isinstance(request, AgentError):
                    yield self._answer(BenchmarkResult.failure(request.status, request.message, request.request), start)
                    continue
                try:
                    self._precheck(request)
                    result = self._admit_and_measure(request, deadline)
                except AgentError as err:
                    result = BenchmarkResult.failure(err.status, err.message, request)
                yield self._answer(result, start)

    # -- internals --------------------------------------------------------------------------
    def _answer(self, result: BenchmarkResult, start: float) -> BenchmarkResult:
        """The result as sent: its wall time, and an error text that names no path on this
        device (runtimes quote the cached file they load; a client has no business with it)."""
        error = result.error
        if error:
            for path, shown in self._private_paths():
                error = error.replace(path, shown)
        return dataclasses.replace(result, error=error, total_wall_s=time.monotonic() - start)

    def _private_paths(self) -> list[tuple[str, str]]:
        import os

        root = getattr(self.cache, "root", None)
        paths = []
        if root is not None:
            paths += [(str(root.resolve()), "<model cache>"), (str(root), "<model cache>")]
        home = os.path.expanduser("~")
        if home not in ("", "/", "~"):
            paths.append((home, "~"))
        return sorted(set(paths), key=lambda p: -len(p[0]))  # longest first: a root inside home

    def _precheck(self, request: BenchmarkRequest) -> None:
        """Cheap checks that need no CPU time worth mentioning (done before queueing)."""
        check_sha256(request.sha256)
        if len(request.model) > self.limits.max_model_bytes:
            raise AgentError(Status.MODEL_TOO_LARGE,
                             f"model is {len(request.model)} bytes; this agent accepts at most {self.limits.max_model_bytes}")

    def _backend_for(self, request: BenchmarkRequest) -> str:
        info = self.describe()
        backend = request.backend or (
            info.default_backend if info.default_backend in _FORMAT_BACKENDS[request.format]
            else next((b for b in _FORMAT_BACKENDS[request.format] if b in info.backends), ""))
        if backend not in info.backends:
            raise AgentError(Status.BACKEND_UNAVAILABLE,
                             f"backend {backend or '(none for ' + request.format.name + ')'!s} is not available on this "
                             f"device; available: {', '.join(info.backends) or 'none'}")
        if backend not in _FORMAT_BACKENDS[request.format]:
            raise AgentError(Status.BACKEND_UNAVAILABLE,
                             f"backend {backend} cannot run {request.format.name} models")
        return backend

    def _admit(self, request: BenchmarkRequest) -> StoredModel:
        """Validate and cache the model (inside the slot: hashing and parsing cost CPU)."""
        if not request.model:
            stored = self.cache.get(request.sha256)
            if stored is None:
                raise AgentError(Status.MODEL_NOT_CACHED, f"model {request.sha256[:12]} is not cached here; send its bytes")
            if stored.format != request.format:
                raise AgentError(Status.INVALID_MODEL, f"cached model {request.sha256[:12]} is {stored.format.name}, not {request.format.name}")
            return stored
        from hilnas.agent.validate import check_model

        check_model(request.model, request.sha256, request.format, self.limits)
        return self.cache.put(request.sha256, request.model, request.format)

    def _admit_and_measure(self, request: BenchmarkRequest, deadline: float | None) -> BenchmarkResult:
        backend = self._backend_for(request)
        model = self._admit(request)
        config = request.config.with_defaults(default_timeout_s=self.limits.worker_timeout_s)
        before = self.device.conditions()
        outcome = self._measure_once(model, backend, config, deadline)
        if outcome.status is not Status.OK:
            return self._result(request, backend, config, outcome, None, before, None, status=outcome.status,
                                error=outcome.error)
        from hilnas.agent.stats import summarise

        stats = summarise(outcome.samples_ms)
        remeasured = False
        if stats.robust_cv >= config.cv_threshold and config.remeasure_unstable:
            # One automatic re-measure: a passing disturbance should not cost a LUT row.
            second = self._measure_once(model, backend, config, deadline)
            if second.status is Status.OK:
                # Keep the second measurement, but count both in the device time spent.
                second = dataclasses.replace(second, measure_wall_s=outcome.measure_wall_s + second.measure_wall_s)
                outcome, stats, remeasured = second, summarise(second.samples_ms), True
        after = self.device.conditions()
        status, error = Status.OK, ""
        if stats.robust_cv >= config.cv_threshold:
            status, error = Status.UNSTABLE, (f"robust coefficient of variation {stats.robust_cv:.3f} >= "
                                              f"{config.cv_threshold:.3f} after a re-measure")
        if is_throttled(before, after):  # throttled at either probe, or a sticky bit appeared
            status, error = Status.THROTTLED, "the device reported throttling during the measurement"
        return self._result(request, backend, config, outcome, stats, before, after, status=status, error=error,
                            remeasured=remeasured)

    def _measure_once(self, model: StoredModel, backend: str, config: MeasureConfig,
                      deadline: float | None) -> MeasureOutcome:
        timeout = config.timeout_s
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return MeasureOutcome(Status.TIMEOUT, "deadline expired before the measurement started")
            timeout = min(timeout, remaining)
        try:
            return self.device.measure(model, backend, config, timeout_s=timeout)
        except ValueError as err:  # a config this device cannot honour (CPU ids it lacks, ...)
            raise AgentError(Status.INVALID_MODEL, f"bad measurement config: {err}") from None

    def _result(self, request: BenchmarkRequest, backend: str, config: MeasureConfig, outcome: MeasureOutcome,
                stats, before: Conditions | None, after: Conditions | None, *, status: Status, error: str,
                remeasured: bool = False) -> BenchmarkResult:
        info = self.describe()
        return BenchmarkResult(
            status=status, error=error, request_id=request.request_id, sha256=request.sha256, backend=backend,
            runtime_version=outcome.runtime_version, samples_ms=tuple(outcome.samples_ms), latency=stats,
            energy=outcome.energy, conditions_before=before, conditions_after=after, simulated=info.simulated,
            remeasured=remeasured, config=config, device_fingerprint=info.fingerprint,
            measure_wall_s=outcome.measure_wall_s, op_key=request.op_key)

    def close(self) -> None:
        self.device.close()
