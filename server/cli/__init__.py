"""``hilnas``: the central side — devices, LUTs, validation, searches, the demo.

Only argparse is imported at module level; each command imports what it needs, so ``--help``
stays fast. Errors are one clear line on stderr and a non-zero exit code (2 for bad input,
1 for a failed operation).
"""
from __future__ import annotations

import argparse
import sys

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


from hilnas.server.cli.common import CliError  # noqa: F401  (raised by the commands; server.errors imports it here)

COMMANDS = ("devices", "lut", "measure", "search", "run", "sweep", "report", "demo")  # modules under hilnas.server.cli, each with register(sub)


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

    import importlib

    for name in COMMANDS:
        importlib.import_module(f"hilnas.server.cli.{name}").register(sub)
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
        import shlex

        again = shlex.join(["hilnas", *(sys.argv[1:] if argv is None else argv)])
        print(f"hilnas: interrupted; `{again}` runs it again (a LUT build resumes where it stopped)",
              file=sys.stderr)
        return 130
    except Exception as err:  # one clear line; the traceback only with -v
        from hilnas.server.cli.common import with_workspace
        from hilnas.server.errors import is_user_error

        if args.verbose or not is_user_error(err):
            import traceback

            traceback.print_exc()
        print(f"hilnas: error: {with_workspace(str(err), args)}", file=sys.stderr)
        return 2 if is_user_error(err) else 1


if __name__ == "__main__":
    sys.exit(main())
