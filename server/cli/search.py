"""``hilnas search``: one hardware-validated search per method."""
from __future__ import annotations

import argparse
import sys

from hilnas.server.cli.common import (_clients, _dataset_config, _emit, _kv, _measure_args,
                                      _measure_config, _open_store, add, CliError, json_flag)


def cmd_search_dca(args) -> int:
    from hilnas.server.search.common import parse_budget
    from hilnas.server.search.dca import DcaRunConfig, run_dca

    config = DcaRunConfig(
        budget=parse_budget(args.budget), space=args.space, space_overrides=_kv(args.space_opt, "--space-opt"),
        dataset=_dataset_config(args), method=args.method, search_epochs=args.search_epochs,
        train_epochs=args.train_epochs, seed=args.seed, with_lug=args.lug, measure=_measure_config(args),
        runtime=args.runtime, max_batches_per_epoch=args.max_batches, threads=args.torch_threads)
    say = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    with _open_store(args) as store:
        report = run_dca(store, args.device, _clients(args, args.device), config, progress=say)
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


def cmd_search_hypernet(args) -> int:
    from hilnas.searchers.hypernet import HypernetConfig
    from hilnas.server.search.common import parse_budget
    from hilnas.server.search.hypernet import HypernetRunConfig, run_hypernet

    if args.budgets and args.lambdas:
        raise CliError("give --budgets or --lambdas, not both")
    lambdas = tuple(float(x) for x in args.lambdas.split(",")) if args.lambdas else ()
    direction = tuple(float(x) for x in args.direction.split(",")) if args.direction else None
    budgets = tuple(parse_budget(b) for b in args.budgets.split(",")) if args.budgets else ()
    search = HypernetConfig(epochs=args.search_epochs, max_batches_per_epoch=args.max_batches,
                            grid_points=args.grid)
    config = HypernetRunConfig(
        space=args.space, space_overrides=_kv(args.space_opt, "--space-opt"), dataset=_dataset_config(args),
        search=search, complexity=args.complexity, lambdas=lambdas, direction=direction, budgets=budgets,
        train_epochs=args.train_epochs, seed=args.seed, measure=_measure_config(args), runtime=args.runtime,
        max_batches_per_epoch=args.max_batches, from_run=args.from_run)
    say = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    with _open_store(args) as store:
        report = run_hypernet(store, args.device, _clients(args, args.device), config, progress=say)
    lines = [f"hypernetwork on {args.device}: one run, {len(report.members)} architectures (Lambda "
             f"{report.Lambda:.3g}; run {report.run_id}, {report.wall_s:.0f} s)",
             f"  {'member':<14} {'scale':>7} {'predicted ms':>13} {'measured ms':>12} {'budget':>14}"]
    for m in report.members:
        fmt = (lambda v: "n/a" if v is None else f"{v:.3f}")
        budget = "" if m.budget is None else f"{m.budget.metric}={m.budget.value:g}" + (
            " ok" if m.within_budget else " OVER" if m.within_budget is False else "")
        lines.append(f"  {m.name:<14} {m.scale:7.3g} {fmt(m.predicted_ms):>13} {fmt(m.measured_ms):>12} {budget:>14}")
    for b, why in report.failed_budgets:
        lines.append(f"  budget {b}: {why}")
    lines.append(f"  monotonicity violations: {report.monotone_violations_predicted} in the raw derivation, "
                 f"{report.monotone_violations_measured} measured")
    lines.append(f"  curve: {report.csv_path}" + (f", plot {report.plot_path}" if report.plot_path else ""))
    lines += [f"  note: {n}" for n in report.notes]
    _emit(args, report.to_dict(), "\n".join(lines))
    return 0 if not report.failed_budgets else 1


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", required=True, help="device key from the fleet (its LUT is the cost model)")
    p.add_argument("--space", default="darts", choices=["darts", "nb201"])
    p.add_argument("--space-opt", action="append", metavar="KEY=VALUE",
                   help="override a space field, e.g. --space-opt C=8 --space-opt layers=5")
    p.add_argument("--dataset", default="demo", choices=["demo", "fashion-mnist", "cifar10", "synthetic"],
                   help="demo = the Fashion-MNIST subset shipped with hilnas (default)")
    p.add_argument("--data-dir", help="dataset folder (default: standard places, e.g. /usr/share/datasets/...)")
    p.add_argument("--train-size", type=int, help="use a stratified subset of this many training images")
    p.add_argument("--test-size", type=int, help="use a stratified subset of this many test images")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--search-epochs", type=int, default=2)
    p.add_argument("--train-epochs", type=int, default=3, help="final training epochs of the found network")
    p.add_argument("--max-batches", type=int, help="cap batches per epoch (smoke runs)")
    p.add_argument("--torch-threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runtime", help="which of the device's LUTs, when it has several")


# -- parser -----------------------------------------------------------------------------------
def register(sub) -> None:
    search = sub.add_parser("search", help="search an architecture under a device budget")
    ssub = search.add_subparsers(dest="search_command", metavar="METHOD", required=True)
    p = add(ssub, "dca", cmd_search_dca, "DCA-NAS: DARTS with the budget as a constraint (learned Lagrange "
            "multiplier); the found network is trained, exported and measured on the device",
            epilog="budgets: latency_ms=15 | energy_mj=20 | params_m=1 | mflops=300", )
    p.add_argument("--budget", required=True, help="e.g. latency_ms=15, energy_mj=20, params_m=1, mflops=300")
    p.add_argument("--method", default="dca", choices=["dca", "darts", "penalty", "random"],
                   help="dca (default), or a baseline: darts (no constraint), penalty (fixed-weight "
                        "latency penalty), random (random search under the constraint)")
    p.add_argument("--lug", action="store_true",
                   help="map the device budget to a search-time budget with a lookup graph (several searches)")
    _search_args(p)
    _measure_args(p, warmup=5, min_runs=20, min_seconds=0.2)
    json_flag(p)

    p = add(ssub, "hypernet", cmd_search_hypernet,
            "DARTS-CC with hardware control: one training run of a hypernetwork alpha(lambda) yields a whole "
            "accuracy/latency trade-off; produce architectures for a grid of lambda or for device budgets",
            epilog="examples:\n  hilnas search hypernet --device pi --space nb201 --lambdas 0,0.1,0.2,0.4\n"
                   "  hilnas search hypernet --device pi --space nb201 --budgets latency_ms=2,latency_ms=3\n"
                   "  hilnas search hypernet --device pi --from-run 7 --budgets latency_ms=2.5   # no training",
            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lambdas", help="comma-separated coefficient scales along --direction (default: a grid up to Lambda)")
    p.add_argument("--budgets", help="comma-separated device budgets, e.g. latency_ms=2,latency_ms=3 (solves for lambda)")
    p.add_argument("--direction", help="comma-separated point of the simplex, one weight per op type (default: centre)")
    p.add_argument("--grid", type=int, default=6, help="grid points when neither --lambdas nor --budgets (default 6)")
    p.add_argument("--complexity", default="latency", choices=["latency", "energy", "params", "flops"],
                   help="what the coefficients weigh (default latency, from the device's LUT)")
    p.add_argument("--from-run", type=int, metavar="N",
                   help="derive from the hypernetwork run N trained and saved, without training again (run N's "
                        "space, data, search settings and seed apply; --budgets / --lambdas are this run's)")
    _search_args(p)
    p.set_defaults(space="nb201", train_epochs=0)
    _measure_args(p, warmup=5, min_runs=20, min_seconds=0.2)
    json_flag(p)
