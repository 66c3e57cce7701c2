"""``hilnas search prune`` and ``hilnas lut build --space resnet18-narrow`` through the real CLI, on a simulated agent."""
import json

import pytest

from hilnas.server.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]
QUICK = ("--min-runs", "5", "--min-seconds", "0.01", "--warmup", "1")
SHAPE = ("--model", "resnet18-narrow", "--dataset", "synthetic", "--space-opt", "C=4", "--space-opt", "groups=2",
         "--space-opt", "blocks=1,1,1")


def run(capsys, ws, *argv):
    code = main(["--workspace", str(ws), *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def workspace(tmp_path, capsys, sim_agent):
    ws = tmp_path / "ws"
    run(capsys, ws, "devices", "add", "pi", "--address", f"127.0.0.1:{sim_agent.port}")
    return ws


def test_lut_build_measures_every_module_key_of_the_model(workspace, capsys):
    lut_shape = ("--space", "resnet18-narrow", "--dataset", "cifar10", "--space-opt", "C=4", "--space-opt", "groups=2",
                 "--space-opt", "blocks=1,1")
    code, out, err = run(capsys, workspace, "lut", "build", "--device", "pi", "--quiet", "--json", *lut_shape, *QUICK)
    assert code == 0, err
    rep = json.loads(out)
    # stem, 2 blocks x 2 branch widths + joins, one projection (+ its relu) and the head
    assert rep["requested"] == 1 + 2 * 2 + 2 + 2 + 1 and rep["measured"] == rep["requested"] and not rep["failed"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the bad file
def test_search_prune_prints_distinct_members_and_a_bad_checkpoint_is_one_line(workspace, capsys, tmp_path):
    code, _, err = run(capsys, workspace, "lut", "build", "--device", "pi", "--quiet", "--space", "resnet18-narrow",
                       "--space-opt", "C=4", "--space-opt", "groups=2", "--space-opt", "blocks=1,1,1",
                       "--space-opt", "in_channels=1", "--space-opt", "input_size=16", "--space-opt", "num_classes=4",
                       *QUICK)
    assert code == 0, err
    shape = SHAPE + ("--batch-size", "32", "--train-size", "320")
    code, out, err = run(capsys, workspace, "search", "prune", "--device", "pi", *shape, "--pretrain-epochs", "1",
                         "--steps", "10", "--grid", "4", "--max-batches", "3", *QUICK)
    assert code == 0, err
    assert "distinct pruned networks from 4 lambdas" in out and "Lambda" in out and "sweep" in out
    first = out
    # a checkpoint that is not hilnas's: one line naming the command that makes a good one, and nothing ran
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04not a checkpoint")
    code, out, err = run(capsys, workspace, "search", "prune", "--device", "pi", *shape, "--checkpoint", str(bad),
                         *QUICK)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "hilnas search prune --device pi --model resnet18-narrow --dataset synthetic" in err
    # a negative number of device tries: one line naming the setting, and nothing ran
    code, out, err = run(capsys, workspace, "search", "prune", "--device", "pi", *shape, "--confirm-tries", "-1",
                         *QUICK)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "confirm_tries must be >= 0" in err
    code, out, err = run(capsys, workspace, "search", "prune", "--device", "pi", *shape, "--tune-steps", "-2",
                         *QUICK)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "tune_steps must be >= 0" in err
    code, out, err = run(capsys, workspace, "search", "prune", "--device", "pi", *shape, "--confirm-spreads", "-1",
                         *QUICK)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "confirm_spreads must be a number >= 0" in err
    code, out, _ = run(capsys, workspace, "runs", "--kind", "prune", "--json")
    runs = json.loads(out)
    assert len(runs) == 1 and runs[0]["status"] == "done" and "members" in runs[0]["summary"] and first
