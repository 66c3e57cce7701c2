"""What the head sends a cell: the sweep, the cell, and the LUT rows of its device's fingerprint."""
from __future__ import annotations

import json

from hilnas.server.store import LutId, LutRow, Store
from hilnas.server.sweep import parse_sweep_file
from hilnas.server.sweep.cell import _seed, cell_payload

SWEEP = """\
[space]
name = "nb201"
[search]
methods = ["dca"]
[[devices]]
key = "pi-1"
address = "127.0.0.1:50061"
budgets = ["latency_ms=3"]
[[devices]]
key = "pi-2"
address = "127.0.0.1:50062"
budgets = ["latency_ms=3"]
"""
LUT = LutId("fp-pi4", "onnxruntime", "1.31.1", "cfg1")


def test_two_boards_of_one_kind_under_two_keys_share_their_lut(tmp_path):
    """pi-2's cell gets the rows pi-1 measured (same fingerprint), with pi-1 recorded first so the
    rows can be stored (found by benchmarks/bench_sweep.py: the cell failed with 'unknown device')."""
    sweep = parse_sweep_file(SWEEP)
    with Store.open(tmp_path / "head") as head:
        for key in ("pi-1", "pi-2"):
            head.upsert_device(key, fingerprint="fp-pi4", info={"profile": "raspi4"})
        head.put_lut_rows(LUT, [LutRow(f"op{i}", "pi-1", n=30, median_ms=1.0 + i, passes=1) for i in range(3)])
        payload = json.loads(cell_payload(sweep, sweep.cell("pi-2/dca/latency_ms=3/seed0"), head))
    assert payload["cell"] == "pi-2/dca/latency_ms=3/seed0"
    assert sorted(d["key"] for d in payload["devices"]) == ["pi-1", "pi-2"]
    with Store.open(tmp_path / "scratch") as scratch:
        seeded = _seed(scratch, payload)
        rows = scratch.lut_dict(LUT)
        assert sorted(rows) == ["op0", "op1", "op2"] and rows["op2"].median_ms == 3.0
        assert seeded == {json.dumps(LUT.as_dict(), sort_keys=True): {"op0", "op1", "op2"}}


def test_a_device_the_head_has_not_seen_gets_no_rows(tmp_path):
    sweep = parse_sweep_file(SWEEP)
    with Store.open(tmp_path / "head") as head:
        payload = json.loads(cell_payload(sweep, sweep.cell("pi-1/dca/latency_ms=3/seed0"), head))
    assert payload["devices"] == [] and payload["luts"] == []
