"""``hilnas search dca``: DCA-NAS and its baselines under one device budget."""
from __future__ import annotations

import math

from hilnas.server.cli.common import (CliError, _clients, _dataset_config, _emit, _kv, _measure_args,
                                      _measure_config, _open_store, _progress, add, json_flag, quiet_flag)
from hilnas.server.cli.search.common import search_args


def cmd_search_dca(args) -> int:
    from hilnas.server.search.common import parse_budget
    from hilnas.server.search.dca import DcaRunConfig, run_dca

    if args.seeds < 1:
        raise CliError(f"--seeds {args.seeds}: run at least one search, e.g. --seeds 1 (seed 001 runs --seeds 5 "
                       "and keeps the best)")
    check_device_options(args)
    if args.workers < 1:
        raise CliError(f"--workers {args.workers}: use at least one thread, e.g. --workers 1")
    config = DcaRunConfig(
        budget=parse_budget(args.budget), space=args.space, space_overrides=_kv(args.space_opt, "--space-opt"),
        dataset=_dataset_config(args), method=args.method, search_epochs=args.search_epochs,
        train_epochs=args.train_epochs, seed=args.seed, seeds=args.seeds, workers=args.workers,
        proxy_overrides=_kv(args.proxy_opt, "--proxy-opt"), use_correction=not args.no_correction,
        feedback=not args.no_feedback, with_lug=args.lug,
        search_options={**{k: getattr(args, k) for k in DEVICE_OPTIONS}, "select": args.select}
        if args.method == "dca" else {},
        measure=_measure_config(args), runtime=args.runtime,
        max_batches_per_epoch=args.max_batches, threads=args.torch_threads)
    from hilnas.searchers.train import reporting_to
    from hilnas.server.progress import train_reporter

    progress = _progress(args)
    with _open_store(args) as store, progress.task(f"{args.method} on {args.device}", unit="step") as task, \
            reporting_to(train_reporter(task, unit=config.budget.unit)):
        report = run_dca(store, args.device, _clients(args, args.device), config, progress=progress.say)
    _emit(args, report.to_dict(), summary(report, args.device, args.budget))
    return 0 if report.within_budget is not False else 1


def summary(report, device: str, budget: str) -> str:
    """What ``hilnas search dca`` prints: the verdict on a fresh measurement, repair, the cost constrained, seeds."""
    from hilnas.server.search.common import describe_basis

    verdict = ("within budget" if report.within_budget else "OVER BUDGET" if report.within_budget is False
               else "not measured")
    hit = "" if report.budget_hit is None else f" ({report.budget_hit:.3f} of the budget)"
    repaired = (f"yes, {report.edges_changed} edge(s) changed (the derived network was over budget)"
                if report.repaired else "no")
    text = (f"{report.method} on {device}: budget {budget}; genotype saved as model {report.model_id} "
            f"(run {report.run_id})\n  predicted {report.predicted:.4g}, measured "
            f"{'n/a' if report.measured is None else format(report.measured, '.4g')} -> {verdict}{hit}"
            f"\n  repaired: {repaired}\n  constrained: {describe_basis(report.cost_basis)}")
    extra = report.search.get("extra", {})
    decisions = extra.get("decisions")
    if decisions:
        text += (f"\n  {'nodes' if 'node' in decisions[0] else 'edges'} decided one at a time: {len(decisions)}, "
                 f"{extra['decisions_restricted']} restricted to ops that can still land in the band, "
                 f"{extra['decisions_fallback']} with none that could (the nearest cells instead)")
        if extra.get("select") == "perturbation":
            text += (f"\n  ops chosen by the supernet's validation log-likelihood (--select perturbation"
                     f"{', by auto' if extra.get('select_requested') == 'auto' else ''}): "
                     f"{extra.get('select_evals', 0)} op(s) scored in {extra.get('select_s', 0):.1f} s")
        elif extra.get("select") == "alpha":
            text += (f"\n  ops chosen by the alphas (--select alpha"
                     f"{', by auto' if extra.get('select_requested') == 'auto' else ''})")
        cells = extra.get("cells_measured_on_device") or {}
        if extra.get("decided_on_device"):
            in_band = [c for c in cells.values() if 0.9 * report.device_budget.value <= c <= report.device_budget.value]
            text += (f"\n  decided on the device: the last {extra['decided_on_device']} decision(s), "
                     f"{len(cells)} cell(s) measured ({min(cells.values()):.4g}-{max(cells.values()):.4g} "
                     f"{report.device_budget.unit}, {len(in_band)} in [0.9, 1.0] of the budget), "
                     f"{extra.get('cell_remeasurements', 0)} extra measurement(s) confirming the cells near the band; "
                     "the figure above is a fresh measurement")
    seeds = extra.get("seeds")
    if seeds and len(seeds) > 1:
        text += (f"\n  seeds: {len(seeds)}, kept seed {report.search['seed']} by validation accuracy ("
                 + ", ".join(f"seed {r['seed']}: {r['val_acc']:.3f}" for r in seeds) + ")")
    text += f"\n  test accuracy {report.test_acc * 100:.1f}%  ONNX {report.onnx_path}  ({report.wall_s:.0f} s)"
    for note in report.notes:
        text += f"\n  note: {note}"
    return text


# the DcaConfig fields of the decisions on the device, each a flag (--device-decisions, ...); the defaults are
# DcaConfig's, written out so that building the parser imports no torch (a unit test holds them equal)
DEVICE_DEFAULTS = {"device_decisions": 25, "device_margin": 0.02, "device_repeats": 3, "device_window": 0.05,
                   "ratio_tolerance": 0.1, "device_reopen": 3, "device_reopen_measurements": 75,
                   "device_margin_sigmas": 1.5, "device_oneshot_batches": 6, "device_fit_sample": 30,
                   "device_reopen_sigmas": 0.0, "darts_device_networks": 10, "device_inside_sigmas": 1.5,
                   "lookahead_middle": 1, "lookahead_widen": 0}   # lookahead_middle: DcaConfig's True
DEVICE_OPTIONS = tuple(DEVICE_DEFAULTS)
# DcaConfig.select's values (``searchers.dca.select.SELECT_CHOICES``, held equal by a test), torch-free for the parsers
SELECT = ("alpha", "perturbation")
SELECT_CHOICES = ("auto", *SELECT)


# flag -> (lowest value allowed, first value refused above it, what to use); the error's example is the default
_DEVICE_LIMITS = {"device_decisions": (0, math.inf, "0 (decide on the prediction) or more"),
                  "device_margin": (0, math.inf, "0 (aim anywhere in the band) or more"),
                  "device_repeats": (1, math.inf, "1 (each cell measured once) or more"),
                  "device_window": (0, math.inf, "0 (confirm the cells in the band only) or more"),
                  "ratio_tolerance": (0, 1, "a fraction in [0, 1)"),
                  "device_reopen": (0, math.inf, "0 (never reopen a decision) or more"),
                  "device_reopen_measurements": (0, math.inf, "0 or more measurements"),
                  "device_margin_sigmas": (0, math.inf, "0 (--device-margin throughout) or more"),
                  "device_oneshot_batches": (0, math.inf, "0 (choose by the Lagrangian) or more batches"),
                  "device_fit_sample": (0, math.inf, "0 (predict by the measured ratio only) or more cells"),
                  "device_reopen_sigmas": (0, math.inf, "0 (reopen only when no measured cell is in the band) or more"),
                  "darts_device_networks": (5, math.inf, "5 (the shortlist alone) or more networks"),
                  "device_inside_sigmas": (0, math.inf, "0 (--device-margin-sigmas' margin on the band) or more"),
                  "lookahead_middle": (0, 2, "1 (aim at the band's middle) or 0 (anywhere in the band)"),
                  "lookahead_widen": (0, 7, "0 (off) or 1-6 undecided edges")}


def check_device_options(args) -> None:
    """One line naming the fix for a ``DEVICE_OPTIONS`` flag out of its range."""
    for name, (low, high, use) in _DEVICE_LIMITS.items():
        value = getattr(args, name)
        if value < low or value >= high:
            flag = "--" + name.replace("_", "-")
            raise CliError(f"{flag} {value}: use {use}, e.g. {flag} {DEVICE_DEFAULTS[name]}")


# flag -> (type, metavar, help); {d} in the help is the default
_DEVICE_HELP = {
    "device_decisions": (int, "N", "on nb201 with the device in the loop: once at most N cells complete the edges "
                         "decided so far, measure them all on the device and decide on the measured costs (default: "
                         "{d}, the last two decisions; 0: decide on the prediction only); on darts, any N > 0 takes "
                         "the last node's decision on measured networks"),
    "device_margin": (float, "F", "those decisions aim at the band shrunk by F x budget on each side when a measured "
                      "cell lies there, as two measurements of one network differ by a few %% (default: {d})"),
    "device_repeats": (int, "K", "a cell those decisions measure in the band, or within --device-window of it, is "
                       "measured again up to K times in all and its median trusted, so a decision does not keep a "
                       "cell for one lucky measurement (default: {d}; 1: each cell once)"),
    "device_window": (float, "F", "the cells measured again: those within F x budget of the band (default: {d})"),
    "ratio_tolerance": (float, "F", "the decisions taken on the prediction prefer the ops whose completions land in "
                        "the band at the most device ratios within +-F of the measured one, so the decisions on the "
                        "device are not stranded when the ratio moves (default: {d}; 0: the measured ratio alone)"),
    "device_reopen": (int, "N", "when the cells measured for a decision on the device have none in the band, reopen "
                      "an earlier decision: another op of that edge whose cells, predicted through a correction "
                      "refitted on the cells measured so far, land in the band, is measured; at most N tries per "
                      "search (default: {d}; 0: never)"),
    "device_reopen_measurements": (int, "M", "a reopening is tried only while the reopenings' measurements so far "
                                   "(confirmations included) plus its own first ones stay within M (default: {d})"),
    "device_margin_sigmas": (float, "Z", "once three cells are confirmed, the margin is Z standard deviations of one "
                             "measurement, pooled over the confirmations, instead of --device-margin (default: {d}; "
                             "0: --device-margin throughout)"),
    "device_oneshot_batches": (int, "N", "among the cells the device confirmed in the band, the last decisions choose "
                               "by the supernet's one-shot accuracy on N validation batches (the weights never "
                               "train on them; default: {d}; 0: by the Lagrangian)"),
    "device_fit_sample": (int, "N", "on nb201 with the device in the loop: before the first decision, measure N cells "
                          "the corrected LUT puts near the band and predict every cell from then on by a x LUT + b "
                          "plus a per-(edge, op) correction ridge-fitted toward the LUT on every cell measured, while "
                          "it predicts them better than the measured ratio (default: {d}; 0: the ratio alone)"),
    "device_reopen_sigmas": (float, "Z", "a decision on the device whose measured cells lie in the band only within Z "
                             "standard deviations of one measurement of its edges reopens an earlier decision too "
                             "(default: {d}; 0: only when none lies in the band)"),
    "darts_device_networks": (int, "N", "on darts: the last node's decision measures a shortlist of 5 networks, then "
                              "more, one at a time, until one is estimated inside the band by --device-margin-sigmas "
                              "standard deviations of a fresh measurement; at most N in all (default: {d})"),
    "device_inside_sigmas": (float, "Z", "on nb201 with the device in the loop: a decision on the device counts a "
                             "measured cell inside only Z standard deviations of one fresh measurement (pooled over "
                             "the confirmations) inside each edge of [0.9, 1.0] x budget; while none is, an earlier "
                             "decision is reopened toward there (bounded by --device-reopen*), and only then is the "
                             "cell deepest inside the band taken (default: {d}; 0: off)"),
    "lookahead_middle": (int, "0|1", "on nb201: the decisions on the prediction keep a completion near the band's "
                         "middle reachable (the band shrunk by 0.4, then 0.25 of its width on each side), not just "
                         "any completion in the band (default: {d})"),
    "lookahead_widen": (int, "N", "on nb201: the decisions on the prediction taken while at least N edges are "
                        "undecided keep every op some completion of which lands where the look-ahead aims at the "
                        "measured ratio, not only those landing there at the most ratios within --ratio-tolerance, "
                        "so the choice (--select) has room early; the later ones as before (default: {d}; 0: off)"),
}


def add_device_options(p, prefix: str = "", defaults: dict | None = None) -> None:
    """The flags of ``DEVICE_OPTIONS`` (also ``bench_search_quality``'s, with ``DcaConfig``'s defaults)."""
    d = defaults or DEVICE_DEFAULTS
    for name, (kind, metavar, text) in _DEVICE_HELP.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=d[name], metavar=metavar,
                       help=prefix + text.format(d=d[name]))


def register(ssub) -> None:
    p = add(ssub, "dca", cmd_search_dca, "DCA-NAS: DARTS with the budget as a constraint (learned Lagrange "
            "multipliers); the found network is trained, exported and measured on the device",
            epilog="budgets: latency_ms=15 | energy_mj=20 | params_m=1 | mflops=300", )
    p.add_argument("--budget", required=True, help="e.g. latency_ms=15, energy_mj=20, params_m=1, mflops=300")
    p.add_argument("--method", default="dca", choices=["dca", "darts", "penalty", "random"],
                   help="dca (default), or a baseline: darts (no constraint), penalty (fixed-weight "
                        "latency penalty), random (random search under the constraint)")
    p.add_argument("--seeds", type=int, default=1,
                   help="run the search this many times (seeds --seed, --seed+1, ...) and keep the one whose "
                        "supernet scores best on the validation split, as seed 001 does with 5 (default: 1)")
    p.add_argument("--workers", type=int, default=1,
                   help="searches (--seeds, --lug) run in this many threads (default: 1)")
    p.add_argument("--proxy-opt", action="append", metavar="KEY=VALUE",
                   help="search on a smaller supernet, e.g. --proxy-opt C=8 --proxy-opt N=1; the found cell is "
                        "still priced, trained and measured at the full size (default: search at full size)")
    p.add_argument("--no-correction", action="store_true",
                   help="constrain the plain LUT sum, not the LUT sum through the correction `hilnas fidelity` "
                        "fitted for the device (default: the correction when there is one)")
    p.add_argument("--no-feedback", action="store_true",
                   help="dca: do not measure the derived networks on the device during the search (default: "
                        "measure each new one after every epoch and hold the measured cost in the budget band)")
    add_device_options(p, "dca: ")
    p.add_argument("--select", default="auto", choices=SELECT_CHOICES,
                   help="dca on nb201: how the edges decided on the prediction choose their op: by the alphas (the "
                        "Lagrangian) or by the supernet's validation log-likelihood with the edge fixed to each op "
                        "the look-ahead keeps feasible (perturbation, DARTS-PT; lower regret on the NB201 benchmark, "
                        "docs/performance.md); auto (default): perturbation on nb201, alpha on every other space. "
                        "The summary and the run's record say which ran")
    p.add_argument("--lug", action="store_true",
                   help="map the device budget to a search-time budget with a lookup graph (several searches; "
                        "default: off)")
    search_args(p)
    _measure_args(p, warmup=5, min_runs=20, min_seconds=0.2)
    json_flag(p)
    quiet_flag(p)
