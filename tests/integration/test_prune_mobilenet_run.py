"""``hilnas search prune --model mobilenet`` end to end through the real CLI on a simulated Raspberry Pi 4 agent (gRPC
on loopback, port 0): LUT grid -> pre-train -> one run -> members exported and measured; budgets later from the saved
run; and each bad input the issue names, with the state checked afterwards."""
import json

import onnx
import pytest

from loopback import FAST, build_lut, client_for
from test_prune_cli import run, workspace  # noqa: F401 - the CLI helper and the workspace with the Pi agent
from hilnas.server.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]
QUICK = ("--min-runs", "5", "--min-seconds", "0.01", "--warmup", "1")
BACKBONE_OPTS = ("--space-opt", "base_widths=8,12,16", "--space-opt", "strides=1,2,1",
                 "--space-opt", "grid_multipliers=0.25,0.5,1.0")
SHAPE = ("--model", "mobilenet", "--dataset", "synthetic", *BACKBONE_OPTS, "--space-opt", "groups=3",
         "--batch-size", "32", "--train-size", "320")
LUT_SHAPE = ("--space", "mobilenet", *BACKBONE_OPTS, "--space-opt", "in_channels=1", "--space-opt", "input_size=16",
             "--space-opt", "num_classes=4")


def test_help_names_the_mobilenet(capsys):
    with pytest.raises(SystemExit) as done:
        main(["search", "prune", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "mobilenet" in out and "MobileNet (channel groups)" in out


@pytest.mark.slow
def test_a_mobilenet_prune_run_measures_its_members_and_serves_budgets_later(workspace, capsys, tmp_path):
    code, out, err = run(capsys, workspace, "lut", "build", "--device", "pi", "--quiet", "--json", *LUT_SHAPE, *QUICK)
    assert code == 0, err
    assert json.loads(out)["measured"] == 3 + 3 * 3 + 3 * 3 + 3   # stem, two blocks by (cin, cout), head: 3 widths each
    code, out, err = run(capsys, workspace, "search", "prune", "--device", "pi", *SHAPE, "--pretrain-epochs", "1",
                         "--steps", "12", "--grid", "4", "--max-batches", "3", "--json", "--quiet", *QUICK)
    assert code == 0, err
    rep = json.loads(out)
    members = rep["members"]
    assert rep["points"] == 4 and 1 <= len(members) <= 4
    assert members[0]["lam"] == 0.0 and members[0]["pattern"]["masks"] == ["111"] * 3   # the pre-trained network
    est = rep["estimate"]
    assert est["sweep_Lambda"] == pytest.approx(rep["Lambda"]) and "theorem" in est
    for m in members:
        assert m["status"] == "ok" and m["measured_ms"] > 0 and 0 <= m["test_acc"] <= 1
        model = onnx.load(m["onnx_path"])
        meta = {p.key: p.value for p in model.metadata_props}
        genotype = json.loads(meta["hilnas.genotype"])
        assert genotype["space"] == "mobilenet_pruned" and genotype["masks"] == m["pattern"]["masks"]
        assert json.loads(meta["hilnas.space"])["name"] == "mobilenet"
        # the real narrower network: the stem's and the first depthwise conv's (C, 1, 3, 3) weights at the kept widths
        filters = {i.dims[0] for i in model.graph.initializer if list(i.dims[1:]) == [1, 3, 3]}
        assert filters == set(genotype["widths"][:2]) and genotype["widths"][0] == 2 + 2 * m["pattern"]["masks"][0].count("1")

    # ``hilnas validate`` reads the pruned network's metadata and prices it from the LUT grid as the search did
    last = members[-1]
    code, out, err = run(capsys, workspace, "validate", last["onnx_path"], "--device", "pi", "--json", *QUICK)
    assert code == 0, err
    assert json.loads(out)["lut_sum_ms"] == pytest.approx(last["costs"]["latency_ms"], rel=1e-9)

    # budgets later, no training: one inside the family, one below the fully pruned network, one above the unpruned
    lo, hi = rep["curve"]["range"]
    budgets = f"latency_ms={(lo + hi) / 2},latency_ms={lo / 2},latency_ms={hi * 2}"
    code, out, err = run(capsys, workspace, "search", "prune", "--device", "pi", "--from-run", str(rep["run_id"]),
                         "--budgets", budgets, "--json", "--quiet", *QUICK)
    assert code == 1, err   # two budgets failed, said so
    again = json.loads(out)
    (m,) = again["members"]
    assert m["costs"]["latency_ms"] <= (lo + hi) / 2 and m["measured_ms"] > 0
    failed = {f["budget"]: f["error"] for f in again["failed_budgets"]}
    assert sorted(failed) == sorted([f"latency_ms={lo / 2:g}", f"latency_ms={hi * 2:g}"])
    assert all(f"[{lo:.6g}, {hi:.6g}]" in why for why in failed.values())
    assert any("bisection on lambda only" in n for n in again["notes"])


@pytest.mark.slow
def test_a_resnet_checkpoint_is_refused_for_the_mobilenet_before_anything_runs(workspace, capsys, tmp_path):
    from hilnas.searchers.data import DatasetConfig, loaders_for
    from hilnas.searchers.prune.pretrain import pretrain, save_pretrained
    from hilnas.searchers.spaces import create_space
    from hilnas.searchers.train import TrainConfig

    code, _, err = run(capsys, workspace, "lut", "build", "--device", "pi", "--quiet", *LUT_SHAPE, *QUICK)
    assert code == 0, err
    resnet = create_space("resnet18-narrow", in_channels=1, input_size=16, num_classes=4, C=4, groups=2,
                          blocks=(1, 1, 1))
    data = DatasetConfig(name="synthetic", synthetic_shape=(1, 16, 16), synthetic_classes=4, synthetic_train=64,
                         synthetic_test=32, batch_size=32)
    net, _ = pretrain(resnet, loaders_for(data)[1], TrainConfig(epochs=1, device="cpu", log_every=0,
                                                                eval_split="none", max_batches_per_epoch=1))
    path = save_pretrained(net, tmp_path / "resnet.pt")
    code, out, err = run(capsys, workspace, "search", "prune", "--device", "pi", *SHAPE, "--checkpoint", str(path),
                         *QUICK)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "another architecture" in err and "name='resnet18-narrow' (asked: 'mobilenet')" in err
    assert "hilnas search prune --device pi --model mobilenet --dataset synthetic" in err
    code, out, _ = run(capsys, workspace, "runs", "--kind", "prune", "--json")
    assert json.loads(out) == []   # nothing ran


def test_a_lut_lacking_a_grid_key_names_it_and_the_build_command(tmp_path, sim_agent):
    from hilnas.searchers.data import DatasetConfig
    from hilnas.searchers.op_key import enumerate_op_keys
    from hilnas.searchers.spaces import create_space
    from hilnas.server.search.prune import PruneRunConfig, run_prune
    from hilnas.server.store import Store

    client = client_for(sim_agent)
    overrides = {"base_widths": (8, 12, 16), "strides": (1, 2, 1), "grid_multipliers": (0.25, 0.5, 1.0)}
    backbone = create_space("mobilenet", in_channels=1, input_size=8, num_classes=4, **overrides)
    data = DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=64,
                         synthetic_test=32, batch_size=32, val_fraction=0.3)
    with Store.open(tmp_path / "ws") as store:
        missing = next(k.encode() for k in enumerate_op_keys(backbone) if k.op == "dws_block")
        build_lut(store, client, backbone, skip=(missing,))
        rows = len(store.query_df("SELECT * FROM lut_rows"))
        config = PruneRunConfig(model="mobilenet", space_overrides={**overrides, "groups": 3}, dataset=data,
                                measure=FAST, out_dir=str(tmp_path / "out"), pretrain_epochs=1)
        with pytest.raises(ValueError) as err:
            run_prune(store, "pi", [client], config)
        text = str(err.value)
        assert missing in text and "hilnas lut build --device pi --space mobilenet --dataset synthetic" in text
        assert "--space-opt base_widths=8,12,16" in text and "groups" not in text.split("measure them with")[1]
        assert len(store.runs_df()) == 0 and len(store.query_df("SELECT * FROM lut_rows")) == rows
        assert not (tmp_path / "out").exists()
