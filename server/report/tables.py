"""The report's tables as plain rows of text, shared by the HTML page and the Markdown file."""
from __future__ import annotations

import math
import time
from typing import Any, Sequence

from hilnas.server.progress import format_duration
from hilnas.server.report.data import ReportData

Table = tuple[list[str], list[list[str]]]  # (header, rows)

BUDGET_RULE = ("A budget is met when the upper end of the measurement's 95% confidence interval is within it "
               "(median latency; net energy per inference); parameters and FLOPs are exact.")


def _num(v: Any, fmt: str = ".3g") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _ci(n: dict[str, Any], key: str, ci_key: str, unit: str) -> str:
    if n.get(key) is None:
        return "–"
    ci = n.get(ci_key) or []
    return f"{n[key]:.3g} {unit}" + (f" ({ci[0]:.3g}–{ci[1]:.3g})" if len(ci) == 2 else "")


def has_acc(n: dict[str, Any]) -> bool:
    """The network has a test accuracy (not None, not NaN: e.g. a training evaluated on no split)."""
    v = n.get("test_acc")
    return isinstance(v, (int, float)) and math.isfinite(v)


def accuracy(n: dict[str, Any]) -> str:
    return f"{100 * n['test_acc']:.1f}%" if has_acc(n) else "–"


def verdict(n: dict[str, Any]) -> str:
    return {True: "met", False: "OVER", None: "not checked"}[n.get("met")]


def conditions(n: dict[str, Any]) -> str:
    c = n.get("conditions") or {}
    parts = ["simulated" if c.get("simulated") or n.get("simulated") else "real device"]
    if c.get("throttled"):
        parts.append("THROTTLED")
    if c.get("max_temperature_c") is not None:
        parts.append(f"max {c['max_temperature_c']:.0f} °C")
    if c.get("load_avg_1m"):
        parts.append(f"load {c['load_avg_1m']:.1f}")
    return ", ".join(parts)


def budget_text(n: dict[str, Any]) -> str:
    from hilnas.server.validation import UNITS

    if n.get("budget_value") is None:
        return n.get("budget") or "–"
    unit = UNITS.get(n["budget_metric"], "")
    return n["budget"] + ("" if not n["budget"].endswith("%") else f" = {n['budget_value']:.3g} {unit}")


def runs_table(data: ReportData) -> Table:
    header = ["run", "name", "kind", "status", "space", "dataset", "methods", "epochs (search / final)", "seeds",
              "started", "wall"]
    rows = []
    for r in data.runs:
        space = r["space"] if isinstance(r["space"], str) else str(r["space"] or "")
        opts = ", ".join(f"{k}={v}" for k, v in (r["space_options"] or {}).items())
        rows.append([str(r["id"]), r["name"] or "–", r["kind"], r["status"], space + (f" ({opts})" if opts else ""),
                     str(r["dataset"] or "–"), ", ".join(map(str, r["methods"] or [])),
                     f"{_num(r['search_epochs'], 'd') if r['search_epochs'] else '–'} / "
                     f"{_num(r['train_epochs'], 'd') if r['train_epochs'] else '–'}",
                     ", ".join(map(str, r["seeds"] or [])),
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started_at"])),
                     format_duration(r["wall_s"]) if r["wall_s"] is not None else "running"])
    return header, rows


def found_table(networks: Sequence[dict[str, Any]]) -> Table:
    """Per device: method, budget, accuracy, predicted and measured latency and energy, verdict."""
    header = ["method", "budget", "seed", "test accuracy", "LUT-predicted latency", "measured latency (95% CI)",
              "measured energy (95% CI)", "budget met?"]
    rows = [[n["method"] + (" (baseline)" if n.get("baseline") else ""), budget_text(n), str(n["seed"]),
             accuracy(n), _num(n.get("predicted_ms")) + (" ms" if n.get("predicted_ms") is not None else ""),
             _ci(n, "measured_ms", "ci95_ms", "ms"), _ci(n, "measured_energy_mj", "energy_ci95_mj", "mJ"), verdict(n)]
            for n in _sorted(networks)]
    return header, rows


def networks_table(networks: Sequence[dict[str, Any]]) -> Table:
    """Every found network in full: architecture, size, prediction, measurement, conditions, file."""
    header = ["run", "device", "method", "budget", "seed", "genotype", "params (M)", "MFLOPs", "test accuracy",
              "predicted (ms)", "measured (ms, 95% CI)", "energy (mJ, 95% CI)", "budget met?", "conditions", "ONNX"]
    rows = [[str(n["run_id"]), n["device"], n["method"], budget_text(n), str(n["seed"]), n["genotype_text"],
             _num(n.get("params_m"), ".4f"), _num(n.get("mflops"), ".2f"),
             accuracy(n), _num(n.get("predicted_ms")), _ci(n, "measured_ms", "ci95_ms", ""),
             _ci(n, "measured_energy_mj", "energy_ci95_mj", ""), verdict(n), conditions(n),
             str(n.get("onnx_path") or "–")] for n in _sorted(networks)]
    return header, rows


def budgets_table(budgets: Sequence[dict[str, Any]]) -> Table:
    header = ["device", "budget", "value", "cheapest network (LUT)", "dearest network (LUT)", "searched?"]
    rows = [[b["device"], b["written"], f"{_num(b.get('value'))} {b.get('unit', '')}",
             f"{_num(b.get('cheapest'))} {b.get('unit', '')}", f"{_num(b.get('dearest'))} {b.get('unit', '')}",
             "yes" if b.get("feasible") else f"no: {b.get('error', '')}"] for b in budgets]
    return header, rows


def failures_table(failures: Sequence[dict[str, Any]]) -> Table:
    return ["run", "step", "error"], [[str(f["run_id"]), f["step"], f["error"]] for f in failures]


def _sorted(networks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(networks, key=lambda n: (n["device"], n["budget_metric"], n.get("budget_value") or 0,
                                           n.get("baseline", False), n["method"], n["seed"], n["run_id"]))


def device_line(data: ReportData, device: str) -> str:
    d = data.devices.get(device) or {}
    what = f"simulated {d.get('profile')}" if d.get("simulated") else (d.get("cpu_model") or "device")
    cores = f", {d['cores']} cores" if d.get("cores") else ""
    return f"{what}{cores}" + (f" — fingerprint {d['fingerprint']}" if d.get("fingerprint") else "")
