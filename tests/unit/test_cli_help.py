"""Every ``hilnas`` command's ``--help`` says each option's default (issue 14: a search's epochs and
data size were invisible)."""
from __future__ import annotations

import argparse

from hilnas.server.cli import build_parser


def _commands(parser: argparse.ArgumentParser, prefix: str = "hilnas"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _commands(sub, f"{prefix} {name}")


def test_every_option_with_a_default_says_it() -> None:
    commands = dict(_commands(build_parser()))
    assert {"hilnas run", "hilnas report", "hilnas demo", "hilnas validate", "hilnas search dca"} <= set(commands)
    missing = []
    for name, parser in commands.items():
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.default in (None, argparse.SUPPRESS) or action.default is False \
                    or isinstance(action, argparse._HelpAction):
                continue
            helped = parser._get_formatter()._get_help_string(action) or ""
            if "default" not in helped:
                missing.append(f"{name} {action.option_strings[0]}")
        assert "%(default)" not in text
    assert not missing, missing
    search = commands["hilnas search dca"].format_help()
    for shown in ("epochs of the search (default: 2)", "(default:\n                        3)",
                  "default: all of them, e.g. 60,000"):
        assert " ".join(shown.split()) in " ".join(search.split())
