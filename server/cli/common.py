"""What every ``hilnas`` command shares: the workspace, store, fleet and clients, output, measurement
flags, progress, help that shows every default, ``KEY=VALUE`` options and dataset shapes."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


# -- helpers ----------------------------------------------------------------------------------
def _workspace(args) -> Path:
    import os

    return Path(args.workspace or os.environ.get("HILNAS_WORKSPACE") or ".hilnas")


def with_workspace(message: str, args) -> str:
    """``message`` with the user's --workspace added to every `hilnas ...` command it names, so the
    command it advises is exactly the one to run."""
    import re
    import shlex

    if not getattr(args, "workspace", None):
        return message
    flag = f"--workspace {shlex.quote(str(args.workspace))} "
    return re.sub(r"`hilnas (?!--workspace)", lambda m: f"`hilnas {flag}", message)


def _open_store(args, *, create: bool = True):
    from hilnas.server.store import Store

    return Store.open(_workspace(args), create=create)


def _fleet(args, *, check_files: bool = True):
    from hilnas.server.fleet import Fleet, default_fleet_path

    return Fleet.load(default_fleet_path(_workspace(args)), missing_ok=True, check_files=check_files)


def _clients(args, device_key: str):
    from hilnas.server.client import client_for_endpoint

    entry = _fleet(args).get(device_key)
    return [client_for_endpoint(ep, retries=args.retries) for ep in entry.agents]


def _emit(args, data, text: str) -> None:
    if getattr(args, "json", False):
        from hilnas.agent.convert import to_jsonable

        print(json.dumps(to_jsonable(data), indent=2, default=str))
    else:
        print(text)


def _measure_config(args):
    from hilnas.agent.config import MeasureConfig

    if args.min_runs < 1 or args.min_seconds < 0 or args.warmup < 0:
        raise CliError("--min-runs must be >= 1, --min-seconds and --warmup >= 0")
    return MeasureConfig(warmup_runs=args.warmup, min_runs=args.min_runs, min_seconds=args.min_seconds,
                         threads=args.threads, energy=args.energy)


def _measure_args(p: argparse.ArgumentParser, *, warmup=5, min_runs=20, min_seconds=0.1) -> None:
    g = p.add_argument_group("measurement (part of a LUT's identity)")
    g.add_argument("--warmup", type=int, default=warmup, help=f"untimed runs first (default {warmup})")
    g.add_argument("--min-runs", type=int, default=min_runs, help=f"at least this many timed runs (default {min_runs})")
    g.add_argument("--min-seconds", type=float, default=min_seconds,
                   help=f"and at least this much timed time, s (default {min_seconds})")
    g.add_argument("--threads", type=int, default=0, help="runtime threads (default 0 = runtime default)")
    g.add_argument("--energy", action="store_true", help="also measure energy where the device has a meter")


def _progress(args, *, quiet: bool = False):
    """The command's progress display (``server.progress``): nothing with --quiet, plain lines with --json
    or when stderr is not a terminal, a live bar otherwise."""
    from hilnas.server.progress import Progress

    return Progress.for_cli(json=getattr(args, "json", False), quiet=quiet or getattr(args, "quiet", False))


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions and epilogs as written, and ends every option's help with its default
    (unless the help already says it, or there is none to say)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default == argparse.SUPPRESS
                or not action.option_strings
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


# Input shape of each dataset, so a LUT is built for the networks a search on it will place.
DATASET_SHAPES = {"demo": {"in_channels": 1, "input_size": 28, "num_classes": 10},
                  "fashion-mnist": {"in_channels": 1, "input_size": 28, "num_classes": 10},
                  "cifar10": {"in_channels": 3, "input_size": 32, "num_classes": 10}}


def _space(args):
    from hilnas.searchers.spaces import create_space

    overrides = dict(DATASET_SHAPES.get(getattr(args, "dataset", None) or "", {}))
    overrides.update(_kv(getattr(args, "space_opt", None), "--space-opt"))
    return create_space(args.space, **overrides)


def _statistic_arg(p, what: str) -> None:
    from hilnas.server.lut.rounds import DEFAULT_STATISTIC, STATISTICS

    p.add_argument("--statistic", default=DEFAULT_STATISTIC, choices=STATISTICS,
                   help=f"latency statistic: median (default) = each window's median run and the median of the "
                        f"{what}; min = the fastest run over all {what}, for a shared or noisy host where "
                        f"interference only adds time. Use the same for the LUT and for fidelity")


def _kv(pairs: list[str] | None, what: str) -> dict:
    """``["C=8", "base_widths=16,32,64"]`` -> ``{"C": 8, "base_widths": (16, 32, 64)}`` (ints, floats or
    strings; a comma-separated value is a tuple of them)."""
    def scalar(value: str):
        for cast in (int, float):
            try:
                return cast(value)
            except ValueError:
                continue
        return value

    out = {}
    for item in pairs or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{what} {item!r} is not KEY=VALUE")
        out[key] = tuple(scalar(v) for v in value.split(",")) if "," in value else scalar(value)
    return out


def _dataset_config(args):
    from hilnas.searchers.data import DatasetConfig

    return DatasetConfig(name=args.dataset, data_dir=args.data_dir, train_size=args.train_size,
                         test_size=args.test_size, val_fraction=0.5, batch_size=args.batch_size, seed=args.seed)


def add(parent, name, func, help_, **kw):
    """A sub-command whose parser calls ``func(args)``; its ``--help`` shows every default."""
    kw.setdefault("formatter_class", DefaultsHelpFormatter)
    p = parent.add_parser(name, help=help_, description=help_, **kw)
    p.set_defaults(func=func)
    return p


def json_flag(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout (progress goes to stderr "
                   "as plain lines)")


def quiet_flag(p) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress output")
