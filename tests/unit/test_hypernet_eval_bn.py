"""The supernet's recorded accuracy on batch statistics (issue 11 item 4, issue 12 item 5).

A supernet's BatchNorm running statistics average over every path its weight steps ran; evaluated in eval mode,
one path is normalised with the wrong mean and variance and reads near chance (the full-size NB201 with uniform
paths recorded 8-11 % while its losses were far below a constant's). ``evaluate(bn="batch")`` normalises each
batch with its own statistics and leaves the running ones as they were.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hilnas.searchers.train import evaluate
from hilnas.searchers.train.eval import batch_statistics

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _task(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 4, generator=g) + 3.0 * (2 * y[:, None] - 1).float()   # the sign of x says the class
    return [(x[i:i + 32], y[i:i + 32]) for i in range(0, n, 32)]


def _net() -> nn.Module:
    net = nn.Sequential(nn.BatchNorm1d(4, affine=False), nn.Linear(4, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.ones(2, 4) * torch.tensor([[-1.0], [1.0]]))
        net[1].bias.zero_()
    return net


def test_running_statistics_of_another_path_read_near_chance_and_batch_statistics_do_not():
    net = _net()
    net[0].running_mean.fill_(10.0)   # statistics of another path: every input normalised to the same side
    before = (net[0].running_mean.clone(), net[0].running_var.clone(), int(net[0].num_batches_tracked))
    data = _task()
    _, running = evaluate(net, data, bn="running")
    _, batch = evaluate(net, data, bn="batch")
    assert running < 0.6 and batch > 0.95
    after = (net[0].running_mean, net[0].running_var, int(net[0].num_batches_tracked))
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1]) and before[2] == after[2]
    assert net.training and net[0].training and net[0].momentum == 0.1   # as before the call


def test_batch_statistics_restores_training_mode():
    net = _net().train()
    with batch_statistics(net):
        assert net[0].training and net[0].momentum == 0.0
    assert net.training and net[0].momentum == 0.1


def test_an_unknown_bn_mode_is_refused():
    with pytest.raises(ValueError, match="'running' or 'batch'"):
        evaluate(_net(), _task(), bn="frozen")


def test_the_search_records_its_accuracy_after_every_epoch_only_when_asked():
    import dataclasses

    from hilnas.searchers.cost import ParamsCost
    from hilnas.searchers.data import DatasetConfig, loaders_for
    from hilnas.searchers.hypernet import HypernetConfig, search
    from testmodels import tiny_space

    data = loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                     synthetic_train=128, synthetic_test=32, val_fraction=0.5, batch_size=16))[1]
    base = HypernetConfig(epochs=2, grid_points=3, curve_points=3, bisect_steps=0, bound_samples=1, bound_batches=1,
                          Lambda=1.0)
    on = search(tiny_space("nb201"), ParamsCost(), dataclasses.replace(base, epoch_val_batches=2), data=data)
    off = search(tiny_space("nb201"), ParamsCost(), base, data=data)
    assert len(on.epoch_val_acc) == 2 and all(0.0 <= a <= 1.0 for a in on.epoch_val_acc)
    assert off.epoch_val_acc == []
    with pytest.raises(ValueError, match="epoch_val_batches"):
        HypernetConfig(epoch_val_batches=-1)
