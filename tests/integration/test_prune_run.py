"""run_prune end to end on a simulated Raspberry Pi agent (loopback, port 0): LUT -> pre-train -> one run -> family
-> device; and each bad input the issue names, with the state checked afterwards."""
import csv
import json

import onnx
import pytest

from loopback import FAST, build_lut
from hilnas.searchers.data import DatasetConfig
from hilnas.searchers.genotype import genotype_from_json
from hilnas.searchers.prune.search import PruneConfig
from hilnas.searchers.result import Budget
from hilnas.searchers.spaces import create_space
from hilnas.server.search.prune import PruneRunConfig, run_prune

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]
DATA = DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=320,
                     synthetic_test=64, batch_size=32, val_fraction=0.3)
OVERRIDES = {"C": 4, "groups": 2, "blocks": (1, 1, 1)}
SPACE = create_space("resnet18-narrow", in_channels=1, input_size=8, num_classes=4, **OVERRIDES)
SEARCH = PruneConfig(steps=30, sweep_points=4, sweep_min=0.1, sweep_max=30.0, sweep_steps=8, eval_batches=2,
                     grid_points=5, curve_points=9, bisect_steps=2, recalibrate_batches=3)


def config(tmp_path, **kw):
    kw.setdefault("pretrain_epochs", 2)
    kw.setdefault("search", SEARCH)
    return PruneRunConfig(model="resnet18-narrow", space_overrides=OVERRIDES, dataset=DATA, measure=FAST,
                          out_dir=str(tmp_path / "out"), **kw)


@pytest.fixture
def prune_store(tmp_path, sim_agent):
    from loopback import client_for
    from hilnas.server.store import Store

    client = client_for(sim_agent)
    store = Store.open(tmp_path / "ws")
    build_lut(store, client, SPACE)
    yield store, client
    store.close()


@pytest.mark.slow
def test_a_prune_run_pretrains_prunes_exports_measures_and_records(prune_store, tmp_path):
    store, client = prune_store
    report = run_prune(store, "pi", [client], config(tmp_path))
    assert report.points == SEARCH.grid_points and 1 <= len(report.members) <= report.points
    assert len({m.pattern for m in report.members}) == len(report.members)   # distinct networks, not grid points
    lams = [m.lam for m in report.members]
    assert lams == sorted(lams) and lams[0] == 0.0
    assert report.members[0].pattern.kept_groups == (2, 2, 2)                 # lambda = 0: the pre-trained network
    for m in report.members:
        assert m.measured_ms and m.measured_ms > 0 and m.status == "ok" and 0 <= m.test_acc <= 1
        meta = {p.key: p.value for p in onnx.load(m.onnx_path).metadata_props}
        assert genotype_from_json(meta["hilnas.genotype"]) == m.pattern
        assert json.loads(meta["hilnas.space"])["name"] == "resnet18-narrow"
    est = report.estimate
    assert est["sweep_Lambda"] == pytest.approx(report.Lambda) and "theorem" in est and len(est["points"]) == 4
    run = store.get_run(report.run_id)
    assert run.kind == "prune" and run.status == "done"
    assert len(store.models_df(report.run_id)) == len(report.members)
    with open(report.csv_path) as f:
        assert len(list(csv.DictReader(f))) == len(report.members)
    for png in (report.plot_path, report.sweep_plot_path):
        assert png and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "pretrained.pt").is_file() and report.checkpoint.endswith("pretrained.pt")

    # one run, budgets later: the saved hypernetwork serves a budget without training, on the same checkpoint
    lo, hi = report.curve["range"]
    again = run_prune(store, "pi", [client], PruneRunConfig(from_run=report.run_id, measure=FAST,
                                                            budgets=(Budget("latency_ms", hi),
                                                                     Budget("latency_ms", lo / 2)),
                                                            out_dir=str(tmp_path / "again")))
    assert again.from_run == report.run_id and again.Lambda == pytest.approx(report.Lambda)
    (m,) = again.members
    assert m.costs["latency_ms"] <= hi + 1e-9 and m.budgets == (Budget("latency_ms", hi),)
    ((b, why),) = again.failed_budgets
    assert b == Budget("latency_ms", lo / 2) and f"{lo:.6g}" in why and f"{hi:.6g}" in why   # says the range

    # a given checkpoint is used as it is (no pre-training), and fine-tuning is an option
    tuned = run_prune(store, "pi", [client], config(tmp_path / "t", checkpoint=report.checkpoint, lambdas=(0.0,),
                                                    finetune_epochs=1))
    assert tuned.members[0].finetuned_acc is not None and not (tmp_path / "t" / "out" / "pretrained.pt").exists()


@pytest.mark.slow
def test_a_foreign_or_other_architecture_checkpoint_is_refused_before_anything_runs(prune_store, tmp_path):
    import torch

    from hilnas.searchers.prune.pretrain import CheckpointError, pretrain, save_pretrained
    from hilnas.searchers.train import TrainConfig

    store, client = prune_store
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    other_space = create_space("resnet18-narrow", in_channels=1, input_size=8, num_classes=4, C=8, groups=2,
                               blocks=(1, 1, 1))
    from hilnas.searchers.data import loaders_for
    net, _ = pretrain(other_space, loaders_for(DATA)[1], TrainConfig(epochs=1, device="cpu", log_every=0,
                                                                     eval_split="none", max_batches_per_epoch=1))
    other = save_pretrained(net, tmp_path / "other.pt")
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(other.read_bytes()[:100])
    runs_before = len(store.runs_df())
    for path, why in ((foreign, "not a pre-trained network saved by hilnas"), (other, "another architecture"),
                      (damaged, "can load safely")):
        with pytest.raises(CheckpointError, match=why) as err:
            run_prune(store, "pi", [client], config(tmp_path, checkpoint=str(path)))
        assert "hilnas search prune --device pi --model resnet18-narrow" in str(err.value)  # the command that fixes it
    assert len(store.runs_df()) == runs_before and not (tmp_path / "out").exists()   # nothing ran


def test_a_lut_without_a_module_key_names_it_and_the_build_command(tmp_path, sim_agent):
    from loopback import client_for
    from hilnas.searchers.op_key import enumerate_op_keys
    from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
    from hilnas.searchers.op_key import decode, export_op_onnx
    from hilnas.server.store import Store

    client = client_for(sim_agent)
    with Store.open(tmp_path / "ws") as store:
        keys = [k.encode() for k in enumerate_op_keys(SPACE)]
        missing = next(k for k in keys if k.startswith("res_branch"))
        LutBuilder(store, "pi", [client], LutBuildConfig(measure=FAST)).build(
            [k for k in keys if k != missing], lambda k: export_op_onnx(decode(k)))
        rows = len(store.query_df("SELECT * FROM lut_rows"))
        with pytest.raises(ValueError) as err:
            run_prune(store, "pi", [client], config(tmp_path))
        text = str(err.value)
        assert missing in text and "hilnas lut build --device pi --space resnet18-narrow --dataset synthetic" in text
        assert "--space-opt C=4" in text and len(store.runs_df()) == 0 and len(store.query_df("SELECT * FROM lut_rows")) == rows
        assert client.describe().fingerprint   # the agent still answers


def test_a_chain_the_validation_split_cannot_hold_is_refused_before_anything_runs(prune_store, tmp_path):
    """``chain_batches`` needs batches besides the held-out ones (here 3 validation batches, 2 held out): asking for 2
    is refused with the counts and the setting that fits, before pre-training, and nothing is recorded."""
    store, client = prune_store
    runs_before = len(store.runs_df())
    with pytest.raises(ValueError, match=r"--chain-batches 2 needs 2 batch\(es\).*has 3 batch\(es\); give --chain-batches 1"):
        run_prune(store, "pi", [client], config(tmp_path, budgets=[Budget("latency_ms", 1.0)], chain_batches=2))
    assert len(store.runs_df()) == runs_before and not (tmp_path / "out").exists()


def test_the_chain_left_to_the_run_is_taken_where_the_split_holds_it(prune_store, tmp_path):
    """3 validation batches, 1 held out: the 2 the chain needs are there, so the run takes it (recorded as 2)."""
    import dataclasses

    store, client = prune_store
    first = run_prune(store, "pi", [client], config(tmp_path, lambdas=(0.0,),
                                                    search=dataclasses.replace(SEARCH, eval_batches=1)))
    assert store.get_run(first.run_id).config["chain_batches"] == 0   # no budgets: no band search to use it
    b = Budget("latency_ms", 0.8 * first.members[0].costs["latency_ms"])   # inside the family's range (LUT ms)
    report = run_prune(store, "pi", [client], PruneRunConfig(from_run=first.run_id, measure=FAST, budgets=(b,),
                                                             out_dir=str(tmp_path / "again")))
    assert store.get_run(report.run_id).config["chain_batches"] == 2
    assert not [n for n in report.notes if n.startswith("no chain")]
    assert len(report.members) == 1 and not report.failed_budgets, report.failed_budgets


def test_bad_run_settings_are_refused():
    with pytest.raises(ValueError, match="prunable models"):
        PruneRunConfig(model="nb201")
    with pytest.raises(ValueError, match="not both"):
        PruneRunConfig(lambdas=(0.1,), budgets=(Budget("latency_ms", 1.0),))


@pytest.mark.slow
def test_with_a_fitted_correction_latency_budgets_get_members_confirmed_on_the_device(prune_store, tmp_path):
    from hilnas.server.lut.predict import fit_correction

    store, client = prune_store
    first = run_prune(store, "pi", [client], config(tmp_path))
    ms = [m.measured_ms for m in first.members]
    # a fidelity run's correction on this LUT, fitted on the members the first run measured
    corr = fit_correction([m.costs["latency_ms"] for m in first.members], ms)
    fid = store.start_run("fidelity", {"device_key": "pi"})
    store.finish_run(fid, result={"lut_id": store.find_lut("pi").as_dict(), "correction": corr.to_dict()})
    lo, hi = min(ms), max(ms)
    budgets = (Budget("latency_ms", lo / 0.95), Budget("latency_ms", (lo + hi) / 2))   # within the family's range
    again = run_prune(store, "pi", [client], PruneRunConfig(from_run=first.run_id, measure=FAST, budgets=budgets,
                                                            out_dir=str(tmp_path / "again")))
    loop_notes = [n for n in again.notes if "on the device" in n]
    assert not again.failed_budgets, again.failed_budgets
    # the chain left to the run: this split (3 batches, 2 held out) cannot hold it, so it is off, said and recorded
    assert any(n.startswith("no chain of single-group drops") for n in again.notes)
    assert store.get_run(again.run_id).config["chain_batches"] == 0
    assert len(loop_notes) == len(budgets)                       # every latency budget went through the loop
    confirmed = [n for n in loop_notes if "member confirmed on the device" in n]
    assert confirmed and all("loop windows:" in n for n in loop_notes)
    for m in again.members:                                      # measured afresh after the choice, and recorded
        assert m.measured_ms and m.budgets and m.status == "ok"
    # 0 tries: the LUT alone chooses, nothing is measured in a loop
    lut_only = run_prune(store, "pi", [client], PruneRunConfig(from_run=first.run_id, measure=FAST, budgets=budgets,
                                                               confirm_tries=0, out_dir=str(tmp_path / "lut")))
    assert not [n for n in lut_only.notes if "on the device" in n]
