"""The ``hilnas`` CLI against real agents on loopback: happy paths and bad input."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loopback import start_agent
from hilnas.server.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(tmp_path):
    running = start_agent(tmp_path / "agent", simulate="raspi4")
    yield running
    running.stop(0)


def run(capsys, ws, *argv):
    code = main(["--workspace", str(ws), "--retries", "1", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_is_fast_and_teaches():
    out = subprocess.run([sys.executable, "-m", "hilnas.server.cli", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "lut build" in out.stdout and "workspace" in out.stdout
    agent = subprocess.run([sys.executable, "-m", "hilnas.agent.cli", "serve", "--help"], capture_output=True,
                           text=True, timeout=60)
    assert agent.returncode == 0 and "--token-file" in agent.stdout and "--simulate" in agent.stdout


def test_devices_lut_validate_round_trip(tmp_path, capsys, sim):
    ws = tmp_path / "ws"
    code, out, _ = run(capsys, ws, "devices", "add", "pi", "--address", f"127.0.0.1:{sim.port}")
    assert code == 0 and "added device pi" in out
    code, out, _ = run(capsys, ws, "devices", "list", "--json")
    assert json.loads(out)[0]["key"] == "pi"
    code, out, _ = run(capsys, ws, "devices", "describe", "pi")
    assert code == 0 and "simulated raspi4" in out and "fingerprint" in out

    code, out, _ = run(capsys, ws, "lut", "build", "--device", "pi", "--space", "nb201", "--quiet", "--json",
                       "--min-runs", "5", "--min-seconds", "0.01", "--warmup", "1")
    assert code == 0, out
    report = json.loads(out)
    assert report["measured"] == report["requested"] > 10 and not report["failed"]
    code, out, _ = run(capsys, ws, "lut", "build", "--device", "pi", "--space", "nb201", "--quiet", "--json",
                       "--min-runs", "5", "--min-seconds", "0.01", "--warmup", "1")
    assert json.loads(out)["measured"] == 0  # resumable: nothing left to do

    code, out, _ = run(capsys, ws, "lut", "list", "--json")
    assert json.loads(out)[0]["measured"] == report["requested"]
    csv_path = tmp_path / "pi.csv"
    code, out, _ = run(capsys, ws, "lut", "export", "--device", "pi", str(csv_path))
    assert code == 0 and csv_path.exists()

    from hilnas.searchers.genotype import NB201Genotype
    from hilnas.searchers.spaces import create_space
    from hilnas.server import model_meta

    model = tmp_path / "net.onnx"
    model.write_bytes(model_meta.export_network(create_space("nb201"), NB201Genotype.from_index(1234)))
    code, out, _ = run(capsys, ws, "validate", str(model), "--device", "pi", "--json", "--min-runs", "5",
                       "--min-seconds", "0.01")
    v = json.loads(out)
    assert code == 0 and v["measured_ms"] > 0 and v["predicted_ms"] > 0 and v["simulated"]
    assert abs(v["error_pct"]) < 50

    # A LUT made under another runtime version never mixes in silently.
    rows = list(csv.DictReader(csv_path.open()))
    for r in rows:
        r["runtime_version"] = "simulated raspi4 (older)"
    other = tmp_path / "older.csv"
    with other.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    code, out, err = run(capsys, ws, "lut", "import", str(other), "--device", "pi")
    assert code == 0, err
    code, out, err = run(capsys, ws, "lut", "export", "--device", "pi", str(tmp_path / "again.csv"))
    assert code == 2 and "never mixed" in err and "runtime_version" in err and len(err.strip().splitlines()) > 1


def test_bad_fleet_input_is_one_clear_line(tmp_path, capsys):
    ws = tmp_path / "ws"
    code, _, err = run(capsys, ws, "devices", "add", "pi", "--address", "192.0.2.1")
    assert code == 2 and err.startswith("hilnas: error:") and "port" in err
    code, _, err = run(capsys, ws, "devices", "add", "pi", "--address", "192.0.2.1:50061")
    assert code == 2 and "token" in err
    code, _, err = run(capsys, ws, "devices", "add", "pi", "--address", "192.0.2.1:50061", "--token-file",
                       str(tmp_path / "missing.token"))
    assert code == 2 and "missing.token" in err
    assert not (ws / "fleet.toml").exists()  # nothing written on a refused add
    code, _, err = run(capsys, ws, "devices", "describe", "nosuch")
    assert code == 2 and "unknown device" in err


def test_corrupted_workspace_db_is_refused_and_untouched(tmp_path, capsys):
    ws = tmp_path / "ws"
    ws.mkdir()
    db = ws / "hilnas.db"
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    code, _, err = run(capsys, ws, "lut", "list")
    assert code == 2 and "hilnas.db" in err and len(err.strip().splitlines()) == 1
    assert db.read_bytes() == before


def test_unreachable_agent_is_a_clear_error(tmp_path, capsys):
    ws = tmp_path / "ws"
    run(capsys, ws, "devices", "add", "gone", "--address", "127.0.0.1:9")
    code, out, err = run(capsys, ws, "lut", "build", "--device", "gone", "--space", "nb201", "--quiet")
    assert code == 2 and "no agent of device 'gone' answers" in err


def test_tflite_lut_without_the_converter_says_which_extra(tmp_path, capsys):
    pytest.importorskip("onnx")
    try:
        import litert_torch  # noqa: F401
        pytest.skip("the converter is installed here; this test is about its absence")
    except ImportError:
        pass
    host = start_agent(tmp_path / "agent")
    try:
        ws = tmp_path / "ws"
        run(capsys, ws, "devices", "add", "me", "--address", f"127.0.0.1:{host.port}")
        code, _, err = run(capsys, ws, "lut", "build", "--device", "me", "--space", "nb201", "--format", "tflite",
                           "--quiet")
        assert code == 2 and "litert" in err.lower()
    finally:
        host.stop(0)


def test_fidelity_reports_nn_meter_metrics_and_stores_the_correction(tmp_path, capsys, sim):
    ws = tmp_path / "ws"
    run(capsys, ws, "devices", "add", "pi", "--address", f"127.0.0.1:{sim.port}")
    quick = ("--min-runs", "5", "--min-seconds", "0.01", "--warmup", "1")
    code, _, err = run(capsys, ws, "lut", "build", "--device", "pi", "--space", "nb201", "--quiet", *quick)
    assert code == 0, err
    code, out, err = run(capsys, ws, "fidelity", "--device", "pi", "--space", "nb201", "--networks", "8", "--quiet",
                         "--json", "--agreement", "1", *quick)
    assert code == 0, err
    rep = json.loads(out)
    assert rep["raw"]["n"] == 8 and 0 <= rep["corrected"]["within_10pct"] <= 1 and rep["corrected"]["rmspe"] > 0
    assert all(len(n["rounds_ms"]) == 3 for n in rep["networks"])   # every pair of rounds agrees within 100 %
    assert rep["correction"]["statistic"] == "median"
    for n in rep["networks"]:   # the default statistic: the median round of the windows' medians
        assert n["rounds_ms"] == n["rounds_median_ms"]
        assert n["measured_ms"] == pytest.approx(sorted(n["rounds_ms"])[1])
    # --statistic min: the fastest run; rounds that disagree are measured again, up to --max-repeats.
    code, out, err = run(capsys, ws, "fidelity", "--device", "pi", "--space", "nb201", "--networks", "6", "--quiet",
                         "--json", "--agreement", "0", "--max-repeats", "5", "--statistic", "min", *quick)
    assert code == 0, err
    rep = json.loads(out)
    assert rep["correction"]["statistic"] == "min"
    for n in rep["networks"]:
        r = sorted(n["rounds_ms"])
        assert len(r) == (3 if r[0] == r[1] else 5)
        assert n["rounds_ms"] == n["rounds_min_ms"] and n["measured_ms"] == r[0]
        assert all(f <= m for f, m in zip(n["rounds_min_ms"], n["rounds_median_ms"]))
    assert any(len(n["rounds_ms"]) == 5 for n in rep["networks"])
    # validate now predicts with the correction of the latest fidelity run
    from hilnas.searchers.genotype import NB201Genotype
    from hilnas.searchers.spaces import create_space
    from hilnas.server import model_meta

    model = tmp_path / "net.onnx"
    model.write_bytes(model_meta.export_network(create_space("nb201"), NB201Genotype.from_index(77)))
    code, out, _ = run(capsys, ws, "validate", str(model), "--device", "pi", "--json", *quick)
    v = json.loads(out)
    assert v["correction"]["fitted_on"] == 6 and v["predicted_ms"] != v["lut_sum_ms"]
    assert v["correction"]["statistic"] == "min"   # validate follows the correction's statistic


@pytest.mark.parametrize("extra", [[], ["--simulate", "raspi4"], ["--backend", "tflite"]])
def test_agent_selftest_measures_a_built_in_model(capsys, extra):
    from hilnas.agent.cli import main as agent_main

    code = agent_main(["selftest", "--min-runs", "5", "--min-seconds", "0.01", *extra])
    out = capsys.readouterr().out
    # A measurement was made and reported; on a busy shared host the agent may rightly call it UNSTABLE.
    assert code == 0 and re.match(r"selftest (OK|UNSTABLE): \S+ .* median \d+\.\d+ ms", out), out
    assert agent_main(["selftest", "--simulate", "no-such-board"]) == 2
    assert "available: " in capsys.readouterr().err


@pytest.mark.slow
def test_search_hypernet_trains_once_and_from_run_derives_again(tmp_path, capsys, sim):
    ws = tmp_path / "ws"
    run(capsys, ws, "devices", "add", "pi", "--address", f"127.0.0.1:{sim.port}")
    quick = ("--min-runs", "5", "--min-seconds", "0.01", "--warmup", "1")
    shape = ("--space", "nb201", "--dataset", "demo", "--space-opt", "C=4", "--space-opt", "N=1")
    code, _, err = run(capsys, ws, "lut", "build", "--device", "pi", "--quiet", *shape, *quick)
    assert code == 0, err
    code, out, err = run(capsys, ws, "search", "hypernet", "--device", "pi", *shape, "--search-epochs", "1",
                         "--max-batches", "6", "--grid", "3", "--train-size", "200", "--weight-lambda", "uniform",
                         "--Lambda", "0.5", "--json", *quick)
    assert code == 0, err
    first = json.loads(out)
    assert len(first["members"]) == 3 and first["trained_dir"]
    trained = json.loads((Path(first["trained_dir"]) / "trained.json").read_text())
    assert trained["config"]["weight_lambda"] == "uniform"    # the flags reached the search
    assert trained["config"]["Lambda"] == 0.5 and first["Lambda"] == 0.5
    scales = ",".join(repr(m["scale"]) for m in first["members"])
    code, out, err = run(capsys, ws, "search", "hypernet", "--device", "pi", "--from-run", str(first["run_id"]),
                         "--lambdas", scales, "--json", *quick)
    assert code == 0, err
    again = json.loads(out)
    assert again["from_run"] == first["run_id"] and again["Lambda"] == first["Lambda"]
    assert [m["genotype"] for m in again["members"]] == [m["genotype"] for m in first["members"]]
    code, _, err = run(capsys, ws, "search", "hypernet", "--device", "pi", "--from-run", "999", *quick)
    assert code == 2 and "unknown run id 999" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as bad:   # a bad --weight-lambda is refused before anything runs
        run(capsys, ws, "search", "hypernet", "--device", "pi", "--weight-lambda", "half")
    assert bad.value.code == 2 and "choose from 'auto', 'drawn', 'zero', 'uniform'" in capsys.readouterr().err
    for value in ("0", "-1", "nan", "theorem"):   # a bad --Lambda too, with the three accepted forms named
        with pytest.raises(SystemExit) as bad:
            run(capsys, ws, "search", "hypernet", "--device", "pi", "--Lambda", value)
        assert bad.value.code == 2 and "expected 'sweep', 'auto' or a positive number" in capsys.readouterr().err
    # `hilnas runs` lists them, so a user can find the id for --from-run
    code, out, _ = run(capsys, ws, "runs", "--kind", "hypernet", "--json")
    runs = json.loads(out)
    assert code == 0 and [r["id"] for r in runs] == [first["run_id"], again["run_id"]]
    assert "trained hypernetwork saved" in runs[0]["summary"] and f"derived from run {first['run_id']}" in runs[1]["summary"]
    code, out, _ = run(capsys, ws, "runs")
    assert code == 0 and f"{first['run_id']:>5}  hypernet" in out
    code, _, err = run(capsys, tmp_path / "nowhere", "runs")   # listing never creates a workspace
    assert code == 2 and "no hilnas store" in err and not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_search_dca_prints_repair_and_the_fresh_measurement_and_refuses_bad_input(tmp_path, capsys, sim):
    ws = tmp_path / "ws"
    run(capsys, ws, "devices", "add", "pi", "--address", f"127.0.0.1:{sim.port}")
    quick = ("--min-runs", "5", "--min-seconds", "0.01", "--warmup", "1")
    shape = ("--space", "nb201", "--dataset", "demo", "--space-opt", "C=4", "--space-opt", "N=1")
    code, _, err = run(capsys, ws, "lut", "build", "--device", "pi", "--quiet", *shape, *quick)
    assert code == 0, err
    small = ("--search-epochs", "1", "--train-epochs", "1", "--max-batches", "3", "--train-size", "200", *quick)
    # the budget's range: below the cheapest and above the dearest network, each one line naming the range
    for budget, side in (("latency_ms=0.001", "below the cheapest"), ("latency_ms=100000", "above the dearest")):
        code, _, err = run(capsys, ws, "search", "dca", "--device", "pi", *shape, "--budget", budget, *small)
        errors = [line for line in err.splitlines() if line.startswith("hilnas: error:")]
        assert code == 2 and len(errors) == 1 and side in errors[0] and " to " in errors[0], err
    code, _, err = run(capsys, ws, "search", "dca", "--device", "pi", *shape, "--budget", "latency_ms=1",
                       "--seeds", "0", *small)
    assert code == 2 and "--seeds 1" in err and len(err.strip().splitlines()) == 1
    for flag, value, fix in (("--device-decisions", "-1", "--device-decisions 25"),
                             ("--device-margin", "-0.1", "--device-margin 0.02"),
                             ("--device-repeats", "0", "--device-repeats 3"),
                             ("--ratio-tolerance", "1", "--ratio-tolerance 0.1")):
        code, _, err = run(capsys, ws, "search", "dca", "--device", "pi", *shape, "--budget", "latency_ms=1",
                           flag, value, *small)
        assert code == 2 and fix in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, ws, "runs", "--json")
    assert [r["status"] for r in json.loads(out)] == ["failed", "failed"]  # --seeds 0 and the rest started nothing
    code, out, err = run(capsys, ws, "lut", "list", "--json")
    assert code == 0 and json.loads(out)[0]["measured"] > 0   # the LUT is intact
    from hilnas.searchers.cost import extremes
    from hilnas.searchers.spaces import create_space
    from hilnas.server.search.common import cost_model_for
    from hilnas.server.store import Store
    with Store.open(ws) as store:
        model, _ = cost_model_for(store, "pi", "latency_ms")
        ex = extremes(create_space("nb201", C=4, N=1, in_channels=1, input_size=28, num_classes=10), model)
    budget = ex.cheapest_cost + 0.5 * (ex.dearest_cost - ex.cheapest_cost)
    code, out, err = run(capsys, ws, "search", "dca", "--device", "pi", *shape, "--budget", f"latency_ms={budget}",
                         "--select", "perturbation", *small)
    assert code in (0, 1), err
    assert "repaired: " in out and "constrained: plain LUT sum" in out and "of the budget)" in out
    assert "(--select perturbation): " in out and " op(s) scored" in out   # the choice reached the decisions
