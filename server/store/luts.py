"""The LUT half of the run store: write, read, list, find and delete LUT rows in SQLite.

``LutTables`` is a base class of ``Store`` and uses its connection handling (``_conn``, ``_tx``)
and device lookups; it is not used on its own. Every read takes one ``LutId`` (``_LUT_WHERE``),
so rows of different LUTs never mix, and ``find_lut`` raises rather than guess between LUTs.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hilnas.server.store import schema
from hilnas.server.store.frames import _dumps, _frame, _plain
from hilnas.server.store.records import (_FLOAT_FIELDS, MEASURED_STATUSES, AmbiguousLutError,
                                         DeviceRecord, LutId, LutInfo, LutNotFoundError, LutRow,
                                         StoreError, UnknownDeviceError, WriteCount, _check_row)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

_LUT_WHERE = "fingerprint = ? AND runtime = ? AND runtime_version = ? AND config_hash = ?"
_ROW_COLS = ("device_key", "fingerprint", "runtime", "runtime_version", "config_hash", "op_key",
             "n", *_FLOAT_FIELDS, "passes", "energy_estimated", "status", "conditions", "simulated",
             "measured_at", "schema_version")
_UPSERT_SQL = (
    f"INSERT INTO lut_rows({', '.join(_ROW_COLS)}) VALUES ({', '.join('?' * len(_ROW_COLS))}) "
    "ON CONFLICT(fingerprint, runtime, runtime_version, config_hash, op_key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _ROW_COLS))


def _lut_params(lut_id: LutId) -> tuple[str, str, str, str]:
    return (lut_id.fingerprint, lut_id.runtime, lut_id.runtime_version, lut_id.config_hash)


def _row_params(lut_id: LutId, row: LutRow, now: float) -> tuple[Any, ...]:
    return (row.device_key, *_lut_params(lut_id), row.op_key, row.n,
            *(getattr(row, f) for f in _FLOAT_FIELDS), row.passes, int(bool(row.energy_estimated)),
            row.status, _dumps(_plain(row.conditions)), int(bool(row.simulated)),
            row.measured_at or now, schema.SCHEMA_VERSION)


def _lut_row(r: sqlite3.Row) -> LutRow:
    return LutRow(op_key=r["op_key"], device_key=r["device_key"], n=r["n"],
                  **{f: r[f] for f in _FLOAT_FIELDS}, passes=r["passes"],
                  energy_estimated=bool(r["energy_estimated"]), status=r["status"],
                  conditions=json.loads(r["conditions"]), simulated=bool(r["simulated"]),
                  measured_at=r["measured_at"], schema_version=r["schema_version"])


class LutTables:
    """The LUT-row methods of ``Store`` (a base class; ``Store`` supplies the connections)."""

    if TYPE_CHECKING:  # provided by Store
        def _conn(self) -> sqlite3.Connection: ...
        def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def get_device(self, key: str) -> DeviceRecord: ...
        def _unknown_device_message(self, key: str) -> str: ...

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
                     redo_statuses: Iterable[str] = (), min_passes: int = 1) -> list[str]:
        """The keys (input order, duplicates dropped) without a complete row in this LUT: no row,
        a row whose status is in ``redo_statuses`` (e.g. ``{"unstable"}``), or a measured row of
        fewer than ``min_passes`` passes (a row of unknown count, from before schema 3, is one)."""
        redo = set(redo_statuses)
        have = {k for k, s, p in self._conn().execute(
            f"SELECT op_key, status, passes FROM lut_rows WHERE {_LUT_WHERE}", _lut_params(lut_id))
            if s not in redo and (s not in MEASURED_STATUSES or (1 if p is None else p) >= min_passes)}
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
