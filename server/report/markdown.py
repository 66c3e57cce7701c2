"""The report as Markdown, the figures linked as the PNG files beside it."""
from __future__ import annotations

import time
from collections.abc import Mapping

from hilnas.server.report import tables
from hilnas.server.report.data import ReportData


def _table(table: tables.Table) -> str:
    header, rows = table
    if not rows:
        return "_none_\n"
    esc = (lambda s: s.replace("|", "\\|").replace("\n", " "))
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render(data: ReportData, figures: Mapping[str, bytes]) -> str:
    from hilnas.server.report.write import figure_name

    out = [f"# {data.title}\n",
           f"Generated {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(data.generated_at))} by hilnas; "
           f"{len(data.networks)} networks on {len(data.device_keys)} device(s).\n",
           "## Runs\n", _table(tables.runs_table(data))]
    for device in data.device_keys:
        out += [f"## {device}\n", f"{tables.device_line(data, device)}\n",
                _table(tables.found_table([n for n in data.networks if n["device"] == device]))]
        for kind, alt in (("pareto", "accuracy vs measured latency"), ("tradeoff", "the hypernetwork's trade-off")):
            name = figure_name(kind, device)
            if name in figures:
                out.append(f"![{device}: {alt}]({name})\n")
    name = figure_name("lut-vs-measured")
    out += ["## LUT prediction vs measurement\n"] + ([f"![LUT-predicted vs measured latency]({name})\n"]
                                                     if name in figures else [])
    out += ["## Every network\n", tables.BUDGET_RULE + "\n", _table(tables.networks_table(data.networks))]
    if data.budgets:
        out += ["## Budgets\n", _table(tables.budgets_table(data.budgets))]
    if data.failures:
        out += ["## Failures\n", _table(tables.failures_table(data.failures))]
    notes = sorted({note for n in data.networks for note in n.get("notes") or []})
    if notes:
        out += ["## Notes\n", "\n".join(f"- {n}" for n in notes) + "\n"]
    return "\n".join(out)
