"""The real device: the machine the agent runs on. Models run in an isolated worker process
(``hilnas.agent.worker``) with a memory limit and a wall-time limit, so a model that crashes,
hangs or exhausts memory costs its own request only; the worker is restarted for the next one.

Energy, when asked for, is measured after the latency (so meter reads never disturb timing):
the energy protocol (``hilnas.agent.energy.measure_energy``) reads the device's best meter in
this process while the worker runs the already-loaded model back to back (its ``run_for`` op).
The meters are found once, at construction; conditions are probed under the same ``root``.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hilnas.agent.backends import BACKEND_NAMES, get_backend
from hilnas.agent.conditions import probe_conditions, runtime_versions, thread_affinity
from hilnas.agent.config import AgentLimits, MeasureConfig
from hilnas.agent.device import MeasureOutcome, StoredModel, check_config
from hilnas.agent.energy import (EnergyMeter, NoneMeter, SamplingInsideWindowError, best_meter,
                                 discover_meters, invalid_result, measure_energy,
                                 measurement_window)
from hilnas.agent.energy.base import METER_UNAVAILABLE, OVER_TIME_LIMIT, RUN_FAILED
from hilnas.agent.energy.sysfs import Reader, Runner, read_text
from hilnas.agent.fingerprint import describe_host
from hilnas.agent.results import Conditions, DeviceInfo, EnergyMeterInfo, EnergyResult, Status

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 60.0   # a cold Python start plus numpy import on a slow SD card
KILL_GRACE_S = 1.0         # past the model's limit, the worker gets this long to answer
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")  # ONNX Runtime colours its log lines


class _RunFailed(Exception):
    """The worker could not run the model during the energy protocol (said in the result)."""


@dataclass(frozen=True)
class WorkerReport:
    """How the worker ran the last measurement (for logs and tests)."""

    pid: int
    affinity: tuple[int, ...] | None   # CPUs the worker was pinned to; None = cannot pin here
    threads: int                       # intra-op threads asked of the runtime (0 = its default)
    warmup_runs: int
    stopped: str                       # "done", "max_runs" or "budget"


class _WorkerProcess:
    """One running worker: its pipes, and threads draining stdout (protocol) and stderr (tail)."""

    def __init__(self, python: str, memory_mb: int):
        cmd = [python, "-m", "hilnas.agent.worker", "--memory-mb", str(int(memory_mb))]
        # start_new_session: the worker leads its own process group, so a kill reaches anything
        # it spawned. The memory limit is set by the worker itself: preexec_fn is unsafe in a
        # multi-threaded (gRPC) parent.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        threading.Thread(target=self._pump_stdout, name=f"worker-{self.pid}-out", daemon=True).start()
        threading.Thread(target=self._pump_stderr, name=f"worker-{self.pid}-err", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(line)
        self.lines.put(None)  # EOF: the worker is gone

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for raw in self.proc.stderr:
                line = _ANSI_RE.sub("", raw.decode(errors="replace")).rstrip()
                if line:
                    self.stderr_tail.append(line)
                    log.debug("worker %d: %s", self.pid, line)

    def receive(self, timeout_s: float) -> dict[str, Any] | None:
        """The next protocol line; None if the worker died; TimeoutError if it is silent."""
        try:
            line = self.lines.get(timeout=max(timeout_s, 0.0))
        except queue.Empty:
            raise TimeoutError from None
        if line is None:
            return None
        msg = json.loads(line)
        if not isinstance(msg, dict):
            raise ValueError("worker sent a non-object line")
        return msg

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.stderr_tail.clear()  # so a crash report quotes this request's output only
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:  # once reaped, the pid may belong to someone else
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()
        self._close_pipes()

    def stop(self, timeout_s: float = 5.0) -> None:
        try:
            self.send({"op": "exit"})
            self.proc.wait(timeout=timeout_s)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def death(self) -> str:
        """Why the worker ended, with the last lines it wrote to stderr."""
        try:
            code = self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        if code < 0:
            try:
                how = f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        time.sleep(0.05)  # let the stderr pump catch the last lines
        tail = " | ".join(list(self.stderr_tail)[-3:])
        return f"worker process {how}" + (f"; stderr: {tail}" if tail else "")


class HostDevice:
    """Measures models on this machine, one at a time, each in an isolated worker process.

    The worker is started on first use and replaced after it crashes, runs out of memory,
    is killed for a timeout, or stays above ``limits.worker_recycle_mb`` after a request.
    ``measure`` never raises for a bad model; it raises ``ValueError`` only for a config this
    machine cannot honour (CPUs it does not have, negative threads, an energy
    protocol below its minimum of 5 windows of 1 s).

    ``root``, ``runner`` and ``reader`` say where sysfs is, how ``vcgencmd`` runs and how files
    are read (tests point them at fake trees); ``meters`` replaces discovery with given meters.
    """

    def __init__(self, limits: AgentLimits, default_backend: str = "onnxruntime", *,
                 conditions_probe: Callable[[], Conditions] | None = None,
                 python: str = sys.executable, root: Path = Path("/"),
                 runner: Runner | None = None, reader: Reader = read_text,
                 meters: Sequence[EnergyMeter] | None = None):
        if default_backend not in BACKEND_NAMES:
            raise ValueError(f"unknown backend {default_backend!r}; known: {', '.join(BACKEND_NAMES)}")
        self.limits = limits
        self.default_backend = default_backend
        self._conditions_probe = conditions_probe
        self._python = python
        self._root = Path(root)
        self._runner = runner
        self._reader = reader
        # Found once: probing may fork vcgencmd, and a device's meters do not change under us.
        found = list(meters) if meters is not None else discover_meters(self._root, runner, reader=reader)
        self.meters: tuple[EnergyMeter, ...] = tuple(found) or (NoneMeter(),)
        self.meter_infos: tuple[EnergyMeterInfo, ...] = tuple(m.info() for m in self.meters)
        self.meter: EnergyMeter | None = best_meter(self.meters)  # None: energy cannot be measured
        self._versions = runtime_versions()
        self._lock = threading.Lock()
        self._worker: _WorkerProcess | None = None
        self._info: DeviceInfo | None = None
        self._request_id = 0
        self.last_report: WorkerReport | None = None

    # -- Device protocol ------------------------------------------------------------------

    def info(self) -> DeviceInfo:
        if self._info is None:  # probing is cheap but the answer does not change
            base = describe_host(self.default_backend)
            self._info = replace(base, max_model_bytes=self.limits.max_model_bytes,
                                 queue_size=self.limits.queue_size,
                                 max_message_bytes=self.limits.max_message_bytes,
                                 energy_meters=self.meter_infos)
        return self._info

    def conditions(self) -> Conditions:
        if self._conditions_probe is not None:
            c = self._conditions_probe()
        else:
            c = probe_conditions(self._root, self._runner, reader=self._reader)
        return replace(c, runtime_versions=c.runtime_versions or dict(self._versions),
                       thread_affinity=c.thread_affinity or self._worker_affinity())

    def measure(self, model: StoredModel, backend: str, config: MeasureConfig, *,
                timeout_s: float) -> MeasureOutcome:
        backend = backend or self.default_backend
        if backend not in BACKEND_NAMES:
            return MeasureOutcome(Status.BACKEND_UNAVAILABLE,
                                  f"unknown backend {backend!r}; known: {', '.join(BACKEND_NAMES)}")
        impl = get_backend(backend)
        if not impl.available():
            return MeasureOutcome(Status.BACKEND_UNAVAILABLE, f"backend {backend!r} is not installed on this device")
        if model.format != impl.FORMAT:
            return MeasureOutcome(Status.INVALID_MODEL,
                                  f"backend {backend!r} runs {impl.FORMAT.name} models, not {model.format.name}")
        self._check_config(config)
        timeout_s = timeout_s if timeout_s > 0 else self.limits.worker_timeout_s
        with self._lock:
            return self._measure_locked(model, backend, config, timeout_s)

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

    def __enter__(self) -> "HostDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def worker_pid(self) -> int | None:
        """PID of the running worker, if any."""
        w = self._worker
        return w.pid if w is not None and w.alive() else None

    # -- internals ------------------------------------------------------------------------

    def _worker_affinity(self) -> tuple[int, ...]:
        """CPUs the worker may run on now: as it last reported, or (no worker yet) this
        process's, which a new worker inherits."""
        report, pid = self.last_report, self.worker_pid
        if report is not None and report.pid == pid and report.affinity is not None:
            return report.affinity
        return thread_affinity()

    @staticmethod
    def _check_config(config: MeasureConfig) -> None:
        check_config(config, set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None)

    def _ensure_worker(self) -> _WorkerProcess:
        if self._worker is not None and self._worker.alive():
            return self._worker
        if self._worker is not None:  # died while idle
            log.warning("measurement worker %d died while idle: %s", self._worker.pid, self._worker.death())
            self._worker.kill()
        worker = _WorkerProcess(self._python, self.limits.worker_memory_mb)
        try:
            ready = worker.receive(STARTUP_TIMEOUT_S)
        except (TimeoutError, ValueError):
            worker.kill()
            raise RuntimeError(f"measurement worker did not start within {STARTUP_TIMEOUT_S:g} s") from None
        if ready is None or not ready.get("ready"):
            raise RuntimeError(f"measurement worker failed to start: {worker.death()}")
        self._worker = worker
        return worker

    def _measure_locked(self, model: StoredModel, backend: str, config: MeasureConfig,
                        timeout_s: float) -> MeasureOutcome:
        try:
            worker = self._ensure_worker()
        except (OSError, RuntimeError) as exc:
            self._worker = None
            return MeasureOutcome(Status.CRASHED, str(exc))
        self._request_id += 1
        request = {
            "id": self._request_id, "path": str(model.path), "format": model.format.name,
            "backend": backend, "threads": config.threads, "cpu_affinity": list(config.cpu_affinity),
            "warmup_runs": config.warmup_runs, "min_runs": config.min_runs,
            "min_seconds": config.min_seconds, "max_runs": config.max_runs,
            "cooldown_seconds": config.cooldown_seconds, "budget_s": timeout_s,
        }
        started = time.monotonic()
        deadline = started + timeout_s + max(config.cooldown_seconds, 0.0) + KILL_GRACE_S
        # No sampler may start (fork) while the model is timed.
        with measurement_window():
            try:
                response = self._exchange(worker, request, deadline)
            except TimeoutError:
                self._drop_worker(worker)
                return MeasureOutcome(Status.TIMEOUT, f"model ran past the wall-time limit of {timeout_s:g} s; "
                                                      f"worker process {worker.pid} killed")
        if response is None:
            return MeasureOutcome(Status.CRASHED, f"the runtime crashed: {self._drop_worker(worker, died=True)}")
        outcome = self._outcome(response)
        if config.energy and outcome.status is Status.OK:
            left_s = timeout_s - (time.monotonic() - started)
            outcome = replace(outcome, energy=self._measure_energy(config, left_s, timeout_s))
        self._recycle_if_needed(worker, outcome.status, response.get("rss_mb"))
        return outcome

    def _recycle_if_needed(self, worker: _WorkerProcess, status: Status, rss_mb: object) -> None:
        """Replace a worker that ran out of memory (a runtime that survived a failed allocation
        may be left in a bad state: it failed later models a fresh worker ran), and one that
        stays large after a big model (the allocator keeps freed memory): the next request
        starts a fresh worker, which costs ~1 s once."""
        limit = self.limits.worker_recycle_mb
        large = isinstance(rss_mb, (int, float)) and limit > 0 and rss_mb > limit
        if status is Status.CRASHED or large:
            why = "it ran out of memory" if status is Status.CRASHED else f"it stayed at {rss_mb:.0f} MiB > {limit} MiB"
            log.info("replacing measurement worker %d: %s", worker.pid, why)
            if self._worker is worker:
                self._worker = None
            worker.stop()

    def _exchange(self, worker: _WorkerProcess, request: dict[str, Any],
                  deadline: float) -> dict[str, Any] | None:
        """Send one request and wait for its response until ``deadline`` (monotonic).

        None when the worker died or the channel broke; TimeoutError when it stayed silent.
        """
        try:
            worker.send(request)
            while True:
                response = worker.receive(deadline - time.monotonic())
                if response is None or response.get("id") == request["id"]:
                    return response
                log.warning("worker %d sent a stale response; ignoring it", worker.pid)
        except TimeoutError:  # an OSError too: let it through before the catch-all below
            raise
        except (OSError, ValueError):  # broken pipe or a corrupt line: the worker is unusable
            return None

    def _drop_worker(self, worker: _WorkerProcess, *, died: bool = False) -> str:
        """Kill a worker that hung (or reap one that ``died``); the next request starts a new
        one. Says why it ended."""
        why = worker.death() if died else f"worker process {worker.pid} killed"
        worker.kill()
        if self._worker is worker:
            self._worker = None
        return why

    # -- energy -----------------------------------------------------------------------------

    def _measure_energy(self, config: MeasureConfig, left_s: float, timeout_s: float) -> EnergyResult:
        """Energy per inference of the model the worker has loaded; NaN + flags + a note when
        it cannot be measured (never raises, never fails the latency result)."""
        idle_s, window_s, windows = config.energy_protocol()
        meter = self.meter
        if meter is None:
            return invalid_result(self._no_meter_info(), {METER_UNAVAILABLE}, 0, self._no_meter_info().note)
        info = meter.info()
        planned_s = 2 * idle_s + windows * window_s
        if planned_s > left_s:
            return invalid_result(info, {OVER_TIME_LIMIT}, 0, (
                f"the energy protocol takes ~{planned_s:g} s (idle {idle_s:g} s, {windows} x {window_s:g} s, "
                f"idle {idle_s:g} s) but only {max(left_s, 0.0):.1f} s of the {timeout_s:g} s wall-time limit "
                "(or the client's deadline) were left after the latency measurement; raise timeout_s"))
        try:
            return measure_energy(meter, lambda s: self._run_for(s, timeout_s), idle_s=idle_s,
                                  window_s=window_s, windows=windows)
        except _RunFailed as exc:
            return invalid_result(info, {RUN_FAILED}, 0, f"energy protocol stopped: {exc}")
        except SamplingInsideWindowError as exc:  # cannot happen outside a window; say so if it does
            return invalid_result(info, {METER_UNAVAILABLE}, 0, str(exc))

    def _run_for(self, seconds: float, timeout_s: float) -> int:
        """Have the worker run its loaded model back to back for ``seconds``; the run count."""
        worker = self._worker
        if worker is None or not worker.alive():
            raise _RunFailed("the measurement worker is gone")
        self._request_id += 1
        # One run may overshoot the window by up to one inference, itself within timeout_s.
        deadline = time.monotonic() + seconds + timeout_s + KILL_GRACE_S
        try:
            response = self._exchange(worker, {"op": "run_for", "id": self._request_id, "seconds": seconds},
                                      deadline)
        except TimeoutError:
            self._drop_worker(worker)
            raise _RunFailed(f"a window ran past {seconds + timeout_s:g} s; worker process {worker.pid} "
                             "killed") from None
        if response is None:
            raise _RunFailed(f"the runtime crashed: {self._drop_worker(worker, died=True)}")
        if response.get("status") != Status.OK.name:
            raise _RunFailed(f"{response.get('status')}: {response.get('error', '')}")
        return int(response.get("runs", 0))

    def _no_meter_info(self) -> EnergyMeterInfo:
        """What to report when no meter is usable: the explicit 'none' with every meter's why."""
        for meter, info in zip(self.meters, self.meter_infos):
            if isinstance(meter, NoneMeter):
                return info
        why = "; ".join(f"{i.name}: {i.note}" for i in self.meter_infos)
        return NoneMeter(f"no usable energy meter ({why})").info()

    def _outcome(self, response: dict[str, Any]) -> MeasureOutcome:
        try:
            status = Status[response["status"]]
        except KeyError:
            status, response["error"] = Status.CRASHED, f"worker sent an unknown status {response.get('status')!r}"
        affinity = response.get("affinity")
        self.last_report = WorkerReport(
            pid=int(response.get("pid", 0)),
            affinity=tuple(affinity) if affinity is not None else None,
            threads=int(response.get("threads", 0)),
            warmup_runs=int(response.get("warmup_runs", 0)),
            stopped=str(response.get("stopped", "")))
        return MeasureOutcome(
            status=status,
            error=str(response.get("error", "")),
            samples_ms=tuple(float(x) for x in response.get("samples_ms", ())),
            runtime_version=str(response.get("runtime_version", "")),
            measure_wall_s=float(response.get("measure_wall_s", 0.0)),
        )
