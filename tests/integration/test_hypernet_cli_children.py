"""``hilnas search hypernet --weight-lambda sandwich-children``: the choice reaches the search config; the parser
names it among the choices when a bad value is refused."""
from __future__ import annotations

import pytest

import hilnas.searchers.hypernet as hypernet
from hilnas.server.cli import main


def test_sandwich_children_reaches_the_config_and_a_bad_value_names_it(tmp_path, capsys, monkeypatch):
    seen = {}

    def config(**kw):
        seen.update(kw)
        raise ValueError("stop here")

    monkeypatch.setattr(hypernet, "HypernetConfig", config)
    argv = ["--workspace", str(tmp_path / "ws"), "search", "hypernet", "--device", "pi"]
    assert main([*argv, "--weight-lambda", "sandwich-children"]) != 0
    assert "stop here" in capsys.readouterr().err and seen["weight_lambda"] == "sandwich-children"
    with pytest.raises(SystemExit) as bad:
        main([*argv, "--weight-lambda", "children"])
    assert bad.value.code == 2 and "'sandwich-children'" in capsys.readouterr().err


def test_the_cli_offers_exactly_the_configs_weight_rules():
    from hilnas.searchers.hypernet.search import DERIVATIONS, WEIGHT_LAMBDAS
    from hilnas.server.cli.search import hypernet as cli

    assert cli.WEIGHT_LAMBDAS == WEIGHT_LAMBDAS and cli.DERIVATIONS == DERIVATIONS
