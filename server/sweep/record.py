"""The head records what a cell returned: the only writer of the workspace's store.

A cell's result (``cell.py``) becomes, in the head's store: the device, the LUT rows the cell
measured (kept when the head has the key already: the first measurement wins), a run of kind
``run`` whose ``parent_id`` is the sweep, its steps, its models (ONNX files written under
``<workspace>/runs/<run id>/``) and validations. Ids and paths inside the results are those of
the worker's scratch store; they are mapped to the head's as they are written, so ``hilnas
report`` and ``hilnas runs`` read a cell's run like any other run.

Each cell is recorded once: the caller records a result only for a cell not yet recorded in
this sweep, and a result arrives once per cell even when Ray ran it again after losing a worker.
"""
from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from hilnas.server.store import LutId, LutRow, Store


class CellResultError(ValueError):
    """A cell's result that the head cannot record (a worker of another version, a damaged reply)."""


def record_cell(store: Store, workspace: Path, sweep_id: int, key: str, result: dict[str, Any]) -> int:
    """Write one cell's result; returns the id of its run in the head's store."""
    from hilnas.server.sweep.cell import WIRE_VERSION

    if result.get("version") != WIRE_VERSION or result.get("cell") != key:
        raise CellResultError(f"cell {key}: the worker answered for {result.get('cell')!r} with version "
                              f"{result.get('version')!r} (expected {WIRE_VERSION}); install the head's hilnas on "
                              "every node")
    for d in result["devices"]:
        store.upsert_device(d["key"], fingerprint=d["fingerprint"], info=d["info"])
    for lut in result["luts"]:
        store.put_lut_rows(LutId(**lut["lut_id"]), [LutRow(**r) for r in lut["rows"]], replace=False)
    run = result["run"]
    worker = result.get("worker", {})
    if run is None:
        return record_failed_cell(store, sweep_id, key, result.get("error") or "the cell recorded no run", worker)
    config = {**json.loads(run["config"]), "cell": key, "sweep_id": sweep_id, "worker": worker}
    child = store.start_run("run", config, parent_id=sweep_id)
    remap = _Remap(result["workspace"], run["id"], workspace, child)
    out_dir = workspace / "runs" / str(child)
    for rel, data in result["files"].items():
        _write(out_dir, rel, base64.b64decode(data))
    for m in result["models"]:
        lut = json.loads(m["lut"]) if m["lut"] else None
        remap.models[m["id"]] = store.add_model(
            remap(m["name"]), json.loads(m["genotype"]), run_id=child, onnx_sha256=m["onnx_sha256"],
            path=remap(m["path"]), device_key=m["device_key"], lut_id=LutId(**lut) if lut else None,
            predicted_latency_ms=m["predicted_latency_ms"], predicted_energy_mj=m["predicted_energy_mj"])
    for v in result["validations"]:
        remap.validations[v["id"]] = store.add_validation(
            remap.models[v["model_id"]], v["device_key"], fingerprint=v["fingerprint"], status=v["status"],
            predicted_ms=v["predicted_ms"], measured_ms=v["measured_ms"], predicted_energy_mj=v["predicted_energy_mj"],
            measured_energy_mj=v["measured_energy_mj"], stats=json.loads(v["stats"]), measured_at=v["measured_at"])
    for s in result["steps"]:
        store.start_step(child, s["key"])
        status = s["status"] if s["status"] in ("done", "failed") else "failed"   # a step the cell never ended
        store.finish_step(child, s["key"], status=status, result=remap(json.loads(s["result"])))
    outcome = remap(json.loads(run["result"])) if run["result"] else {}
    status = run["status"] if run["status"] in ("done", "failed") else "failed"
    if result.get("error"):
        status = "failed"
        outcome.setdefault("failures", []).append({"step": "cell", "error": result["error"]})
    store.finish_run(child, status=status, result={**outcome, "cell": key, "worker": worker})
    return child


def record_failed_cell(store: Store, sweep_id: int, key: str, error: str, worker: dict | None = None) -> int:
    """A cell that returned nothing usable (its worker lost for good): a failed run with the error."""
    child = store.start_run("run", {"cell": key, "sweep_id": sweep_id, "worker": worker or {}}, parent_id=sweep_id)
    store.finish_run(child, status="failed", result={"cell": key, "failures": [{"step": "cell", "error": error}],
                                                     "networks": []})
    return child


class _Remap:
    """Scratch ids and paths -> the head's: model and validation ids, the run's folder, ``runN/`` names."""

    def __init__(self, scratch: str, old_run: int, workspace: Path, new_run: int) -> None:
        self.old_dir = f"{scratch.rstrip('/')}/runs/{old_run}"
        self.new_dir = str((workspace / "runs" / str(new_run)).resolve())
        self.scratch = scratch.rstrip("/")
        self.names = re.compile(rf"\brun{old_run}(?=[/-])")
        self.new_run = new_run
        self.models: dict[int, int] = {}
        self.validations: dict[int, int] = {}

    def __call__(self, obj: Any, key: str = "") -> Any:
        if isinstance(obj, dict):
            return {k: self(v, k) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self(v, key) for v in obj]
        if isinstance(obj, int) and not isinstance(obj, bool) and key in ("model_id", "validation_id"):
            table = self.models if key == "model_id" else self.validations
            return table.get(obj, obj)
        if isinstance(obj, int) and not isinstance(obj, bool) and key == "run_id":
            return self.new_run
        if isinstance(obj, str):
            if obj.startswith(self.old_dir):
                return self.new_dir + obj[len(self.old_dir):]
            return self.names.sub(f"run{self.new_run}", obj)
        return obj


def _write(out_dir: Path, rel: str, data: bytes) -> None:
    """A file of the cell under its run folder; a path that would leave it is refused."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise CellResultError(f"a cell returned the file {rel!r}, outside its run folder")
    path = out_dir.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
