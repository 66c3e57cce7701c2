"""The isolated measurement worker: ``python -m hilnas.agent.worker [--memory-mb N]``.

It loads and times models on behalf of the agent, so a model that crashes, hangs or exhausts
memory takes down this process only. It speaks JSON lines (never pickle): one request per line
on stdin, one response per line on stdout, and stays alive between requests so that building a
LUT of thousands of tiny models does not pay a process start (and a runtime import) for each.

On start it writes ``{"ready": true, "pid": ..., "affinity": [...]}``. A request is
``{"id", "path", "format", "backend", "threads", "cpu_affinity", "warmup_runs", "min_runs",
"min_seconds", "max_runs", "cooldown_seconds", "budget_s"}`` (or ``{"op": "exit"}``); the
response is ``{"id", "status", "error", "samples_ms", "measure_wall_s", "runtime_version",
"affinity", "threads", "warmup_runs", "stopped", "pid", "rss_mb"}`` with ``status`` a ``Status`` name
and ``rss_mb`` the worker's resident memory after the request (the model still loaded).

For the energy protocol, ``{"op": "run_for", "id", "seconds"}`` runs the model loaded by the
last request back to back until ``seconds`` have passed (at least once) and answers ``{"id",
"status", "error", "runs", "elapsed_s", "affinity", "pid"}``; the agent reads the energy meter
around it in its own process.
"""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from hilnas.agent.backends import LoadError, classify_error, get_backend
from hilnas.agent.protocol import TimingPlan, time_runs
from hilnas.agent.results import Status

PROTOCOL_VERSION = 1
_PARENT_POLL_S = 1.0


def _protect_stdout() -> IO[str]:
    """Return a private copy of stdout for protocol lines and point fd 1 at stderr, so a
    runtime that prints to stdout cannot corrupt the JSON channel."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def _limit_memory(memory_mb: int) -> None:
    """Cap the address space, so a runaway allocation fails here instead of in the agent."""
    if memory_mb <= 0:
        return
    try:
        import resource
    except ImportError:  # not POSIX
        return
    limit = memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit if hard == resource.RLIM_INFINITY else hard))
    except (ValueError, OSError) as exc:
        print(f"hilnas worker: could not set the memory limit: {exc}", file=sys.stderr)


def _exit_with_parent() -> None:
    """Exit when the agent dies, even while a model is hanging in native code (the runtimes
    release the GIL while they compute, so this thread still gets to run)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(_PARENT_POLL_S)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _rss_mb() -> float | None:
    """Resident memory of this process now, MiB (None where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _get_affinity() -> list[int] | None:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _set_affinity(cpus: set[int]) -> None:
    """Pin every thread of the process (a runtime's thread pool already exists when a session
    is reused; sched_setaffinity(0) would move the calling thread only)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:  # a thread that just ended
            pass


class Worker:
    """Serves measurement requests; keeps the last loaded model for the next request."""

    def __init__(self, memory_mb: int = 0) -> None:
        self._memory_mb = memory_mb
        self._base_affinity = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        self._loaded: tuple[tuple[str, str, int], Any, str] | None = None  # (key, runner, version)

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        received = time.perf_counter()
        budget_s = float(req.get("budget_s") or 0.0)
        threads = int(req.get("threads") or 0)
        response: dict[str, Any] = {"status": Status.OK.name, "error": "", "samples_ms": [],
                                    "measure_wall_s": 0.0, "runtime_version": "",
                                    "threads": threads, "pid": os.getpid()}
        try:
            response["affinity"] = self._apply_affinity(req.get("cpu_affinity") or [])
        except (OSError, ValueError) as exc:
            return {**response, "status": Status.INVALID_MODEL.name,
                    "error": f"cannot pin the worker to CPUs {req.get('cpu_affinity')}: {exc}"}

        try:
            runner, version = self._load(Path(req["path"]), str(req["backend"]), threads)
        except LoadError as exc:
            return {**response, "status": exc.status.name, "error": str(exc)}
        except ImportError as exc:
            return {**response, "status": Status.BACKEND_UNAVAILABLE.name, "error": str(exc)}
        except FileNotFoundError as exc:
            return {**response, "status": Status.INVALID_MODEL.name, "error": f"model file missing: {exc}"}
        except Exception as exc:  # runtime load errors arrive as many exception types
            return {**response, **self._failure(exc, "loading")}
        response["runtime_version"] = version

        remaining = budget_s - (time.perf_counter() - received) if budget_s > 0 else math.inf
        plan = TimingPlan(warmup_runs=int(req.get("warmup_runs", 0)), min_runs=int(req.get("min_runs", 1)),
                          min_seconds=float(req.get("min_seconds", 0.0)), max_runs=int(req.get("max_runs", 0)),
                          cooldown_seconds=float(req.get("cooldown_seconds", 0.0)),
                          budget_s=max(remaining, 0.0))
        try:
            timing = time_runs(runner.run, plan)
        except Exception as exc:  # MemoryError included: the next request starts clean
            self._loaded = None
            return {**response, **self._failure(exc, "running")}
        response.update(samples_ms=list(timing.samples_ms), measure_wall_s=timing.measure_wall_s,
                        warmup_runs=timing.warmup_runs, stopped=timing.stopped)
        if timing.stopped == "budget":
            # The budget ran out before both minimums (runs and seconds) were met: the caller
            # asked for a measurement this time limit cannot give, so say so, never a short one.
            response.update(status=Status.TIMEOUT.name,
                            error=f"{len(timing.samples_ms)} timed runs in {timing.measure_wall_s:.2f} s did not reach "
                                  f"min_runs={plan.min_runs} and min_seconds={plan.min_seconds:g} within the "
                                  f"wall-time limit of {budget_s:g} s")
        return response

    def run_for(self, req: dict[str, Any]) -> dict[str, Any]:
        """Run the loaded model back to back for ``req["seconds"]``; count the runs."""
        response: dict[str, Any] = {"status": Status.OK.name, "error": "", "runs": 0, "elapsed_s": 0.0,
                                    "affinity": _get_affinity(), "pid": os.getpid()}
        if self._loaded is None:
            return {**response, "status": Status.CRASHED.name,
                    "error": "run_for: no model is loaded (the last request failed or none was made)"}
        run = self._loaded[1].run
        seconds = max(float(req.get("seconds") or 0.0), 0.0)
        clock = time.perf_counter
        start = clock()
        end = start + seconds
        runs = 0
        try:
            while True:
                run()
                runs += 1
                if clock() >= end:
                    break
        except Exception as exc:  # MemoryError included: the next request starts clean
            self._loaded = None
            return {**response, **self._failure(exc, "running"), "runs": runs}
        return {**response, "runs": runs, "elapsed_s": clock() - start}

    def _failure(self, exc: BaseException, while_: str) -> dict[str, str]:
        status = classify_error(exc, loading=while_ == "loading")
        error = _describe(exc, while_)
        if status == Status.CRASHED:
            self._loaded = None
            limit = f" (worker address-space limit {self._memory_mb} MiB)" if self._memory_mb > 0 else ""
            error = f"out of memory{limit}: {error}"
        return {"status": status.name, "error": error}

    def _apply_affinity(self, cpus: list[int]) -> list[int] | None:
        if self._base_affinity is None:
            return None  # the platform cannot pin; reported as null
        _set_affinity({int(c) for c in cpus} if cpus else self._base_affinity)
        return _get_affinity()

    def _load(self, path: Path, backend_name: str, threads: int) -> tuple[Any, str]:
        key = (str(path), backend_name, threads)
        if self._loaded is not None and self._loaded[0] == key:
            return self._loaded[1], self._loaded[2]
        self._loaded = None  # free the previous session before loading the next
        try:
            backend = get_backend(backend_name)
        except KeyError as exc:
            raise ImportError(str(exc)) from None
        if not path.is_file():
            raise FileNotFoundError(str(path))
        runner = backend.load(path, threads)
        version = backend.runtime_version()
        self._loaded = (key, runner, version)
        return runner, version


def _describe(exc: BaseException, while_: str) -> str:
    text = " ".join(str(exc).split())  # runtime messages span lines; keep one line
    if len(text) > 2000:
        text = text[:2000] + " ..."
    return f"{type(exc).__name__} while {while_} the model: {text}"


def serve(stdin: IO[bytes], channel: IO[str], memory_mb: int = 0) -> int:
    worker = Worker(memory_mb)
    channel.write(json.dumps({"ready": True, "protocol": PROTOCOL_VERSION, "pid": os.getpid(),
                              "affinity": _get_affinity()}) + "\n")
    for raw in stdin:
        try:
            req = json.loads(raw)
            if not isinstance(req, dict):
                raise ValueError("request is not a JSON object")
        except ValueError as exc:
            print(f"hilnas worker: bad request line: {exc}", file=sys.stderr)
            return 2
        if req.get("op") == "exit":
            return 0
        response = worker.run_for(req) if req.get("op") == "run_for" else worker.handle(req)
        response["id"] = req.get("id")
        response["rss_mb"] = _rss_mb()  # the agent recycles a worker that stays this large
        channel.write(json.dumps(response) + "\n")
    return 0  # stdin closed: the agent is gone


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    memory_mb = 0
    if len(argv) == 2 and argv[0] == "--memory-mb":
        memory_mb = int(argv[1])
    elif argv:
        print("usage: python -m hilnas.agent.worker [--memory-mb N]", file=sys.stderr)
        return 2
    channel = _protect_stdout()
    _limit_memory(memory_mb)
    _exit_with_parent()
    return serve(sys.stdin.buffer, channel, memory_mb)


if __name__ == "__main__":
    sys.exit(main())
