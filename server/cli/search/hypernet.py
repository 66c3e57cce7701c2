"""``hilnas search hypernet``: one hypernetwork run, a whole accuracy/latency family."""
from __future__ import annotations

from hilnas.server.cli.common import (_clients, _dataset_config, _emit, _kv, _measure_args,
                                      _measure_config, _open_store, _progress, add, CliError, json_flag,
                                      quiet_flag)
from hilnas.server.cli.search.common import search_args


def lambda_arg(text: str) -> float | str:
    """``--Lambda``: 'sweep', 'auto' or a positive number (``HypernetConfig.Lambda``)."""
    import argparse
    import math

    if text in ("sweep", "auto"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected 'sweep', 'auto' or a positive number, got {text!r}")
    return value


def _converted(key: str, kind: str, text: str) -> object:
    """``text`` as a value of a HypernetConfig field whose annotation is ``kind``."""
    if kind.endswith(" | None") and text.lower() == "none":
        return None
    base = kind.removesuffix(" | None")
    try:
        if base == "int":
            return int(text)
        if base == "float":
            return float(text)
    except ValueError:
        raise ValueError(f"--hypernet-opt {key}={text}: {key} takes a number ({kind})") from None
    if base == "float | str":   # Lambda: a number, or one of its words
        try:
            return float(text)
        except ValueError:
            return text
    return text


def hypernet_options(pairs: list[str]) -> dict[str, object]:
    """``--hypernet-opt KEY=VALUE`` (repeatable) -> HypernetConfig keyword arguments, each value converted to its
    field's type, the whole set checked by building the config (e.g. anchor=pinned needs phase1=dearest).
    ValueError, one line, names the bad key or value and the fix."""
    import dataclasses

    from hilnas.searchers.hypernet import HypernetConfig

    scalar = {f.name: f.type for f in dataclasses.fields(HypernetConfig)
              if f.type in ("str", "int", "float", "float | str", "int | None", "float | None")}
    out: dict[str, object] = {}
    for item in pairs:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--hypernet-opt {item!r} is not KEY=VALUE, e.g. --hypernet-opt anchor=pinned")
        if key not in scalar:
            raise ValueError(f"--hypernet-opt {key}: not a HypernetConfig setting this flag takes; use one of "
                             f"{', '.join(sorted(scalar))}")
        out[key] = _converted(key, scalar[key], text.strip())
    try:
        HypernetConfig(**out)
    except (TypeError, ValueError) as err:
        raise ValueError(f"--hypernet-opt: {err}") from None
    return out


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
                            grid_points=args.grid, kappa=args.kappa, sampling=args.sampling,
                            weight_lambda=args.weight_lambda, arch_step=args.arch_step, phase1=args.phase1,
                            anchor=args.anchor, scale_sampling=args.scale_sampling, knee=args.knee,
                            derivation=args.derivation, Lambda=args.Lambda)
    config = HypernetRunConfig(
        space=args.space, space_overrides=_kv(args.space_opt, "--space-opt"), dataset=_dataset_config(args),
        search=search, complexity=args.complexity, lambdas=lambdas, grid_at=args.grid_at, direction=direction,
        budgets=budgets,
        train_epochs=args.train_epochs, seed=args.seed, measure=_measure_config(args), runtime=args.runtime,
        max_batches_per_epoch=args.max_batches, from_run=args.from_run)
    from hilnas.searchers.train import reporting_to
    from hilnas.server.progress import train_reporter

    progress = _progress(args)
    with _open_store(args) as store, progress.task(f"hypernetwork on {args.device}", unit="step") as task, \
            reporting_to(train_reporter(task, unit="ms")):
        report = run_hypernet(store, args.device, _clients(args, args.device), config, progress=progress.say)
    distinct: dict[str, list] = {}   # one line per distinct network: several points may derive the same one
    for m in report.members:
        distinct.setdefault(m.name, []).append(m)
    asked = "budgets" if budgets else "lambda scales"
    lines = [f"hypernetwork on {args.device}: one run, {len(distinct)} distinct architectures from "
             f"{len(report.members)} {asked} (Lambda {report.Lambda:.3g}; run {report.run_id}, {report.wall_s:.0f} s)",
             "  settings: " + ", ".join(f"{k} {report.search['config'][k]}" for k in SHOWN_SETTINGS)
             + (" (auto: the space's measured setting where not given)" if any(
                 getattr(args, k) == "auto" for k in SHOWN_SETTINGS) else ""),
             f"  {'member':<18} {'scales':>15} {'predicted ms':>13} {'measured ms':>12} {'budget':>14}"]
    fmt = (lambda v: "n/a" if v is None else f"{v:.3f}")  # noqa: E731
    for name, ms in distinct.items():
        m = ms[0]
        scales = f"{m.scale:.3g}" if len(ms) == 1 else f"{m.scale:.3g}..{ms[-1].scale:.3g}"
        budget = " ".join(f"{x.budget.metric}={x.budget.value:g}" + (" ok" if x.within_budget else " OVER"
                                                                      if x.within_budget is False else "")
                          for x in ms if x.budget is not None)
        lines.append(f"  {name:<18} {scales:>15} {fmt(m.predicted_ms):>13} {fmt(m.measured_ms):>12} {budget:>14}")
    for b, why in report.failed_budgets:
        lines.append(f"  budget {b}: {why}")
    lines.append(f"  monotonicity violations: {report.monotone_violations_predicted} in the raw derivation, "
                 f"{report.monotone_violations_measured} measured")
    lines.append(f"  curve: {report.csv_path}" + (f", plot {report.plot_path}" if report.plot_path else ""))
    lines += [f"  note: {n}" for n in report.notes]
    _emit(args, report.to_dict(), "\n".join(lines))
    return 0 if not report.failed_budgets else 1


# what "auto" resolves to per space (``searchers.hypernet.defaults.PER_SPACE`` and ``FALLBACK``, held equal by a
# test): written here too so that the flags' help can say it without importing torch
AUTO_SETTINGS = {
    "darts": {"weight_lambda": "sandwich", "arch_step": "relaxed", "phase1": "dearest", "anchor": "pinned",
              "scale_sampling": "log", "knee": "none", "derivation": "argmax"},
    "nb201": {"weight_lambda": "sandwich-children", "arch_step": "relaxed", "phase1": "dearest", "anchor": "pinned",
              "scale_sampling": "uniform", "knee": "family", "derivation": "argmax"},
    "other spaces": {"weight_lambda": "drawn", "arch_step": "relaxed", "phase1": "none", "anchor": "none",
                     "scale_sampling": "log", "knee": "none", "derivation": "argmax"},
}


def _auto(field: str) -> str:
    return ", ".join(f"{space} {values[field]}" for space, values in AUTO_SETTINGS.items())


# HypernetConfig.weight_lambda's values (``searchers.hypernet.search.WEIGHT_LAMBDAS``, held equal by a test): written
# here too so that parsing the flags does not import torch
WEIGHT_LAMBDAS = ("drawn", "zero", "uniform", "sandwich", "sandwich-children")
DERIVATIONS = ("argmax", "expected-cost", "median", "conv-median")   # likewise ``search.DERIVATIONS``
# the settings "auto" resolves per space, shown in the summary as the run resolved them
SHOWN_SETTINGS = tuple(AUTO_SETTINGS["other spaces"])


def register(ssub) -> None:
    p = add(ssub, "hypernet", cmd_search_hypernet,
            "DARTS-CC with hardware control: one training run of a hypernetwork alpha(lambda) yields a whole "
            "accuracy/latency trade-off; produce architectures for a grid of lambda or for device budgets",
            epilog="examples:\n  hilnas search hypernet --device pi --space nb201 --lambdas 0,0.1,0.2,0.4\n"
                   "  hilnas search hypernet --device pi --space nb201 --budgets latency_ms=2,latency_ms=3\n"
                   "  hilnas search hypernet --device pi --from-run 7 --budgets latency_ms=2.5   # no training",
            )
    p.add_argument("--lambdas", help="comma-separated coefficient scales along --direction (default: a grid up to Lambda)")
    p.add_argument("--budgets", help="comma-separated device budgets, e.g. latency_ms=2,latency_ms=3 (solves for lambda)")
    p.add_argument("--direction", help="comma-separated point of the simplex, one weight per op type (default: centre)")
    p.add_argument("--grid", type=int, default=6, help="grid points when neither --lambdas nor --budgets (default 6)")
    p.add_argument("--grid-at", default="changes", choices=["changes", "lambda"],
                   help="where the --grid points go: changes (the scales where the family's member changes, on its "
                        "dense curve: each point a distinct member while the family has that many; default) or "
                        "lambda (evenly spaced in lambda, log scale: several points may give one member)")
    p.add_argument("--complexity", default="params", choices=["params", "flops", "latency", "energy"],
                   help="Reg, what lambda weighs (seed 002's lambda Reg + kappa Latency): params (default) or flops, "
                        "with kappa times the device's LUT latency as a second term; latency or energy fold both "
                        "into one term")
    p.add_argument("--kappa", type=float, default=0.1,
                   help="weight of the LUT-latency term relative to lambda's scale: kappa x scale x latency, the "
                        "latency in the space's whole latency span (default 0.1; lambda = 0 is accuracy alone)")
    p.add_argument("--sampling", default="gumbel", choices=["gumbel", "dirichlet"],
                   help="how lambda's direction on the simplex is drawn: gumbel (Gumbel-Softmax, seed 002; "
                        "default) or dirichlet")
    p.add_argument("--weight-lambda", default="auto", choices=("auto", *WEIGHT_LAMBDAS),
                   help="which architecture each weight step trains: auto (default: the space's measured setting, "
                        f"{_auto('weight_lambda')}), drawn (the member at a freshly drawn lambda), zero (lambda = 0's, the accuracy-first end: the shared weights serve the dear "
                        "members instead of following the family to its cheap ones) or uniform (a uniformly drawn "
                        "valid cell, the warm-up included: SPOS's fair single path, no cell trained more than another) "
                        "or sandwich (the dearest valid cell on every other step, a uniform one between: the weights "
                        "serve the dear end first) or sandwich-children (the dearest cell, a child of it with k of "
                        "its E edges redrawn, k in 1..E, and a uniform cell in turn: the cells between the two ends "
                        "are trained too)")
    p.add_argument("--arch-step", default="auto", choices=["auto", "relaxed", "straight-through"],
                   help=f"the hypernetwork step's forward: auto (default: {_auto('arch_step')}), relaxed (the softmax "
                        "mixture of the ops in the searched cell) or straight-through (a cell drawn from the op weights, one-hot everywhere, the "
                        "gradient straight through: the networks single-path weight steps train)")
    p.add_argument("--phase1", default="auto", choices=["auto", "none", "dearest"],
                   help="seed 004's phase 1, after the weight warm-up and before the trade-off: auto (default: "
                        f"{_auto('phase1')}), none or dearest (fit the hypernetwork's architecture at and near lambda = 0 to the dearest valid cell, "
                        "so the family starts at the unpruned network and larger lambdas walk down from it; pairs with "
                        "--weight-lambda sandwich, which trains the weights for that cell)")
    p.add_argument("--anchor", default="auto", choices=["auto", "none", "pinned"],
                   help=f"after phase 1: auto (default: {_auto('anchor')}; none when --phase1 none), none or pinned (lambda = 0's architecture stays phase 1's fit, the "
                        "dearest cell, through the trade-off phase; the other lambdas learn offsets from it, as the "
                        "pruning hypernetwork's anchor; needs --phase1 dearest)")
    p.add_argument("--scale-sampling", default="auto", choices=["auto", "log", "uniform"],
                   help=f"how the trade-off scale is drawn on [0, Lambda]: auto (default: {_auto('scale_sampling')}), "
                        "log (fine near 0) or uniform (seed 004)")
    p.add_argument("--knee", default="auto", choices=["auto", "none", "family"],
                   help=f"after each trade-off epoch but the last: auto (default: {_auto('knee')}), none, or family "
                        "(Lambda moved to 1.5 x the scale where the family reaches the cheap end, at most the "
                        "estimate, so the draws go where the family changes)")
    p.add_argument("--derivation", default="auto", choices=("auto", *DERIVATIONS),
                   help=f"how each member's cell is read from the hypernetwork's op weights: auto (default: "
                        f"{_auto('derivation')}), argmax (each edge's most probable op), median (NB201: each edge's op "
                        "at the median of its op weights ordered by cost, so an edge passes nor_conv_1x1 between "
                        "nor_conv_3x3 and a free op), conv-median (NB201: the median while the edge's argmax is a "
                        "convolution, never below nor_conv_1x1 there; the argmax's free op once it is one) or "
                        "expected-cost (the most probable cell near the relaxation's expected cost); with --from-run, "
                        "run N's")
    p.add_argument("--Lambda", default="sweep", type=lambda_arg,
                   help="the upper end of lambda's scale the hypernetwork is trained on: sweep (measured by the "
                        "sweep's walk; default), auto (Theorem 1) or a positive number, in nats per full cost span")
    p.add_argument("--from-run", type=int, metavar="N",
                   help="derive from the hypernetwork run N trained and saved, without training again (run N's "
                        "space, data, search settings and seed apply; --budgets / --lambdas are this run's)")
    search_args(p)
    p.set_defaults(space="nb201", train_epochs=0)
    _measure_args(p, warmup=5, min_runs=20, min_seconds=0.2)
    json_flag(p)
    quiet_flag(p)
