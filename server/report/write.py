"""Write a report: the HTML page, the Markdown file, the PNGs they show, and CSV / JSON for machines.

``write_report(store, run_ids, out_dir)`` writes into ``out_dir``::

    report.html            self-contained (figures inlined); open it in any browser
    report.md              the same, linking the PNGs beside it
    pareto-<device>.png    accuracy vs measured latency (and energy), every method, front, budgets
    tradeoff-<device>.png  the hypernetwork's family (devices with a hypernetwork run)
    lut-vs-measured.png    LUT-predicted vs measured latency, ±10 % band
    networks.csv           one row per found network
    report.json            everything above as data

Each file is written to a temporary name and renamed, so a reader never sees half a report.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

from hilnas.server.report import html, markdown, plots
from hilnas.server.report.data import ReportData, collect
from hilnas.server.store import Store

CSV_COLUMNS = ("run_id", "device", "method", "baseline", "seed", "budget", "budget_metric", "budget_value", "met",
               "bound", "test_acc", "params_m", "mflops", "predicted_ms", "lut_sum_ms", "measured_ms", "ci95_low_ms",
               "ci95_high_ms", "predicted_energy_mj", "measured_energy_mj", "simulated", "throttled", "genotype_text",
               "onnx_path", "model_id", "validation_id")


def figure_name(kind: str, device: str | None = None) -> str:
    return f"{kind}-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.png" if device else f"{kind}.png"


def figures(data: ReportData) -> dict[str, bytes]:
    """Every figure of the report: file name -> PNG bytes."""
    out = {}
    for device in data.device_keys:
        nets = [n for n in data.networks if n["device"] == device]
        out[figure_name("pareto", device)] = plots.pareto(device, nets, [b for b in data.budgets if b["device"] == device])
        curves = [c for c in data.curves if c["device"] == device]
        if curves:
            out[figure_name("tradeoff", device)] = plots.tradeoff(device, curves)
    out[figure_name("lut-vs-measured")] = plots.lut_vs_measured(data.networks)
    return out


def networks_csv(data: ReportData) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for n in data.networks:
        ci = n.get("ci95_ms") or [None, None]
        row = {**n, "ci95_low_ms": ci[0], "ci95_high_ms": ci[1],
               "throttled": bool((n.get("conditions") or {}).get("throttled"))}
        w.writerow(["" if row.get(c) is None else row.get(c) for c in CSV_COLUMNS])
    return buf.getvalue()


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def check_writable(out_dir: Path) -> None:
    """Raise ``PermissionError`` (one line, naming the folder) unless ``out_dir`` can take the report."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".hilnas-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"cannot write the report into {out_dir}: {err.strerror or err}; "
                              "choose another folder with --out") from None


def write_report(store: Store, run_ids: list[int], out_dir: Path | str, *, title: str | None = None) -> dict[str, Path]:
    """Write the report of ``run_ids`` into ``out_dir``; returns what was written (``html``, ``markdown``,
    ``csv``, ``json``, and each figure by its file name)."""
    out_dir = Path(out_dir)
    check_writable(out_dir)
    data = collect(store, run_ids, title=title)
    pngs = figures(data)
    written: dict[str, Path] = {}
    for name, png in pngs.items():
        _atomic(out_dir / name, png)
        written[name] = out_dir / name
    for key, name, text in (("html", "report.html", html.render(data, pngs)),
                            ("markdown", "report.md", markdown.render(data, pngs)),
                            ("csv", "networks.csv", networks_csv(data)),
                            ("json", "report.json", json.dumps(data.to_dict(), indent=1, default=str) + "\n")):
        _atomic(out_dir / name, text.encode("utf-8"))
        written[key] = out_dir / name
    return written
