"""``hilnas search dca``: DCA-NAS and its baselines under one device budget."""
from __future__ import annotations

from hilnas.server.cli.common import (_clients, _dataset_config, _emit, _kv, _measure_args,
                                      _measure_config, _open_store, _progress, add, json_flag, quiet_flag)
from hilnas.server.cli.search.common import search_args


def cmd_search_dca(args) -> int:
    from hilnas.server.search.common import parse_budget
    from hilnas.server.search.dca import DcaRunConfig, run_dca

    config = DcaRunConfig(
        budget=parse_budget(args.budget), space=args.space, space_overrides=_kv(args.space_opt, "--space-opt"),
        dataset=_dataset_config(args), method=args.method, search_epochs=args.search_epochs,
        train_epochs=args.train_epochs, seed=args.seed, with_lug=args.lug, measure=_measure_config(args),
        runtime=args.runtime, max_batches_per_epoch=args.max_batches, threads=args.torch_threads)
    from hilnas.searchers.train import reporting_to
    from hilnas.server.progress import train_reporter

    progress = _progress(args)
    with _open_store(args) as store, progress.task(f"{args.method} on {args.device}", unit="step") as task, \
            reporting_to(train_reporter(task, unit=config.budget.unit)):
        report = run_dca(store, args.device, _clients(args, args.device), config, progress=progress.say)
    d = report.to_dict()
    text = (f"{report.method} on {args.device}: budget {args.budget}; genotype saved as model {report.model_id} "
            f"(run {report.run_id})\n  predicted {report.predicted:.4g}, measured "
            f"{'n/a' if report.measured is None else format(report.measured, '.4g')}"
            f" -> {'within budget' if report.within_budget else 'OVER BUDGET' if report.within_budget is False else 'not measured'}"
            f"\n  test accuracy {report.test_acc * 100:.1f}%  ONNX {report.onnx_path}  ({report.wall_s:.0f} s)")
    for note in report.notes:
        text += f"\n  note: {note}"
    _emit(args, d, text)
    return 0 if report.within_budget is not False else 1


def register(ssub) -> None:
    p = add(ssub, "dca", cmd_search_dca, "DCA-NAS: DARTS with the budget as a constraint (learned Lagrange "
            "multiplier); the found network is trained, exported and measured on the device",
            epilog="budgets: latency_ms=15 | energy_mj=20 | params_m=1 | mflops=300", )
    p.add_argument("--budget", required=True, help="e.g. latency_ms=15, energy_mj=20, params_m=1, mflops=300")
    p.add_argument("--method", default="dca", choices=["dca", "darts", "penalty", "random"],
                   help="dca (default), or a baseline: darts (no constraint), penalty (fixed-weight "
                        "latency penalty), random (random search under the constraint)")
    p.add_argument("--lug", action="store_true",
                   help="map the device budget to a search-time budget with a lookup graph (several searches)")
    search_args(p)
    _measure_args(p, warmup=5, min_runs=20, min_seconds=0.2)
    json_flag(p)
    quiet_flag(p)
