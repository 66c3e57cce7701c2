"""Runs, models and validations in the run store, and the DataFrame helpers for reports."""
from __future__ import annotations

from pathlib import Path

import pytest

from hilnas.server.store import LutId, Store, StoreError, UnknownDeviceError

LUT = LutId("fp-pi", "onnxruntime", "1.31.1", "cfg1")


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path) as s:
        s.upsert_device("pi", fingerprint="fp-pi", info={"cores": 4})
        yield s


def test_run_lifecycle(store: Store) -> None:
    run = store.start_run("search:dca", {"budget_ms": 15.0, "seed": 0})
    rec = store.get_run(run)
    assert (rec.kind, rec.status, rec.finished_at, rec.result) == ("search:dca", "running",
                                                                   None, None)
    store.finish_run(run, status="done", result={"accuracy": 0.91})
    rec = store.get_run(run)
    assert rec.status == "done" and rec.result == {"accuracy": 0.91}
    assert rec.config == {"budget_ms": 15.0, "seed": 0}
    with pytest.raises(StoreError, match="unknown run id 999"):
        store.finish_run(999)
    df = store.runs_df(kind="search:dca")
    assert df["result"].iloc[0] == {"accuracy": 0.91} and len(store.runs_df(kind="x")) == 0


def test_models_and_validations(store: Store) -> None:
    run = store.start_run("search:dca")
    genotype = {"normal": [["sep_conv_3x3", 0]], "reduce": [["max_pool_3x3", 1]]}
    mid = store.add_model("dca-15ms", genotype, run_id=run, device_key="pi", lut_id=LUT,
                          predicted_latency_ms=14.2)
    store.update_model(mid, onnx_sha256="cd" * 32, path=Path("/tmp/m.onnx"))
    model = store.get_model(mid)
    assert model.genotype == genotype and model.lut_id == LUT
    assert (model.onnx_sha256, model.path) == ("cd" * 32, "/tmp/m.onnx")
    vid = store.add_validation(mid, "pi", fingerprint="fp-pi", predicted_ms=14.2,
                               measured_ms=15.1, stats={"n": 50, "p90_ms": 15.9})
    assert vid >= 1
    with pytest.raises(UnknownDeviceError, match="known devices: pi"):
        store.add_validation(mid, "jetson", fingerprint="x", measured_ms=1.0)
    with pytest.raises(StoreError, match="unknown model id"):
        store.add_validation(mid + 1, "pi", fingerprint="fp-pi")
    with pytest.raises(StoreError, match="unknown run id"):
        store.add_model("m", {}, run_id=run + 100)
    vdf = store.validations_df(device_key="pi")
    assert vdf[["predicted_ms", "measured_ms"]].iloc[0].tolist() == [14.2, 15.1]
    assert vdf["stats"].iloc[0]["n"] == 50
    assert store.models_df(run_id=run)["name"].tolist() == ["dca-15ms"]
    joined = store.query_df(
        "SELECT m.name, v.measured_ms - m.predicted_latency_ms AS err FROM validations v "
        "JOIN models m ON m.id = v.model_id")
    assert joined["err"].iloc[0] == pytest.approx(0.9)


def test_query_df_is_read_only(store: Store) -> None:
    with pytest.raises(StoreError, match="query failed"):
        store.query_df("DELETE FROM devices")
    assert [d.key for d in store.devices()] == ["pi"]
    assert store.devices_df()["info"].iloc[0] == {"cores": 4}
