"""The real device: the machine the agent runs on. Models run in an isolated worker process
(``hilnas.agent.worker``) with a memory limit and a wall-time limit, so a model that crashes,
hangs or exhausts memory costs its own request only; the worker is restarted for the next one.
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
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hilnas.agent.backends import BACKEND_NAMES, get_backend
from hilnas.agent.config import AgentLimits, MeasureConfig
from hilnas.agent.device import MeasureOutcome, StoredModel
from hilnas.agent.fingerprint import describe_host
from hilnas.agent.results import Conditions, DeviceInfo, Status

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 60.0   # a cold Python start plus numpy import on a slow SD card
KILL_GRACE_S = 1.0         # past the model's limit, the worker gets this long to answer
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")  # ONNX Runtime colours its log lines


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

    The worker is started on first use and restarted after it crashes or is killed for a
    timeout. ``measure`` never raises for a bad model; it raises ``ValueError`` only for a
    config this machine cannot honour (CPUs it does not have, negative threads).
    """

    def __init__(self, limits: AgentLimits, default_backend: str = "onnxruntime", *,
                 conditions_probe: Callable[[], Conditions] | None = None,
                 python: str = sys.executable):
        if default_backend not in BACKEND_NAMES:
            raise ValueError(f"unknown backend {default_backend!r}; known: {', '.join(BACKEND_NAMES)}")
        self.limits = limits
        self.default_backend = default_backend
        self._conditions_probe = conditions_probe
        self._python = python
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
                                 max_message_bytes=self.limits.max_message_bytes)
        return self._info

    def conditions(self) -> Conditions:
        if self._conditions_probe is not None:
            return self._conditions_probe()
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):
            load = 0.0
        return Conditions(timestamp_s=time.time(), load_avg_1m=load)

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

    @staticmethod
    def _check_config(config: MeasureConfig) -> None:
        if config.threads < 0:
            raise ValueError(f"threads must be >= 0, got {config.threads}")
        if config.cpu_affinity and hasattr(os, "sched_getaffinity"):
            usable = os.sched_getaffinity(0)
            missing = sorted(set(config.cpu_affinity) - usable)
            if missing:
                raise ValueError(f"cpu_affinity asks for CPUs {missing}, which this device does not "
                                 f"offer (usable: {sorted(usable)})")

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
        deadline = time.monotonic() + timeout_s + max(config.cooldown_seconds, 0.0) + KILL_GRACE_S
        try:
            worker.send(request)
            while True:
                response = worker.receive(deadline - time.monotonic())
                if response is None or response.get("id") == self._request_id:
                    break
                log.warning("worker %d sent a stale response; ignoring it", worker.pid)
        except TimeoutError:
            worker.kill()
            self._worker = None
            return MeasureOutcome(Status.TIMEOUT, f"model ran past the wall-time limit of {timeout_s:g} s; "
                                                  f"worker process {worker.pid} killed")
        except (OSError, ValueError):  # broken pipe or a corrupt line: the worker is unusable
            response = None
        if response is None:
            why = worker.death()
            worker.kill()
            self._worker = None
            return MeasureOutcome(Status.CRASHED, f"the runtime crashed: {why}")
        return self._outcome(response)

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
