"""``hilnas run FILE.toml``: one hardware-validated search from a run file, resumable."""
from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from pathlib import Path

from hilnas.server.cli.common import _emit, _open_store, _progress, _workspace, add, json_flag, quiet_flag


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM (a CI timeout, ``kill``) ends the command like Ctrl-C: recorded as interrupted, resumable."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_command(args, *rest: str) -> str:
    """The exact command that continues this one (with the workspace, when it is not the default)."""
    ws = ["--workspace", str(args.workspace)] if getattr(args, "workspace", None) else []
    return shlex.join(["hilnas", *ws, *rest])


def execute_with_lock(args, config, command: str, *, new: bool) -> int:
    """Run ``config`` in the command's workspace under its lock; print what it found; the exit code."""
    return execute_all_with_lock(args, (config,), command, new=new)


def execute_all_with_lock(args, configs, command: str, *, new: bool) -> int:
    """Run each of ``configs`` in turn (one run each) under one workspace lock; print what each
    found (``--json``: one outcome, or ``{"runs": [...]}`` for several); the exit code."""
    from hilnas.server.run import execute, summary_lines, workspace_lock

    ws = _workspace(args)
    progress = _progress(args)
    outcomes = []
    with workspace_lock(ws, command), _open_store(args) as store, terminate_as_interrupt():
        for config in configs:
            try:
                outcomes.append(execute(config, store, workspace=ws, progress=progress, resume_command=command,
                                        new=new))
            except KeyboardInterrupt:
                print(f"hilnas: interrupted; everything finished is kept: run `{command}` again to continue",
                      file=sys.stderr)
                return 130
    text = "\n\n".join("\n".join(summary_lines(o)) for o in outcomes)
    data = outcomes[0].to_dict() if len(outcomes) == 1 else {"runs": [o.to_dict() for o in outcomes]}
    _emit(args, data, text)
    return 0 if all(o.status == "done" and not o.infeasible for o in outcomes) else 1


def cmd_run(args) -> int:
    from hilnas.server.run import load_run_file

    config = load_run_file(args.file)  # RunFileError: every problem, with its line
    command = resume_command(args, "run", str(args.file))
    return execute_with_lock(args, config, command, new=args.new)


def register(sub) -> None:
    from hilnas.server.run.methods import METHODS

    methods = "\n".join(f"  {m.name:<9} {m.summary}" for m in METHODS.values())
    p = add(sub, "run", cmd_run, "run one hardware-validated search described in a run file (TOML): LUTs, searches, "
            "trainings, validations on every device, and a report; resumable",
            epilog=f"methods:\n{methods}\n\nexamples: examples/simulated-ci.toml (simulated devices), "
                   "examples/raspberry-pi.toml, examples/termux-phone.toml\n"
                   "Run the same file again after an interruption (Ctrl-C, kill -9, an agent that went away): "
                   "finished steps are kept.\nOne run per workspace at a time; a second is refused with the PID of "
                   "the first.\nExit code: 0 every network measured, 1 a step failed or a budget no network meets, "
                   "2 a bad run file.")
    p.add_argument("file", type=Path, help="the run file (see examples/)")
    p.add_argument("--new", action="store_true",
                   help="start a new run even if this file ran before (default: resume its latest run)")
    json_flag(p)
    quiet_flag(p)
