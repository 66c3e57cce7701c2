"""The main job end to end: `hilnas demo --quick` on loopback agents (host + simulated Pi)."""
import json

import pytest

from hilnas.server.cli import main


@pytest.mark.slow
def test_demo_runs_end_to_end(capsys, tmp_path):
    code = main(["--workspace", str(tmp_path / "ws"), "demo", "--quick", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out[out.index("{"):])
    assert set(data["devices"]) == {"local", "raspi4-sim"}
    for key, dev in data["devices"].items():
        assert dev["lut"]["measured"] == dev["lut"]["requested"] > 0
        v = dev["validation"]
        assert v["measured_ms"] > 0 and v["predicted_ms"] > 0
    assert data["devices"]["raspi4-sim"]["info"]["simulated"]
    assert (tmp_path / "ws" / "hilnas.db").exists()
