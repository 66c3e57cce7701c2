"""LUT files: CSV export/import of the store's LUTs, and import of the Once-for-All /
ProxylessNAS yaml LUT format.

CSV format (one LUT per file; plain CSV, so pandas or a spreadsheet reads it as is): a header
row, then one row per op key. Every row repeats the LUT it belongs to in the columns
``fingerprint, runtime, runtime_version, config_hash`` -- no comment lines or sidecar to lose
-- and a file whose rows name several LUTs is refused. The other columns are those of
``LutRow`` (ms, mJ per inference): ``op_key, device_key, n, median_ms, min_ms, p90_ms, mean_ms, std_ms,
ci95_low_ms, ci95_high_ms, energy_mj, energy_net_mj, energy_estimated (0/1), status, simulated
(0/1), measured_at (epoch s), schema_version, conditions (JSON)``. An empty cell is "none";
floats are written with ``repr`` so a round trip is exact. On import only ``op_key``, ``n`` and
``median_ms`` are required; the LUT columns may be left out when the caller names the LUT.

OFA yaml format (``/work/shared/data/ofa_lut_examples/``, from sxtyzhangzk/once-for-all,
``vai_deploy/lut-examples/``, MIT)::

    expanded_conv-input:112x112x20-output:56x56x30-expand:4-kernel:3-stride:2-idskip:0:
      count: 153
      mean: 7.375339869281047      # ms
      std: 0.17678930864809245     # ms

It is read by a small parser for exactly this flat shape (PyYAML is not a dependency). Keys
are kept verbatim as op keys. The format has no median: ``median_ms`` holds the file's mean
(``conditions.median_is_mean`` says so) and ``p90_ms`` is empty. The rows go to the LutId
(``fingerprint`` given or ``ofa-yaml:unstated-device``, runtime ``ofa-yaml``, runtime version
= the file's name, config hash of the file's sha256), so they never mix with measured rows.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hilnas.server.store import (LutId, LutNotFoundError, LutRow, Store, StoreError,
                                 UnknownDeviceError, config_hash)

LUT_COLUMNS = ("fingerprint", "runtime", "runtime_version", "config_hash")
ROW_COLUMNS = ("op_key", "device_key", "n", "median_ms", "min_ms", "p90_ms", "mean_ms", "std_ms",
               "ci95_low_ms", "ci95_high_ms", "energy_mj", "energy_net_mj", "energy_estimated",
               "status", "simulated", "measured_at", "schema_version", "conditions")
CSV_COLUMNS = LUT_COLUMNS + ROW_COLUMNS
_FLOATS = ("median_ms", "min_ms", "p90_ms", "mean_ms", "std_ms", "ci95_low_ms", "ci95_high_ms",
           "energy_mj", "energy_net_mj", "measured_at")
OFA_RUNTIME = "ofa-yaml"
OFA_FINGERPRINT = "ofa-yaml:unstated-device"


class LutFileError(StoreError):
    """A LUT file cannot be read or does not fit where it is being imported."""


class LutMismatchError(LutFileError):
    """The file's LUT differs from the LUT it is being imported into."""


@dataclass(frozen=True)
class ImportReport:
    lut_id: LutId
    rows_read: int
    inserted: int
    replaced: int
    skipped: int       # already in the store and not replaced


# ---------------------------------------------------------------------- CSV
def export_lut_csv(store: Store, lut_id: LutId, path: Path | str, *,
                   overwrite: bool = False) -> int:
    """Write one LUT to ``path`` (atomically); returns the number of rows."""
    rows = store.lut_dict(lut_id)
    if not rows:
        raise LutNotFoundError(f"LUT {lut_id} has no rows; nothing to export")
    path = Path(path)
    if path.exists() and not overwrite:
        raise LutFileError(f"{path} exists; pass overwrite=True to replace it")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows.values():
        rec: dict[str, Any] = {**lut_id.as_dict(), "op_key": row.op_key,
                               "device_key": row.device_key, "n": row.n,
                               "energy_estimated": int(row.energy_estimated),
                               "status": row.status, "simulated": int(row.simulated),
                               "schema_version": row.schema_version,
                               "conditions": json.dumps(row.conditions, sort_keys=True,
                                                        separators=(",", ":"))}
        rec.update({f: _cell(getattr(row, f)) for f in _FLOATS})
        writer.writerow(rec)
    _atomic_write(path, buf.getvalue())
    return len(rows)


def read_lut_csv(path: Path | str, *,
                 device_key: str | None = None) -> tuple[LutId | None, list[LutRow]]:
    """Parse a LUT CSV: the LutId its rows name (None when it has no LUT columns) and the rows.

    ``device_key`` replaces the file's device key column (or stands in for a missing one).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LutFileError(f"cannot read {path}: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if unknown:
        raise LutFileError(f"{path}: unknown columns {unknown}; expected some of {CSV_COLUMNS}")
    missing = [c for c in ("op_key", "n", "median_ms") if c not in header]
    if device_key is None and "device_key" not in header:
        missing.append("device_key")
    if missing:
        raise LutFileError(f"{path}: missing columns {missing}")
    has_lut = [c in header for c in LUT_COLUMNS]
    if any(has_lut) and not all(has_lut):
        raise LutFileError(f"{path}: give all of {LUT_COLUMNS} or none of them")
    lut_ids: dict[LutId, int] = {}
    rows: list[LutRow] = []
    seen: dict[str, int] = {}
    for line_no, rec in enumerate(reader, start=2):
        where = f"{path}:{line_no}"
        if None in rec:
            raise LutFileError(f"{where}: more cells than header columns")
        try:
            if all(has_lut):
                lid = LutId(*(rec[c] or "" for c in LUT_COLUMNS))
                lut_ids.setdefault(lid, line_no)
            row = _row_from_record(rec, device_key)
        except (ValueError, TypeError) as exc:
            raise LutFileError(f"{where}: {exc}") from None
        if row.op_key in seen:
            raise LutFileError(f"{where}: op key {row.op_key!r} already on line {seen[row.op_key]}")
        seen[row.op_key] = line_no
        rows.append(row)
    if len(lut_ids) > 1:
        listing = "\n".join(f"  - {lid} (first on line {n})" for lid, n in lut_ids.items())
        raise LutFileError(f"{path} mixes rows of {len(lut_ids)} LUTs; refusing it:\n{listing}")
    if not rows:
        raise LutFileError(f"{path} has no rows")
    return (next(iter(lut_ids)) if lut_ids else None), rows


def import_lut_csv(store: Store, path: Path | str, *, into: LutId | None = None,
                   override_lut_id: bool = False, device_key: str | None = None,
                   replace: bool = False, create_device: bool = True) -> ImportReport:
    """Import a LUT CSV into the store, under the LUT the file names.

    ``into`` names the target LUT; when the file names a different one the import is refused
    unless ``override_lut_id`` (e.g. reusing a LUT of an identical board under its own
    fingerprint). Rows already present are kept unless ``replace``. A device key not in the
    store is created (fingerprint from the LUT) when ``create_device``.
    """
    file_lut, rows = read_lut_csv(path, device_key=device_key)
    if into is None and file_lut is None:
        raise LutFileError(f"{path} does not say which LUT it holds (no {LUT_COLUMNS} "
                           "columns); name the target LUT with into=LutId(...)")
    target = into or file_lut
    assert target is not None
    if file_lut is not None and target != file_lut and not override_lut_id:
        diffs = ", ".join(f"{k}: file {getattr(file_lut, k)!r} vs target {getattr(target, k)!r}"
                          for k in LUT_COLUMNS if getattr(file_lut, k) != getattr(target, k))
        raise LutMismatchError(f"{path} holds another LUT than the target ({diffs}); rows of "
                               "different LUTs are never mixed. Pass override_lut_id=True to "
                               "import them under the target anyway.")
    _ensure_devices(store, {r.device_key for r in rows}, target, create_device,
                    {"source": "lut-csv", "file": Path(path).name})
    count = store.put_lut_rows(target, rows, replace=replace)
    return ImportReport(target, len(rows), count.inserted, count.replaced, count.skipped)


def _row_from_record(rec: dict[str, str], device_key: str | None) -> LutRow:
    def opt_float(name: str) -> float | None:
        text = (rec.get(name) or "").strip()
        if not text:
            return None
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{name} is {text}")
        return value

    def flag(name: str) -> bool:
        text = (rec.get(name) or "0").strip().lower()
        if text not in ("0", "1", "true", "false"):
            raise ValueError(f"{name} must be 0/1/true/false, got {text!r}")
        return text in ("1", "true")

    n_text = (rec.get("n") or "").strip()
    if not re.fullmatch(r"\d+", n_text):
        raise ValueError(f"n must be a whole number, got {n_text!r}")
    cond_text = (rec.get("conditions") or "").strip()
    conditions = json.loads(cond_text) if cond_text else {}
    if not isinstance(conditions, dict):
        raise ValueError("conditions must be a JSON object")
    schema_text = (rec.get("schema_version") or "").strip()
    kwargs: dict[str, Any] = {f: opt_float(f) for f in _FLOATS}
    kwargs["measured_at"] = kwargs["measured_at"] or 0.0
    if device_key is None:
        device_key = rec.get("device_key") or ""
    return LutRow(op_key=rec.get("op_key") or "", device_key=device_key,
                  n=int(n_text), energy_estimated=flag("energy_estimated"),
                  status=(rec.get("status") or "ok").strip(), conditions=conditions,
                  simulated=flag("simulated"),
                  schema_version=int(schema_text) if schema_text else 0, **kwargs)


def _cell(value: float | None) -> str:
    return "" if value is None else repr(float(value))


# ---------------------------------------------------------------------- OFA yaml
@dataclass(frozen=True)
class OfaEntry:
    count: int         # timed runs
    mean: float        # ms
    std: float         # ms


_OFA_FIELDS = {"count": int, "mean": float, "std": float}


def parse_ofa_yaml(text: str, *, source: str = "<yaml>") -> dict[str, OfaEntry]:
    """Parse the flat OFA/ProxylessNAS LUT yaml (``key:`` then indented count/mean/std).

    Also accepts the flow form ``key: {count: 1, mean: 2.0, std: 0.1}``, comments and blank
    lines. Anything else is an error naming the line.
    """
    entries: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    current: str | None = None
    for no, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw).rstrip()
        if not line.strip() or (no == 1 and line.strip() == "---"):
            continue
        where = f"{source}:{no}"
        if not line[0].isspace():
            flow = re.fullmatch(r"(.+?):\s+\{(.*)\}", line)
            if flow:
                key, body = _unquote(flow.group(1)), flow.group(2)
                current = _new_entry(entries, lines, key, no, where)
                for part in filter(None, (p.strip() for p in body.split(","))):
                    name, sep, value = part.partition(":")
                    if not sep:
                        raise LutFileError(f"{where}: expected name: value, got {part!r}")
                    _set_field(entries[key], name.strip(), value.strip(), where)
                current = None
            elif line.endswith(":"):
                current = _new_entry(entries, lines, _unquote(line[:-1]), no, where)
            else:
                raise LutFileError(f"{where}: expected 'key:' at the start of an entry, "
                                   f"got {line!r}")
        else:
            if current is None:
                raise LutFileError(f"{where}: indented line outside an entry")
            name, sep, value = line.strip().partition(":")
            if not sep or not value.strip():
                raise LutFileError(f"{where}: expected 'name: value', got {line.strip()!r}")
            _set_field(entries[current], name.strip(), value.strip(), where)
    out = {}
    for key, fields in entries.items():
        absent = [f for f in _OFA_FIELDS if f not in fields]
        if absent:
            raise LutFileError(f"{source}:{lines[key]}: entry {key!r} lacks {absent}")
        out[key] = OfaEntry(**fields)
    if not out:
        raise LutFileError(f"{source}: no LUT entries")
    return out


def parse_ofa_key(key: str) -> dict[str, Any]:
    """Split an OFA key into its parts, e.g. ``Logits-input:7x7x1280-output:1000`` ->
    ``{"op": "Logits", "input": (7, 7, 1280), "output": (1000,)}``."""
    op, *parts = key.split("-")
    out: dict[str, Any] = {"op": op}
    for part in parts:
        name, sep, value = part.partition(":")
        if not sep:
            raise ValueError(f"OFA key {key!r}: part {part!r} is not name:value")
        if re.fullmatch(r"\d+(x\d+)*", value):
            out[name] = tuple(int(v) for v in value.split("x")) if "x" in value or \
                name in ("input", "output") else int(value)
        else:
            out[name] = value
    return out


def ofa_lut_id(path: Path | str, *, fingerprint: str | None = None) -> LutId:
    """The LutId an OFA yaml file is imported under (depends on its name and its bytes)."""
    path = Path(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return LutId(fingerprint or OFA_FINGERPRINT, OFA_RUNTIME, path.name,
                 config_hash({"format": OFA_RUNTIME, "sha256": sha}))


def import_ofa_yaml(store: Store, path: Path | str, *, device_key: str,
                    fingerprint: str | None = None, replace: bool = False,
                    create_device: bool = True) -> ImportReport:
    """Import an OFA/ProxylessNAS yaml LUT under ``ofa_lut_id(path)`` for ``device_key``."""
    path = Path(path)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LutFileError(f"cannot read {path}: {exc}") from None
    entries = parse_ofa_yaml(text, source=str(path))
    lut_id = ofa_lut_id(path, fingerprint=fingerprint)
    sha = hashlib.sha256(data).hexdigest()
    conditions = {"source": OFA_RUNTIME, "file": path.name, "sha256": sha, "median_is_mean": True}
    rows = []
    for key, e in entries.items():
        if e.count < 1 or e.mean < 0 or e.std < 0:
            raise LutFileError(f"{path}: entry {key!r} has count {e.count}, mean {e.mean}, "
                               f"std {e.std}; expected count >= 1 and mean, std >= 0")
        rows.append(LutRow(op_key=key, device_key=device_key, n=e.count, median_ms=e.mean,
                           mean_ms=e.mean, std_ms=e.std, conditions=conditions))
    _ensure_devices(store, {device_key}, lut_id, create_device,
                    {"source": OFA_RUNTIME, "file": path.name})
    count = store.put_lut_rows(lut_id, rows, replace=replace)
    return ImportReport(lut_id, len(rows), count.inserted, count.replaced, count.skipped)


def _new_entry(entries: dict[str, dict[str, Any]], lines: dict[str, int], key: str, no: int,
               where: str) -> str:
    if not key:
        raise LutFileError(f"{where}: empty key")
    if key in entries:
        raise LutFileError(f"{where}: key {key!r} already defined on line {lines[key]}")
    entries[key], lines[key] = {}, no
    return key


def _set_field(entry: dict[str, Any], name: str, value: str, where: str) -> None:
    kind = _OFA_FIELDS.get(name)
    if kind is None:
        raise LutFileError(f"{where}: unknown field {name!r} (expected count, mean, std)")
    if name in entry:
        raise LutFileError(f"{where}: field {name!r} given twice")
    try:
        number = int(value) if kind is int else float(value)
    except ValueError:
        raise LutFileError(f"{where}: {name} {value!r} is not "
                           f"{'a whole number' if kind is int else 'a number'}") from None
    if not math.isfinite(number):
        raise LutFileError(f"{where}: {name} is {value}")
    entry[name] = number


def _strip_comment(line: str) -> str:
    # A '#' starts a comment at the line start or after whitespace (keys contain no '#').
    match = re.search(r"(^|\s)#", line)
    return line[:match.start()] if match else line


def _unquote(key: str) -> str:
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "'\"":
        return key[1:-1]
    return key


# ---------------------------------------------------------------------- shared
def _ensure_devices(store: Store, keys: Iterable[str], lut_id: LutId, create: bool,
                    info: dict[str, Any]) -> None:
    for key in keys:
        try:
            store.get_device(key)
        except UnknownDeviceError:
            if not create:
                raise
            store.upsert_device(key, fingerprint=lut_id.fingerprint, info=info)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["CSV_COLUMNS", "LUT_COLUMNS", "OFA_RUNTIME", "OFA_FINGERPRINT", "LutFileError",
           "LutMismatchError", "ImportReport", "export_lut_csv", "read_lut_csv",
           "import_lut_csv", "OfaEntry", "parse_ofa_yaml", "parse_ofa_key", "ofa_lut_id",
           "import_ofa_yaml"]
