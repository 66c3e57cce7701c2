"""``prune`` in a run file (``server.run.methods``): a simulated Pi on loopback, a tiny ResNet pre-trained in the
run, one pruning hypernetwork serving two budgets, each member exported with its pattern and validated."""
from __future__ import annotations

import json
import textwrap

import onnx
import pytest

from hilnas.searchers.genotype import genotype_from_json
from hilnas.searchers.spaces.resnet import GatePattern
from hilnas.server.cli import main
from hilnas.server.run import RunFileError, parse_run_file
from hilnas.server.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

RUN = """\
    name = "prune-tiny"
    [space]
    name = "resnet18-narrow"
    options = { C = 4, groups = 2 }
    [data]
    dataset = "synthetic"
    [search]
    methods = ["prune"]
    search_epochs = 1
    max_batches = 3
    [prune]
    steps = 40
    sweep_points = 3
    sweep_steps = 10
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
    budgets = ["latency_ms=30%", "latency_ms=100%"]
"""


@pytest.mark.slow
def test_a_run_file_prunes_once_and_validates_a_member_per_budget(tmp_path, capsys) -> None:
    path = tmp_path / "run.toml"
    path.write_text(textwrap.dedent(RUN))
    code = main(["--workspace", str(tmp_path / "ws"), "run", str(path), "--quiet"])
    out, err = capsys.readouterr()
    assert code in (0, 1) and "error:" not in err, err   # 1: a member over its budget on the device, reported
    with Store.open(tmp_path / "ws") as store:
        run_id = int(store.runs_df("run")["id"].iloc[-1])
        steps = {s.key: s for s in store.steps(run_id)}
        assert all(s.status == "done" for s in steps.values())
        keys = list(steps)
        # one pre-training and one hypernetwork for both budgets
        assert keys.count("pi/prune/seed0/pretrain") == 1 and keys.count("pi/prune/seed0/hypernetwork") == 1
        trained = steps["pi/prune/seed0/hypernetwork"].result
        assert trained["estimate"]["sweep_Lambda"] is not None and "theorem" in trained["estimate"]
        kept = {}
        for budget in ("latency_ms=30%", "latency_ms=100%"):
            derived = steps[f"pi/prune/seed0/{budget}/derive"].result
            valid = steps[f"pi/prune/seed0/{budget}/validate"].result
            pattern = genotype_from_json(json.dumps(derived["genotype"]))
            assert isinstance(pattern, GatePattern)
            meta = {p.key: p.value for p in onnx.load(valid["onnx_path"]).metadata_props}
            assert genotype_from_json(meta["hilnas.genotype"]) == pattern    # the device ran this pattern
            assert valid["method"] == "prune" and valid["measured_ms"] > 0 and 0 <= valid["test_acc"] <= 1
            assert valid["genotype_text"] == pattern.bits()
            kept[budget] = sum(pattern.kept_groups)
        # the whole network's budget keeps at least as much as the 30 % one; the 30 % member is really smaller
        assert kept["latency_ms=100%"] >= kept["latency_ms=30%"]
        assert kept["latency_ms=30%"] < 2 * 4 * 2, (trained, steps["pi/prune/seed0/latency_ms=30%/derive"].result,
                                                    steps["pi/budgets"].result)  # 8 blocks x 2 groups: 16 unpruned


def test_prune_takes_only_resnet_spaces_and_its_own_options() -> None:
    text = textwrap.dedent(RUN).replace('name = "resnet18-narrow"', 'name = "nb201"').replace(
        "options = { C = 4, groups = 2 }", "options = { C = 4, N = 1 }").replace("steps = 40", "stepz = 40")
    with pytest.raises(RunFileError) as info:
        parse_run_file(text)
    message = str(info.value)
    assert "method 'prune' searches resnet18-narrow, resnet18, not 'nb201'" in message
    assert "[prune] stepz" in message and "steps" in message
    config = parse_run_file(textwrap.dedent(RUN))
    assert config.methods == ("prune",) and dict(config.method_options["prune"]) == {
        "steps": 40, "sweep_points": 3, "sweep_steps": 10}
