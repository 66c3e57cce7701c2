"""One cell of a sweep, on a worker: ``run_cell(payload) -> result``, both JSON text.

The worker never writes the head's store. It runs the cell with ``server.run.execute`` in a
scratch workspace of its own (a temporary folder on the worker's machine), seeded with the LUT
rows the head already has for the cell's device, so a LUT is measured once per sweep rather than
once per cell. It returns, as plain JSON, everything the head records (``record.py``): the run
and its steps, the models (with their ONNX files) and validations, the device, and the LUT rows
this cell measured. JSON rather than Python objects, so what crosses between machines is data
that the head checks as it reads it.

The payload names the cell by its key and carries the sweep file's text: a worker reads its cell
from the same file the head read, with the same checks.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

WIRE_VERSION = 1
_SKIPPED_FOLDERS = ("report", "checkpoints")   # a cell's files the head does not need


def cell_payload(sweep, cell, store) -> str:
    """What the head sends for ``cell``: the sweep file, the cell's key, the device's LUTs."""
    from hilnas.server.store import StoreError

    luts, keys = [], {cell.device}
    try:
        # The LUTs of the device's fingerprint, whichever key measured them: two boards of one
        # kind under two keys share their LUT.
        for info in store.luts_for_device(cell.device):
            rows = store.lut_dict(info.lut_id)
            luts.append({"lut_id": info.lut_id.as_dict(), "rows": [dataclasses.asdict(r) for r in rows.values()]})
            keys |= {r.device_key for r in rows.values()}
    except StoreError:   # a device the head has not seen yet: the cell measures its LUT
        pass
    devices = []
    for key in sorted(keys):
        try:
            rec = store.get_device(key)
        except StoreError:
            continue
        devices.append({"key": rec.key, "fingerprint": rec.fingerprint, "info": rec.info})
    return json.dumps({"version": WIRE_VERSION, "text": sweep.text, "source": sweep.base.source,
                       "base_dir": sweep.base_dir, "cell": cell.key, "devices": devices, "luts": luts})


def sweep_cell(payload: str) -> str:
    """The Ray task and the pool's function (a module-level name, so workers import it)."""
    return run_cell(payload)


def run_cell(payload: str, *, stream: IO[str] | None = None) -> str:
    """Run the cell of ``payload`` in a scratch workspace; everything the head records, as JSON."""
    from hilnas.server.progress import Progress
    from hilnas.server.run import execute
    from hilnas.server.store import Store
    from hilnas.server.sweep.file import parse_sweep_file

    p = json.loads(payload)
    if p.get("version") != WIRE_VERSION:
        raise ValueError(f"sweep payload version {p.get('version')!r}; this worker speaks {WIRE_VERSION}: install "
                         "the head's hilnas version on every node")
    sweep = parse_sweep_file(p["text"], source=p["source"], base_dir=Path(p["base_dir"]) if p["base_dir"] else None)
    cell = sweep.cell(p["cell"])
    config = sweep.cell_config(cell)
    started, t0 = time.time(), time.monotonic()
    progress = Progress("lines", stream=_Prefixed(stream or sys.stderr, f"[{cell.key}] "), interval=15.0)
    error = ""
    with tempfile.TemporaryDirectory(prefix="hilnas-cell-") as tmp:
        ws = Path(tmp)
        with Store.open(ws) as store:
            seeded: dict[str, set[str]] = {}
            try:
                seeded = _seed(store, p)
                execute(config, store, workspace=ws, progress=progress, resume_command=f"hilnas sweep {p['source']}",
                        report=False)
            except Exception as err:  # noqa: BLE001 - recorded as the cell's failure; the head goes on
                error = f"{type(err).__name__}: {err}"
            result = _export(store, ws, cell.device, seeded)
    result.update(version=WIRE_VERSION, cell=cell.key, error=error,
                  worker={"host": socket.gethostname(), "pid": os.getpid(), "started_at": started,
                          "wall_s": time.monotonic() - t0})
    return json.dumps(result)


def _seed(store, p: dict[str, Any]) -> dict[str, set[str]]:
    """Put the head's LUT rows into the scratch store; returns the op keys seeded per LUT."""
    from hilnas.server.store import LutId, LutRow

    seeded: dict[str, set[str]] = {}
    for d in p["devices"]:   # every device the rows name, before the rows
        store.upsert_device(d["key"], fingerprint=d["fingerprint"], info=d["info"])
    for lut in p["luts"]:
        lut_id = LutId(**lut["lut_id"])
        rows = [LutRow(**r) for r in lut["rows"]]
        if rows:
            store.put_lut_rows(lut_id, rows)
        seeded[json.dumps(lut_id.as_dict(), sort_keys=True)] = {r.op_key for r in rows}
    return seeded


def _export(store, ws: Path, device: str, seeded: dict[str, set[str]]) -> dict[str, Any]:
    """The scratch store's one run, as plain data, with the files the head keeps."""
    from hilnas.server.store import StoreError

    db = sqlite3.connect(f"{store.path.resolve().as_uri()}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        run = db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        if run is None:   # the cell failed before its run was recorded (a bad payload, a broken store)
            return {"run": None, "steps": [], "models": [], "validations": [], "devices": [], "luts": [], "files": {},
                    "workspace": str(ws)}
        rows = lambda sql, *a: [dict(r) for r in db.execute(sql, a)]  # noqa: E731
        steps = rows("SELECT key, status, result, started_at, finished_at FROM steps WHERE run_id = ? ORDER BY id",
                     run["id"])
        models = rows("SELECT * FROM models WHERE run_id = ? ORDER BY id", run["id"])
        validations = rows("SELECT * FROM validations WHERE model_id IN (SELECT id FROM models WHERE run_id = ?) "
                           "ORDER BY id", run["id"])
    finally:
        db.close()
    try:
        rec = store.get_device(device)
        devices = [{"key": rec.key, "fingerprint": rec.fingerprint, "info": rec.info}]
    except StoreError:
        devices = []
    luts = []
    for info in (store.luts_for_device(device) if devices else []):
        old = seeded.get(json.dumps(info.lut_id.as_dict(), sort_keys=True), set())
        new = [dataclasses.asdict(r) for k, r in store.lut_dict(info.lut_id).items() if k not in old]
        if new:
            luts.append({"lut_id": info.lut_id.as_dict(), "rows": new})
    out_dir = ws / "runs" / str(run["id"])
    files = {}
    if out_dir.is_dir():
        for path in sorted(out_dir.rglob("*")):
            rel = path.relative_to(out_dir)
            if path.is_file() and rel.parts[0] not in _SKIPPED_FOLDERS:
                files[rel.as_posix()] = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"run": {k: run[k] for k in ("id", "kind", "config", "status", "started_at", "finished_at", "result")},
            "steps": steps, "models": models, "validations": validations, "devices": devices, "luts": luts,
            "files": files, "workspace": str(ws)}


class _Prefixed:
    """A text stream that starts every line with the cell's key (its progress among the others')."""

    def __init__(self, stream: IO[str], prefix: str) -> None:
        self.stream, self.prefix, self._at_start = stream, prefix, True

    def write(self, text: str) -> int:
        out = []
        for part in text.splitlines(keepends=True):
            out.append((self.prefix if self._at_start else "") + part)
            self._at_start = part.endswith("\n")
        self.stream.write("".join(out))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False
