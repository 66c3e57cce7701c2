"""Carry out a sweep, resumably: ``run_sweep(config, store, workspace=..., engine=...) -> SweepOutcome``.

The head schedules: it hands a cell to the engine while the engine has a free slot and the
cell's device has fewer than ``per_device`` cells running (a real board is never asked to
measure for two cells at once; a simulated device is each cell's own), and records each result
as it arrives (``record.py``). The sweep is a run of kind ``sweep`` in the store, each finished
cell a run of kind ``run`` under it (``parent_id``). Running the same sweep file again resumes
it: cells with a ``done`` run are not run again; failed, lost and interrupted ones are. A cell
whose worker died is run again up to ``retries`` times (Ray does this itself), and is recorded
once, when it returns.

At the end: a table of the cells (``summary_lines``) and a report over every cell's run
(``server/report``: per device, the Pareto front of accuracy against measured latency across
all cells), in ``<workspace>/sweeps/<id>/report/``.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hilnas.server.progress import Progress, format_duration
from hilnas.server.search.common import latest_run_with_fingerprint
from hilnas.server.store import Store
from hilnas.server.sweep.cell import cell_payload
from hilnas.server.sweep.config import Cell, SweepConfig
from hilnas.server.sweep.record import CellResultError, record_cell, record_failed_cell

log = logging.getLogger("hilnas.sweep")
SWEEP_KIND = "sweep"


@dataclass
class SweepOutcome:
    sweep_id: int
    status: str                      # "done" | "failed" | "interrupted"
    resumed: bool
    engine: str
    cells: list[dict[str, Any]] = field(default_factory=list)   # one summary row per cell (``cell_rows``)
    done_before: int = 0             # cells done by an earlier attempt of this sweep
    ran: int = 0                     # cells run now
    retried: int = 0                 # cells run again after their worker was lost (by the head; Ray's own retries apart)
    report: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    resume_command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def find_sweep(store: Store, config: SweepConfig) -> int | None:
    """The latest sweep of this configuration (same fingerprint), to resume; None if there is none."""
    return latest_run_with_fingerprint(store, SWEEP_KIND, config.fingerprint())


def cell_runs(store: Store, sweep_id: int) -> dict[str, dict[str, Any]]:
    """The latest recorded run of each cell of the sweep: cell key -> {id, status, result, config}."""
    runs = store.runs_df("run")
    out: dict[str, dict[str, Any]] = {}
    if runs.empty or "parent_id" not in runs:
        return out
    for _, r in runs[runs["parent_id"] == sweep_id].iterrows():
        cfg = r["config"] if isinstance(r["config"], dict) else {}
        if cfg.get("cell"):
            out[cfg["cell"]] = {"id": int(r["id"]), "status": r["status"], "result": r["result"], "config": cfg}
    return out


def run_sweep(config: SweepConfig, store: Store, *, workspace: Path, engine, progress: Progress | None = None,
              resume_command: str = "hilnas sweep FILE", new: bool = False, report: bool = True) -> SweepOutcome:
    """Run (or resume) the sweep's cells on ``engine``; see the module docstring. The caller holds the
    workspace lock and closes the engine. Raises KeyboardInterrupt after recording it."""
    progress = progress or Progress("off")
    workspace = Path(workspace).resolve()
    started = time.monotonic()
    previous = None if new else find_sweep(store, config)
    sweep_id = store.resume_run(previous).id if previous is not None else store.start_run(SWEEP_KIND, config.to_dict())
    done = {k for k, r in cell_runs(store, sweep_id).items() if r["status"] == "done"}
    todo = [c for c in config.cells if c.key not in done]
    outcome = SweepOutcome(sweep_id, "running", previous is not None, engine.description,
                           done_before=len(done & {c.key for c in config.cells}), resume_command=resume_command)
    progress.say(f"sweep {sweep_id} ({config.name}): {len(config.cells)} cell(s), {outcome.done_before} done before; "
                 f"{len(todo)} to run on {engine.description}")
    try:
        _Scheduler(config, store, workspace, engine, progress, sweep_id, outcome).run(todo)
        outcome.status = "done" if all(r["status"] == "done" for r in cell_rows(config, store, sweep_id)) else "failed"
    except KeyboardInterrupt:
        outcome.status = "interrupted"
        raise
    except BaseException:
        outcome.status = "failed"
        raise
    finally:
        outcome.cells = cell_rows(config, store, sweep_id)
        outcome.wall_s = time.monotonic() - started
        if report and outcome.status != "interrupted":
            outcome.report = _write_report(config, store, workspace, sweep_id, outcome, progress)
        store.finish_run(sweep_id, status=outcome.status, result=outcome.to_dict())
    return outcome


class _Scheduler:
    """Keeps the engine's slots full within the per-device limit; records results as they come."""

    def __init__(self, config: SweepConfig, store: Store, workspace: Path, engine, progress: Progress, sweep_id: int,
                 outcome: SweepOutcome) -> None:
        self.config, self.store, self.workspace, self.engine = config, store, workspace, engine
        self.progress, self.sweep_id, self.outcome = progress, sweep_id, outcome
        self.running: dict[str, float] = {}          # cell key -> when it was handed out
        self.per_device: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()

    def run(self, todo: list[Cell]) -> None:
        pending = list(todo)
        cells = {c.key: c for c in todo}
        with self.progress.task(f"sweep {self.sweep_id}", total=len(todo), unit="cell") as task:
            finished = 0
            while pending or self.running:
                while pending and len(self.running) < self.engine.slots:
                    cell = next((c for c in pending if self._may_start(c)), None)
                    if cell is None:
                        break
                    pending.remove(cell)
                    self._start(cell)
                for f in self.engine.finished(timeout=1.0):
                    cell = cells[f.key]
                    self._release(cell)
                    if f.lost and self.attempts[f.key] <= self.config.options.retries:
                        self.progress.say(f"  {f.key}: {f.error}; running it again")
                        self.outcome.retried += 1
                        pending.insert(0, cell)
                        continue
                    finished += 1
                    self.outcome.ran += 1
                    line = self._record(cell, f)
                    task.update(finished)
                    self.progress.say(f"[{finished}/{len(todo)}] {line}")

    def _may_start(self, cell: Cell) -> bool:
        return not self.config.shared_device(cell) or self.per_device[cell.device] < self.config.options.per_device

    def _start(self, cell: Cell) -> None:
        self.attempts[cell.key] += 1
        self.running[cell.key] = time.monotonic()
        self.per_device[cell.device] += 1
        self.engine.submit(cell.key, cell_payload(self.config, cell, self.store))
        log.info("cell %s started", cell.key)

    def _release(self, cell: Cell) -> None:
        self.running.pop(cell.key, None)
        self.per_device[cell.device] -= 1

    def _record(self, cell: Cell, f) -> str:
        if f.result is None:
            record_failed_cell(self.store, self.sweep_id, cell.key, f.error)
            return f"{cell.key}: failed: {f.error}"
        try:
            result = json.loads(f.result)
            run_id = record_cell(self.store, self.workspace, self.sweep_id, cell.key, result)
        except (ValueError, KeyError, TypeError, CellResultError) as err:
            record_failed_cell(self.store, self.sweep_id, cell.key, f"the head could not record its result: {err}")
            return f"{cell.key}: failed: the head could not record its result: {err}"
        row = cell_row(cell, self.store.get_run(run_id))
        where = result.get("worker", {})
        return (f"{cell.key}: {row['status']} in {format_duration(where.get('wall_s', 0))} on "
                f"{where.get('host', '?')} (pid {where.get('pid', '?')}) -> run {run_id}" +
                (f": {row['error']}" if row["error"] else ""))


def cell_row(cell: Cell, run) -> dict[str, Any]:
    """One line of the sweep's table: the cell, its run, and the network it found."""
    result = run.result if isinstance(run.result, dict) else {}
    nets = result.get("networks") or []
    n = nets[0] if nets else {}
    errors = [f"{f.get('step')}: {f.get('error')}" for f in result.get("failures", [])] + \
             [i.get("error", "") for i in result.get("infeasible", [])]
    return {"cell": cell.key, "device": cell.device, "method": cell.method, "budget": cell.budget.text,
            "seed": cell.seed, "run_id": run.id, "status": run.status, "test_acc": n.get("test_acc"),
            "budget_value": n.get("budget_value"), "predicted_ms": n.get("predicted_ms"),
            "measured_ms": n.get("measured_ms"), "measured_for_budget": n.get("measured_for_budget"),
            "met": n.get("met"), "wall_s": (result.get("worker") or {}).get("wall_s"),
            "host": (result.get("worker") or {}).get("host"), "error": "; ".join(e for e in errors if e)}


def cell_rows(config: SweepConfig, store: Store, sweep_id: int) -> list[dict[str, Any]]:
    runs = cell_runs(store, sweep_id)
    rows = []
    for cell in config.cells:
        if cell.key in runs:
            rows.append(cell_row(cell, store.get_run(runs[cell.key]["id"])))
        else:
            rows.append({"cell": cell.key, "device": cell.device, "method": cell.method, "budget": cell.budget.text,
                         "seed": cell.seed, "run_id": None, "status": "not run", "error": ""})
    return rows


def _write_report(config: SweepConfig, store: Store, workspace: Path, sweep_id: int, outcome: SweepOutcome,
                  progress: Progress) -> dict[str, str]:
    from hilnas.server.report import write_report

    ids = [r["run_id"] for r in outcome.cells if r["status"] == "done" and r["run_id"] is not None]
    if not ids:
        return {}
    try:
        paths = write_report(store, ids, workspace / "sweeps" / str(sweep_id) / "report",
                             title=f"hilnas sweep {sweep_id}: {config.name}")
    except Exception as err:  # noqa: BLE001 - the cells are kept; say what went wrong
        log.debug("report failed", exc_info=True)
        progress.say(f"  writing the report failed: {type(err).__name__}: {err} (retry: hilnas report "
                     f"{' '.join(map(str, ids))})")
        return {}
    return {k: str(v) for k, v in paths.items()}


def summary_lines(outcome: SweepOutcome) -> list[str]:
    """The sweep as a table, one line per cell, then where the report is."""
    fmt = lambda v, spec=".3g": "-" if v is None else format(v, spec)  # noqa: E731
    lines = [f"sweep {outcome.sweep_id}: {outcome.status} in {format_duration(outcome.wall_s)} on {outcome.engine} "
             f"({outcome.ran} cell(s) run now, {outcome.done_before} done before, {len(outcome.cells)} in all)",
             f"  {'cell':<44} {'status':<8} {'run':>4} {'accuracy':>8} {'measured':>9} {'budget':>9}  met"]
    for r in outcome.cells:
        acc = "-" if r.get("test_acc") is None else f"{100 * r['test_acc']:.1f}%"
        met = {True: "yes", False: "OVER", None: "-"}[r.get("met")]
        lines.append(f"  {r['cell']:<44} {r['status']:<8} {fmt(r['run_id'], 'd'):>4} {acc:>8} "
                     f"{fmt(r.get('measured_for_budget')):>9} {fmt(r.get('budget_value')):>9}  {met}")
        if r.get("error"):
            lines.append(f"      {r['error']}")
    if outcome.status == "failed":
        lines.append(f"  everything finished is kept; run `{outcome.resume_command}` again to run the failed cells")
    if outcome.report.get("html"):
        lines.append(f"  report: {outcome.report['html']}")
    return lines
