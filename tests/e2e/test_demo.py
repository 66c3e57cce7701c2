"""The main command end to end: ``hilnas demo --quick`` on loopback agents (this host, simulated Pi 4 and
Pixel 3), then its report checked for sense."""
import csv
import json
import re
from pathlib import Path

import pytest

from hilnas.server.cli import main

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end_and_its_report_makes_sense(capsys, tmp_path):
    from hilnas.server.demo import demo_methods

    ws = tmp_path / "ws"
    code = main(["demo", "--quick", "--workspace", str(ws), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    runs = json.loads(out[out.index("{"):out.rindex("}") + 1])["runs"]
    assert all(r["status"] == "done" and not r["failures"] for r in runs)
    outcome, own_spaces = runs[0], runs[1:]
    # the methods with a space of their own ran too, one run per space on the simulated Pi, each validated there
    grown = {n["method"]: n for r in own_spaces for n in r["networks"]}
    assert set(grown) == {"splitting", "prune"}
    for n in grown.values():
        assert n["device"] == "raspi4-sim" and n["measured_ms"] > 0 and n["met"] in (True, False)
        assert Path(n["onnx_path"]).is_file()
    report = ws / "runs" / str(outcome["run_id"]) / "report"

    data = json.loads((report / "report.json").read_text())
    devices = {"local", "raspi4-sim", "pixel3-sim"}
    methods = set(demo_methods())
    assert {"dca", "hypernet", "random"} <= methods
    nets = data["networks"]
    # every method on every device under every budget, each measured on its device
    assert {(n["device"], n["method"]) for n in nets} == {(d, m) for d in devices for m in methods}
    for n in nets:
        assert n["measured_ms"] > 0 and len(n["ci95_ms"]) == 2 and n["ci95_ms"][0] <= n["measured_ms"] <= n["ci95_ms"][1]
        assert n["met"] in (True, False)  # each budget met or flagged, by the upper bound of the CI
        assert n["met"] == (n["ci95_ms"][1] <= n["budget_value"])
        assert n["predicted_ms"] > 0 and 0 <= n["test_acc"] <= 1 and n["params_m"] > 0
        assert n["simulated"] == (n["device"] != "local")
        assert Path(n["onnx_path"]).is_file()
    assert all(n["measured_energy_mj"] > 0 for n in nets if n["simulated"])  # the simulated boards have meters
    assert {c["device"] for c in data["curves"]} == devices  # the hypernetwork's trade-off, per device
    assert {b["device"] for b in data["budgets"]} == devices and all(b["feasible"] for b in data["budgets"])

    pngs = sorted(p.name for p in report.glob("*.png"))
    assert pngs == sorted([f"pareto-{d}.png" for d in devices] + [f"tradeoff-{d}.png" for d in devices]
                          + ["lut-vs-measured.png"])
    for name in pngs:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (report / name).stat().st_size > 10_000
    html = (report / "report.html").read_text()
    inlined = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}" alt="[^"]+" data-file="([^"]+)"',
                         html)
    assert sorted(inlined) == pngs  # every figure inlined (self-contained), each naming its file
    assert "<script" not in html and "http://" not in html and "https://" not in html
    markdown = (report / "report.md").read_text()
    assert all(f"]({name})" in markdown for name in pngs)
    rows = list(csv.DictReader((report / "networks.csv").open()))
    assert len(rows) == len(nets) and all(float(r["measured_ms"]) > 0 for r in rows)

    # the demo's workspace stays, for hilnas runs and re-runs: running it again resumes, with nothing to redo
    assert main(["--workspace", str(ws), "runs"]) == 0
    assert f"{len(nets)} networks on 3 device(s)" in capsys.readouterr().out
    assert main(["demo", "--quick", "--workspace", str(ws), "--json"]) == 0
    again = capsys.readouterr().out
    again = json.loads(again[again.index("{"):again.rindex("}") + 1])["runs"]
    assert [r["run_id"] for r in again] == [r["run_id"] for r in runs]
    assert all(r["resumed"] and r["ran"] == 0 for r in again)
