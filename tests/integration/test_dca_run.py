"""run_dca end to end on a simulated Raspberry Pi agent (loopback, port 0): LUT -> search -> ONNX -> device."""
import json

import onnx
import pytest

from loopback import FAST, SEARCH_OVERRIDES, client_for, search_space
from hilnas.searchers.cost import MissingOpsError, extremes
from hilnas.searchers.data import DatasetConfig, DatasetError
from hilnas.searchers.genotype import genotype_from_json
from hilnas.searchers.op_key import decode, enumerate_op_keys, export_op_onnx
from hilnas.searchers.result import Budget, InfeasibleBudgetError
from hilnas.searchers.supernet import SupernetOptions
from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
from hilnas.server.search.common import cost_model_for, space_from_metadata
from hilnas.server.search.dca import META_GENOTYPE, META_SPACE, DcaRunConfig, run_dca
from hilnas.server.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]
DATA = DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=96,
                     synthetic_test=32, batch_size=16, val_fraction=0.5)
OVERRIDES = SEARCH_OVERRIDES
SPACE = search_space()


def config(budget_ms, **kw):
    kw = {"space": "nb201", "space_overrides": OVERRIDES, "dataset": DATA, "search_epochs": 1, "train_epochs": 1,
          "measure": FAST, "search_options": {"options": SupernetOptions(bottleneck=2)}, **kw}
    return DcaRunConfig(budget=Budget("latency_ms", budget_ms), **kw)


def budget_between(store, frac):
    model, _ = cost_model_for(store, "pi", "latency_ms")
    ex = extremes(SPACE, model)
    return ex.cheapest_cost + frac * (ex.dearest_cost - ex.cheapest_cost)


@pytest.mark.slow
def test_run_dca_searches_trains_exports_measures_and_stores(lut_store, tmp_path):
    store, client = lut_store
    budget = budget_between(store, 0.5)
    report = run_dca(store, "pi", [client], config(budget, out_dir=str(tmp_path / "models")))
    assert report.predicted <= budget and report.measured is not None and report.measured > 0
    assert report.measured_latency_ms == report.measured
    proto = onnx.load(report.onnx_path)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert space_from_metadata(json.loads(meta[META_SPACE])) == SPACE
    assert genotype_from_json(meta[META_GENOTYPE]) == report.genotype
    run = store.get_run(report.run_id)
    assert run.status == "done" and run.kind == "search-dca"
    assert run.result["search"]["cost"] == pytest.approx(report.predicted)
    model = store.get_model(report.model_id)
    assert model.predicted_latency_ms == pytest.approx(report.predicted)
    val = store.validations_df(model_id=report.model_id)
    assert len(val) == 1 and val.iloc[0]["measured_ms"] == pytest.approx(report.measured)


@pytest.mark.slow
def test_run_with_lookup_graph(lut_store, tmp_path):
    store, client = lut_store
    budget = budget_between(store, 0.5)
    report = run_dca(store, "pi", [client], config(budget, with_lug=True, lug_fractions=(0.3, 0.6), lug_rounds=1,
                                                   method="dca", out_dir=str(tmp_path / "m")))
    assert report.lug is not None and len(report.lug["points"]) >= 2
    assert report.search_budget.metric == "latency_ms"


def test_missing_lut_keys_are_named_before_searching(tmp_path, sim_agent):
    client = client_for(sim_agent)
    with Store.open(tmp_path / "ws2") as store:
        keys = [k.encode() for k in enumerate_op_keys(SPACE)]
        LutBuilder(store, "pi", [client], LutBuildConfig(measure=FAST)).build(
            keys[:-2], lambda k: export_op_onnx(decode(k)))
        with pytest.raises(MissingOpsError) as err:
            run_dca(store, "pi", [client], config(1.0))
        assert set(err.value.keys) == set(keys[-2:])
        assert store.runs_df().empty  # refused before a run was recorded


def test_infeasible_budget_fails_the_run_with_the_cheapest_cost(lut_store):
    store, client = lut_store
    model, _ = cost_model_for(store, "pi", "latency_ms")
    cheapest = extremes(SPACE, model).cheapest_cost
    with pytest.raises(InfeasibleBudgetError, match="cheapest"):
        run_dca(store, "pi", [client], config(0.5 * cheapest))
    runs = store.runs_df()
    assert list(runs["status"]) == ["failed"] and "cheapest" in runs.iloc[0]["result"]["error"]


def test_missing_dataset_folder(lut_store, tmp_path):
    store, client = lut_store
    cfg = config(1.0, dataset=DatasetConfig(name="fashion-mnist", data_dir=str(tmp_path / "nope"), val_fraction=0.5))
    with pytest.raises(DatasetError, match="does not exist"):
        run_dca(store, "pi", [client], cfg)
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (bad / name).write_bytes(b"not an idx file")
    with pytest.raises(DatasetError):
        run_dca(store, "pi", [client], config(1.0, dataset=DatasetConfig(name="fashion-mnist", data_dir=str(bad))))


@pytest.mark.slow
def test_params_budget_needs_no_lut_and_is_exact(tmp_path, sim_agent):
    client = client_for(sim_agent)
    with Store.open(tmp_path / "ws3") as store:
        store.upsert_device("pi", fingerprint=client.describe().fingerprint)
        from hilnas.searchers.cost import ParamsCost
        ex = extremes(SPACE, ParamsCost())
        budget = ex.cheapest_cost + 0.5 * (ex.dearest_cost - ex.cheapest_cost)
        cfg = DcaRunConfig(budget=Budget("params_m", budget), space="nb201", space_overrides=OVERRIDES, dataset=DATA,
                           search_epochs=1, train_epochs=1, measure=FAST, out_dir=str(tmp_path / "m"),
                           search_options={"options": SupernetOptions(bottleneck=2)})
        report = run_dca(store, "pi", [client], cfg)
        assert report.within_budget and report.measured == pytest.approx(report.predicted)
        assert report.measured_latency_ms is not None  # still measured on the device


@pytest.mark.slow
def test_energy_budget_uses_the_lut_energy(tmp_path, sim_agent):
    import dataclasses
    client = client_for(sim_agent)
    energy = dataclasses.replace(FAST, energy=True)
    with Store.open(tmp_path / "ws4") as store:
        keys = [k.encode() for k in enumerate_op_keys(SPACE)]
        LutBuilder(store, "pi", [client], LutBuildConfig(measure=energy)).build(
            keys, lambda k: export_op_onnx(decode(k)))
        model, _ = cost_model_for(store, "pi", "energy_mj")
        assert model.metric == "energy_mj"
        ex = extremes(SPACE, model)
        cfg = DcaRunConfig(budget=Budget("energy_mj", ex.dearest_cost), space="nb201", space_overrides=OVERRIDES,
                           dataset=DATA, search_epochs=1, train_epochs=1, measure=energy, out_dir=str(tmp_path / "m"),
                           search_options={"options": SupernetOptions(bottleneck=2)})
        report = run_dca(store, "pi", [client], cfg)
        assert report.predicted <= ex.dearest_cost and report.measured_energy_mj is not None
        assert store.get_model(report.model_id).predicted_energy_mj == pytest.approx(report.predicted)


def test_device_budget_below_the_cheapest_network_on_the_device(lut_store):
    store, client = lut_store
    with pytest.raises(InfeasibleBudgetError, match="measures") as err:
        run_dca(store, "pi", [client], config(1e-4, with_lug=True))
    assert err.value.cheapest_cost > 1e-4
