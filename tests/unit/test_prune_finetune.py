"""The brief fine-tune of a pruned network (``prune.finetune``): two networks tuned alike get the identical fine-tune."""
from __future__ import annotations

import pytest
import torch

from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.prune.finetune import FinetuneConfig, finetune
from hilnas.searchers.prune.network import GatedResNet
from hilnas.searchers.spaces import GatePattern, create_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = create_space("resnet18", C=4, groups=2, blocks=(1, 1, 1), in_channels=1, input_size=8, num_classes=4)
DATA = DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=320,
                     synthetic_test=64, val_fraction=0.2, batch_size=32)


def _pair():
    torch.manual_seed(0)
    gated = GatedResNet(SPACE)
    pattern = GatePattern(((True, False), (True, True), (False, True)))
    return gated.prune(pattern), gated.prune(pattern)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_pair_of_identical_networks_stays_identical_after_the_same_finetune():
    loaders = loaders_for(DATA)[1]
    a, b = _pair()
    before = {k: v.clone() for k, v in a.state_dict().items()}
    config = FinetuneConfig(epochs=2, lr=0.05, seed=3, eval_split="none")
    finetune(a, loaders, config)
    for _ in loaders.train:   # what else ran in between moves the loader's shuffle on
        pass
    torch.manual_seed(123)     # ... and torch's global generator
    finetune(b, loaders, config)
    assert not all(torch.equal(before[k], v) for k, v in a.state_dict().items())   # the fine-tune trained it
    assert _same(a, b)
    assert not a.training and not b.training


def test_another_seed_is_another_finetune():
    # the check above could pass by a fine-tune that ignores the data order; this one changes only the seed
    loaders = loaders_for(DATA)[1]
    a, b = _pair()
    finetune(a, loaders, FinetuneConfig(epochs=1, lr=0.05, seed=3, eval_split="none"))
    finetune(b, loaders, FinetuneConfig(epochs=1, lr=0.05, seed=4, eval_split="none"))
    assert not _same(a, b)


def test_zero_epochs_leaves_the_network_alone():
    loaders = loaders_for(DATA)[1]
    a, b = _pair()
    assert finetune(a, loaders, FinetuneConfig(epochs=0)) is None
    assert _same(a, b)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        FinetuneConfig(epochs=-1)
    with pytest.raises(ValueError, match="lr > 0"):
        FinetuneConfig(epochs=1, lr=0.0)
