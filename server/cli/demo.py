"""``hilnas demo``: the whole pipeline on loopback agents."""
from __future__ import annotations

from pathlib import Path

from hilnas.server.cli.common import add, json_flag


def cmd_demo(args) -> int:
    from hilnas.server.demo import DemoConfig, run_demo

    return run_demo(DemoConfig(workspace=Path(args.workspace) if args.workspace else None, quick=args.quick,
                               json=args.json))


# -- parser -----------------------------------------------------------------------------------
def register(sub) -> None:
    p = add(sub, "demo", cmd_demo, "run the whole pipeline on loopback agents (a simulated Pi and this host)")
    p.add_argument("--quick", action="store_true", help="smallest settings (for CI)")
    json_flag(p)
