"""``hilnas search METHOD``: one hardware-validated search per method, each in its own module here."""
from __future__ import annotations

import importlib

METHODS = ("dca", "hypernet", "prune", "splitting")  # modules under hilnas.server.cli.search, each with register(ssub)


def register(sub) -> None:
    search = sub.add_parser("search", help="search an architecture under a device budget")
    ssub = search.add_subparsers(dest="search_command", metavar="METHOD", required=True)
    for name in METHODS:
        importlib.import_module(f"hilnas.server.cli.search.{name}").register(ssub)
