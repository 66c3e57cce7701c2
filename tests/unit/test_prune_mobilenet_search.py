"""Algorithm 1 on the MobileNet's channel groups through the ResNet path's phases: checkpoints, the sweep, the family,
the derived patterns' real networks, one run for budgets later."""
from __future__ import annotations

import pytest
import torch

from hilnas.searchers.cost import FlopsCost, ParamsCost
from hilnas.searchers.hypernet import BudgetRangeError
from hilnas.searchers.op_key import enumerate_op_keys
from hilnas.searchers.prune.gates import pattern_gates
from hilnas.searchers.prune.io import load_trained, save_trained
from hilnas.searchers.prune.mobilenet.network import GatedMobileNet
from hilnas.searchers.prune.mobilenet.space import MobileNetGroups
from hilnas.searchers.prune.pretrain import CheckpointError, load_pretrained, pretrain, save_pretrained
from hilnas.searchers.prune.search import PruneConfig, search
from hilnas.searchers.result import Budget
from hilnas.searchers.spaces import GatePattern, create_space
from hilnas.searchers.spaces.mobilenet.grid import GridLatencyCost
from hilnas.searchers.train import TrainConfig

from test_prune_search import loaders  # noqa: F401 - the synthetic data the ResNet's pruning tests use

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BACKBONE = create_space("mobilenet", in_channels=1, input_size=8, num_classes=4, base_widths=(8, 12, 16),
                        strides=(1, 2, 1))
SPACE = MobileNetGroups(BACKBONE, groups=3)
FAST = PruneConfig(steps=120, sweep_points=5, sweep_min=0.03, sweep_max=30.0, sweep_steps=12, eval_batches=3,
                   grid_points=7, curve_points=13, bisect_steps=3, recalibrate_batches=4)
LUT = GridLatencyCost({k.encode(): FlopsCost().key_cost(k) + 0.01 for k in enumerate_op_keys(BACKBONE)})


@pytest.fixture(scope="module")
def checkpoint(loaders, tmp_path_factory):
    torch.set_num_threads(1)
    net, _ = pretrain(SPACE, loaders, TrainConfig(epochs=4, lr=0.05, seed=0, device="cpu", log_every=0,
                                                  eval_split="none"))
    assert isinstance(net, GatedMobileNet)
    return save_pretrained(net, tmp_path_factory.mktemp("pre") / "pretrained.pt")


@pytest.fixture(scope="module")
def run(loaders, checkpoint):
    torch.set_num_threads(1)
    net, _ = load_pretrained(checkpoint, SPACE)
    return search(SPACE, LUT, FAST, net=net, data=loaders, seed=0, others=(ParamsCost(),))


def test_a_mobilenet_checkpoint_loads_back_and_one_of_another_architecture_is_refused(checkpoint, loaders, tmp_path):
    net, _ = load_pretrained(checkpoint, SPACE)
    x = torch.randn(3, 1, 8, 8)
    again, _ = load_pretrained(checkpoint, SPACE)
    with torch.no_grad():
        assert torch.equal(net(x), again(x))
    with pytest.raises(CheckpointError, match="another architecture"):
        load_pretrained(checkpoint, MobileNetGroups(BACKBONE, groups=2))
    resnet = create_space("resnet18", C=4, groups=2, blocks=(1, 1, 1), in_channels=1, input_size=8, num_classes=4)
    res_net, _ = pretrain(resnet, loaders, TrainConfig(epochs=1, device="cpu", log_every=0, eval_split="none",
                                                       max_batches_per_epoch=1))
    res_path = save_pretrained(res_net, tmp_path / "resnet.pt")
    with pytest.raises(CheckpointError, match="another architecture: .*name='resnet18' \\(asked: 'mobilenet'\\)"):
        load_pretrained(res_path, SPACE)
    with pytest.raises(CheckpointError, match="another architecture"):
        load_pretrained(checkpoint, resnet)


def test_both_lambdas_are_recorded_and_hypernet_at_zero_is_the_pretrained_network(run):
    est = run.estimate
    assert run.Lambda == est.sweep_Lambda and est.source == "sweep" and len(est.points) >= 2
    assert est.theorem.theorem == pytest.approx(est.theorem.constant_loss - est.theorem.worst_valid_loss)
    assert run.phase1["kept_accuracy"]
    assert run.architecture(0.0).genotype == GatePattern.full(3, 3)
    assert run.to_dict()["T"]["latency_ms"]["span"] == pytest.approx(run.costs["latency_ms"].span)


def test_the_family_gets_cheaper_as_lambda_grows_priced_by_the_lut_grid(run):
    curve = run.curve()
    raw = [a.costs["latency_ms"] for a in curve.raw]
    assert raw[0] == pytest.approx(run.costs["latency_ms"].full) and raw[-1] < raw[0]
    assert len({a.genotype for a in curve.raw}) >= 2
    for a in curve.raw:   # a member's price is its pruned widths' grid price, as ``hilnas validate`` gives it
        space, genotype = SPACE.exported(a.genotype)
        assert a.costs["latency_ms"] == pytest.approx(LUT.genotype_cost(space, genotype))
        assert a.costs["params_m"] == pytest.approx(ParamsCost().genotype_cost(space, genotype))


def test_every_derived_pattern_is_a_real_narrower_network_computing_what_the_gated_one_does(run):
    x = torch.randn(6, 1, 8, 8)
    for t in run.grid(13):
        p = run.architecture(t).genotype
        SPACE.check(p)
        pruned = run.net.prune(p)   # frozen net: BatchNorm on batch statistics, as the search judged the pattern
        pruned.train()
        with torch.no_grad():
            assert torch.allclose(pruned(x), run.net(x, pattern_gates(run.layout, p)), atol=1e-4)
        assert pruned.widths == SPACE.widths_of(p)
        assert all(w >= layer.sizes[0] for w, layer in zip(pruned.widths.widths, SPACE.layers()))


def test_a_budget_gets_its_member_and_out_of_range_budgets_name_the_range(run):
    lo, hi = run.reachable()
    mid = run.for_budget(Budget("latency_ms", (lo + hi) / 2))
    assert mid.costs["latency_ms"] <= (lo + hi) / 2
    costs = run.costs["latency_ms"]
    for outside in (costs.rest / 2, costs.full * 2):   # below the fully pruned network, above the unpruned one
        with pytest.raises(BudgetRangeError, match=f"{lo:.6g}.*{hi:.6g}"):
            run.for_budget(Budget("latency_ms", outside))


def test_a_saved_hypernetwork_derives_the_same_family(run, checkpoint, tmp_path):
    folder = save_trained(run, tmp_path / "trained", checkpoint)
    again = load_trained(folder, SPACE, LUT)
    assert again.Lambda == run.Lambda and isinstance(again.net, GatedMobileNet)
    assert [a.genotype for a in again.curve().raw] == [a.genotype for a in run.curve().raw]
