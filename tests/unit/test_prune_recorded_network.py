"""``benchmarks/bench_prune.recorded_network``: a result's recorded members are judged again only on the network they
were chosen on — a checkpoint missing from this machine, or another pre-training, is refused with what to do."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_prune import SHARED, recorded_network  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHARED / "data" / "cifar10-subset").is_dir(),
                                reason="the CIFAR-10 subset of ../shared/data is not beside the checkout")


def result(checkpoint, test_acc):
    return {"setup": {"dataset": "cifar10", "seed": 0}, "model": {"C": 4, "checkpoint": str(checkpoint),
                                                                   "test_acc": test_acc}}


def test_a_checkpoint_not_on_this_machine_is_refused(tmp_path):
    with pytest.raises(SystemExit) as err:
        recorded_network(result(tmp_path / "gone.pt", 0.6))
    assert "gone.pt is not on this machine" in str(err.value) and "--pretrain-only" in str(err.value)


def test_another_pre_training_is_refused_and_the_recorded_one_accepted(tmp_path, one_torch_thread):
    import torch

    from bench_prune import dataset
    from hilnas.searchers.prune.pretrain import gated_network, load_pretrained, save_pretrained
    from hilnas.searchers.spaces import create_space
    from hilnas.searchers.train import evaluate

    torch.manual_seed(0)
    space = create_space("resnet18-narrow", in_channels=3, input_size=32, num_classes=10, C=4)
    ck = save_pretrained(gated_network(space), tmp_path / "pretrained.pt")
    acc = evaluate(load_pretrained(ck, space)[0], dataset("cifar10", 0)[1].test)[1]
    with pytest.raises(SystemExit) as err:          # the result recorded another network's accuracy
        recorded_network(result(ck, acc + 0.01))
    assert "another pre-training" in str(err.value)
    loaders, got_space, net = recorded_network(result(ck, acc))
    assert got_space.C == 4 and evaluate(net, loaders.test)[1] == pytest.approx(acc)
