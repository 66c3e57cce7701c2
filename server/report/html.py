"""The report as one self-contained HTML page: the figures inlined as base64 PNGs, no server, no
script, no external file (each image still names its PNG beside the page in ``data-file``)."""
from __future__ import annotations

import base64
import html
import time
from collections.abc import Mapping

from hilnas.server.report import tables
from hilnas.server.report.data import ReportData

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
p.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.met { color: #176b2c; font-weight: 600; } td.over { color: #b00020; font-weight: 700; }
td.code { font-family: ui-monospace, monospace; font-size: 0.9em; max-width: 28em; word-break: break-all; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; }
"""


def _table(table: tables.Table, *, code_cols: tuple[str, ...] = ()) -> str:
    header, rows = table
    if not rows:
        return '<p class="note">none</p>'
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for row in rows:
        cells = []
        for h, cell in zip(header, row):
            cls = ("met" if cell == "met" else "over" if cell == "OVER" else "") if h == "budget met?" else \
                ("code" if h in code_cols else "")
            cells.append(f'<td class="{cls}">{html.escape(cell)}</td>' if cls else f"<td>{html.escape(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</tbody></table>"


def _img(name: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" data-file="{html.escape(name)}">'


def render(data: ReportData, figures: Mapping[str, bytes]) -> str:
    """The page; ``figures`` maps each PNG's file name to its bytes (``write.figure_names``)."""
    from hilnas.server.report.write import figure_name

    e = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(data.title)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{e(data.title)}</h1>",
             f'<p class="meta">generated {time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data.generated_at))} '
             f"by hilnas; {len(data.networks)} networks on {len(data.device_keys)} device(s)</p>",
             "<h2>Runs</h2>", _table(tables.runs_table(data))]
    for device in data.device_keys:
        mine = [n for n in data.networks if n["device"] == device]
        parts += [f"<h2>{e(device)}</h2>", f'<p class="meta">{e(tables.device_line(data, device))}</p>',
                  _table(tables.found_table(mine))]
        name = figure_name("pareto", device)
        if name in figures:
            parts.append(_img(name, figures[name], f"{device}: accuracy vs measured latency, every method"))
        name = figure_name("tradeoff", device)
        if name in figures:
            parts.append("<h3>The hypernetwork's trade-off</h3>")
            parts.append(_img(name, figures[name], f"{device}: the hypernetwork's trade-off curve"))
    parts += ["<h2>LUT prediction vs measurement</h2>",
              '<p class="note">Each network\'s latency as its device\'s LUT predicts it (the sum over its op '
              "instances, corrected where <code>hilnas fidelity</code> fitted a correction) against its measurement. "
              "The grey band is ±10%.</p>"]
    name = figure_name("lut-vs-measured")
    if name in figures:
        parts.append(_img(name, figures[name], "LUT-predicted vs measured latency"))
    parts += ["<h2>Every network</h2>", f'<p class="note">{e(tables.BUDGET_RULE)}</p>',
              _table(tables.networks_table(data.networks), code_cols=("genotype", "ONNX"))]
    if data.budgets:
        parts += ["<h2>Budgets</h2>", '<p class="note">A relative budget (e.g. latency_ms=40%) is placed between the '
                  "cheapest (0%) and the dearest (100%) network of the space by the device's LUT.</p>",
                  _table(tables.budgets_table(data.budgets))]
    if data.failures:
        parts += ["<h2>Failures</h2>", _table(tables.failures_table(data.failures))]
    notes = sorted({note for n in data.networks for note in n.get("notes") or []})
    if notes:
        parts += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>"]
    parts.append("</body></html>\n")
    return "\n".join(parts)
