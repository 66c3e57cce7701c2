"""``hilnas search splitting``: energy-aware splitting steepest descent (seed 003) and its baselines."""
from __future__ import annotations

import sys

from hilnas.server.cli.common import (_clients, _dataset_config, _emit, _kv, _measure_args, _measure_config,
                                      _open_store, add, CliError, json_flag)
from hilnas.server.cli.search.common import search_args


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise CliError(f"{what} {text!r} must be comma-separated numbers, e.g. 0.25,0.5,0.75,1") from None


def cmd_search_splitting(args) -> int:
    from hilnas.searchers.splitting import Checkpoint, GrowConfig, IndexConfig, device_cost
    from hilnas.server.search.common import parse_budget
    from hilnas.server.search.splitting import SplittingRunConfig, run_splitting

    if args.budget is None and args.resume is None:
        raise CliError("give --budget (e.g. latency_ms=5), or --resume N to continue run N with its own settings")
    index = IndexConfig(beta=args.beta, batches=args.index_batches, metric=args.index_metric)
    grow = GrowConfig(seed_multiplier=args.seed_multiplier, steps=args.steps, growth=args.growth, margin=args.margin,
                      seed_epochs=args.seed_epochs, step_epochs=args.step_epochs, lr=args.lr, batch_size=args.batch_size,
                      epsilon=args.epsilon, width_multiple=args.width_multiple, knapsack=args.knapsack, index=index,
                      seed=args.seed,
                      max_batches_per_epoch=args.max_batches)
    config = SplittingRunConfig(
        budget=parse_budget(args.budget or "latency_ms=1"), method=args.method,
        space_overrides=_kv(args.space_opt, "--space-opt"), dataset=_dataset_config(args), grow=grow,
        multipliers=_floats(args.multipliers, "--multipliers"), width_epochs=args.width_epochs,
        energy_estimate_w=args.energy_estimate_w, measure=_measure_config(args), runtime=args.runtime,
        out_dir=args.out_dir, resume_run=args.resume, threads=args.torch_threads)
    say = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    with _open_store(args) as store:
        report = run_splitting(store, args.device, _clients(args, args.device), config, progress=say)
    fmt = (lambda v, p=".3f": "n/a" if v is None else format(v, p))
    metric = report.budget.metric
    lines = [f"{report.method} on {args.device} under {report.budget}: {len(report.checkpoints)} checkpoints "
             f"(run {report.run_id}{f', resumed from run {report.resumed_run}' if report.resumed_run else ''}, "
             f"{report.wall_s:.0f} s)",
             f"  {'checkpoint':<16} {'acc %':>6} {'pred ms':>8} {'meas ms':>8} {'meas mJ':>8} {'MFLOPs':>8}  widths"]
    for c in report.checkpoints:
        lines.append(f"  {c['name']:<16} {100 * c['test_acc']:6.2f} {fmt(c['predicted'].get('latency_ms')):>8} "
                     f"{fmt(c['measured'].get('latency_ms')):>8} {fmt(c['measured'].get('energy_mj')):>8} "
                     f"{fmt(c['predicted'].get('mflops'), '.2f'):>8}  {' '.join(map(str, c['widths']))}")
    lines.append(f"  stopped: {report.stop_reason}")
    lines.append(f"  curve: {report.csv_path}" + (f", plot {report.plot_path}" if report.plot_path else ""))
    lines.append(f"  checkpoints: {report.checkpoint_dir} (hilnas search splitting --device {args.device} "
                 f"--resume {report.run_id} continues)")
    lines += [f"  note: {n}" for n in report.notes]
    _emit(args, report.to_dict(), "\n".join(lines))
    over = [c for c in report.checkpoints if device_cost(Checkpoint.from_dict(c), metric) > report.budget.value]
    return 0 if report.method == "width" or not over else 1  # a growth stops at the budget; baselines may pass it


def register(ssub) -> None:
    p = add(ssub, "splitting", cmd_search_splitting,
            "energy-aware splitting steepest descent (seed 003): grow a MobileNet from a small seed by splitting the "
            "neurons whose split lowers the loss most, each step chosen under a budget priced by the device's measured "
            "LUT (a knapsack); every checkpoint Splitting-k is trained, exported and measured on the device",
            epilog="examples:\n"
                   "  hilnas lut build --device pi --space mobilenet --dataset fashion-mnist\n"
                   "  hilnas search splitting --device pi --dataset fashion-mnist --budget latency_ms=5 --steps 4\n"
                   "  hilnas search splitting --device pi --dataset fashion-mnist --budget latency_ms=5 --method width\n"
                   "  hilnas search splitting --device pi --resume 7     # continue run 7 from its last checkpoint\n"
                   "budgets: latency_ms=5 | energy_mj=20 (LUT built with --energy) | mflops=10 | params_m=0.5")
    p.add_argument("--budget", help="the device budget the growth stops at, e.g. latency_ms=5, energy_mj=20, "
                                    "mflops=10, params_m=0.5 (required unless --resume)")
    p.add_argument("--method", default="splitting", choices=["splitting", "width", "random"],
                   help="splitting (default; eq. (1) on the splitting indices), or a baseline: width (the backbone at "
                        "each --multipliers, trained the same total epochs), random (random splits of equal cost)")
    p.add_argument("--steps", type=int, default=4, help="splitting steps at most: Splitting-1..N (default 4)")
    p.add_argument("--seed-multiplier", type=float, default=0.3,
                   help="Splitting-0 is the backbone at this width multiplier (default 0.3, as seed 003)")
    p.add_argument("--growth", type=float, default=0.5,
                   help="a step adds at most this fraction of the current network's cost (default 0.5)")
    p.add_argument("--margin", type=float, default=0.02,
                   help="aim the last step this fraction under the budget, for the device's noise (default 0.02)")
    p.add_argument("--seed-epochs", type=int, default=3, help="training epochs of the seed network (default 3)")
    p.add_argument("--step-epochs", type=int, default=2, help="training epochs after each split (default 2)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate at the start of each phase (default 0.05)")
    p.add_argument("--epsilon", type=float, default=0.1,
                   help="split step: offspring at theta +- epsilon v (default 0.1: an RMS change of 0.1 of the "
                        "neuron's BN output)")
    p.add_argument("--width-multiple", type=int, default=1,
                   help="keep every width a multiple of this, splitting neurons in groups of it (default 1, the paper; "
                        "8 suits ONNX Runtime on x86, whose blocked kernels want multiples of 8)")
    p.add_argument("--knapsack", default="dp", choices=["dp", "greedy"],
                   help="eq. (1) solver: dp (exact on the budget in 1000 units; default) or greedy (gain/cost ratio)")
    p.add_argument("--index-batches", type=int, default=4, help="training batches the splitting index averages (default 4)")
    p.add_argument("--beta", type=float, default=10.0,
                   help="sharpness of the softplus surrogate for relu'' (default 10; docs/search.md)")
    p.add_argument("--index-metric", default="output", choices=["output", "weights"],
                   help="how a split step is measured: output (RMS change of the BN output; default) or weights "
                        "(the paper's Euclidean ball)")
    p.add_argument("--multipliers", default="0.25,0.5,0.75,1",
                   help="--method width: the width multipliers (default 0.25,0.5,0.75,1)")
    p.add_argument("--width-epochs", type=int,
                   help="--method width: epochs per network (default: seed-epochs + steps x step-epochs, what the last "
                        "splitting checkpoint saw)")
    p.add_argument("--energy-estimate-w", type=float, metavar="W",
                   help="an energy budget on a device without a meter: estimate energy as W x measured latency "
                        "(refused without it)")
    p.add_argument("--out-dir", help="folder of the ONNX checkpoints, curve and checkpoints "
                                     "(default <workspace>/models/splitting-<time>)")
    p.add_argument("--resume", type=int, metavar="N",
                   help="continue run N from the last checkpoint in its folder, with run N's settings")
    search_args(p, spaces=("mobilenet",), epochs=False)
    _measure_args(p, warmup=5, min_runs=20, min_seconds=0.2)
    json_flag(p)
