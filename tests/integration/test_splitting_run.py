"""``hilnas search splitting`` end to end on loopback agents (simulated Pi, local host): LUT of the width grid ->
growth -> every checkpoint exported, measured and stored; resume; the bad inputs of issue 10."""
from __future__ import annotations

import dataclasses
import json

import onnx
import pytest

from loopback import FAST, build_lut, client_for
from splitting_helpers import TINY_OVERRIDES, tiny_data, tiny_space
from hilnas.searchers.cost import MissingOpsError
from hilnas.searchers.op_key import enumerate_op_keys
from hilnas.searchers.result import Budget, InfeasibleBudgetError
from hilnas.searchers.spaces import MobileNetWidths
from hilnas.searchers.splitting import CheckpointError, GrowConfig
from hilnas.server import model_meta
from hilnas.server.cli import main
from hilnas.server.search.splitting import SplittingRunConfig, run_splitting
from hilnas.server.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]
SPACE = tiny_space()
QUICK = GrowConfig(steps=2, seed_epochs=1, step_epochs=1, max_batches_per_epoch=4)


@pytest.fixture
def pi(tmp_path, sim_agent):
    """(store, client): a store with the simulated Pi's LUT of the tiny backbone's width grid."""
    client = client_for(sim_agent)
    store = Store.open(tmp_path / "ws")
    build_lut(store, client, SPACE)
    yield store, client
    store.close()


def config(budget="latency_ms=0.2", **kw):
    kw = {"space_overrides": TINY_OVERRIDES, "dataset": tiny_data(), "grow": QUICK, "measure": FAST, **kw}
    return SplittingRunConfig(budget=Budget.parse(budget), **kw)


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_grows_measures_every_checkpoint_and_records_it(pi, tmp_path):
    store, client = pi
    report = run_splitting(store, "pi", [client], config(out_dir=str(tmp_path / "out")))
    names = [c["name"] for c in report.checkpoints]
    assert names == ["Splitting-0", "Splitting-1", "Splitting-2"]
    run = store.get_run(report.run_id)
    assert run.kind == "splitting" and run.status == "done" and run.config["checkpoint_dir"] == report.checkpoint_dir
    models = store.models_df(report.run_id)
    assert list(models["name"]) == [f"run{report.run_id}-{n}" for n in names]
    for c in report.checkpoints:
        assert c["measured"]["latency_ms"] > 0 and c["predicted"]["latency_ms"] > 0 and 0 <= c["test_acc"] <= 1
        assert c["measured"]["energy_mj"] > 0  # the simulated Pi has a meter: energy is measured too
        val = store.validations_df(model_id=c["model_id"])
        assert val.iloc[0]["measured_ms"] == pytest.approx(c["measured"]["latency_ms"])
        assert val.iloc[0]["predicted_ms"] == pytest.approx(c["predicted"]["latency_ms"])
        space, widths = model_meta.read(onnx.load(c["onnx_path"]).SerializeToString())
        assert space == SPACE and widths == MobileNetWidths(tuple(c["widths"]))
    assert any("no LUT energy prediction" in n for n in report.notes)  # its LUT was built without --energy
    widths = [sum(c["widths"]) for c in report.checkpoints]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    for path in (report.csv_path, report.json_path, report.plot_path):
        assert (tmp_path / "out" / path.rsplit("/", 1)[-1]).is_file()


def test_a_killed_run_resumes_from_its_last_checkpoint(pi, tmp_path, monkeypatch):
    store, client = pi
    import hilnas.searchers.splitting.grow as grow_mod
    real, calls = grow_mod.train_phase, []

    def killed_in_the_third_phase(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(grow_mod, "train_phase", killed_in_the_third_phase)
    with pytest.raises(KeyboardInterrupt):
        run_splitting(store, "pi", [client], config(out_dir=str(tmp_path / "first")))
    first = store.runs_df().iloc[-1]
    assert first["status"] == "failed"
    monkeypatch.setattr(grow_mod, "train_phase", real)
    report = run_splitting(store, "pi", [client], config(budget="latency_ms=99", resume_run=int(first["id"]),
                                                         out_dir=str(tmp_path / "second")))
    assert report.resumed_run == first["id"] and str(report.budget) == "latency_ms=0.2"  # run N's settings
    assert [c["name"] for c in report.checkpoints] == ["Splitting-0", "Splitting-1", "Splitting-2"]
    assert [c["status"] for c in report.checkpoints][:2] == ["earlier run"] * 2
    assert list(store.models_df(report.run_id)["name"]) == [f"run{report.run_id}-Splitting-2"]
    assert store.get_run(report.run_id).parent_id == first["id"]


def test_resuming_a_damaged_checkpoint_folder_is_refused_and_changes_nothing(pi, tmp_path):
    store, client = pi
    report = run_splitting(store, "pi", [client], config(grow=dataclasses.replace(QUICK, steps=1),
                                                         out_dir=str(tmp_path / "out")))
    folder = tmp_path / "out" / "checkpoints"
    weights = folder / "splitting-1" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-100])
    before, runs = _snapshot(folder), len(store.runs_df())
    with pytest.raises(CheckpointError, match="splitting-1 is damaged.*nothing was changed"):
        run_splitting(store, "pi", [client], config(resume_run=report.run_id))
    assert _snapshot(folder) == before and len(store.runs_df()) == runs


def test_a_budget_below_the_seed_network_is_refused_with_its_measured_cost(pi):
    store, client = pi
    with pytest.raises(InfeasibleBudgetError, match=r"below the seed network's measured cost on 'pi': [0-9.]+ ms") \
            as err:
        run_splitting(store, "pi", [client], config(budget="latency_ms=0.001"))
    assert err.value.cheapest_cost > 0.001 and err.value.cheapest_genotype == SPACE.widths_at(0.3)
    assert store.runs_df().empty  # refused before a run was recorded


def test_a_dataset_shape_without_lut_rows_names_the_keys_and_the_command(pi):
    store, client = pi
    data = dataclasses.replace(tiny_data(), synthetic_shape=(1, 16, 16))
    with pytest.raises(MissingOpsError) as err:
        run_splitting(store, "pi", [client], config(dataset=data))
    text = str(err.value)
    assert "mobilenet_stem|cin=1|cout=2|h=16|w=16|s=1" in err.value.keys and "input 1x16x16" in text
    assert ("hilnas lut build --device pi --space mobilenet --space-opt in_channels=1 --space-opt input_size=16 "
            "--space-opt num_classes=4 --space-opt base_widths=8,16,16 --space-opt strides=1,2,1") in text
    assert store.runs_df().empty


def test_an_energy_budget_on_a_device_without_a_meter(tmp_path, host_agent):
    client = client_for(host_agent)
    with Store.open(tmp_path / "ws") as store:
        build_lut(store, client, SPACE, device_key="host")
        meters = [m for m in client.describe().energy_meters if m.available and m.kind != "none"]
        if meters:
            pytest.skip(f"this host has an energy meter ({meters[0].name})")
        with pytest.raises(ValueError, match=r"has no energy meter \(meters: none.*--energy`.*--energy-estimate-w"):
            run_splitting(store, "host", [client], config(budget="energy_mj=100"))
        assert store.runs_df().empty
        report = run_splitting(store, "host", [client], config(budget="energy_mj=100", energy_estimate_w=5.0,
                                                               grow=dataclasses.replace(QUICK, steps=0)))
        ck = report.checkpoints[0]
        assert ck["measured"]["energy_mj"] == pytest.approx(5.0 * ck["measured"]["latency_ms"])
        assert ck["predicted"]["energy_mj"] == pytest.approx(5.0 * ck["predicted"]["latency_ms"])
        assert any("ESTIMATED" in n for n in report.notes)


@pytest.mark.slow
def test_an_energy_budget_on_the_simulated_pi_uses_its_measured_energy(tmp_path, sim_agent):
    client = client_for(sim_agent)
    energy = dataclasses.replace(FAST, energy=True)
    with Store.open(tmp_path / "ws") as store:
        from hilnas.searchers.op_key import decode, export_op_onnx
        from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
        LutBuilder(store, "pi", [client], LutBuildConfig(measure=energy)).build(
            [k.encode() for k in enumerate_op_keys(SPACE)], lambda k: export_op_onnx(decode(k)))
        report = run_splitting(store, "pi", [client], config(budget="energy_mj=50", measure=energy,
                                                             grow=dataclasses.replace(QUICK, steps=1)))
    for ck in report.checkpoints:
        assert ck["measured"]["energy_mj"] > 0 and ck["predicted"]["energy_mj"] > 0
    assert not any("ESTIMATED" in n for n in report.notes)


def test_the_cli_builds_the_grid_lut_searches_lists_and_resumes(tmp_path, capsys, sim_agent):
    ws = tmp_path / "ws"

    def run(*argv):
        code = main(["--workspace", str(ws), "--retries", "1", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    quick = ("--min-runs", "5", "--min-seconds", "0.01", "--warmup", "1")
    shape = ("--space-opt", "in_channels=1", "--space-opt", "input_size=16", "--space-opt", "num_classes=4",
             "--space-opt", "base_widths=8,16,16", "--space-opt", "strides=1,2,1")
    assert run("devices", "add", "pi", "--address", f"127.0.0.1:{sim_agent.port}")[0] == 0
    code, out, err = run("lut", "build", "--device", "pi", "--space", "mobilenet", *shape, "--quiet", "--json", *quick)
    assert code == 0, err
    assert json.loads(out)["requested"] == len(enumerate_op_keys(tiny_space(input_size=16)))  # the synthetic data's 16x16
    search = ("search", "splitting", "--device", "pi", "--dataset", "synthetic", "--space-opt", "base_widths=8,16,16",
              "--space-opt", "strides=1,2,1", "--seed-epochs", "1", "--step-epochs", "1", "--max-batches", "3", *quick)
    code, _, err = run(*search, "--steps", "1")
    assert code == 2 and "give --budget" in err and len(err.strip().splitlines()) == 1
    code, out, err = run(*search, "--budget", "latency_ms=0.2", "--steps", "1", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert [c["name"] for c in first["checkpoints"]] == ["Splitting-0", "Splitting-1"]
    code, out, err = run(*search, "--budget", "latency_ms=0.001")
    error = err.strip().splitlines()[-1]  # after the progress lines: one line that says what to change
    assert code == 2 and error.startswith("hilnas: error: the budget latency_ms=0.001 is below the seed network's "
                                          "measured cost") and "raise --budget or lower --seed-multiplier" in error
    code, out, _ = run("runs", "--kind", "splitting", "--json")
    assert [r["id"] for r in json.loads(out)] == [first["run_id"]]
    assert "method splitting" in json.loads(out)[0]["summary"]
    code, out, err = run("search", "splitting", "--device", "pi", "--resume", str(first["run_id"]), *quick)
    assert code == 0, err
    assert "resumed from run" in out and "Splitting-1" in out  # nothing left: run N's steps were done


# -- method = "splitting" in a run file (hilnas run, the registry of server/run/methods.py) -------------
RUN_FILE = """\
name = "grow"
[space]
name = "mobilenet"
options = { base_widths = [8, 16, 16], strides = [2, 2, 1] }
[data]
dataset = "synthetic"
[search]
methods = ["splitting"]
max_batches = 2
[splitting]
steps = 2
seed_epochs = 1
step_epochs = 1
growth = 1.0
[lut]
warmup = 1
min_runs = 3
min_seconds = 0.0
[measure]
warmup = 1
min_runs = 5
min_seconds = 0.0
[[devices]]
key = "pi"
simulate = "raspi4"
budgets = ["latency_ms=60%", "latency_ms=0.0001"]
"""


def _run(capsys, ws, path, *argv):
    code = main(["--workspace", str(ws), "run", str(path), "--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_run_file_grows_under_each_budget_and_validates_the_last_checkpoint_within_it(tmp_path, capsys,
                                                                                       monkeypatch):
    import hilnas.searchers.splitting.grow as grow_mod

    ws, path = tmp_path / "ws", tmp_path / "grow.toml"
    path.write_text(RUN_FILE)
    real, calls = grow_mod.train_phase, []

    def killed_in_the_second_phase(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(grow_mod, "train_phase", killed_in_the_second_phase)
    code, _, err = _run(capsys, ws, path)  # killed while training Splitting-1
    assert code == 130 and "again to continue" in err
    with Store.open(ws) as store:
        run_id = int(store.runs_df("run")["id"].iloc[-1])
        folder = ws / "runs" / str(run_id) / "pi_splitting_seed0_latency_ms-60pct" / "checkpoints"
        assert [p.name for p in sorted(folder.iterdir())] == ["splitting-0"]  # the seed, trained and saved
    monkeypatch.setattr(grow_mod, "train_phase", real)

    code, out, err = _run(capsys, ws, path, "--json")  # the same command resumes the run
    assert code == 1, err  # the budget no network meets: said, with the cheapest, and no growth spent on it
    result = json.loads(out)
    assert result["run_id"] == run_id
    assert "no network of the mobilenet space meets latency_ms=0.0001 on pi: the cheapest costs" in out
    with Store.open(ws) as store:
        steps = {s.key: s for s in store.steps(run_id)}
        assert not any("0.0001" in k for k in steps)
        grown = steps["pi/splitting/seed0/latency_ms=60%/grow"].result
        names = [c["name"] for c in grown["checkpoints"]]
        assert names[0] == "Splitting-0" and len(names) >= 2  # continued after the seed, not started over
        assert grown["checkpoints"][0]["model_id"] is None  # measured before the kill, not again
        budget = store.get_step(run_id, "pi/budgets").result["budgets"]["latency_ms=60%"]["value"]
        measured = {c["name"]: c["measured"]["latency_ms"] for c in grown["checkpoints"]}
        within = [n for n in names if measured[n] <= budget]
        assert grown["checkpoint"] == within[-1]  # the last checkpoint the device measured within the budget
        validated = steps["pi/splitting/seed0/latency_ms=60%/validate"].result
        assert validated["method"] == "splitting" and validated["genotype"]["widths"] == \
            next(c["widths"] for c in grown["checkpoints"] if c["name"] == grown["checkpoint"])
        assert validated["measured_ms"] > 0 and validated["test_acc"] == grown["test_acc"]
        chosen = next(c for c in grown["checkpoints"] if c["name"] == grown["checkpoint"])
        # validation predicts it from the grid LUT, interpolated between grid widths as the search did
        assert validated["lut_sum_ms"] == pytest.approx(chosen["predicted"]["latency_ms"])
        assert validated["onnx_path"].endswith(f"{grown['checkpoint'].lower()}.onnx")
        models = store.models_df(run_id)
        assert f"run{run_id}/pi/splitting/seed0/latency_ms=60%" in set(models["name"])  # the validated network
        assert all(c["model_id"] in set(models["id"]) for c in grown["checkpoints"][1:])  # every new checkpoint


def test_a_run_file_gives_splitting_the_mobilenet_space_and_its_options(tmp_path) -> None:
    from hilnas.server.run.file import RunFileError, load_run_file

    path = tmp_path / "grow.toml"
    path.write_text(RUN_FILE)
    config = load_run_file(path)
    assert config.methods == ("splitting",) and config.space == "mobilenet"
    assert config.space_options == {"base_widths": (8, 16, 16), "strides": (2, 2, 1)}
    assert config.method_options["splitting"] == {"steps": 2, "seed_epochs": 1, "step_epochs": 1, "growth": 1.0}
    path.write_text(RUN_FILE.replace('name = "mobilenet"', 'name = "nb201"').replace(
        "options = { base_widths = [8, 16, 16], strides = [2, 2, 1] }", "").replace("growth = 1.0", "selection = 1"))
    with pytest.raises(RunFileError) as err:
        load_run_file(path)
    text = str(err.value)
    assert "method 'splitting' searches mobilenet, not 'nb201'" in text
    assert "[splitting] selection: unknown key 'selection'" in text  # the method itself, not an option
