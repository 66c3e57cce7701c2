"""The run store: one SQLite file per workspace holding devices, LUT rows, runs, models and
validations.

``Store.open(workspace)`` creates ``<workspace>/hilnas.db`` (default workspace ``./.hilnas``)
or opens an existing one. Before anything is written the file is checked: it must carry the
hilnas application id and a schema version this code knows; a foreign SQLite file, garbage
bytes, a damaged store or a store from a newer hilnas raise ``StoreError`` and the file is left
byte-for-byte unchanged. Older schema versions are migrated after a backup copy.

A LUT is the set of rows sharing one ``LutId`` (device fingerprint, runtime, runtime version,
measurement-config hash). Rows of different LutIds never mix: every read takes one LutId, and
``find_lut`` raises when a device has several and the caller did not say which.

Each write is its own committed transaction (WAL mode, ``synchronous=FULL``), so a builder that
is killed loses no row it was told was stored. Every thread gets its own connection; writes
from one ``Store`` are serialized by a lock, writes from other processes wait on SQLite's lock.
pandas is imported only by the ``*_df`` helpers.

The store is split by idea: ``records`` (records, errors, ``config_hash``),
``file`` (creating, checking and migrating the file), ``luts`` (the LUT-row
methods), ``frames`` (JSON and DataFrame helpers), ``schema`` (the SQL schema).
This module holds ``Store`` (connections, devices, runs, models, validations) and re-exports
the public names, so ``from hilnas.server.store import ...`` is the one import callers need.
"""
from __future__ import annotations

import contextlib
import difflib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilnas.server.store import schema
from hilnas.server.fleet import check_device_key
from hilnas.server.store.file import SQLITE_MAGIC, _create, _inspect, _migrate
from hilnas.server.store.frames import _dumps, _frame, _plain
from hilnas.server.store.luts import LutTables
from hilnas.server.store.steps import RunSteps, StepRecord, effective_status, with_effective_status
from hilnas.server.store.records import (MEASURED_STATUSES, AmbiguousLutError, DeviceRecord,
                                         LutId, LutInfo, LutNotFoundError, LutRow, ModelRecord,
                                         RunRecord, StoreError, UnknownDeviceError, WriteCount,
                                         _check_floats, _check_text, config_hash)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

DEFAULT_WORKSPACE = Path(".hilnas")
DB_NAME = "hilnas.db"
_UNSET: Any = object()


class Store(LutTables, RunSteps):
    """One workspace's SQLite store. Create with ``Store.open``; close (or use ``with``)."""

    def __init__(self, path: Path) -> None:
        """Use ``Store.open``: this does not check the file."""
        self.path = path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._closed = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, workspace: Path | str = DEFAULT_WORKSPACE, *, create: bool = True) -> "Store":
        """Open ``<workspace>/hilnas.db``, creating folder and file when missing and ``create``.

        Raises ``StoreError`` (file untouched) for anything that is not a hilnas store this
        version can use.
        """
        ws = Path(workspace).expanduser()
        db = ws / DB_NAME
        if ws.exists() and not ws.is_dir():
            raise StoreError(f"workspace {ws} is not a folder")
        if not db.exists():
            if not create:
                raise StoreError(f"no hilnas store in {ws} (missing {DB_NAME}); "
                                 "create one first or pass the right --workspace")
            stale = [p for p in (ws / f"{DB_NAME}-wal", ws / f"{DB_NAME}-journal") if p.exists()]
            if stale:  # SQLite would replay them into the new file
                raise StoreError(f"{stale[0]} exists without its database {db}; move it away "
                                 "before creating a new store here")
            ws.mkdir(parents=True, exist_ok=True)
            _create(db)
        version = _inspect(db)
        if version < schema.SCHEMA_VERSION:
            _migrate(db, version)
            _inspect(db)
        store = cls(db)
        store._conn().execute("PRAGMA journal_mode = WAL")
        return store

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        with self._conns_lock:
            self._closed = True
            for conn in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._conns.clear()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")  # a commit survives a crash, not only a kill
            with self._conns_lock:
                if self._closed:
                    conn.close()
                    raise StoreError(f"store {self.path} is closed")
                self._conns.append(conn)
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One committed write transaction (IMMEDIATE: takes the write lock up front)."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ------------------------------------------------------------------ devices
    def upsert_device(self, key: str, *, fingerprint: str, info: Mapping[str, Any] | Any = None,
                      seen_at: float | None = None) -> DeviceRecord:
        """Record a device (or update its fingerprint, info and last-seen time)."""
        check_device_key(key)  # FleetError (a ValueError) when not an identifier
        _check_text("fingerprint", fingerprint)
        now = time.time() if seen_at is None else seen_at
        info_json = _dumps(_plain(info) if info is not None else {})
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO devices(key, fingerprint, info, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "fingerprint = excluded.fingerprint, info = excluded.info, "
                "last_seen = excluded.last_seen",
                (key, fingerprint, info_json, now, now))
        return self.get_device(key)

    def get_device(self, key: str) -> DeviceRecord:
        row = self._conn().execute("SELECT * FROM devices WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise UnknownDeviceError(self._unknown_device_message(key))
        return _device(row)

    def devices(self) -> list[DeviceRecord]:
        return [_device(r) for r in self._conn().execute("SELECT * FROM devices ORDER BY key")]

    def remove_device(self, key: str, *, delete_rows: bool = False) -> None:
        """Forget a device; refused while LUT rows or validations name it (``delete_rows``)."""
        self.get_device(key)
        with self._tx() as conn:
            used = {t: conn.execute(f"SELECT count(*) FROM {t} WHERE device_key = ?",
                                    (key,)).fetchone()[0] for t in ("lut_rows", "validations")}
            if any(used.values()) and not delete_rows:
                raise StoreError(f"device {key!r} still has {used['lut_rows']} LUT rows and "
                                 f"{used['validations']} validations; pass delete_rows=True "
                                 "to delete them with it")
            conn.execute("DELETE FROM lut_rows WHERE device_key = ?", (key,))
            conn.execute("DELETE FROM validations WHERE device_key = ?", (key,))
            conn.execute("DELETE FROM devices WHERE key = ?", (key,))

    def _unknown_device_message(self, key: str) -> str:
        known = [r[0] for r in self._conn().execute("SELECT key FROM devices ORDER BY key")]
        if not known:
            return f"unknown device {key!r}: the store has no devices yet"
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown device {key!r}{hint}; known devices: {', '.join(known)}"

    # ------------------------------------------------------------------ LUT rows
    # put_lut_row(s), missing_keys, get_lut_row, lut_dict, lut_rows, luts_for_device,
    # all_luts, find_lut, delete_lut: inherited from luts.LutTables.

    # ------------------------------------------------------------------ runs
    def start_run(self, kind: str, config: Mapping[str, Any] | Any = None, *,
                  parent_id: int | None = None) -> int:
        """Record a run as running in this process (its pid and host tell a killed run later)."""
        _check_text("run kind", kind)
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO runs(kind, config, status, started_at, pid, host, parent_id) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?)",
                (kind, _dumps(_plain(config) if config is not None else {}), time.time(), os.getpid(),
                 socket.gethostname(), parent_id))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, *, status: str = "done", result: Any = None) -> None:
        _check_text("run status", status)
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, result = ?, finished_at = ? WHERE id = ?",
                (status, _dumps(_plain(result)), time.time(), run_id))
            if cur.rowcount != 1:
                raise StoreError(f"unknown run id {run_id}")

    def get_run(self, run_id: int) -> RunRecord:
        r = self._conn().execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if r is None:
            raise StoreError(f"unknown run id {run_id}")
        return RunRecord(r["id"], r["kind"], json.loads(r["config"]),
                         effective_status(r["status"], r["pid"], r["host"], r["started_at"]),
                         r["started_at"], r["finished_at"],
                         json.loads(r["result"]) if r["result"] is not None else None,
                         r["pid"], r["host"], r["parent_id"])

    def runs_df(self, kind: str | None = None) -> "pd.DataFrame":
        where, params = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        cur = self._conn().execute(f"SELECT * FROM runs {where} ORDER BY id", params)
        return with_effective_status(_frame(cur, json_cols=("config", "result"),
                                            time_cols=("started_at", "finished_at")))

    # ------------------------------------------------------------------ models
    def add_model(self, name: str, genotype: Any, *, run_id: int | None = None,
                  onnx_sha256: str | None = None, path: str | Path | None = None,
                  device_key: str | None = None, lut_id: LutId | None = None,
                  predicted_latency_ms: float | None = None,
                  predicted_energy_mj: float | None = None) -> int:
        """Record a final architecture (genotype as plain JSON-able data); returns its id."""
        _check_text("model name", name)
        if run_id is not None:
            self.get_run(run_id)
        if device_key is not None:
            self.get_device(device_key)
        _check_floats(predicted_latency_ms=predicted_latency_ms,
                      predicted_energy_mj=predicted_energy_mj)
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO models(run_id, name, genotype, onnx_sha256, path, device_key, lut, "
                "predicted_latency_ms, predicted_energy_mj, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, name, _dumps(_plain(genotype)), onnx_sha256,
                 str(path) if path is not None else None, device_key,
                 _dumps(lut_id.as_dict()) if lut_id else None,
                 predicted_latency_ms, predicted_energy_mj, time.time()))
            return int(cur.lastrowid)

    def update_model(self, model_id: int, *, onnx_sha256: str | None = _UNSET,
                     path: str | Path | None = _UNSET) -> None:
        """Set the exported file of a model (after export)."""
        sets = {k: (str(v) if k == "path" and v is not None else v)
                for k, v in (("onnx_sha256", onnx_sha256), ("path", path)) if v is not _UNSET}
        if not sets:
            return
        with self._tx() as conn:
            cur = conn.execute(f"UPDATE models SET {', '.join(f'{k} = ?' for k in sets)} "
                               "WHERE id = ?", (*sets.values(), model_id))
            if cur.rowcount != 1:
                raise StoreError(f"unknown model id {model_id}")

    def get_model(self, model_id: int) -> ModelRecord:
        r = self._conn().execute("SELECT * FROM models WHERE id = ?", (model_id,)).fetchone()
        if r is None:
            raise StoreError(f"unknown model id {model_id}")
        return ModelRecord(r["id"], r["run_id"], r["name"], json.loads(r["genotype"]),
                           r["onnx_sha256"], r["path"], r["device_key"],
                           LutId(**json.loads(r["lut"])) if r["lut"] else None,
                           r["predicted_latency_ms"], r["predicted_energy_mj"], r["created_at"])

    def models_df(self, run_id: int | None = None) -> "pd.DataFrame":
        where, params = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        cur = self._conn().execute(f"SELECT * FROM models {where} ORDER BY id", params)
        return _frame(cur, json_cols=("genotype", "lut"), time_cols=("created_at",))

    # ------------------------------------------------------------------ validations
    def add_validation(self, model_id: int, device_key: str, *, fingerprint: str,
                       status: str = "ok", predicted_ms: float | None = None,
                       measured_ms: float | None = None,
                       predicted_energy_mj: float | None = None,
                       measured_energy_mj: float | None = None,
                       stats: Mapping[str, Any] | Any = None,
                       measured_at: float | None = None) -> int:
        """Record a whole-model measurement of a stored model on a device; returns its id."""
        self.get_model(model_id)
        self.get_device(device_key)
        _check_text("fingerprint", fingerprint)
        _check_floats(predicted_ms=predicted_ms, measured_ms=measured_ms,
                      predicted_energy_mj=predicted_energy_mj,
                      measured_energy_mj=measured_energy_mj)
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO validations(model_id, device_key, fingerprint, status, predicted_ms, "
                "measured_ms, predicted_energy_mj, measured_energy_mj, stats, measured_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (model_id, device_key, fingerprint, status, predicted_ms, measured_ms,
                 predicted_energy_mj, measured_energy_mj,
                 _dumps(_plain(stats) if stats is not None else {}),
                 time.time() if measured_at is None else measured_at))
            return int(cur.lastrowid)

    def validations_df(self, *, model_id: int | None = None,
                       device_key: str | None = None) -> "pd.DataFrame":
        conds, params = [], []
        if model_id is not None:
            conds.append("model_id = ?")
            params.append(model_id)
        if device_key is not None:
            conds.append("device_key = ?")
            params.append(device_key)
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        cur = self._conn().execute(f"SELECT * FROM validations {where} ORDER BY id", params)
        return _frame(cur, json_cols=("stats",), time_cols=("measured_at",))

    def devices_df(self) -> "pd.DataFrame":
        cur = self._conn().execute("SELECT * FROM devices ORDER BY key")
        return _frame(cur, json_cols=("info",), time_cols=("first_seen", "last_seen"))

    def query_df(self, sql: str, params: Iterable[Any] = ()) -> "pd.DataFrame":
        """Run a read-only query (reports, joins) on a separate read-only connection."""
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return _frame(conn.execute(sql, tuple(params)))
        except sqlite3.Error as exc:
            raise StoreError(f"query failed: {exc}") from None
        finally:
            conn.close()


def _device(r: sqlite3.Row) -> DeviceRecord:
    return DeviceRecord(r["key"], r["fingerprint"], json.loads(r["info"]), r["first_seen"],
                        r["last_seen"])


__all__ = ["DEFAULT_WORKSPACE", "DB_NAME", "SQLITE_MAGIC", "MEASURED_STATUSES", "StoreError",
           "UnknownDeviceError", "LutNotFoundError", "AmbiguousLutError", "config_hash", "LutId",
           "LutRow", "LutInfo", "WriteCount", "DeviceRecord", "RunRecord", "ModelRecord", "StepRecord", "Store"]
