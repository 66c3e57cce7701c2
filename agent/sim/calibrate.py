"""Calibrate a device profile against published whole-network latencies.

The reference is /work/shared/data/nb201_device_latency_calibration.csv (HW-NAS-Bench / HELP:
NAS-Bench-201 networks measured on real devices, one column per device). The networks are
rebuilt as ONNX graphs (``nb201.py``), costed once, and a few profile numbers (dispatch and
per-model overhead, per-op efficiencies, bandwidths) are fitted by Nelder-Mead in log space to
minimise the mean absolute log error. Quality: Kendall tau-b and median absolute percentage
error of the simulated vs the measured latencies.

    python -m hilnas.agent.sim.calibrate --profile raspi4 --column raspi4_ms [--fit]
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from hilnas.agent.sim.graph import GraphCost, NodeCost, analyse_onnx
from hilnas.agent.sim.model import DeviceModel
from hilnas.agent.sim.nb201 import nb201_onnx
from hilnas.agent.sim.profile import DeviceProfile, load_profile

DEFAULT_CSV = Path("/work/shared/data/nb201_device_latency_calibration.csv")
# Profile numbers the fit may move ("compute.efficiency.<Op[.variant]>" adds/updates an entry).
# Peak FLOP/s, bandwidths and cache size come from the hardware spec and stay fixed (the
# whole-network latencies cannot tell them apart from the efficiencies); the per-model overhead
# comes from the networks that fold to a constant (``constant_overhead_us``).
DEFAULT_KEYS = ("compute.dispatch_us", "compute.efficiency.Conv",
                "compute.efficiency.Conv.pointwise", "compute.efficiency.AveragePool")
# Plausible ranges: the fit may not trade physics for a slightly better score.
BOUNDS = {"compute.dispatch_us": (0.5, 100.0), "compute.model_overhead_us": (1.0, 5000.0),
          "compute.mem_bandwidth_gbs": (0.5, 100.0), "compute.cache_bandwidth_gbs": (2.0, 500.0)}
_EFFICIENCY_BOUNDS = (1e-3, 1.0)


@dataclass(frozen=True)
class CalibrationReport:
    """How well a profile reproduces one column of measured latencies."""

    column: str
    n: int
    kendall_tau: float      # tau-b of simulated vs measured latencies
    median_ape: float       # median |sim - measured| / measured
    median_ratio: float     # median sim / measured (1 = no overall bias)


def read_latencies(path: Path, column: str) -> list[tuple[str, float]]:
    """(arch_str, latency ms) rows of a NAS-Bench-201 latency table."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []):
            raise ValueError(f"{path} has no column {column!r}; columns: {reader.fieldnames}")
        return [(r["arch_str"], float(r[column])) for r in reader if r[column]]


def nb201_graphs(arch_strs, *, cache: Path | None = None) -> dict[str, GraphCost]:
    """Costed graphs of the networks (about 30 ms each), cached as JSON when ``cache`` is given."""
    graphs: dict[str, GraphCost] = {}
    if cache and cache.is_file():
        graphs = {k: _graph_from_json(v) for k, v in json.loads(cache.read_text()).items()}
    missing = [a for a in dict.fromkeys(arch_strs) if a not in graphs]
    for arch in missing:
        graphs[arch] = analyse_onnx(nb201_onnx(arch))
    if cache and missing:
        cache.write_text(json.dumps({k: _graph_to_json(g) for k, g in graphs.items()}))
    return graphs


def kendall_tau(x, y) -> float:
    """Kendall tau-b (O(n^2) memory in int8; fine for a few thousand points)."""
    import numpy as np

    x, y = np.asarray(x, float), np.asarray(y, float)
    total = concordant = nx = ny = 0
    for start in range(0, len(x), 512):   # row blocks keep memory small
        sx = np.sign(x[start:start + 512, None] - x[None, :]).astype(np.int8)
        sy = np.sign(y[start:start + 512, None] - y[None, :]).astype(np.int8)
        concordant += int((sx.astype(np.int32) * sy).sum())
        nx += int((sx != 0).sum())
        ny += int((sy != 0).sum())
    total = math.sqrt(nx * ny)
    return concordant / total if total else 0.0


class _Design:
    """The measured networks as counts of unique nodes, so a profile prices them in ms."""

    def __init__(self, graphs: list[GraphCost], profile: DeviceProfile):
        import numpy as np

        self.unique: dict[bool, dict[tuple, NodeCost]] = {True: {}, False: {}}
        self.rows: list[tuple[bool, dict[tuple, int], int]] = []
        cache = profile.compute.cache_bytes
        for g in graphs:
            live = g.live
            resident = sum(n.params_bytes for n in live) <= cache
            heads = {n.name: n for n in live}
            counts: dict[tuple, int] = {}
            for n in live:
                head = heads.get(n.fused_into)
                key = (n.op_type, n.variant, n.flops, n.bytes_read, n.bytes_written, n.params_bytes,
                       n.view, (head.op_type, head.variant) if head else None)
                counts[key] = counts.get(key, 0) + 1
                if key not in self.unique[resident]:
                    self.unique[resident][key] = n
                    if head is not None:   # keep the head so the epilogue finds its efficiency
                        hkey = ("head",) + key
                        self.unique[resident][hkey] = dataclasses.replace(head, name=str(hkey))
                        self.unique[resident][key] = dataclasses.replace(n, name=str(key), fused_into=str(hkey))
                    else:
                        self.unique[resident][key] = dataclasses.replace(n, name=str(key))
            self.rows.append((resident, counts, g.input_bytes + g.output_bytes))
        self.keys = {r: list(self.unique[r]) for r in (True, False)}
        index = {r: {k: i for i, k in enumerate(self.keys[r])} for r in (True, False)}
        self.matrix = {r: np.zeros((len(graphs), len(self.keys[r]))) for r in (True, False)}
        for i, (resident, counts, _) in enumerate(self.rows):
            for key, count in counts.items():
                self.matrix[resident][i, index[resident][key]] = count
        self.resident = np.array([r for r, _, _ in self.rows])
        self.io_bytes = np.array([io for _, _, io in self.rows], float)

    def latencies_ms(self, profile: DeviceProfile):
        import numpy as np

        model = DeviceModel(profile)
        out = np.zeros(len(self.rows))
        for resident in (True, False):
            nodes = [self.unique[resident][k] for k in self.keys[resident]]
            if not nodes:
                continue
            times = {t.name: t.total_us for t in model.node_times(nodes, params_resident=resident)}
            vec = np.array([0.0 if k[0] == "head" else times[str(k)] for k in self.keys[resident]])
            mask = self.resident == resident
            out[mask] = (self.matrix[resident] @ vec)[mask]
        c = profile.compute
        return (out + c.model_overhead_us + self.io_bytes / (c.mem_bandwidth_gbs * 1e3)) / 1e3


def evaluate(profile: DeviceProfile, graphs: dict[str, GraphCost], rows: list[tuple[str, float]],
             column: str = "") -> CalibrationReport:
    """Compare the profile's noise-free latencies with the measured ones."""
    import numpy as np

    design = _Design([graphs[a] for a, _ in rows], profile)
    return _report(design.latencies_ms(profile), np.array([y for _, y in rows]), column)


def _report(pred, y, column: str) -> CalibrationReport:
    import numpy as np

    return CalibrationReport(column=column, n=len(y), kendall_tau=kendall_tau(pred, y),
                             median_ape=float(np.median(np.abs(pred - y) / y)),
                             median_ratio=float(np.median(pred / y)))


def with_values(profile: DeviceProfile, values: dict[str, float]) -> DeviceProfile:
    """A copy of the profile with dotted keys (see ``DEFAULT_KEYS``) set."""
    compute = profile.compute
    eff = dict(compute.efficiency)
    changes = {}
    for key, value in values.items():
        section, _, field = key.partition(".")
        if section != "compute":
            raise ValueError(f"only compute.* numbers are fitted, not {key!r}")
        if field.startswith("efficiency."):
            eff[field.removeprefix("efficiency.")] = min(1.0, value)
        else:
            changes[field] = min(1.0, value) if "efficiency" in field else value
    compute = dataclasses.replace(compute, efficiency=tuple(sorted(eff.items())), **changes)
    return dataclasses.replace(profile, compute=compute)


def value_of(profile: DeviceProfile, key: str) -> float:
    field = key.partition(".")[2]
    if field.startswith("efficiency."):
        op, _, variant = field.removeprefix("efficiency.").partition(".")
        return profile.compute.efficiency_of(op, variant)
    return float(getattr(profile.compute, field))


def constant_overhead_us(graphs: dict[str, GraphCost], rows: list[tuple[str, float]]) -> float | None:
    """Latency (us) of the networks in which no kernel runs (all folded to a constant): what a
    device pays per inference for nothing, i.e. the per-model overhead. The 10th percentile,
    because some of those networks measure far slower (their converter did not fold them all)."""
    import numpy as np

    ys = [y for a, y in rows if not any(n.runs for n in graphs[a].nodes)]
    return float(np.percentile(ys, 10)) * 1e3 if ys else None


def fit(profile: DeviceProfile, graphs: dict[str, GraphCost], rows: list[tuple[str, float]], *,
        keys=DEFAULT_KEYS, iterations: int = 600, restarts: int = 3,
        column: str = "") -> tuple[DeviceProfile, CalibrationReport]:
    """Fit ``keys`` of the profile to the rows (Nelder-Mead, restarted from the best point so
    it does not stall); returns the fitted profile and its report."""
    import numpy as np

    design = _Design([graphs[a] for a, _ in rows], profile)
    y = np.array([v for _, v in rows])
    log_y = np.log(np.maximum(y, 1e-6))

    bounds = np.log([BOUNDS.get(k, _EFFICIENCY_BOUNDS) for k in keys])

    def values(theta) -> dict[str, float]:
        return dict(zip(keys, np.exp(np.clip(theta, bounds[:, 0], bounds[:, 1]))))

    def loss(theta) -> float:
        p = with_values(profile, values(theta))
        return float(np.mean(np.abs(np.log(design.latencies_ms(p)) - log_y)))

    theta = np.clip(np.log([max(value_of(profile, k), 1e-6) for k in keys]), bounds[:, 0], bounds[:, 1])
    for _ in range(max(1, restarts)):
        theta = _nelder_mead(loss, theta, iterations=iterations)
    fitted = with_values(profile, values(theta))
    return fitted, _report(design.latencies_ms(fitted), y, column)


def _nelder_mead(f, x0, *, iterations: int, step: float = 0.3):
    """Minimise f from x0 (plain Nelder-Mead; scipy is not a dependency of the agent)."""
    import numpy as np

    n = len(x0)
    simplex = [np.asarray(x0, float)] + [np.asarray(x0, float) + step * np.eye(n)[i] for i in range(n)]
    values = [f(x) for x in simplex]
    for _ in range(iterations):
        order = np.argsort(values)
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        centroid = np.mean(simplex[:-1], axis=0)
        reflected = centroid + (centroid - simplex[-1])
        fr = f(reflected)
        if fr < values[0]:
            expanded = centroid + 2 * (centroid - simplex[-1])
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:   # shrink towards the best point
                simplex = [simplex[0]] + [simplex[0] + 0.5 * (s - simplex[0]) for s in simplex[1:]]
                values = [values[0]] + [f(s) for s in simplex[1:]]
    return simplex[int(np.argmin(values))]


def _graph_to_json(g: GraphCost) -> dict:
    return {"nodes": [dataclasses.asdict(n) for n in g.nodes], "input_bytes": g.input_bytes,
            "output_bytes": g.output_bytes, "opset": g.opset, "warnings": list(g.warnings)}


def _graph_from_json(d: dict) -> GraphCost:
    nodes = tuple(NodeCost(**{**n, "output_shape": tuple(n["output_shape"])}) for n in d["nodes"])
    return GraphCost(nodes=nodes, input_bytes=d["input_bytes"], output_bytes=d["output_bytes"],
                     opset=d["opset"], warnings=tuple(d["warnings"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True, help="profile name or .toml path")
    ap.add_argument("--column", required=True, help="latency column, e.g. raspi4_ms")
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--cache", type=Path, help="JSON file caching the costed graphs")
    ap.add_argument("--fit", action="store_true", help="fit the compute numbers and print them")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N rows")
    args = ap.parse_args(argv)
    profile = load_profile(args.profile)
    rows = read_latencies(args.csv, args.column)[: args.limit or None]
    graphs = nb201_graphs([a for a, _ in rows], cache=args.cache)
    print("profile:", evaluate(profile, graphs, rows, args.column))
    if args.fit:
        overhead = constant_overhead_us(graphs, rows)
        if overhead is not None:
            profile = with_values(profile, {"compute.model_overhead_us": overhead})
        fitted, report = fit(profile, graphs, rows, column=args.column)
        print("fitted: ", report)
        for key in ("compute.model_overhead_us",) + DEFAULT_KEYS:
            print(f"  {key} = {value_of(fitted, key):.6g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
