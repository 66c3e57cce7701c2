"""``hilnas validate``, ``hilnas fidelity`` and ``hilnas runs``: measured models and what the store holds."""
from __future__ import annotations

from pathlib import Path

from hilnas.server.cli.common import (_clients, _emit, _kv, _measure_args, _measure_config, _open_store,
                                      _progress, _statistic_arg, add, DATASET_SHAPES, json_flag)


def cmd_validate(args) -> int:
    """Measure a model; with --budget, the CI gate: exit 1 when the upper 95% bound is over a budget."""
    import time

    from hilnas.server.junit import check_junit_path, write_junit
    from hilnas.server.search.common import parse_budget
    from hilnas.server.validation import validate_model_file

    budgets = [parse_budget(b) for b in args.budget or ()]
    model = Path(args.model)
    if not model.is_file():
        raise FileNotFoundError(f"no model file {model}; give the path of an .onnx (or .tflite) model")
    junit = check_junit_path(args.junit) if args.junit else None  # before measuring: nothing is lost
    t0 = time.monotonic()
    progress = _progress(args)
    progress.say(f"measuring {model.name} on {args.device} ...")
    with _open_store(args) as store:
        report = validate_model_file(store, args.device, _clients(args, args.device), model,
                                     measure=_measure_config(args), runtime=args.runtime, budgets=budgets)
    if junit is not None:
        write_junit(junit, [report], seconds=time.monotonic() - t0)
    _emit(args, report.to_dict(), report.summary() + (f"\n  JUnit report: {junit}" if junit else ""))
    if report.measured_ms is None:
        return 1
    return 0 if report.passed else 1


def cmd_runs(args) -> int:
    """The store's runs, newest last: what a `--from-run` or a later look at results needs."""
    with _open_store(args, create=False) as store:  # listing never creates a workspace
        frame = store.runs_df(args.kind)
    rows = []
    for _, r in frame.tail(args.last).iterrows():
        result = r["result"] if isinstance(r["result"], dict) else {}
        rows.append({"id": int(r["id"]), "kind": r["kind"], "status": r["status"],
                     "started": r["started_at"].strftime("%Y-%m-%d %H:%M:%S"),  # UTC (runs_df)
                     "summary": _run_summary(r["kind"], result)})
    text = "\n".join(f"{x['id']:>5}  {x['kind']:<10} {x['status']:<11} {x['started']}  {x['summary']}"
                     for x in rows) or "no runs yet"
    _emit(args, rows, text)
    return 0


def _run_summary(kind: str, result: dict) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    if kind in ("hypernet", "prune"):
        saved = f", trained hypernetwork saved ({result['trained_dir']})" if result.get("trained_dir") else ""
        origin = f", derived from run {result['from_run']}" if result.get("from_run") is not None else ""
        return f"{len(result.get('members', []))} members, Lambda {result.get('Lambda', float('nan')):.3g}{saved}{origin}"
    if kind == "run" and "networks" in result:
        nets = result["networks"]
        met = sum(1 for n in nets if n.get("met"))
        devices = sorted({n["device"] for n in nets})
        text = (f"{len(nets)} networks on {len(devices)} device(s), {met} within budget; "
                f"{result.get('done_before', 0) + result.get('ran', 0)}/{result.get('planned', 0)} steps")
        if result.get("failures"):
            text += f", {len(result['failures'])} failure(s)"
        return text + (f"; report {result['report']['html']}" if result.get("report", {}).get("html") else "")
    if kind == "fidelity" and "corrected" in result:
        c = result["corrected"]
        return (f"{c['n']} networks, {100 * c['within_10pct']:.1f}% within +-10% (CV), "
                f"statistic {result.get('correction', {}).get('statistic', 'median')}")
    return ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, (int, float, str)) and len(str(v)) < 40)[:120]


def cmd_fidelity(args) -> int:
    from hilnas.server.lut.fidelity import FidelityConfig, run_fidelity
    from hilnas.server.progress import lut_reporter

    overrides = {**DATASET_SHAPES.get(args.dataset or "", {}), **_kv(args.space_opt, "--space-opt")}
    cfg = FidelityConfig(space=args.space, space_overrides=overrides, networks=args.networks, seed=args.seed, measure=_measure_config(args),
                         runtime=args.runtime, repeats=args.repeats, statistic=args.statistic,
                         agreement=args.agreement, max_repeats=max(args.max_repeats, args.repeats))
    with _open_store(args) as store:
        with _progress(args).task(f"fidelity {args.device} ({args.networks} networks)", unit="model") as task:
            report = run_fidelity(store, args.device, _clients(args, args.device), cfg, progress=lut_reporter(task))
    _emit(args, report.to_dict(), report.summary())
    return 0


# -- parser -----------------------------------------------------------------------------------
def register(sub) -> None:
    p = add(sub, "validate", cmd_validate, "measure a model on a device and compare with the LUT's prediction; "
            "with --budget, the CI gate that fails a build when the model is over budget",
            epilog="The CI gate: every --budget is met when the upper end of the measurement's 95% confidence "
                   "interval is within it (median latency; net energy per inference; parameters counted exactly).\n"
                   "Exit code: 0 measured and every budget met; 1 over a budget, or the model could not be measured; "
                   "2 bad input (no such model or device, an unwritable --junit path, an unreachable agent).\n"
                   "example: hilnas validate model.onnx --device pi --budget latency_ms=15 --junit reports/hilnas.xml\n"
                   "GitHub Actions and GitLab CI jobs: docs/ci.md")
    p.add_argument("model", help="any ONNX model (or .tflite); hilnas-exported models also carry their op keys, "
                   "so the device's LUT predicts them")
    p.add_argument("--device", required=True, help="device key from the fleet (hilnas devices add)")
    p.add_argument("--budget", action="append", metavar="METRIC=VALUE",
                   help="a budget to check, repeatable: latency_ms=15, energy_mj=20 (measures energy), params_m=1, "
                        "mflops=300 (hilnas models)")
    p.add_argument("--junit", metavar="FILE", help="also write the verdicts as JUnit XML for CI (folders are created)")
    p.add_argument("--runtime", help="LUT runtime to predict with, when the device has several")
    _measure_args(p, warmup=10, min_runs=30, min_seconds=1.0)
    json_flag(p)
    p = add(sub, "runs", cmd_runs, "list the store's runs (searches, fidelity reports): ids for --from-run")
    p.add_argument("--kind", help="only runs of this kind, e.g. hypernet, search-dca, fidelity")
    p.add_argument("--last", type=int, default=20, help="show the last N runs (default 20)")
    json_flag(p)
    p = add(sub, "fidelity", cmd_fidelity, "LUT fidelity over random networks (nn-Meter's +-10%% share and RMSPE)")
    p.add_argument("--device", required=True)
    p.add_argument("--space", default="darts", choices=["nb201", "darts", "resnet18-narrow", "resnet18"],
                   help="space whose random networks are measured (a ResNet: random gate patterns; default darts)")
    p.add_argument("--networks", type=int, default=30, help="random networks to measure (default 30)")
    p.add_argument("--dataset", choices=sorted(DATASET_SHAPES), help="shape the space for this dataset")
    p.add_argument("--space-opt", action="append", metavar="KEY=VALUE", help="override a space field")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runtime", help="LUT runtime, when the device has several")
    p.add_argument("--repeats", type=int, default=3,
                   help="interleaved rounds per network, combined by --statistic (default 3)")
    _statistic_arg(p, "rounds")
    p.add_argument("--agreement", type=float, default=0.05,
                   help="a network whose two lowest rounds differ by more than this (relative) is measured "
                        "again, up to --max-repeats rounds (default 0.05)")
    p.add_argument("--max-repeats", type=int, default=6, help="rounds per network at most (default 6)")
    p.add_argument("--quiet", action="store_true")
    _measure_args(p)
    json_flag(p)
