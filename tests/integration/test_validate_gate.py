"""The CI gate: ``hilnas validate MODEL --device D --budget ... [--junit FILE]`` against a simulated agent.

Exit 0 when every budget's upper 95 % bound is within it, 1 when one is over, 2 for bad input
(before anything is measured); the JUnit file carries one case per budget. Any ONNX model works.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

import testmodels
from hilnas.server.cli import main
from hilnas.server.store import Store
from loopback import client_for

pytestmark = pytest.mark.integration


@pytest.fixture
def gate(tmp_path, sim_agent):
    """(workspace, hilnas-exported model, plain ONNX model): a fleet with the simulated Pi as ``pi``."""
    from hilnas.searchers.genotype import NB201Genotype
    from hilnas.server import model_meta

    ws = tmp_path / "ws"
    assert main(["--workspace", str(ws), "devices", "add", "pi", "--address", f"127.0.0.1:{sim_agent.port}"]) == 0
    ours = tmp_path / "net.onnx"
    ours.write_bytes(model_meta.export_network(testmodels.tiny_space("nb201"), NB201Genotype.from_index(1234)))
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(testmodels.conv_net(channels=8, size=16))
    return ws, ours, plain


def validate(capsys, ws, model, *args):
    code = main(["--workspace", str(ws), "--retries", "1", "validate", str(model), "--device", "pi", "--json",
                 "--warmup", "2", "--min-runs", "10", "--min-seconds", "0.02", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip().startswith("{") else None), err


def test_exit_codes_follow_the_upper_confidence_bound_and_junit_reports_each_budget(gate, capsys, tmp_path) -> None:
    ws, ours, _ = gate
    code, first, _ = validate(capsys, ws, ours)  # no budget: measured is enough
    assert code == 0 and first["measured_ms"] > 0 and first["checks"] == [], _
    lo, hi = first["measured_ci95_ms"]

    junit = tmp_path / "reports" / "gate.xml"  # the folder is created
    code, v, _ = validate(capsys, ws, ours, "--budget", f"latency_ms={10 * hi:.6g}", "--budget", "params_m=100",
                          "--junit", str(junit))
    assert code == 0 and v["passed"] and [c["met"] for c in v["checks"]] == [True, True]
    latency = v["checks"][0]
    assert latency["upper"] == v["measured_ci95_ms"][1] and latency["measured"] == v["measured_ms"]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "0")
    names = [c.get("name") for c in suite.iter("testcase")]
    assert names == [f"net.onnx latency_ms <= {10 * hi:.6g}", "net.onnx params_m <= 100"]

    tight = lo / 2
    code, v, _ = validate(capsys, ws, ours, "--budget", f"latency_ms={tight:.6g}", "--budget", "params_m=100",
                          "--junit", str(junit))
    assert code == 1 and not v["passed"] and [c["met"] for c in v["checks"]] == [False, True]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    failure = next(c for c in suite.iter("testcase") if c.find("failure") is not None).find("failure")
    assert "OVER BUDGET" in failure.get("message") and failure.get("type") == "OverBudget"
    assert "measured" in failure.text  # the measurement's summary travels with it


def test_any_onnx_model_energy_and_flops_budgets(gate, capsys, tmp_path) -> None:
    ws, ours, plain = gate
    code, v, _ = validate(capsys, ws, plain, "--budget", "latency_ms=1000", "--budget", "energy_mj=1000")
    assert code == 0, v
    assert v["predicted_ms"] is None and "no hilnas space/genotype metadata" in v["note"]
    assert v["measured_energy_mj"] > 0 and v["checks"][1]["upper"] == v["energy_ci95_mj"][1]
    assert v["params_m"] > 0 and v["mflops"] is None

    junit = tmp_path / "flops.xml"
    code, v, _ = validate(capsys, ws, plain, "--budget", "mflops=10", "--junit", str(junit))
    assert code == 1 and v["checks"][0]["met"] is None  # FLOPs of a foreign model are not known: not passed
    case = ET.parse(junit).getroot().find("testsuite").find("testcase")
    assert case.find("error").get("type") == "NotMeasured"
    code, v, _ = validate(capsys, ws, ours, "--budget", "mflops=1000")
    assert code == 0 and v["mflops"] > 0


def test_bad_input_is_refused_before_measuring_and_loses_nothing(gate, capsys, tmp_path, sim_agent) -> None:
    ws, ours, _ = gate
    with Store.open(ws) as store:
        before = len(store.validations_df())
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    for args, why in ((["--junit", str(blocker / "gate.xml")], "cannot write the JUnit report to"),
                      (["--budget", "latency=5"], "unknown metric 'latency'"),
                      (["--budget", "latency_ms=-1"], "must be a positive finite number")):
        code, _, err = validate(capsys, ws, ours, *args)
        assert code == 2 and why in err and err.count("\n") == 1, err
    code, _, err = validate(capsys, ws, tmp_path / "missing.onnx")
    assert code == 2 and "no model file" in err
    with Store.open(ws) as store:
        assert len(store.validations_df()) == before  # nothing measured, nothing recorded
    assert client_for(sim_agent).describe().simulated  # the agent still answers
