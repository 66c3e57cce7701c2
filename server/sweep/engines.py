"""Where cells run: a process pool on this machine, or Ray tasks on a Ray cluster.

Both take ``submit(key, payload)`` and answer ``finished(timeout)`` with ``Finished`` records,
so the sweep's scheduler (``execute.py``) cannot tell them apart. A payload and a result are
JSON text (``cell.py``).

- ``LocalPool``: ``workers`` processes (spawned: torch and forked threads do not mix; processes,
  not threads, because torch's thread count is per process and cells are CPU-bound Python). A
  worker that dies breaks the pool; its cells come back as ``lost`` and the pool is made anew.
- ``RayCluster``: each cell is a Ray task reserving ``cpus_per_cell`` CPUs and
  ``memory_mb_per_cell`` of memory; Ray runs a task again when its worker process dies
  (``max_retries``), so a cell whose worker was lost still returns once. Without an address a
  local Ray is started on 127.0.0.1 (every port on loopback); with one, the address must answer
  within ``connect_timeout_s`` or the sweep stops before anything starts. (A port that answers but
  is no Ray head is Ray's to detect: after its own GCS timeout, 60 s, Ray ends the process.)
"""
from __future__ import annotations

import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from hilnas.server.sweep.config import SweepOptions


class EngineError(RuntimeError):
    """The engine cannot run cells (Ray missing, a cluster that does not answer)."""


@dataclass(frozen=True)
class Finished:
    key: str
    result: str | None          # the cell's JSON result; None when it did not return one
    error: str = ""             # why not
    lost: bool = False          # its worker died (the scheduler may run the cell again)


class LocalPool:
    """Cells in ``workers`` processes of this machine."""

    def __init__(self, options: SweepOptions) -> None:
        self.slots = options.workers or max(1, os.cpu_count() or 1)
        self.description = f"a pool of {self.slots} process(es) on this machine"
        self._pool = self._new_pool()
        self._running: dict[Any, str] = {}

    def _new_pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=self.slots, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, key: str, payload: str) -> None:
        from hilnas.server.sweep.cell import sweep_cell

        self._running[self._pool.submit(sweep_cell, payload)] = key

    def finished(self, timeout: float) -> list[Finished]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        if not self._running:
            return []
        done, _ = wait(list(self._running), timeout=timeout, return_when=FIRST_COMPLETED)
        out, broken = [], False
        for future in done:
            key = self._running.pop(future)
            try:
                out.append(Finished(key, future.result()))
            except BrokenProcessPool as err:
                broken = True
                out.append(Finished(key, None, f"its worker process died ({err})", lost=True))
            except Exception as err:  # noqa: BLE001 - a cell that raised (run_cell catches its search's errors)
                out.append(Finished(key, None, f"{type(err).__name__}: {err}"))
        if broken:   # every cell of a broken pool is lost; start a new pool for the retries
            for future, key in list(self._running.items()):
                out.append(Finished(key, None, "the process pool broke", lost=True))
            self._running.clear()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return out

    def close(self) -> None:
        if not self._running:
            self._pool.shutdown(wait=True)
            return
        procs = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:   # interrupted: stop the cells still running too
            if proc.is_alive():
                proc.terminate()
        self._running.clear()


class RayCluster:
    """Cells as Ray tasks on a cluster (or a local Ray on 127.0.0.1)."""

    def __init__(self, options: SweepOptions) -> None:
        self.options = options
        self._refs: dict[Any, str] = {}
        address = options.address
        if address:
            check_answers(address, options.connect_timeout_s)
        ray = _import_ray(local=not address)
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=True, logging_level="WARNING",
                                      configure_logging=True)
        if address:
            kwargs["address"] = address
        else:
            # This machine's cores, or just enough for ``workers`` cells.
            cpus = math.ceil(options.workers * options.cpus_per_cell) if options.workers else (os.cpu_count() or 1)
            kwargs.update(address="local", _node_ip_address="127.0.0.1", num_cpus=max(cpus, 1))
        _init(ray, kwargs, address)
        self.ray = ray
        total_cpus = ray.cluster_resources().get("CPU", 0.0)
        fits = int(total_cpus // options.cpus_per_cell)
        if fits < 1:
            ray.shutdown()
            raise EngineError(f"the Ray cluster has {total_cpus:g} CPU(s), fewer than cpus_per_cell = "
                              f"{options.cpus_per_cell:g}; lower [sweep] cpus_per_cell or add nodes")
        self.slots = min(options.workers, fits) if options.workers else fits
        where = address or "a local Ray on 127.0.0.1"
        self.description = f"Ray ({where}, {total_cpus:g} CPUs), {self.slots} cell(s) at once"
        options_ = dict(num_cpus=options.cpus_per_cell, max_retries=options.retries, retry_exceptions=False)
        if options.memory_mb_per_cell:
            options_["memory"] = options.memory_mb_per_cell * 2 ** 20
        from hilnas.server.sweep.cell import sweep_cell

        self._task = ray.remote(sweep_cell).options(**options_)

    def submit(self, key: str, payload: str) -> None:
        self._refs[self._task.remote(payload)] = key

    def finished(self, timeout: float) -> list[Finished]:
        ray = self.ray
        if not self._refs:
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            key = self._refs.pop(ref)
            try:
                out.append(Finished(key, ray.get(ref)))
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.OwnerDiedError) as err:
                # Ray already ran it again max_retries times: the cell fails, the sweep goes on.
                out.append(Finished(key, None, f"its Ray worker was lost {self.options.retries + 1} time(s): "
                                                f"{type(err).__name__}"))
            except ray.exceptions.RayError as err:
                out.append(Finished(key, None, f"{type(err).__name__}: {str(err).strip().splitlines()[-1]}"))
        return out

    def close(self) -> None:
        for ref in list(self._refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
        self._refs.clear()
        self.ray.shutdown()


def make_engine(options: SweepOptions):
    return RayCluster(options) if options.on == "ray" else LocalPool(options)


def check_answers(address: str, timeout_s: float) -> None:
    """Fail fast (one line, the command that fixes it) when nothing listens at the Ray address."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"Ray address {address!r} is not HOST:PORT (or ray://HOST:PORT), e.g. 10.0.0.5:6379")
    deadline = time.monotonic() + timeout_s
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=max(0.1, deadline - time.monotonic())):
                return
        except OSError as err:
            last = err
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    raise EngineError(f"the Ray cluster at {address} does not answer ({last.strerror if last and last.strerror else last}) "
                      f"within {timeout_s:g} s; nothing was started. Start its head with `ray start --head --port "
                      f"{port}` on {host}, or run without --address for a local Ray")


def _import_ray(*, local: bool):
    if local:
        # A local Ray binds every port to loopback only when Ray thinks clusters are off
        # (Ray's ENABLE_RAY_CLUSTER, read when ray is imported); with it on, Ray swaps 127.0.0.1
        # for the machine's address and listens on all interfaces.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if not sys.stderr.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")   # plain "(sweep_cell pid=...)" prefixes in logs and CI
    try:
        import ray
    except ImportError:
        raise EngineError("--on ray needs Ray: pip install 'hilnas[ray]' (bash scripts/setup.sh installs it)") from None
    if local and ray._private.ray_constants.ENABLE_RAY_CLUSTER:
        raise EngineError("ray was imported before the sweep could keep a local Ray on 127.0.0.1; set "
                          "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in the environment, or give --address")
    return ray


def _init(ray, kwargs: dict[str, Any], address: str | None) -> None:
    """``ray.init`` on the calling (main) thread: Ray started from another thread loses its GCS."""
    try:
        ray.init(**kwargs)
    except Exception as err:  # noqa: BLE001 - ConnectionError, RuntimeError, ...: one line for the user
        raise EngineError(f"could not {'join the Ray cluster at ' + address if address else 'start a local Ray'}: "
                          f"{type(err).__name__}: {err}; nothing was started") from None
