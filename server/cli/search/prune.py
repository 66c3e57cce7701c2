"""``hilnas search prune``: prune a pre-trained ResNet or MobileNet once with a hypernetwork; a network for every budget."""
from __future__ import annotations

from hilnas.server.cli.common import (_clients, _dataset_config, _emit, _kv, _measure_args, _measure_config,
                                      _open_store, _progress, add, CliError, json_flag, quiet_flag)
from hilnas.server.cli.search.common import search_args


def cmd_search_prune(args) -> int:
    import dataclasses

    from hilnas.searchers.prune.search import PruneConfig
    from hilnas.server.search.common import parse_budget
    from hilnas.server.search.prune import PruneRunConfig, run_prune

    if args.budgets and args.lambdas:
        raise CliError("give --budgets or --lambdas, not both")
    if args.from_run is not None and args.checkpoint:
        raise CliError("--from-run uses that run's pre-trained network; leave out --checkpoint")
    try:
        lambdas = tuple(float(x) for x in args.lambdas.split(",")) if args.lambdas else ()
    except ValueError:
        raise CliError(f"--lambdas {args.lambdas!r} must be comma-separated numbers, e.g. 0,0.5,1") from None
    budgets = tuple(parse_budget(b) for b in args.budgets.split(",")) if args.budgets else ()
    lam = args.Lambda if args.Lambda in ("sweep", "theorem") else float(args.Lambda)
    search = PruneConfig(granularity=args.granularity, steps=args.steps, Lambda=lam, grid_points=args.grid)
    data = dataclasses.replace(_dataset_config(args), val_fraction=args.val_fraction)
    config = PruneRunConfig(
        model=args.space, space_overrides=_kv(args.space_opt, "--space-opt"), dataset=data,
        checkpoint=args.checkpoint, pretrain_epochs=args.pretrain_epochs, search=search, lambdas=lambdas,
        budgets=budgets, finetune_epochs=args.finetune_epochs, seed=args.seed, measure=_measure_config(args),
        runtime=args.runtime, max_batches_per_epoch=args.max_batches, from_run=args.from_run, band=args.band,
        confirm_tries=args.confirm_tries, confirm_spreads=args.confirm_spreads, tune_steps=args.tune_steps,
        chain_batches=args.chain_batches)
    if args.torch_threads:
        import torch
        torch.set_num_threads(args.torch_threads)
    progress = _progress(args)
    with _open_store(args) as store:
        report = run_prune(store, args.device, _clients(args, args.device), config, progress=progress.say)
    est = report.estimate or {}
    kept = "layers" if report.search.get("space") == "mobilenet" else "blocks"   # MobileNet: wider than 1st group
    fmt = (lambda v, f=".3f": "n/a" if v is None else format(v, f))  # noqa: E731
    lines = [f"pruning {args.space} on {args.device}: one run, {len(report.members)} distinct pruned networks from "
             f"{report.points} {'budgets' if budgets else 'lambdas'} (run {report.run_id}, {report.wall_s:.0f} s)",
             f"  Lambda {report.Lambda:.3g}" + (
                 f" from the {est.get('source')}: the sweep gave {fmt(est.get('sweep_Lambda'), '.3g')}, Theorem 1 "
                 f"{fmt(est['theorem'].get('theorem'), '.3g')} ("
                 f"{'applies' if est.get('theorem_Lambda') is not None else 'does not apply'})" if est else "")
             + f"; unpruned test accuracy {report.pretrained_acc:.3f}",
             f"  {'member':<16} {'lambda':>7} {kept:>6} {'predicted ms':>13} {'measured ms':>12} {'test acc':>9}"
             f" {'budget':>16}"]
    for m in report.members:
        budget = " ".join(f"{b.metric}={b.value:g}" for b in m.budgets) + (
            " ok" if m.within_budget else " OVER" if m.within_budget is False else "")
        acc = fmt(m.test_acc) + (f" ({fmt(m.finetuned_acc)} tuned)" if m.finetuned_acc is not None else "")
        lines.append(f"  {m.name:<16} {m.lam:7.3g} {sum(m.pattern.kept_blocks):>3}/{len(m.pattern.masks):<2} "
                     f"{fmt(m.predicted_ms):>13} {fmt(m.measured_ms):>12} {acc:>9} {budget:>16}")
    for b, why in report.failed_budgets:
        lines.append(f"  budget {b}: {why}")
    lines.append(f"  monotonicity violations: {report.monotone_violations_predicted} in the raw derivation, "
                 f"{report.monotone_violations_measured} measured")
    lines.append(f"  curve: {report.csv_path}" + (f", plots {report.plot_path}" if report.plot_path else "")
                 + (f", {report.sweep_plot_path}" if report.sweep_plot_path else ""))
    lines += [f"  note: {n}" for n in report.notes]
    _emit(args, report.to_dict(), "\n".join(lines))
    return 0 if not report.failed_budgets else 1


def register(ssub) -> None:
    p = add(ssub, "prune", cmd_search_prune,
            "prune a pre-trained ResNet (blocks and channel groups) or MobileNet (channel groups) with a "
            "hypernetwork lambda -> gates (seed 004): one run gives the pruned network for every latency budget; "
            "each is exported, measured on the device and recorded",
            epilog="examples:\n"
                   "  hilnas lut build --device pi --space resnet18-narrow --dataset cifar10\n"
                   "  hilnas search prune --device pi --model resnet18-narrow --dataset cifar10 --data-dir DIR "
                   "--budgets latency_ms=20,latency_ms=30\n"
                   "  hilnas search prune --device pi --from-run 7 --budgets latency_ms=25   # no training\n"
                   "  hilnas lut build --device pi --space mobilenet --dataset fashion-mnist\n"
                   "  hilnas search prune --device pi --model mobilenet --dataset fashion-mnist --data-dir DIR "
                   "--budgets latency_ms=4   # --space-opt groups=3: gated channel groups per layer (default)",
)
    p.add_argument("--checkpoint", help="a pre-trained network hilnas saved (models/prune-<run>/pretrained.pt); "
                                        "default: pre-train one (--pretrain-epochs) and save it with the run")
    p.add_argument("--pretrain-epochs", type=int, default=15, help="pre-training epochs without --checkpoint")
    p.add_argument("--budgets", help="comma-separated device budgets, e.g. latency_ms=20,latency_ms=30 (bisection "
                                     "on lambda)")
    p.add_argument("--band", type=float, default=0.9,
                   help="seek each budget b's member within [band x b, b] among the patterns the hypernetwork "
                        "produces near it (its modes and Gumbel samples, the least held-out loss), when bisection "
                        "falls in a gap of the family (default 0.9; 0: bisection only; the ResNets only: a "
                        "MobileNet's members are bisection's)")
    p.add_argument("--confirm-tries", type=int, default=4,
                   help="latency budgets: measure up to this many candidates per budget on the device (least "
                        "held-out loss first) and take the first confirmed by two windows inside the middle of the "
                        "band whose mean lies --confirm-spreads spreads of a fresh window (the run's robust estimate "
                        "from its pairs of windows, at least 1 %%) inside [band x b, b]; when none is, up to as many "
                        "more whose prediction, corrected by those windows, lies there (default 4; 0: members chosen "
                        "by the LUT's prediction only)")
    p.add_argument("--confirm-spreads", type=float, default=2.0, metavar="K",
                   help="how far inside [band x b, b] a confirmed member's windows' mean must lie, in spreads of a "
                        "fresh window (default 2: a fresh measurement leaves the band about 2 %% of the time a side; "
                        "lower takes the better-ranked candidates measured nearer the band's edge, at more risk; 0: "
                        "both windows inside the band's middle suffice; see docs/search.md, the pruning "
                        "section's 'On the device')")
    p.add_argument("--tune-steps", type=int, default=0,
                   help="the ResNets' band search also takes the modes of gate logits tuned this many steps at the "
                        "lambdas that bracket a budget, started from the hypernetwork's output, on the gates' split "
                        "less the held-out batches (default 0: the hypernetwork's own patterns only; see "
                        "docs/performance.md, the pruning section's eighth session)")
    p.add_argument("--chain-batches", type=int, default=None,
                   help="the ResNets' band search also takes a chain from the dearer member bracketing a budget, one "
                        "channel group dropped at a time, the least rise in cross-entropy per cost saved first, measured "
                        "on this many batches of the gates' split less the held-out ones (default: 2, as benchmarked, "
                        "when the split holds them, else none, said in the notes; 0: none; see docs/performance.md, "
                        "the pruning section's ninth session)")
    p.add_argument("--lambdas", help="comma-separated lambdas to derive (default: a grid of --grid points up to Lambda)")
    p.add_argument("--grid", type=int, default=12, help="grid points when neither --lambdas nor --budgets")
    p.add_argument("--granularity", default="groups", choices=["groups", "blocks"],
                   help="gate every block and its channel groups (default), or whole blocks only (MobileNet: a "
                        "layer's gate keeps only its first channel group when off)")
    p.add_argument("--steps", type=int, default=600, help="hypernetwork steps of phase 2")
    p.add_argument("--Lambda", default="sweep", help="upper end of lambda: sweep (default: from the lambda sweep), "
                                                     "theorem (Theorem 1, when it applies), or a number")
    p.add_argument("--finetune-epochs", type=int, default=0, help="fine-tune each pruned network briefly before "
                   "export, every member alike (SGD on all weights, lr 0.01, the same batch order; default 0: "
                   "pre-trained weights, BatchNorm statistics re-estimated)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the training images the gates are trained on")
    p.add_argument("--from-run", type=int, metavar="N",
                   help="derive from the pruning run N trained and saved, without training again")
    search_args(p, spaces=("resnet18-narrow", "resnet18", "mobilenet"), space_flags=("--model", "--space"),
                epochs=False)
    p.set_defaults(dataset="cifar10")
    p._option_string_actions["--dataset"].help = "the data the network is pre-trained and pruned on"
    _measure_args(p, warmup=5, min_runs=20, min_seconds=0.2)
    json_flag(p)
    quiet_flag(p)
