"""``hilnas``: the central side — devices, LUTs, validation, searches, the demo.

Only argparse is imported at module level; each command imports what it needs, so ``--help``
stays fast. Errors are one clear line on stderr and a non-zero exit code (2 for bad input,
1 for a failed operation).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """\
typical session:
  hilnas devices add pi --address 192.168.1.20:50061 --token-file pi.token
  hilnas devices describe pi
  hilnas lut build --device pi --space nb201          # measure every op the space can place
  hilnas validate model.onnx --device pi              # predicted (LUT) vs measured latency
  hilnas fidelity --device pi --space darts --networks 30
  hilnas demo                                         # everything on loopback, no hardware

The workspace (default ./.hilnas, or --workspace / $HILNAS_WORKSPACE) holds fleet.toml and the
SQLite store hilnas.db.
"""


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


# -- helpers ----------------------------------------------------------------------------------
def _workspace(args) -> Path:
    import os

    return Path(args.workspace or os.environ.get("HILNAS_WORKSPACE") or ".hilnas")


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


class _Progress:
    """A tqdm bar with ETA when tqdm is installed and stderr is a terminal; plain lines otherwise."""

    def __init__(self, desc: str, quiet: bool = False):
        self.desc, self.quiet, self.bar, self.last = desc, quiet, None, 0.0

    def __call__(self, done: int, total: int, key: str) -> None:
        import time

        if self.quiet:
            return
        if self.bar is None:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=self.desc, unit="op", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                self.bar = False
        if self.bar:
            self.bar.update(done - self.bar.n)
            if done == total:
                self.bar.close()
        elif time.monotonic() - self.last > 5 or done == total:
            self.last = time.monotonic()
            print(f"{self.desc}: {done}/{total}", file=sys.stderr)


# -- devices ----------------------------------------------------------------------------------
def cmd_devices_add(args) -> int:
    from hilnas.server.fleet import AgentEndpoint, DeviceEntry, TlsConfig

    fleet = _fleet(args)
    tls = None
    if args.tls or args.tls_ca or args.tls_cert:
        tls = TlsConfig(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key, server_name=args.tls_server_name)
    endpoint = AgentEndpoint(address=args.address, token=args.token, token_file=args.token_file, tls=tls,
                             name=args.name or "", insecure=args.insecure)
    endpoint.check_files()
    if args.key in fleet:
        fleet.add_agent(args.key, endpoint)
        what = f"added agent {endpoint.address} to device {args.key}"
    else:
        fleet.add(DeviceEntry(key=args.key, agents=(endpoint,), notes=args.notes or ""))
        what = f"added device {args.key} ({endpoint.address})"
    path = fleet.save()
    print(f"{what}; fleet file {path}")
    return 0


def cmd_devices_list(args) -> int:
    fleet = _fleet(args, check_files=False)
    rows = [{"key": e.key, "agents": [a.address for a in e.agents], "notes": e.notes} for e in fleet]
    text = "\n".join(f"{r['key']:<16} {', '.join(r['agents'])}  {r['notes']}" for r in rows) or \
        "no devices yet: hilnas devices add KEY --address HOST:PORT"
    _emit(args, rows, text)
    return 0


def cmd_devices_describe(args) -> int:
    from hilnas.server.client import AgentUnavailable

    out, ok = [], True
    for client in _clients(args, args.key):
        with client:
            try:
                info = client.describe()
                out.append({"agent": client.config.address, "info": info})
            except AgentUnavailable as err:
                ok = False
                out.append({"agent": client.config.address, "error": str(err)})
    with _open_store(args) as store:
        for item in out:
            if "info" in item:
                store.upsert_device(args.key, fingerprint=item["info"].fingerprint, info=item["info"])
                break
    lines = []
    for item in out:
        if "error" in item:
            lines.append(f"{item['agent']}: UNREACHABLE: {item['error']}")
            continue
        i = item["info"]
        kind = f"simulated {i.profile}" if i.simulated else i.cpu_model
        meters = ", ".join(f"{m.name}{'' if m.available else ' (unavailable)'}" for m in i.energy_meters) or "none"
        backends = ", ".join(f"{b} {i.runtime_versions.get(b, '')}".strip() for b in i.backends)
        lines.append(f"{item['agent']}: {kind}, {i.cpu_cores} cores, {i.memory_bytes / 2**30:.1f} GiB, {i.os}\n"
                     f"  fingerprint {i.fingerprint}; backends {backends}\n"
                     f"  energy meters: {meters}; agent {i.agent_version}")
    _emit(args, out, "\n".join(lines))
    return 0 if ok else 1


def cmd_devices_remove(args) -> int:
    fleet = _fleet(args, check_files=False)
    fleet.remove(args.key)
    fleet.save()
    print(f"removed device {args.key} from the fleet (its LUT rows stay in the store)")
    return 0


# -- LUTs -------------------------------------------------------------------------------------
# Input shape of each dataset, so a LUT is built for the networks a search on it will place.
DATASET_SHAPES = {"demo": {"in_channels": 1, "input_size": 28, "num_classes": 10},
                  "fashion-mnist": {"in_channels": 1, "input_size": 28, "num_classes": 10},
                  "cifar10": {"in_channels": 3, "input_size": 32, "num_classes": 10}}


def _space(args):
    from hilnas.searchers.spaces import create_space

    overrides = dict(DATASET_SHAPES.get(getattr(args, "dataset", None) or "", {}))
    overrides.update(_kv(getattr(args, "space_opt", None), "--space-opt"))
    return create_space(args.space, **overrides)


def cmd_lut_build(args) -> int:
    from hilnas.server.lut_builder import LutBuildConfig, LutBuilder
    from hilnas.server.micromodels import MicroModels

    space = _space(args)
    from hilnas.agent.results import ModelFormat

    micro = MicroModels(_workspace(args) / "micromodels")
    fmt, export = (ModelFormat.TFLITE, micro.tflite) if args.format == "tflite" else (ModelFormat.ONNX, micro.onnx)
    backend = args.backend or ("tflite" if fmt is ModelFormat.TFLITE else "")
    config = LutBuildConfig(measure=_measure_config(args), backend=backend, batch_size=args.batch,
                            retry_failed=args.retry_failed, repeats=args.repeats, statistic=args.statistic)
    keys = MicroModels.keys_for_space(space)
    with _open_store(args) as store:
        builder = LutBuilder(store, args.device, _clients(args, args.device), config)
        report = builder.build(keys, export, fmt=fmt, progress=_Progress(f"LUT {args.device}", args.quiet))
    text = (f"LUT {report.lut_id}\n  {report.requested} op keys: {report.already_present} already present, "
            f"{report.measured} measured now, {report.remeasured} re-measured (unstable), {len(report.failed)} failed\n"
            f"  wall {report.wall_s:.1f} s, models' own run time {report.model_run_s:.1f} s "
            f"(efficiency {report.efficiency:.2f})")
    if report.failed:
        text += "\n  failures:\n" + "\n".join(f"    {k}: {v}" for k, v in list(report.failed.items())[:10])
    _emit(args, report.to_dict(), text)
    return 0 if not report.failed else 1


def cmd_lut_list(args) -> int:
    with _open_store(args) as store:
        infos = store.luts_for_device(args.device) if args.device else store.all_luts()
    rows = [{"lut": i.lut_id.as_dict(), "rows": i.rows, "measured": i.measured_rows, "devices": list(i.device_keys),
             "simulated": i.simulated} for i in infos]
    text = "\n".join(f"{', '.join(r['devices']):<12} {i.lut_id}  {i.measured_rows}/{i.rows} measured"
                     f"{'  (simulated)' if i.simulated else ''}" for r, i in zip(rows, infos)) or "no LUTs yet"
    _emit(args, rows, text)
    return 0


def _find_lut(store, args):
    return store.find_lut(args.device, runtime=args.runtime, runtime_version=args.runtime_version,
                          config_hash=args.config_hash)


def cmd_lut_export(args) -> int:
    from hilnas.server.lut_io import export_lut_csv

    with _open_store(args) as store:
        n = export_lut_csv(store, _find_lut(store, args), Path(args.out), overwrite=args.force)
    print(f"wrote {n} rows to {args.out}")
    return 0


def cmd_lut_import(args) -> int:
    from hilnas.server import lut_io

    path = Path(args.file)
    with _open_store(args) as store:
        if path.suffix in (".yaml", ".yml"):
            if not args.device:
                raise CliError("importing an OFA yaml LUT needs --device (the file does not say its device)")
            report = lut_io.import_ofa_yaml(store, path, device_key=args.device)
        else:
            report = lut_io.import_lut_csv(store, path, device_key=args.device, replace=args.replace)
    print(f"imported {path}: {report}")
    return 0


# -- validation -------------------------------------------------------------------------------
def cmd_validate(args) -> int:
    from hilnas.server.validation import validate_model_file

    with _open_store(args) as store:
        report = validate_model_file(store, args.device, _clients(args, args.device), Path(args.model),
                                     measure=_measure_config(args), runtime=args.runtime)
    _emit(args, report.to_dict(), report.summary())
    return 0 if report.measured_ms is not None else 1


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
    text = "\n".join(f"{x['id']:>5}  {x['kind']:<10} {x['status']:<9} {x['started']}  {x['summary']}"
                     for x in rows) or "no runs yet"
    _emit(args, rows, text)
    return 0


def _run_summary(kind: str, result: dict) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    if kind == "hypernet":
        saved = f", trained hypernetwork saved ({result['trained_dir']})" if result.get("trained_dir") else ""
        origin = f", derived from run {result['from_run']}" if result.get("from_run") is not None else ""
        return f"{len(result.get('members', []))} members, Lambda {result.get('Lambda', float('nan')):.3g}{saved}{origin}"
    if kind == "fidelity" and "corrected" in result:
        c = result["corrected"]
        return (f"{c['n']} networks, {100 * c['within_10pct']:.1f}% within +-10% (CV), "
                f"statistic {result.get('correction', {}).get('statistic', 'median')}")
    return ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, (int, float, str)) and len(str(v)) < 40)[:120]


def cmd_fidelity(args) -> int:
    from hilnas.server.fidelity import FidelityConfig, run_fidelity

    overrides = {**DATASET_SHAPES.get(args.dataset or "", {}), **_kv(args.space_opt, "--space-opt")}
    cfg = FidelityConfig(space=args.space, space_overrides=overrides, networks=args.networks, seed=args.seed, measure=_measure_config(args),
                         runtime=args.runtime, repeats=args.repeats, statistic=args.statistic,
                         agreement=args.agreement, max_repeats=max(args.max_repeats, args.repeats))
    with _open_store(args) as store:
        report = run_fidelity(store, args.device, _clients(args, args.device), cfg,
                              progress=_Progress(f"fidelity {args.device}", args.quiet))
    _emit(args, report.to_dict(), report.summary())
    return 0


def _statistic_arg(p, what: str) -> None:
    from hilnas.server.rounds import DEFAULT_STATISTIC, STATISTICS

    p.add_argument("--statistic", default=DEFAULT_STATISTIC, choices=STATISTICS,
                   help=f"latency statistic: median (default) = each window's median run and the median of the "
                        f"{what}; min = the fastest run over all {what}, for a shared or noisy host where "
                        f"interference only adds time. Use the same for the LUT and for fidelity")


# -- search -----------------------------------------------------------------------------------
def _kv(pairs: list[str] | None, what: str) -> dict:
    """``["C=8", "layers=5"]`` -> ``{"C": 8, "layers": 5}`` (ints, floats, or strings)."""
    out = {}
    for item in pairs or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{what} {item!r} is not KEY=VALUE")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def _dataset_config(args):
    from hilnas.searchers.data import DatasetConfig

    return DatasetConfig(name=args.dataset, data_dir=args.data_dir, train_size=args.train_size,
                         test_size=args.test_size, val_fraction=0.5, batch_size=args.batch_size, seed=args.seed)


def cmd_search_dca(args) -> int:
    from hilnas.server.search_dca import DcaRunConfig, parse_budget, run_dca

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
    from hilnas.server.search_dca import parse_budget
    from hilnas.server.search_hypernet import HypernetRunConfig, run_hypernet

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


# -- demo -------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from hilnas.server.demo import DemoConfig, run_demo

    return run_demo(DemoConfig(workspace=Path(args.workspace) if args.workspace else None, quick=args.quick,
                               json=args.json))


# -- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hilnas", description="Hardware-in-the-loop neural architecture search: measure models on real "
        "(or simulated) devices, build per-device lookup tables, search under a device budget.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", help="workspace folder (default ./.hilnas or $HILNAS_WORKSPACE)")
    parser.add_argument("--retries", type=int, default=4, help="retries on an unreachable agent (default 4)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(parent, name, func, help_, **kw):
        p = parent.add_parser(name, help=help_, description=help_, **kw)
        p.set_defaults(func=func)
        return p

    def json_flag(p):
        p.add_argument("--json", action="store_true", help="machine-readable output")

    # devices
    dev = sub.add_parser("devices", help="the fleet: which agents serve which device")
    dsub = dev.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    p = add(dsub, "add", cmd_devices_add, "add a device (or another agent of an existing one) to the fleet file")
    p.add_argument("key", help="device key, e.g. raspi4 (letters, digits, . _ -)")
    p.add_argument("--address", required=True, help="agent address HOST:PORT")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--token-file", help="file holding the agent's token (needed beyond loopback)")
    tok.add_argument("--token", help="the token itself (stored in the fleet file, mode 0600)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback agent without a token")
    p.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --tls-ca)")
    p.add_argument("--tls-ca", help="CA that signed the agent's certificate (PEM)")
    p.add_argument("--tls-cert", help="client certificate (PEM), for agents that require one")
    p.add_argument("--tls-key", help="client key (PEM)")
    p.add_argument("--tls-server-name", help="name in the agent's certificate, if not the host")
    p.add_argument("--name", help="label for this agent in messages")
    p.add_argument("--notes", help="free text about the device")
    p = add(dsub, "list", cmd_devices_list, "list the fleet's devices")
    json_flag(p)
    p = add(dsub, "describe", cmd_devices_describe, "ask a device's agents what they are (fingerprint, backends, meters)")
    p.add_argument("key")
    json_flag(p)
    p = add(dsub, "remove", cmd_devices_remove, "remove a device from the fleet file")
    p.add_argument("key")

    # lut
    lut = sub.add_parser("lut", help="per-device lookup tables of operator latency (and energy)")
    lsub = lut.add_subparsers(dest="lut_command", metavar="ACTION", required=True)
    p = add(lsub, "build", cmd_lut_build, "measure every op instance of a search space on a device (resumable)")
    p.add_argument("--device", required=True)
    p.add_argument("--space", required=True, choices=["nb201", "darts"], help="search space whose ops to measure")
    p.add_argument("--dataset", choices=sorted(DATASET_SHAPES),
                   help="shape the space for this dataset's images (default: the space's own, 3x32x32)")
    p.add_argument("--space-opt", action="append", metavar="KEY=VALUE",
                   help="override a space field, e.g. --space-opt C=8 (must match the search's space)")
    p.add_argument("--backend", help="backend on the device (default: the agent's default)")
    p.add_argument("--format", default="onnx", choices=["onnx", "tflite"],
                   help="micro-model format (tflite needs the optional litert-torch converter)")
    p.add_argument("--batch", type=int, default=16, help="models per stream (default 16)")
    p.add_argument("--retry-failed", action="store_true", help="re-measure ops stored as failed")
    p.add_argument("--repeats", type=int, default=1,
                   help="interleaved passes over the new ops, combined by --statistic (default 1; "
                        "use 3 on a shared or noisy device)")
    from hilnas.server.rounds import DEFAULT_STATISTIC, STATISTICS

    p.add_argument("--statistic", default=DEFAULT_STATISTIC, choices=STATISTICS,
                   help="which pass's median a row keeps: the median pass (default) or the least disturbed one "
                        "(min). Every row also records its fastest run over all passes, which `fidelity "
                        "--statistic min` uses")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _measure_args(p)
    json_flag(p)
    p = add(lsub, "list", cmd_lut_list, "list the LUTs in the store")
    p.add_argument("--device")
    json_flag(p)
    for name, func, help_ in (("export", cmd_lut_export, "write a device's LUT as CSV"),):
        p = add(lsub, name, func, help_)
        p.add_argument("--device", required=True)
        p.add_argument("out", help="CSV file to write")
        p.add_argument("--force", action="store_true", help="overwrite an existing file")
    for p in (lsub.choices["export"],):
        p.add_argument("--runtime", help="pick the LUT by runtime when the device has several")
        p.add_argument("--runtime-version")
        p.add_argument("--config-hash")
    p = add(lsub, "import", cmd_lut_import, "import a LUT from CSV (hilnas) or OFA/ProxylessNAS yaml")
    p.add_argument("file")
    p.add_argument("--device", help="device key to file the rows under")
    p.add_argument("--replace", action="store_true", help="replace rows that already exist")

    # validate / fidelity
    p = add(sub, "validate", cmd_validate, "measure a model on a device and compare with the LUT's prediction")
    p.add_argument("model", help="ONNX model (hilnas-exported models carry their op keys for the prediction)")
    p.add_argument("--device", required=True)
    p.add_argument("--runtime", help="LUT runtime to predict with, when the device has several")
    _measure_args(p, warmup=10, min_runs=30, min_seconds=1.0)
    json_flag(p)
    p = add(sub, "runs", cmd_runs, "list the store's runs (searches, fidelity reports): ids for --from-run")
    p.add_argument("--kind", help="only runs of this kind, e.g. hypernet, search-dca, fidelity")
    p.add_argument("--last", type=int, default=20, help="show the last N runs (default 20)")
    json_flag(p)
    p = add(sub, "fidelity", cmd_fidelity, "LUT fidelity over random networks (nn-Meter's +-10%% share and RMSPE)")
    p.add_argument("--device", required=True)
    p.add_argument("--space", default="darts", choices=["nb201", "darts"])
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

    # search
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

    # demo
    p = add(sub, "demo", cmd_demo, "run the whole pipeline on loopback agents (a simulated Pi and this host)")
    p.add_argument("--quick", action="store_true", help="smallest settings (for CI)")
    json_flag(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from hilnas import __version__

        print(f"hilnas {__version__}")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import logging

    logging.basicConfig(level="INFO" if args.verbose else "WARNING", format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("hilnas: interrupted (a LUT build resumes where it stopped when run again)", file=sys.stderr)
        return 130
    except Exception as err:  # one clear line; the traceback only with -v
        from hilnas.server.errors import is_user_error

        if args.verbose or not is_user_error(err):
            import traceback

            traceback.print_exc()
        print(f"hilnas: error: {err}", file=sys.stderr)
        return 2 if is_user_error(err) else 1


if __name__ == "__main__":
    sys.exit(main())
