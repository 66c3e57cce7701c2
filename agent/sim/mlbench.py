"""Calibrate and cross-validate the phone-GPU profile on per-operator GPU-delegate latencies.

Data: /work/shared/data/mlbench_tflite_cnn_ops_gpu.csv (qed-usc/mobile-ml-benchmark, MIT):
the TFLite GPU-delegate kernel time (us) of every conv, depthwise/grouped conv, FC, pooling,
mean and concatenation op of 102 real CNNs, with the op's shape, on six phones; and
/work/shared/data/mlbench_tflite_cnn_e2e.csv: the whole-model latency (us) of the same CNNs.
Every op row is rebuilt as an ONNX micro-model and costed by the simulator's own analysis, so a
fitted profile is scored like for like. Per-op quality: Kendall tau and median APE of the
simulated kernel time, 5-fold cross-validated with the ops of one CNN in one fold (shapes repeat
inside a CNN). Whole models: the e2e latency vs the sum of the measured ops (the device's own
non-additivity), and vs the simulated ops plus the fitted per-model overhead.
"""
from __future__ import annotations

import ast
import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from hilnas.agent.sim import calibrate
from hilnas.agent.sim.profile import DeviceProfile, load_profile

OPS_CSV = Path("/work/shared/data/mlbench_tflite_cnn_ops_gpu.csv")
E2E_CSV = Path("/work/shared/data/mlbench_tflite_cnn_e2e.csv")
# Numbers fitted on the per-op rows. Peak FLOP/s and the cache size are spec values; the DRAM
# bandwidth may not exceed the LPDDR4X spec. The "cache" bandwidth is an effective number for
# small working sets, which on this GPU comes out *below* the DRAM's (small kernels do not
# reach peak bandwidth); fixing it higher costs 0.035 of per-op tau. The per-model overhead
# comes from the whole-model file (``overhead_us``).
GPU_KEYS = ("compute.dispatch_us", "compute.mem_bandwidth_gbs", "compute.cache_bandwidth_gbs",
            "compute.efficiency.Conv", "compute.efficiency.Conv.pointwise",
            "compute.efficiency.Conv.depthwise", "compute.efficiency.Conv.grouped",
            "compute.efficiency.Gemm", "compute.efficiency.GlobalAveragePool",
            "compute.efficiency.MaxPool", "compute.efficiency.AveragePool",
            "compute.memory_efficiency.Concat", "compute.parallel_outputs")
GPU_BOUNDS = {"compute.dispatch_us": (0.5, 200.0), "compute.mem_bandwidth_gbs": (1.0, 34.1),
              "compute.cache_bandwidth_gbs": (2.0, 500.0), "compute.parallel_outputs": (1.0, 1e7)}


@dataclass(frozen=True)
class GpuConfig:
    """Which phone's GPU column to fit, into which profile, and how to validate it."""

    ops_csv: Path = OPS_CSV
    e2e_csv: Path = E2E_CSV
    phone: str = "pixel4"          # column prefix: "<phone>|gpu|float"
    profile: str = "pixel4-gpu"
    folds: int = 5
    seed: int = 0
    iterations: int = 400
    restarts: int = 6             # 14 numbers: Nelder-Mead needs a few restarts to settle


@dataclass(frozen=True)
class OpRow:
    """One measured GPU kernel: which CNN, which op, its shape and its time."""

    model: str
    op: str                 # TFLite op name, e.g. CONV_2D
    hw: int                 # input height = width (0 = not spatial)
    cin: int
    hw_out: int
    stride: int
    kernel: int             # kernel size; for CONCATENATION the number of inputs
    filters: int            # output channels (depthwise: channel multiplier)
    group: int
    latency_us: float


def _int(v, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def read_ops(path: Path, phone: str) -> list[OpRow]:
    """The op rows of one phone's GPU column (rows without a time are skipped)."""
    column = f"{phone}|gpu|float"
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []):
            raise ValueError(f"{path} has no column {column!r}")
        for r in reader:
            if not r[column]:
                continue
            ft = ast.literal_eval(r["feature"])   # a dict literal; literal_eval runs no code
            rows.append(OpRow(model=r["model"], op=r["operation"], hw=_int(ft.get("Input_shape")),
                              cin=_int(ft.get("Input_channel")), hw_out=_int(ft.get("Output_shape")),
                              stride=_int(ft.get("Stride"), 1), kernel=_int(ft.get("Kernel"), 1),
                              filters=_int(ft.get("Filter"), 1), group=_int(ft.get("Group"), 1),
                              latency_us=float(r[column])))
    return rows


def read_e2e(path: Path, phone: str) -> dict[str, float]:
    """Whole-model GPU latency (us) by CNN name."""
    column = f"{phone}|gpu|float|mean"
    with open(path, newline="", encoding="utf-8") as f:
        return {r["model"]: float(r[column]) for r in csv.DictReader(f) if r.get(column)}


def op_onnx(row: OpRow) -> bytes:
    """A one-op ONNX model with the row's shapes (pads chosen to give the measured output)."""
    from onnx import TensorProto, helper

    from hilnas.agent.sim import toy

    def pads(k: int, s: int) -> list[int]:
        total = max(0, (row.hw_out - 1) * s + k - row.hw)
        return [total // 2, total // 2, total - total // 2, total - total // 2]

    inits, inputs = [], [("x", (1, row.cin, row.hw, row.hw))]
    if row.op in ("CONV_2D", "CONV_2D_GROUP", "DEPTHWISE_CONV_2D"):
        k, s = max(row.kernel, 1), max(row.stride, 1)
        if row.op == "DEPTHWISE_CONV_2D":
            group, cout = row.cin, row.cin * max(row.filters, 1)
        else:
            group, cout = max(row.group, 1), row.filters
        inits = [("w", (cout, row.cin // group, k, k))]
        node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[k, k], strides=[s, s],
                                pads=pads(k, s), group=group)
        out = (1, cout, row.hw_out, row.hw_out)
    elif row.op in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        k, s = max(row.kernel, 1), max(row.stride, 1)
        node = helper.make_node("MaxPool" if row.op == "MAX_POOL_2D" else "AveragePool", ["x"], ["y"],
                                kernel_shape=[k, k], strides=[s, s], pads=pads(k, s))
        out = (1, row.cin, row.hw_out, row.hw_out)
    elif row.op == "MEAN":
        node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
        out = (1, row.cin, 1, 1)
    elif row.op == "FULLY_CONNECTED":
        inputs = [("x", (1, row.cin))]
        inits = [("w", (row.filters, row.cin))]
        node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)
        out = (1, row.filters)
    elif row.op == "CONCATENATION":
        # ``kernel`` inputs: the first has ``cin`` channels, the rest share the remainder.
        n = max(row.kernel, 2)
        rest = max(row.filters - row.cin, n - 1)
        chans = [row.cin] + [rest // (n - 1) + (1 if i < rest % (n - 1) else 0) for i in range(n - 1)]
        inputs = [(f"x{i}", (1, c, row.hw, row.hw)) for i, c in enumerate(chans)]
        node = helper.make_node("Concat", [name for name, _ in inputs], ["y"], axis=1)
        out = (1, sum(chans), row.hw, row.hw)
    else:
        raise ValueError(f"no micro-model for TFLite op {row.op}")
    graph = helper.make_graph([node], row.op.lower(), [toy._io(n, s) for n, s in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out))],
                              initializer=[toy._tensor(n, s) for n, s in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", toy.OPSET)]).SerializeToString()


def _key(row: OpRow) -> tuple:
    return (row.op, row.hw, row.cin, row.hw_out, row.stride, row.kernel, row.filters, row.group)


def op_tables(rows: list[OpRow]):
    """Costed micro-models of the distinct op shapes: (NodeTable, {shape key: NetworkTable})."""
    from hilnas.agent.sim.graph import analyse_onnx

    index: dict[tuple, int] = {}
    store: list = []
    tables = {}
    for row in rows:
        key = _key(row)
        if key not in tables:
            tables[key] = calibrate.table_of(analyse_onnx(op_onnx(row)), index, store)
    return calibrate._finish(store, index), tables


def _fit(profile: DeviceProfile, graphs, rows: list[OpRow], config: GpuConfig) -> DeviceProfile:
    import numpy as np

    nodes, tables = graphs
    design = calibrate.Design(nodes, [tables[_key(r)] for r in rows], profile)
    y_ms = np.array([r.latency_us for r in rows]) / 1e3
    return calibrate.fit_design(profile, design, y_ms, keys=GPU_KEYS, iterations=config.iterations,
                                restarts=config.restarts, kernels_only=True, bounds=GPU_BOUNDS)


def kernel_us(profile: DeviceProfile, graphs, rows: list[OpRow]):
    """Simulated kernel time (us) of every op row."""
    nodes, tables = graphs
    design = calibrate.Design(nodes, [tables[_key(r)] for r in rows], profile)
    return design.latencies_ms(profile, kernels_only=True) * 1e3


def overhead_us(per_model_sim_us: dict[str, float], e2e: dict[str, float]) -> float:
    """Per-model overhead: median over CNNs of (measured e2e - simulated sum of ops)."""
    import numpy as np

    gaps = [e2e[m] - s for m, s in per_model_sim_us.items() if m in e2e]
    return max(0.0, float(np.median(gaps))) if gaps else 0.0


def gpu_report(config: GpuConfig = GpuConfig()) -> dict:
    """Cross-validated per-op and whole-model quality of the phone-GPU profile, plain data."""
    import numpy as np

    rows = read_ops(config.ops_csv, config.phone)
    e2e = read_e2e(config.e2e_csv, config.phone)
    graphs = op_tables(rows)
    base = load_profile(config.profile)
    y = np.array([r.latency_us for r in rows])
    models = [r.model for r in rows]
    pred = np.zeros(len(rows))
    fold_reports, e2e_pred = [], {}
    for train, test in calibrate.kfold_indices(len(rows), config.folds, seed=config.seed, groups=models):
        fitted = _fit(base, graphs, [rows[i] for i in train], config)
        train_sums = _sums([rows[i] for i in train], kernel_us(fitted, graphs, [rows[i] for i in train]))
        over = overhead_us(train_sums, e2e)
        p = kernel_us(fitted, graphs, [rows[i] for i in test])
        pred[test] = p
        fold_reports.append(calibrate._report(p, y[test], "op"))
        for m, s in _sums([rows[i] for i in test], p).items():
            e2e_pred[m] = s + over
    full = _fit(base, graphs, rows, config)
    full_pred = kernel_us(full, graphs, rows)
    full = calibrate.with_values(full, {"compute.model_overhead_us": overhead_us(_sums(rows, full_pred), e2e)})
    measured_sums = _sums(rows, y)
    both = sorted(m for m in measured_sums if m in e2e)
    e2e_y = np.array([e2e[m] for m in both])
    by_op = {}
    for op in sorted({r.op for r in rows}):
        idx = [i for i, r in enumerate(rows) if r.op == op]
        by_op[op] = dataclasses.asdict(calibrate._report(pred[idx], y[idx], op))
    return {
        "profile": config.profile, "phone": config.phone, "ops_csv": str(config.ops_csv),
        "e2e_csv": str(config.e2e_csv), "rows": len(rows), "models": len(set(models)),
        "op_pooled": dataclasses.asdict(calibrate._report(pred, y, "op")),
        "op_folds": [dataclasses.asdict(r) for r in fold_reports],
        "op_in_sample": dataclasses.asdict(calibrate._report(full_pred, y, "op")),
        "op_by_type": by_op,
        "e2e_measured_sum": dataclasses.asdict(calibrate._report(
            np.array([measured_sums[m] for m in both]), e2e_y, "sum of measured ops")),
        "e2e_simulated": dataclasses.asdict(calibrate._report(
            np.array([e2e_pred[m] for m in both]), e2e_y, "simulated ops + overhead")),
        "fitted": {k: calibrate.value_of(full, k) for k in ("compute.model_overhead_us", *GPU_KEYS)},
    }


def _sums(rows: list[OpRow], values) -> dict[str, float]:
    out: dict[str, float] = {}
    for r, v in zip(rows, values):
        out[r.model] = out.get(r.model, 0.0) + float(v)
    return out


def markdown(g: dict) -> str:
    """The phone-GPU part of the calibration section."""
    p, s = g["op_pooled"], g["op_in_sample"]
    taus = [f["kendall_tau"] for f in g["op_folds"]]
    apes = [f["median_ape"] for f in g["op_folds"]]
    ms, es = g["e2e_measured_sum"], g["e2e_simulated"]
    lines = [
        f"Phone GPU (`{g['profile']}`): {g['rows']} TFLite GPU-delegate kernels of {g['models']} CNNs "
        f"(`{Path(g['ops_csv']).name}`, column `{g['phone']}|gpu|float`), each rebuilt as a one-op "
        "ONNX model; 5-fold cross-validation with the ops of one CNN in one fold.",
        "",
        "| what | n | tau (pooled, out of fold) | tau per fold | median APE (pooled) | median APE per fold | in-sample tau / APE |",
        "|---|---|---|---|---|---|---|",
        f"| per-op kernel time | {p['n']} | {p['kendall_tau']:.3f} | {min(taus):.3f}-{max(taus):.3f} | "
        f"{100 * p['median_ape']:.1f} % | {100 * min(apes):.1f}-{100 * max(apes):.1f} % | "
        f"{s['kendall_tau']:.3f} / {100 * s['median_ape']:.1f} % |",
    ]
    for op, r in g["op_by_type"].items():
        lines.append(f"| - {op} | {r['n']} | {r['kendall_tau']:.3f} | | {100 * r['median_ape']:.1f} % | | |")
    lines += [
        f"| whole model: sum of *measured* ops vs e2e (`{Path(g['e2e_csv']).name}`) | {ms['n']} | "
        f"{ms['kendall_tau']:.3f} | | {100 * ms['median_ape']:.1f} % (median sum/e2e {ms['median_ratio']:.2f}) | | |",
        f"| whole model: simulated ops + fitted per-model overhead vs e2e (out of fold) | {es['n']} | "
        f"{es['kendall_tau']:.3f} | | {100 * es['median_ape']:.1f} % | | |",
        "",
        f"The device itself is not additive: the sum of its measured kernels is "
        f"{100 * (1 - ms['median_ratio']):.0f} % below the whole-model time at the median (per-model "
        f"overhead of the delegate, ~{g['fitted']['compute.model_overhead_us'] / 1e3:.2f} ms, plus the "
        "element-wise ops the per-op file does not list).",
    ]
    return "\n".join(lines)
