"""``hilnas search hypernet --anchor``: the flag reaches the search config; a bad value, or "pinned" without phase 1,
is refused before anything runs."""
from __future__ import annotations

import pytest

import hilnas.searchers.hypernet as hypernet
from hilnas.server.cli import main


def test_anchor_reaches_the_config_and_a_bad_value_is_refused(tmp_path, capsys, monkeypatch):
    argv = ["--workspace", str(tmp_path / "ws"), "search", "hypernet", "--device", "pi"]
    # "pinned" without phase 1 (the real config): one line that names the fix, nothing run
    assert main([*argv, "--anchor", "pinned"]) != 0
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
    assert seen["anchor"] == "none"   # the default: no anchor
    with pytest.raises(SystemExit) as bad:
        main([*argv, "--anchor", "learned"])
    assert bad.value.code == 2 and "choose from 'none', 'pinned'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as shown:
        main(["search", "hypernet", "--help"])
    assert shown.value.code == 0 and "--anchor" in capsys.readouterr().out
