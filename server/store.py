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
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import enum
import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilnas.server import store_schema as schema
from hilnas.server.fleet import check_device_key

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from hilnas.agent.results import BenchmarkResult

DEFAULT_WORKSPACE = Path(".hilnas")
DB_NAME = "hilnas.db"
SQLITE_MAGIC = b"SQLite format 3\x00"
# Statuses whose rows carry latency numbers (mirrors agent.results.Status.measured).
MEASURED_STATUSES = frozenset({"ok", "throttled", "unstable"})
_FLOAT_FIELDS = ("median_ms", "p90_ms", "mean_ms", "std_ms", "ci95_low_ms", "ci95_high_ms",
                 "energy_mj", "energy_net_mj")
_UNSET: Any = object()


class StoreError(Exception):
    """The store cannot do what was asked; the message says why and what to do."""


class UnknownDeviceError(StoreError):
    """A device key the store has never seen."""


class LutNotFoundError(StoreError):
    """No LUT matches what the caller asked for."""


class AmbiguousLutError(StoreError):
    """Several LUTs match and the caller did not say which one; rows are never mixed."""


def config_hash(config: Mapping[str, Any] | Any, *, exclude: Iterable[str] = ()) -> str:
    """Stable 16-hex-digit hash of a measurement config (a mapping or a dataclass).

    Canonical JSON: sorted keys, no whitespace, tuples as lists; NaN/inf are refused. Leave out
    fields that do not change what is measured (e.g. a timeout) with ``exclude``.
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"config_hash takes a mapping or a dataclass, not {type(config).__name__}")
    dropped = set(exclude)
    data = {str(k): v for k, v in config.items() if k not in dropped}
    try:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False, default=_json_default)
    except ValueError as exc:
        raise ValueError(f"config_hash: config has a non-finite number: {exc}") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class LutId:
    """Names one LUT: rows of different LutIds are never mixed."""

    fingerprint: str       # the device fingerprint the agents report
    runtime: str           # backend, e.g. "onnxruntime", "tflite", "ofa-yaml"
    runtime_version: str   # e.g. "1.31.1"
    config_hash: str       # config_hash() of the measurement config

    def __post_init__(self) -> None:
        for name in ("fingerprint", "runtime", "runtime_version", "config_hash"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or _has_newline(value):
                raise ValueError(f"LutId.{name} must be a non-empty one-line string, got {value!r}")

    @classmethod
    def from_result(cls, result: "BenchmarkResult", config_hash: str) -> "LutId":
        """The LutId a benchmark result belongs to (fingerprint, backend and version it reports)."""
        return cls(result.device_fingerprint, result.backend, result.runtime_version, config_hash)

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return (f"{self.runtime} {self.runtime_version} / config {self.config_hash} "
                f"/ fingerprint {self.fingerprint}")


@dataclass(frozen=True)
class LutRow:
    """One op instance measured on one device (latencies in ms, energies in mJ per inference)."""

    op_key: str                        # opaque op key
    device_key: str                    # the device key whose agent measured it
    n: int                             # timed runs
    median_ms: float | None            # None only when the status is a failure
    p90_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    ci95_low_ms: float | None = None
    ci95_high_ms: float | None = None
    energy_mj: float | None = None     # gross; None = not measured
    energy_net_mj: float | None = None  # idle-subtracted
    energy_estimated: bool = False
    status: str = "ok"                 # lower-case agent Status name
    conditions: Mapping[str, Any] = field(default_factory=dict)
    simulated: bool = False
    measured_at: float = 0.0           # epoch s; 0 = the time of writing
    schema_version: int = schema.SCHEMA_VERSION  # filled on read; writes use the current one

    @property
    def measured(self) -> bool:
        """True when the row carries latency numbers (ok, throttled or unstable)."""
        return self.status in MEASURED_STATUSES

    @classmethod
    def from_result(cls, result: "BenchmarkResult", *, device_key: str,
                    op_key: str | None = None) -> "LutRow":
        """Turn an agent's ``BenchmarkResult`` into a row (failures become rows without latency)."""
        lat, energy = result.latency, result.energy
        conditions: dict[str, Any] = {
            "before": _plain(result.conditions_before), "after": _plain(result.conditions_after),
            "backend": result.backend, "sha256": result.sha256, "remeasured": result.remeasured}
        if result.error:
            conditions["error"] = result.error
        if energy is not None:
            conditions["energy_meter"] = {"meter": energy.meter, "kind": energy.meter_kind,
                                          "flags": list(energy.flags)}
        return cls(
            op_key=op_key if op_key is not None else result.op_key, device_key=device_key,
            n=lat.n if lat else 0,
            median_ms=lat.median_ms if lat else None, p90_ms=lat.p90_ms if lat else None,
            mean_ms=lat.mean_ms if lat else None, std_ms=lat.std_ms if lat else None,
            ci95_low_ms=lat.ci95_low_ms if lat else None,
            ci95_high_ms=lat.ci95_high_ms if lat else None,
            energy_mj=energy.gross_mj if energy else None,
            energy_net_mj=energy.net_mj if energy else None,
            energy_estimated=bool(energy and energy.estimated),
            status=result.status.name.lower(), conditions=conditions,
            simulated=result.simulated, measured_at=time.time())


@dataclass(frozen=True)
class LutInfo:
    """A LUT and what it holds."""

    lut_id: LutId
    rows: int                  # all rows, failures included
    measured_rows: int         # rows with latency (ok / throttled / unstable)
    device_keys: tuple[str, ...]
    simulated: bool
    first_measured_at: float
    last_measured_at: float


@dataclass(frozen=True)
class WriteCount:
    inserted: int = 0
    replaced: int = 0
    skipped: int = 0           # already present and not replaced


@dataclass(frozen=True)
class DeviceRecord:
    key: str
    fingerprint: str
    info: dict[str, Any]
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class RunRecord:
    id: int
    kind: str
    config: dict[str, Any]
    status: str
    started_at: float
    finished_at: float | None
    result: Any


@dataclass(frozen=True)
class ModelRecord:
    id: int
    run_id: int | None
    name: str
    genotype: Any
    onnx_sha256: str | None
    path: str | None
    device_key: str | None
    lut_id: LutId | None
    predicted_latency_ms: float | None
    predicted_energy_mj: float | None
    created_at: float


class Store:
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
    def put_lut_row(self, lut_id: LutId, row: LutRow, *, replace: bool = False) -> bool:
        """Store one row, committed before returning. An existing row for the same op key is
        kept unless ``replace`` (e.g. re-measuring an unstable row). True when written."""
        count = self.put_lut_rows(lut_id, [row], replace=replace)
        return bool(count.inserted or count.replaced)

    def put_lut_rows(self, lut_id: LutId, rows: Iterable[LutRow], *,
                     replace: bool = False) -> WriteCount:
        """Store many rows in one transaction (imports); same rules as ``put_lut_row``."""
        rows = list(rows)
        for row in rows:
            _check_row(row)
        keys = [r.op_key for r in rows]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise StoreError(f"op key {dup!r} appears twice in one write")
        if not rows:
            return WriteCount()
        now = time.time()
        with self._tx() as conn:
            for dev in {r.device_key for r in rows}:
                if conn.execute("SELECT 1 FROM devices WHERE key = ?", (dev,)).fetchone() is None:
                    raise UnknownDeviceError(self._unknown_device_message(dev)
                                             + "; record it with upsert_device first")
            existing_sim = conn.execute(
                f"SELECT simulated FROM lut_rows WHERE {_LUT_WHERE} LIMIT 1",
                _lut_params(lut_id)).fetchone()
            sims = {bool(r.simulated) for r in rows}
            if existing_sim is not None:
                sims.add(bool(existing_sim[0]))
            if len(sims) > 1:
                raise StoreError(f"LUT {lut_id} would mix simulated and real measurements; "
                                 "a simulated device needs its own fingerprint")
            present = {r[0] for r in conn.execute(
                f"SELECT op_key FROM lut_rows WHERE {_LUT_WHERE}", _lut_params(lut_id))}
            inserted = replaced = skipped = 0
            for row in rows:
                if row.op_key in present and not replace:
                    skipped += 1
                    continue
                conn.execute(_UPSERT_SQL, _row_params(lut_id, row, now))
                if row.op_key in present:
                    replaced += 1
                else:
                    inserted += 1
        return WriteCount(inserted, replaced, skipped)

    def missing_keys(self, lut_id: LutId, keys: Iterable[str], *,
                     redo_statuses: Iterable[str] = ()) -> list[str]:
        """The keys (input order, duplicates dropped) without a row in this LUT; rows whose
        status is in ``redo_statuses`` (e.g. ``{"unstable"}``) count as missing."""
        redo = set(redo_statuses)
        have = {k for k, s in self._conn().execute(
            f"SELECT op_key, status FROM lut_rows WHERE {_LUT_WHERE}", _lut_params(lut_id))
            if s not in redo}
        return [k for k in dict.fromkeys(keys) if k not in have]

    def get_lut_row(self, lut_id: LutId, op_key: str) -> LutRow | None:
        row = self._conn().execute(
            f"SELECT * FROM lut_rows WHERE {_LUT_WHERE} AND op_key = ?",
            (*_lut_params(lut_id), op_key)).fetchone()
        return _lut_row(row) if row is not None else None

    def lut_dict(self, lut_id: LutId, *, measured_only: bool = False) -> dict[str, LutRow]:
        """op key -> row for one LUT (empty when it has no rows; see ``find_lut``)."""
        rows = self._conn().execute(
            f"SELECT * FROM lut_rows WHERE {_LUT_WHERE} ORDER BY op_key", _lut_params(lut_id))
        out = {r["op_key"]: _lut_row(r) for r in rows}
        return {k: v for k, v in out.items() if v.measured} if measured_only else out

    def lut_rows(self, lut_id: LutId) -> "pd.DataFrame":
        """One LUT as a DataFrame (one row per op key; conditions parsed; times as UTC)."""
        cur = self._conn().execute(
            f"SELECT * FROM lut_rows WHERE {_LUT_WHERE} ORDER BY op_key", _lut_params(lut_id))
        return _frame(cur, json_cols=("conditions",), time_cols=("measured_at",),
                      bool_cols=("energy_estimated", "simulated"), drop=("id",))

    def luts_for_device(self, device_key: str) -> list[LutInfo]:
        """Every LUT with rows measured by this device or under its current fingerprint."""
        dev = self.get_device(device_key)
        return self._lut_infos("WHERE device_key = ? OR fingerprint = ?",
                               (device_key, dev.fingerprint))

    def all_luts(self) -> list[LutInfo]:
        return self._lut_infos("", ())

    def find_lut(self, device_key: str, *, runtime: str | None = None,
                 runtime_version: str | None = None, config_hash: str | None = None,
                 fingerprint: str | None = None) -> LutId:
        """The one LUT of a device matching the given fields; raises rather than guess.

        Without ``fingerprint`` only the device's current fingerprint counts, so a LUT measured
        before an OS or hardware change is used only when asked for explicitly.
        """
        dev = self.get_device(device_key)
        infos = self.luts_for_device(device_key)
        want = {"runtime": runtime, "runtime_version": runtime_version,
                "config_hash": config_hash, "fingerprint": fingerprint or dev.fingerprint}
        hits = [i for i in infos
                if all(v is None or getattr(i.lut_id, k) == v for k, v in want.items())]
        if len(hits) == 1:
            return hits[0].lut_id
        listing = "\n".join(f"  - {i.lut_id} ({i.measured_rows}/{i.rows} rows measured)"
                            for i in infos) or "  (none)"
        asked = ", ".join(f"{k}={v!r}" for k, v in want.items() if v is not None)
        if not hits:
            raise LutNotFoundError(f"device {device_key!r} has no LUT with {asked}; "
                                   f"its LUTs:\n{listing}")
        differ = [k for k in ("runtime", "runtime_version", "config_hash")
                  if len({getattr(h.lut_id, k) for h in hits}) > 1]
        raise AmbiguousLutError(
            f"device {device_key!r} has {len(hits)} LUTs matching {asked}; rows of different "
            f"LUTs are never mixed, so say which with {' / '.join(differ)}:\n"
            + "\n".join(f"  - {h.lut_id} ({h.measured_rows}/{h.rows} rows measured)"
                        for h in hits))

    def delete_lut(self, lut_id: LutId) -> int:
        """Delete every row of one LUT; returns how many."""
        with self._tx() as conn:
            return conn.execute(f"DELETE FROM lut_rows WHERE {_LUT_WHERE}",
                                _lut_params(lut_id)).rowcount

    def _lut_infos(self, where: str, params: tuple[Any, ...]) -> list[LutInfo]:
        sql = (f"SELECT fingerprint, runtime, runtime_version, config_hash, count(*), "
               f"sum(status IN ({','.join('?' * len(MEASURED_STATUSES))})), "
               "group_concat(DISTINCT device_key), max(simulated), min(measured_at), "
               f"max(measured_at) FROM lut_rows {where} "
               "GROUP BY fingerprint, runtime, runtime_version, config_hash "
               "ORDER BY runtime, runtime_version, config_hash, fingerprint")
        out = []
        for r in self._conn().execute(sql, (*sorted(MEASURED_STATUSES), *params)):
            out.append(LutInfo(LutId(r[0], r[1], r[2], r[3]), rows=r[4], measured_rows=r[5],
                               device_keys=tuple(sorted(r[6].split(","))), simulated=bool(r[7]),
                               first_measured_at=r[8], last_measured_at=r[9]))
        return out

    # ------------------------------------------------------------------ runs
    def start_run(self, kind: str, config: Mapping[str, Any] | Any = None) -> int:
        _check_text("run kind", kind)
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO runs(kind, config, status, started_at) VALUES (?, ?, 'running', ?)",
                (kind, _dumps(_plain(config) if config is not None else {}), time.time()))
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
        return RunRecord(r["id"], r["kind"], json.loads(r["config"]), r["status"],
                         r["started_at"], r["finished_at"],
                         json.loads(r["result"]) if r["result"] is not None else None)

    def runs_df(self, kind: str | None = None) -> "pd.DataFrame":
        where, params = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        cur = self._conn().execute(f"SELECT * FROM runs {where} ORDER BY id", params)
        return _frame(cur, json_cols=("config", "result"), time_cols=("started_at", "finished_at"))

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


# ---------------------------------------------------------------------- file checks
def _create(db: Path) -> None:
    """Build a new store in a temporary file, then link it into place without clobbering."""
    tmp = db.with_name(f".{db.name}.new-{os.getpid()}-{threading.get_ident()}")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        # Rollback-journal mode while creating, so the header (application id) is in the file.
        conn.executescript(
            f"BEGIN; PRAGMA application_id = {schema.APPLICATION_ID}; "
            f"PRAGMA user_version = {schema.SCHEMA_VERSION}; {schema.SCHEMA}; COMMIT;")
        conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [
            ("application", schema.APPLICATION_NAME),
            ("schema_version", str(schema.SCHEMA_VERSION)),
            ("created_at", repr(time.time()))])
    finally:
        conn.close()
    try:
        os.link(tmp, db)            # fails if another process created the store meanwhile
    except FileExistsError:
        pass
    except OSError:                  # no hard links on this filesystem
        if not db.exists():
            os.replace(tmp, db)
    finally:
        tmp.unlink(missing_ok=True)


def _inspect(db: Path) -> int:
    """Schema version of the store at ``db``; ``StoreError`` for anything else. Never writes
    to ``db``: the header is read as bytes, the rest through a read-only connection."""
    untouched = "It was not changed; move it away or choose another --workspace."
    if not db.is_file():
        raise StoreError(f"{db} is not a regular file. {untouched}")
    with open(db, "rb") as fh:
        header = fh.read(100)
    if not header:
        raise StoreError(f"{db} is an empty file, not a hilnas store. {untouched}")
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise StoreError(f"{db} is not an SQLite database (unknown header). {untouched}")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id != schema.APPLICATION_ID:
        raise StoreError(f"{db} is an SQLite database of another application (application_id "
                         f"{app_id:#x}; a hilnas store has {schema.APPLICATION_ID:#x}). "
                         f"{untouched}")
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {db}: {exc}") from None
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > schema.SCHEMA_VERSION:
            raise StoreError(f"{db} has schema version {version}, newer than this hilnas "
                             f"understands ({schema.SCHEMA_VERSION}); upgrade hilnas. {untouched}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        meta = dict(conn.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
        if meta.get("application") != schema.APPLICATION_NAME or \
                meta.get("schema_version") != str(version):
            raise StoreError(f"{db} has the hilnas application id but its meta table is "
                             f"missing or disagrees (user_version {version}, meta {meta}). "
                             f"{untouched}")
        missing = [t for t in schema.TABLES if t not in tables]
        if version == schema.SCHEMA_VERSION and missing:
            raise StoreError(f"{db} lacks tables {missing}. {untouched}")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StoreError(f"{db} is damaged (quick_check: {check}). {untouched}")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{db} is damaged or not a hilnas store ({exc}). {untouched}") from None
    finally:
        conn.close()
    return version


def _migrate(db: Path, version: int) -> None:
    """Upgrade an older store step by step, after copying it to ``hilnas.db.v<N>.bak``."""
    steps = list(range(version, schema.SCHEMA_VERSION))
    if any(v not in schema.MIGRATIONS for v in steps):
        raise StoreError(f"{db} has schema version {version} and this hilnas has no migration "
                         f"from it to {schema.SCHEMA_VERSION}; it was not changed")
    backup = db.with_name(f"{db.name}.v{version}.bak")
    src = sqlite3.connect(db)
    try:
        dst = sqlite3.connect(backup)
        with dst:
            src.backup(dst)
        dst.close()
        for v in steps:
            src.executescript(
                f"BEGIN IMMEDIATE; {schema.MIGRATIONS[v]}; PRAGMA user_version = {v + 1}; "
                f"UPDATE meta SET value = '{v + 1}' WHERE key = 'schema_version'; COMMIT;")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            src.execute("ROLLBACK")
        raise StoreError(f"migrating {db} from schema {version} failed ({exc}); "
                         f"a copy from before is at {backup}") from None
    finally:
        src.close()


# ---------------------------------------------------------------------- row helpers
_LUT_WHERE = "fingerprint = ? AND runtime = ? AND runtime_version = ? AND config_hash = ?"
_ROW_COLS = ("device_key", "fingerprint", "runtime", "runtime_version", "config_hash", "op_key",
             "n", *_FLOAT_FIELDS, "energy_estimated", "status", "conditions", "simulated",
             "measured_at", "schema_version")
_UPSERT_SQL = (
    f"INSERT INTO lut_rows({', '.join(_ROW_COLS)}) VALUES ({', '.join('?' * len(_ROW_COLS))}) "
    "ON CONFLICT(fingerprint, runtime, runtime_version, config_hash, op_key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _ROW_COLS))


def _lut_params(lut_id: LutId) -> tuple[str, str, str, str]:
    return (lut_id.fingerprint, lut_id.runtime, lut_id.runtime_version, lut_id.config_hash)


def _row_params(lut_id: LutId, row: LutRow, now: float) -> tuple[Any, ...]:
    return (row.device_key, *_lut_params(lut_id), row.op_key, row.n,
            *(getattr(row, f) for f in _FLOAT_FIELDS), int(bool(row.energy_estimated)),
            row.status, _dumps(_plain(row.conditions)), int(bool(row.simulated)),
            row.measured_at or now, schema.SCHEMA_VERSION)


def _lut_row(r: sqlite3.Row) -> LutRow:
    return LutRow(op_key=r["op_key"], device_key=r["device_key"], n=r["n"],
                  **{f: r[f] for f in _FLOAT_FIELDS},
                  energy_estimated=bool(r["energy_estimated"]), status=r["status"],
                  conditions=json.loads(r["conditions"]), simulated=bool(r["simulated"]),
                  measured_at=r["measured_at"], schema_version=r["schema_version"])


def _check_row(row: LutRow) -> None:
    if not isinstance(row, LutRow):
        raise TypeError(f"expected a LutRow, got {type(row).__name__}")
    _check_text("op key", row.op_key)
    _check_text("device key", row.device_key)
    if isinstance(row.n, bool) or not isinstance(row.n, int) or row.n < 0:
        raise ValueError(f"{row.op_key}: n must be an int >= 0, got {row.n!r}")
    if not row.status or row.status != row.status.strip().lower() or " " in row.status:
        raise ValueError(f"{row.op_key}: status must be a lower-case word, got {row.status!r}")
    _check_floats(**{f: getattr(row, f) for f in _FLOAT_FIELDS}, measured_at=row.measured_at)
    if row.measured:
        if row.median_ms is None or row.median_ms < 0 or row.n < 1:
            raise ValueError(f"{row.op_key}: a {row.status!r} row needs n >= 1 and a "
                             f"median_ms >= 0 (n={row.n}, median_ms={row.median_ms})")


def _check_text(what: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip() or _has_newline(value):
        raise ValueError(f"{what} must be a non-empty one-line string, got {value!r}")


def _check_floats(**values: Any) -> None:
    for name, v in values.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            # SQLite would store NaN as NULL without a word: refuse instead.
            raise ValueError(f"{name} must be a finite number or None, got {v!r}")


def _has_newline(s: str) -> bool:
    return "\n" in s or "\r" in s


def _device(r: sqlite3.Row) -> DeviceRecord:
    return DeviceRecord(r["key"], r["fingerprint"], json.loads(r["info"]), r["first_seen"],
                        r["last_seen"])


def _plain(obj: Any) -> Any:
    """JSON-able copy: dataclasses as dicts, enums by name, non-finite floats as None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=_json_default)


def _frame(cur: sqlite3.Cursor, *, json_cols: Iterable[str] = (), time_cols: Iterable[str] = (),
           bool_cols: Iterable[str] = (), drop: Iterable[str] = ()) -> "pd.DataFrame":
    import pandas as pd  # heavy: only when a frame is asked for

    columns = [d[0] for d in cur.description]
    df = pd.DataFrame.from_records([tuple(r) for r in cur.fetchall()], columns=columns)
    for c in json_cols:
        if c in df:
            df[c] = [json.loads(v) if v is not None else None for v in df[c]]
    for c in time_cols:
        if c in df:
            df[c] = pd.to_datetime(df[c], unit="s", utc=True)
    for c in bool_cols:
        if c in df:
            df[c] = df[c].astype(bool)
    return df.drop(columns=[c for c in drop if c in df])


__all__ = ["DEFAULT_WORKSPACE", "DB_NAME", "MEASURED_STATUSES", "StoreError", "UnknownDeviceError",
           "LutNotFoundError", "AmbiguousLutError", "config_hash", "LutId", "LutRow", "LutInfo",
           "WriteCount", "DeviceRecord", "RunRecord", "ModelRecord", "Store"]
