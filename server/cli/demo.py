"""``hilnas demo``: the whole mission on loopback agents (this host, a simulated Pi 4 and Pixel 3)."""
from __future__ import annotations

import argparse

from hilnas.server.cli.common import add, json_flag, quiet_flag


def cmd_demo(args) -> int:
    from hilnas.server.cli.run import execute_all_with_lock, resume_command
    from hilnas.server.demo import DEFAULT_WORKSPACE, demo_configs

    scale = "quick" if args.quick else "full" if args.full else "default"
    if not args.workspace:  # the demo never writes into a workspace of real devices ($HILNAS_WORKSPACE)
        args.workspace = DEFAULT_WORKSPACE
    command = resume_command(args, "demo", *(["--quick"] if args.quick else ["--full"] if args.full else []))
    code = execute_all_with_lock(args, demo_configs(scale), command, new=args.new)
    if not args.json and not args.quiet:
        ws = ["--workspace", args.workspace]
        print(f"\nexplore the workspace: hilnas {' '.join(ws)} runs  |  hilnas {' '.join(ws)} report --all  |  "
              f"run it again with `{command}` (resumes; --new starts afresh)")
    return code


def register(sub) -> None:
    p = add(sub, "demo", cmd_demo,
            "the whole mission on this machine, no hardware: agents for this host and simulated Raspberry Pi 4 and "
            "Pixel 3 on loopback, their LUTs, the NAS-Bench-201 methods under two budgets per device on the bundled "
            "Fashion-MNIST subset, then splitting (MobileNet) and pruning (ResNet) on the simulated Pi 4, the found "
            "networks trained, measured on their devices, and a report per run",
            epilog="takes about 3-4 minutes on a 2-core CPU (--quick: about a minute; --full: hours)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smallest settings, for CI: one budget, one epoch, a "
                      "few batches (the accuracies mean nothing)")
    size.add_argument("--full", action="store_true", help="the real Fashion-MNIST (60,000 images; Debian's "
                      "dataset-fashion-mnist) and real epochs: hours on 2 cores")
    p.add_argument("--workspace", default=argparse.SUPPRESS,
                   help="the demo's workspace, kept afterwards (default: ./hilnas-demo)")
    p.add_argument("--new", action="store_true", help="start afresh instead of resuming the demo's last run")
    json_flag(p)
    quiet_flag(p)
