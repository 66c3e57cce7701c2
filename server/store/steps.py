"""The resumable-run half of the run store: the steps of a run, and telling a killed run from a live one.

A run made of steps (``hilnas run``: LUT builds, searches, trainings, validations) records each
step under a key that is stable within the run. A re-run after an interruption skips every step
recorded ``done`` and runs the rest again, so steps must be idempotent: a step that was killed
half-way is simply run again.

A run's ``status`` says ``running`` until the process finishes it. A process killed with
``kill -9`` (or a machine that lost power) never does, so a reader derives the status instead
(``effective_status``): a ``running`` run whose process is gone from this machine is
``interrupted``. Nothing is written when reading; ``resume_run`` marks the run as running in
the resuming process.

``RunSteps`` is a base class of ``Store`` and uses its connection handling (``_conn``, ``_tx``).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hilnas.server.store.frames import _dumps, _frame, _plain
from hilnas.server.store.records import RunRecord, StoreError, _check_text

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

STEP_STATUSES = ("running", "done", "failed")


@dataclass(frozen=True)
class StepRecord:
    """One step of a run: its key, status and JSON result (the error, for a failed step)."""

    run_id: int
    key: str
    status: str                 # "running" (or killed while running), "done", "failed"
    result: dict[str, Any]
    started_at: float
    finished_at: float | None

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


def process_alive(pid: int, started_at: float | None = None) -> bool:
    """True when process ``pid`` exists on this machine (and, when psutil can tell, was started
    before ``started_at``, so a recycled pid does not pass for the original process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except OSError:
        return False
    if started_at is not None:
        try:
            import psutil

            return psutil.Process(pid).create_time() <= started_at + 1.0
        except ImportError:
            return True
        except Exception:  # noqa: BLE001 - psutil.NoSuchProcess and friends: it just ended
            return False
    return True


def effective_status(status: str, pid: int | None, host: str | None, started_at: float | None) -> str:
    """``interrupted`` for a ``running`` run whose process is gone from this machine; else ``status``.

    A run started on another machine (or before schema 3 recorded pids) cannot be checked and
    keeps its recorded status."""
    if status != "running" or pid is None or host != socket.gethostname():
        return status
    return status if process_alive(int(pid), started_at) else "interrupted"


def with_effective_status(runs: "pd.DataFrame") -> "pd.DataFrame":
    """``runs_df``'s frame with each status as ``effective_status`` reads it (times already UTC)."""
    if len(runs):
        runs["status"] = [effective_status(s, None if p is None or p != p else int(p), h if isinstance(h, str) else None,
                                           t.timestamp()) for s, p, h, t in
                          zip(runs["status"], runs["pid"], runs["host"], runs["started_at"])]
    return runs


def _step(r: sqlite3.Row) -> StepRecord:
    return StepRecord(r["run_id"], r["key"], r["status"], json.loads(r["result"]), r["started_at"],
                      r["finished_at"])


class RunSteps:
    """The step methods of ``Store`` (a base class; ``Store`` supplies the connections)."""

    if TYPE_CHECKING:  # provided by Store
        def _conn(self) -> sqlite3.Connection: ...
        def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def get_run(self, run_id: int) -> RunRecord: ...

    def start_step(self, run_id: int, key: str) -> None:
        """Mark step ``key`` of run ``run_id`` as running (again, if an earlier attempt failed or was
        killed); refused for a step already done, which must never run twice."""
        _check_text("step key", key)
        self.get_run(run_id)
        with self._tx() as conn:
            row = conn.execute("SELECT status FROM steps WHERE run_id = ? AND key = ?", (run_id, key)).fetchone()
            if row is not None and row[0] == "done":
                raise StoreError(f"step {key!r} of run {run_id} is already done")
            conn.execute(
                "INSERT INTO steps(run_id, key, status, result, started_at) VALUES (?, ?, 'running', '{}', ?) "
                "ON CONFLICT(run_id, key) DO UPDATE SET status = 'running', result = '{}', "
                "started_at = excluded.started_at, finished_at = NULL", (run_id, key, time.time()))

    def finish_step(self, run_id: int, key: str, *, status: str = "done", result: Any = None) -> None:
        """Record how step ``key`` ended (``done`` with its result, or ``failed`` with the error)."""
        if status not in ("done", "failed"):
            raise ValueError(f"a step finishes as done or failed, not {status!r}")
        with self._tx() as conn:
            cur = conn.execute("UPDATE steps SET status = ?, result = ?, finished_at = ? WHERE run_id = ? AND key = ?",
                               (status, _dumps(_plain(result) if result is not None else {}), time.time(),
                                run_id, key))
            if cur.rowcount != 1:
                raise StoreError(f"run {run_id} has no step {key!r}; start_step it first")

    def get_step(self, run_id: int, key: str) -> StepRecord | None:
        r = self._conn().execute("SELECT * FROM steps WHERE run_id = ? AND key = ?", (run_id, key)).fetchone()
        return _step(r) if r is not None else None

    def steps(self, run_id: int) -> list[StepRecord]:
        """Every step of a run, in the order they were first started."""
        return [_step(r) for r in self._conn().execute("SELECT * FROM steps WHERE run_id = ? ORDER BY id",
                                                       (run_id,))]

    def steps_df(self, run_id: int) -> "pd.DataFrame":
        cur = self._conn().execute("SELECT * FROM steps WHERE run_id = ? ORDER BY id", (run_id,))
        return _frame(cur, json_cols=("result",), time_cols=("started_at", "finished_at"))

    def resume_run(self, run_id: int) -> RunRecord:
        """Take over run ``run_id`` in this process: running again, with this pid and host.

        Refused while the process that last ran it is still alive on this machine."""
        run = self.get_run(run_id)
        if run.status == "running" and not (run.pid == os.getpid() and run.host == socket.gethostname()):
            raise StoreError(f"run {run_id} is still running (PID {run.pid} on {run.host}); wait for it, "
                             f"or stop it (kill {run.pid}) and try again")
        with self._tx() as conn:
            conn.execute("UPDATE runs SET status = 'running', finished_at = NULL, result = NULL, pid = ?, host = ? "
                         "WHERE id = ?", (os.getpid(), socket.gethostname(), run_id))
        return self.get_run(run_id)
