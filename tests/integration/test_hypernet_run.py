"""run_hypernet end to end on a simulated Raspberry Pi agent (loopback, port 0): LUT -> one run -> family -> device."""
import csv
import json

import onnx
import pytest

from loopback import FAST, SEARCH_OVERRIDES, search_space
from hilnas.searchers.cost import LutLatencyCost, ParamsCost
from hilnas.searchers.data import DatasetConfig
from hilnas.searchers.genotype import genotype_from_json
from hilnas.searchers.hypernet import HypernetConfig
from hilnas.searchers.hypernet.bound import is_valid
from hilnas.searchers.hypernet.io import load_trained
from hilnas.searchers.result import Budget
from hilnas.server.search.hypernet import HypernetRunConfig, run_hypernet
from hilnas.server.validation import lut_values

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]
DATA = DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=192,
                     synthetic_test=32, batch_size=16, val_fraction=0.5)
OVERRIDES = SEARCH_OVERRIDES
SPACE = search_space()
SEARCH = HypernetConfig(epochs=2, grid_points=5, curve_points=9, bisect_steps=2, bound_samples=2, bound_batches=2)


def config(tmp_path, **kw):
    return HypernetRunConfig(space="nb201", space_overrides=OVERRIDES, dataset=DATA, search=SEARCH, measure=FAST,
                             out_dir=str(tmp_path / "out"), **kw)


@pytest.mark.slow
def test_grid_run_exports_measures_records_and_plots(lut_store, tmp_path):
    store, client = lut_store
    report = run_hypernet(store, "pi", [client], config(tmp_path, grid_at="lambda"))
    assert len(report.members) == SEARCH.grid_points
    scales = [m.scale for m in report.members]
    assert scales == sorted(scales) and scales[-1] == pytest.approx(report.Lambda)
    predicted = [m.costs["latency_ms"] for m in report.members]
    assert all(b <= a + 1e-9 for a, b in zip(predicted, predicted[1:]))
    for m in report.members:
        assert m.measured_ms is not None and m.measured_ms > 0 and m.status == "ok"
        assert m.predicted_ms == pytest.approx(m.costs["latency_ms"])  # no correction fitted on this LUT
        proto = onnx.load(m.onnx_path)
        meta = {p.key: p.value for p in proto.metadata_props}
        assert genotype_from_json(meta["hilnas.genotype"]) == m.genotype and is_valid(SPACE, m.genotype)
    run = store.get_run(report.run_id)
    assert run.kind == "hypernet" and run.status == "done" and run.result["Lambda"] == pytest.approx(report.Lambda)
    # SEARCH leaves the per-space settings at "auto": the record holds what ran on NB201 (``hypernet.defaults``)
    ran = {k: run.config["search"][k] for k in ("weight_lambda", "arch_step", "phase1", "anchor", "scale_sampling", "knee")}
    assert ran == {"weight_lambda": "sandwich-children", "arch_step": "relaxed", "phase1": "dearest",
                   "anchor": "pinned", "scale_sampling": "uniform", "knee": "family"}
    assert report.search["config"]["knee"] == "family"
    models = store.models_df(report.run_id)
    assert len(models) == len({m.genotype for m in report.members})
    vals = store.validations_df()
    assert set(vals["model_id"]) == set(models["id"]) and (vals["measured_ms"] > 0).all()
    with open(report.csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(report.members) and float(rows[0]["measured_ms"]) > 0
    assert json.loads(open(report.json_path).read())["Lambda"] == pytest.approx(report.Lambda)
    assert report.plot_path and open(report.plot_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_budget_run_serves_reachable_budgets_and_reports_the_range_for_the_rest(lut_store, tmp_path):
    store, client = lut_store
    budgets = (Budget("latency_ms", 1e-6), Budget("latency_ms", 1e6))
    report = run_hypernet(store, "pi", [client], config(tmp_path, budgets=budgets, train_epochs=1))
    assert [b for b, _ in report.failed_budgets] == list(budgets)
    lo, hi = report.curve["range"]
    for _, err in report.failed_budgets:
        assert f"{lo:.6g}" in err and f"{hi:.6g}" in err
    assert report.members == () and store.get_run(report.run_id).status == "done"
    # a budget inside the range gets a member within it, trained and measured
    report = run_hypernet(store, "pi", [client], config(tmp_path, budgets=(Budget("latency_ms", hi),),
                                                        train_epochs=1))
    (m,) = report.members
    assert m.costs["latency_ms"] <= hi + 1e-9 and m.test_acc is not None and 0 <= m.test_acc <= 1
    assert m.budget == Budget("latency_ms", hi) and m.within_budget is not None


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="complexity"):
        HypernetRunConfig(complexity="memory")
    with pytest.raises(ValueError, match="not both"):
        HypernetRunConfig(lambdas=(0.1,), budgets=(Budget("latency_ms", 1.0),))
    with pytest.raises(ValueError, match="Budget"):
        HypernetRunConfig(budgets=("latency_ms=1",))
    with pytest.raises(ValueError, match="grid_at must be 'changes' or 'lambda'"):
        HypernetRunConfig(grid_at="even")


@pytest.mark.slow
def test_a_saved_hypernetwork_serves_new_lambdas_and_budgets_without_training(lut_store, tmp_path):
    store, client = lut_store
    first = run_hypernet(store, "pi", [client], config(tmp_path))
    assert first.trained_dir and first.from_run is None
    scales = tuple(m.scale for m in first.members)
    # the default grid sits where the family changes: the saved run's breakpoints
    latency = LutLatencyCost(lut_values(store, store.find_lut("pi")))
    saved = load_trained(first.trained_dir, SPACE, latency, complexity=ParamsCost())
    assert list(scales) == pytest.approx(saved.breakpoints(SEARCH.grid_points)) and scales[0] == 0.0
    again = run_hypernet(store, "pi", [client], HypernetRunConfig(from_run=first.run_id, lambdas=scales, measure=FAST,
                                                                  out_dir=str(tmp_path / "again")))
    assert again.from_run == first.run_id and again.Lambda == pytest.approx(first.Lambda)
    assert [m.genotype for m in again.members] == [m.genotype for m in first.members]  # the same family
    assert all(m.measured_ms and m.measured_ms > 0 for m in again.members)
    assert store.get_run(again.run_id).config["from_run"] == first.run_id
    lo, hi = first.curve["range"]
    one = run_hypernet(store, "pi", [client], HypernetRunConfig(from_run=first.run_id, measure=FAST,
                                                                budgets=(Budget("latency_ms", (lo + hi) / 2),),
                                                                out_dir=str(tmp_path / "one")))
    assert len(one.members) == 1 and one.members[0].costs["latency_ms"] <= (lo + hi) / 2 + 1e-9


@pytest.mark.slow
def test_from_run_refuses_unknown_wrong_kind_and_lost_runs_and_keeps_the_store(lut_store, tmp_path):
    import shutil

    from hilnas.searchers.hypernet.io import TrainedFileError
    from hilnas.server.store import StoreError

    store, client = lut_store
    first = run_hypernet(store, "pi", [client], config(tmp_path))
    with pytest.raises(StoreError, match="unknown run id 999"):
        run_hypernet(store, "pi", [client], HypernetRunConfig(from_run=999, measure=FAST))
    other = store.start_run("fidelity", {})
    store.finish_run(other, result={})
    with pytest.raises(ValueError, match="without a saved hypernetwork"):
        run_hypernet(store, "pi", [client], HypernetRunConfig(from_run=other, measure=FAST))
    shutil.rmtree(first.trained_dir)
    with pytest.raises(TrainedFileError, match="saved no trained hypernetwork"):
        run_hypernet(store, "pi", [client], HypernetRunConfig(from_run=first.run_id, measure=FAST))
    run = store.get_run(first.run_id)   # the first run's record is intact
    assert run.status == "done" and run.result["Lambda"] == pytest.approx(first.Lambda)
