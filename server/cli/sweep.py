"""``hilnas sweep SWEEP.toml``: devices × methods × budgets × seeds, one search per cell, in a process
pool here or as Ray tasks; resumable."""
from __future__ import annotations

import sys
from pathlib import Path

from hilnas.server.cli.common import CliError, _emit, _open_store, _progress, _workspace, add, json_flag, quiet_flag

EPILOG = """\
A sweep file is a run file (hilnas run --help, examples/) plus, optionally:
  [sweep]    on = "local" | "ray", address, workers, cpus_per_cell, memory_mb_per_cell,
             per_device, retries, connect_timeout_s   (the options below override them)
  [[cells]]  device, method, budget, seed: cells outside the product
Every device x each of its budgets x every method x every seed is one cell: one search, trained,
exported and validated on the device, run apart from the others. Only this process writes the
workspace's store; workers return their results. Run the same command again after an interruption:
cells already done are kept. Example: examples/sweeps/ci.toml. Ray clusters: docs/scale.md.
Exit code: 0 every cell done, 1 a cell failed, 2 a bad sweep file or a Ray cluster that does not answer."""


def cmd_sweep(args) -> int:
    from hilnas.server.cli.run import resume_command, terminate_as_interrupt
    from hilnas.server.run import workspace_lock
    from hilnas.server.sweep import load_sweep_file, run_sweep, summary_lines, with_options
    from hilnas.server.sweep.engines import EngineError, make_engine

    config = with_options(load_sweep_file(args.file), on=args.on, address=args.address, workers=args.workers,
                          per_device=args.per_device, cpus_per_cell=args.cpus_per_cell)
    if config.options.address and config.options.on != "ray":
        raise CliError("--address is a Ray cluster's address: add --on ray (or on = \"ray\" in [sweep])")
    command = resume_command(args, "sweep", str(args.file), *(["--on", args.on] if args.on else []),
                             *(["--address", args.address] if args.address else []))
    ws = _workspace(args)
    progress = _progress(args)
    with workspace_lock(ws, command), terminate_as_interrupt():
        try:
            engine = make_engine(config.options)
        except EngineError as err:
            raise CliError(str(err)) from None
        try:
            with _open_store(args) as store:
                outcome = run_sweep(config, store, workspace=ws, engine=engine, progress=progress,
                                    resume_command=command, new=args.new)
        except KeyboardInterrupt:
            print(f"hilnas: interrupted; the cells finished are kept: run `{command}` again to continue",
                  file=sys.stderr)
            return 130
        finally:
            engine.close()
    _emit(args, outcome.to_dict(), "\n".join(summary_lines(outcome)))
    return 0 if outcome.status == "done" else 1


def register(sub) -> None:
    p = add(sub, "sweep", cmd_sweep, "run many searches at once from a sweep file: every device x budget x method "
            "x seed, in a process pool or on a Ray cluster; resumable", epilog=EPILOG)
    p.add_argument("file", type=Path, help="the sweep file (a run file with an optional [sweep] table)")
    p.add_argument("--on", choices=["local", "ray"],
                   help="where cells run: local = a process pool on this machine, ray = Ray tasks (default: [sweep] "
                        "on, else local)")
    p.add_argument("--address", help="Ray cluster, HOST:PORT or ray://HOST:PORT (default: [sweep] address, else a "
                                     "local Ray bound to 127.0.0.1)")
    p.add_argument("--workers", type=int, help="cells at once (default: [sweep] workers, else this machine's cores "
                                               "or the cluster's CPUs / cpus_per_cell)")
    p.add_argument("--cpus-per-cell", type=float, help="CPUs a Ray task reserves (default: [sweep] cpus_per_cell, "
                                                       "else 1)")
    p.add_argument("--per-device", type=int, help="cells at once on one real board (default: [sweep] per_device, "
                                                  "else 1; simulated boards are each cell's own)")
    p.add_argument("--new", action="store_true",
                   help="start a new sweep even if this file ran before (default: resume its latest sweep)")
    json_flag(p)
    quiet_flag(p)
