"""The sweep's scheduler: engine slots, at most ``per_device`` cells on one real board, a lost
worker's cell run again and recorded once, resuming. The engine here is a stand-in that answers
in submission order (the real engines run in tests/integration/test_sweep.py); the store is real."""
from __future__ import annotations

import dataclasses
from collections import Counter

from hilnas.server.store import Store
from hilnas.server.sweep import parse_sweep_file, run_sweep
from hilnas.server.sweep.engines import Finished
from hilnas.server.sweep.execute import cell_runs

SWEEP = """\
[space]
name = "nb201"
[search]
methods = ["dca", "random"]
seeds = [0, 1]
[[devices]]
key = "pi"
address = "127.0.0.1:50061"
budgets = ["latency_ms=3"]
[[devices]]
key = "sim"
simulate = "raspi4"
budgets = ["latency_ms=3"]
"""


class StandIn:
    """Runs nothing: records what is running, answers the oldest cell as 'failed' (or lost once)."""

    def __init__(self, slots: int, lose: set[str] = frozenset()):
        self.slots, self.description = slots, f"a stand-in with {slots} slots"
        self.running: list[str] = []
        self.lose = set(lose)
        self.peak_total = 0
        self.peak_device: Counter[str] = Counter()
        self.submitted: Counter[str] = Counter()

    def submit(self, key: str, payload: str) -> None:
        self.running.append(key)
        self.submitted[key] += 1
        self.peak_total = max(self.peak_total, len(self.running))
        per = Counter(k.split("/")[0] for k in self.running)
        for device, n in per.items():
            self.peak_device[device] = max(self.peak_device[device], n)

    def finished(self, timeout: float) -> list[Finished]:
        key = self.running.pop(0)
        if key in self.lose:
            self.lose.discard(key)
            return [Finished(key, None, "its worker process died", lost=True)]
        return [Finished(key, None, "stand-in: nothing ran")]


def test_slots_and_the_per_device_limit_hold_and_every_cell_is_recorded_once(tmp_path):
    sweep = parse_sweep_file(SWEEP)
    engine = StandIn(slots=3, lose={"pi/dca/latency_ms=3/seed1"})
    with Store.open(tmp_path) as store:
        outcome = run_sweep(sweep, store, workspace=tmp_path, engine=engine, report=False)
        runs = store.runs_df("run")
        recorded = Counter(c["cell"] for c in runs["config"])
    assert engine.peak_total == 3
    assert engine.peak_device["pi"] == 1          # a real board: one cell at a time
    assert engine.peak_device["sim"] >= 2         # simulated: each cell starts its own board
    assert engine.submitted["pi/dca/latency_ms=3/seed1"] == 2 and outcome.retried == 1
    assert recorded == {c.key: 1 for c in sweep.cells} and outcome.ran == 8
    assert outcome.status == "failed" and {r["status"] for r in outcome.cells} == {"failed"}


def test_per_device_two_lets_two_cells_share_a_board(tmp_path):
    sweep = parse_sweep_file(SWEEP + "\n[sweep]\nper_device = 2\n")
    engine = StandIn(slots=8)
    with Store.open(tmp_path) as store:
        run_sweep(sweep, store, workspace=tmp_path, engine=engine, report=False)
    assert engine.peak_device["pi"] == 2


def test_a_cell_lost_more_often_than_retries_is_recorded_failed_once(tmp_path):
    sweep = parse_sweep_file(SWEEP.replace('seeds = [0, 1]', 'seeds = [0]') + "\n[sweep]\nretries = 0\n")
    engine = StandIn(slots=1, lose={"pi/dca/latency_ms=3/seed0"})
    with Store.open(tmp_path) as store:
        outcome = run_sweep(sweep, store, workspace=tmp_path, engine=engine, report=False)
        runs = cell_runs(store, outcome.sweep_id)
    assert engine.submitted["pi/dca/latency_ms=3/seed0"] == 1 and outcome.retried == 0
    assert "its worker process died" in runs["pi/dca/latency_ms=3/seed0"]["result"]["failures"][0]["error"]


def test_resuming_runs_only_the_cells_without_a_done_run(tmp_path):
    sweep = parse_sweep_file(SWEEP)
    with Store.open(tmp_path) as store:
        first = run_sweep(sweep, store, workspace=tmp_path, engine=StandIn(slots=2), report=False)
        # pretend two cells finished: their runs are done
        done = [cell_runs(store, first.sweep_id)[k]["id"] for k in ("pi/dca/latency_ms=3/seed0", "sim/random/latency_ms=3/seed1")]
        for run_id in done:
            store.finish_run(run_id, status="done", result={"networks": []})
        again = StandIn(slots=2)
        second = run_sweep(sweep, store, workspace=tmp_path, engine=again, report=False)
    assert second.sweep_id == first.sweep_id and second.resumed and second.done_before == 2
    assert set(again.submitted) == {c.key for c in sweep.cells} - {"pi/dca/latency_ms=3/seed0",
                                                                     "sim/random/latency_ms=3/seed1"}
    # a new sweep of the same file when asked
    with Store.open(tmp_path) as store:
        third = run_sweep(dataclasses.replace(sweep), store, workspace=tmp_path, engine=StandIn(slots=2), new=True,
                          report=False)
    assert third.sweep_id != first.sweep_id and third.done_before == 0
