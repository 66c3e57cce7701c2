"""``hilnas search hypernet --phase1``: the flag reaches the search config; a bad value is refused before anything runs."""
from __future__ import annotations

import hilnas.searchers.hypernet as hypernet
from hilnas.server.cli import main


def test_phase1_reaches_the_config_and_a_bad_value_is_refused(tmp_path, capsys, monkeypatch):
    seen = {}

    def config(**kw):
        seen.update(kw)
        raise ValueError("stop here")   # the flag is in the config the search would run with; nothing more needed

    monkeypatch.setattr(hypernet, "HypernetConfig", config)
    argv = ["--workspace", str(tmp_path / "ws"), "search", "hypernet", "--device", "pi"]
    assert main([*argv, "--phase1", "dearest", "--weight-lambda", "sandwich"]) != 0
    assert "stop here" in capsys.readouterr().err
    assert seen["phase1"] == "dearest" and seen["weight_lambda"] == "sandwich"
    seen.clear()
    assert main(argv) != 0
    assert seen["phase1"] == "auto"   # the default: the space's setting (``hypernet.defaults``)
    # a bad --phase1 and the flag in --help: test_hypernet_cli_anchor.py, with --anchor
