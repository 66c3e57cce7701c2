"""``hilnas search hypernet --anchor``: the flag reaches the search config; a bad value, or "pinned" with phase 1 off,
is refused before anything runs."""
from __future__ import annotations

import pytest

import hilnas.searchers.hypernet as hypernet
from hilnas.server.cli import main


def test_anchor_reaches_the_config_and_a_bad_value_is_refused(tmp_path, capsys, monkeypatch):
    argv = ["--workspace", str(tmp_path / "ws"), "search", "hypernet", "--device", "pi"]
    # "pinned" with phase 1 off (the real config): one line that names the fix, nothing run
    assert main([*argv, "--anchor", "pinned", "--phase1", "none"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set phase1='dearest'" in err[0]
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").rglob("*.db"))
    seen = {}

    def config(**kw):
        seen.update(kw)
        raise ValueError("stop here")   # the flag is in the config the search would run with; nothing more needed

    monkeypatch.setattr(hypernet, "HypernetConfig", config)
    assert main([*argv, "--anchor", "pinned", "--phase1", "dearest"]) != 0
    assert "stop here" in capsys.readouterr().err
    assert seen["anchor"] == "pinned" and seen["phase1"] == "dearest"
    seen.clear()
    assert main(argv) != 0
    assert seen["anchor"] == "auto"   # the default: the space's setting (``hypernet.defaults``)


@pytest.mark.parametrize("flag, bad, choices", [("--anchor", "learned", "'auto', 'none', 'pinned'"),
                                                ("--phase1", "all-on", "'auto', 'none', 'dearest'")])
def test_a_bad_choice_is_refused_by_the_parser_and_the_flag_is_in_help(tmp_path, capsys, flag, bad, choices):
    with pytest.raises(SystemExit) as refused:
        main(["--workspace", str(tmp_path / "ws"), "search", "hypernet", "--device", "pi", flag, bad])
    assert refused.value.code == 2 and f"choose from {choices}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as shown:
        main(["search", "hypernet", "--help"])
    assert shown.value.code == 0 and flag in capsys.readouterr().out
