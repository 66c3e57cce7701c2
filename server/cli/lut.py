"""``hilnas lut``: build, list, export and import per-device lookup tables."""
from __future__ import annotations

from pathlib import Path

from hilnas.server.cli.common import (_clients, _emit, _measure_args, _measure_config, _open_store,
                                      _progress, _space, _workspace, add, CliError, DATASET_SHAPES,
                                      json_flag)


def cmd_lut_build(args) -> int:
    from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
    from hilnas.server.progress import lut_reporter
    from hilnas.server.lut.micromodels import MicroModels

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
        with _progress(args).task(f"LUT {args.device} ({len(keys)} op instances)", unit="op") as task:
            report = builder.build(keys, export, fmt=fmt, progress=lut_reporter(task))
    resumed = f"{report.resumed} resumed (passes missing), " if report.resumed else ""
    text = (f"LUT {report.lut_id}\n  {report.requested} op keys: {report.already_present} already present, "
            f"{resumed}{report.measured} measured now, {report.repeated} further passes, "
            f"{report.remeasured} re-measured (unstable), {len(report.failed)} failed\n"
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
    from hilnas.server.lut.io import export_lut_csv

    with _open_store(args) as store:
        n = export_lut_csv(store, _find_lut(store, args), Path(args.out), overwrite=args.force)
    print(f"wrote {n} rows to {args.out}")
    return 0


def cmd_lut_import(args) -> int:
    from hilnas.server.lut import io as lut_io

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


# -- parser -----------------------------------------------------------------------------------
def register(sub) -> None:
    lut = sub.add_parser("lut", help="per-device lookup tables of operator latency (and energy)")
    lsub = lut.add_subparsers(dest="lut_command", metavar="ACTION", required=True)
    p = add(lsub, "build", cmd_lut_build, "measure every op instance of a search space on a device (resumable)")
    p.add_argument("--device", required=True)
    p.add_argument("--space", required=True, choices=["nb201", "darts", "mobilenet", "resnet18-narrow", "resnet18"],
                   help="search space (or prunable model) whose ops to measure (mobilenet: its layers at the grid "
                        "of widths)")
    p.add_argument("--dataset", choices=sorted(DATASET_SHAPES),
                   help="shape the space for this dataset's images (default: the space's own, 3x32x32)")
    p.add_argument("--space-opt", action="append", metavar="KEY=VALUE",
                   help="override a space field, e.g. --space-opt C=8 (must match the search's space)")
    p.add_argument("--backend", help="backend on the device (default: the agent's default)")
    p.add_argument("--format", default="onnx", choices=["onnx", "tflite"],
                   help="micro-model format (tflite needs the optional litert-torch converter)")
    p.add_argument("--batch", type=int, default=16,
                   help="models per stream at most; the agent serves others between streams (default 16)")
    p.add_argument("--retry-failed", action="store_true", help="re-measure ops stored as failed")
    p.add_argument("--repeats", type=int, default=1,
                   help="interleaved passes over the new ops, combined by --statistic (default 1; "
                        "use 3 on a shared or noisy device)")
    from hilnas.server.lut.rounds import DEFAULT_STATISTIC, STATISTICS

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
