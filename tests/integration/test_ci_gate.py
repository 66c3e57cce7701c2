"""docs/ci.md's CI jobs: the files it shows are the ones in examples/ci/, and the gate script they run
passes a model within budget (exit 0) and fails one over budget (exit 1) on a simulated agent."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import testmodels

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
CI = ROOT / "examples" / "ci"


def test_the_documented_jobs_are_the_example_files() -> None:
    doc = (ROOT / "docs" / "ci.md").read_text()
    for name in ("gate.sh", "github-actions.yml", "gitlab-ci.yml"):
        assert f"```{'bash' if name.endswith('.sh') else 'yaml'}\n{(CI / name).read_text()}```" in doc, name
    for job in ("github-actions.yml", "gitlab-ci.yml"):
        text = (CI / job).read_text()
        assert re.search(r"bash examples/ci/gate\.sh model\.onnx latency_ms=\d+ raspi4", text), job
        assert "reports/hilnas-gate.xml" in text and "--index-url https://download.pytorch.org/whl/cpu" in text


def _gate(tmp_path: Path, model: Path, budget: str, junit: Path) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "HILNAS": str(bin_dir / "hilnas"), "HILNAS_AGENT": str(bin_dir / "hilnas-agent"),
           "HILNAS_WORKSPACE": str(tmp_path / "ws"), "HILNAS_JUNIT": str(junit)}
    return subprocess.run(["bash", str(CI / "gate.sh"), str(model), budget, "raspi4"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)


def test_the_gate_script_passes_within_budget_and_fails_over_it(tmp_path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(testmodels.conv_net(channels=8, size=16))
    ok = _gate(tmp_path, model, "latency_ms=1000", tmp_path / "reports" / "ok.xml")
    assert ok.returncode == 0, ok.stderr + ok.stdout
    assert "latency_ms <= 1000 ms: met" in ok.stdout
    suite = ET.parse(tmp_path / "reports" / "ok.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("1", "0")

    over = _gate(tmp_path, model, "latency_ms=0.0001", tmp_path / "reports" / "over.xml")
    assert over.returncode == 1, over.stderr + over.stdout
    assert "OVER BUDGET" in over.stdout
    suite = ET.parse(tmp_path / "reports" / "over.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("1", "1")
    leftover = subprocess.run(["pgrep", "-f", f"cache-dir {tmp_path}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""  # the script stopped its agent
