"""The split: two offspring with halved outgoing weights leave the network's function unchanged."""
import pytest
import torch

from splitting_helpers import calibrated, tiny_space
from hilnas.searchers.splitting.split import LayerSplit, split_network, split_state

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_splits(net, gen, per_layer=(2, 3, 4)):
    splits = []
    for layer, (unit, k) in enumerate(zip(net.splittable(), per_layer)):
        neurons = torch.randperm(net.widths.widths[layer], generator=gen)[:k].tolist()
        d = unit.conv.weight[0].numel()
        splits.append(LayerSplit(layer, tuple(neurons), torch.randn(k, d, generator=gen)))
    return splits


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_split_leaves_the_outputs_unchanged(seed):
    space = tiny_space()
    torch.manual_seed(seed)
    net = calibrated(space.build_network(space.widths_at(1.0)), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    splits = _random_splits(net, gen)  # every layer at once: the stem, a strided block, the last (into the head)
    new = split_network(net, splits, epsilon=0.0).eval()
    assert new.widths.widths == tuple(w + len(s.neurons) for w, s in zip(net.widths.widths, splits))
    x = torch.randn(32, 1, 8, 8, generator=gen)
    with torch.no_grad():
        before, after = net(x), new(x)
    assert torch.allclose(after, before, atol=1e-5, rtol=0)
    # in training mode too: each offspring channel has its own batch statistics, equal at eps = 0
    new.train(), net.train()
    with torch.no_grad():
        assert torch.allclose(new(x), net(x), atol=1e-4, rtol=0)


def test_offspring_move_apart_along_the_direction_and_share_the_outgoing_weight():
    space = tiny_space()
    torch.manual_seed(0)
    net = calibrated(space.build_network(space.widths_at(1.0)))
    v = torch.randn(1, 8)  # block 1's pointwise conv reads the stem's 8 channels
    widths, state = split_state(space, net.widths, net.state_dict(), [LayerSplit(1, (5,), v)], epsilon=0.25)
    old = net.state_dict()
    W = state["blocks.0.pointwise.conv.weight"].flatten(1)
    theta = old["blocks.0.pointwise.conv.weight"].flatten(1)[5]
    assert torch.allclose(W[5], theta + 0.25 * v[0]) and torch.allclose(W[-1], theta - 0.25 * v[0])
    nxt = state["blocks.1.pointwise.conv.weight"]
    assert torch.allclose(nxt[:, 5] + nxt[:, -1], old["blocks.1.pointwise.conv.weight"][:, 5])
    assert torch.equal(state["blocks.1.depthwise.conv.weight"][-1], old["blocks.1.depthwise.conv.weight"][5])
    assert state["blocks.0.pointwise.bn.running_var"][-1] == old["blocks.0.pointwise.bn.running_var"][5]
    assert widths.widths == (8, 17, 16)
    assert torch.equal(old["blocks.0.pointwise.conv.weight"].flatten(1)[5], theta)  # the input is not modified


def test_bad_splits_are_refused():
    space = tiny_space()
    net = space.build_network(space.widths_at(1.0))
    with pytest.raises(ValueError, match="at most once"):
        LayerSplit(0, (1, 1), torch.zeros(2, 9))
    with pytest.raises(ValueError, match="directions"):
        LayerSplit(0, (1, 2), torch.zeros(1, 9))
    with pytest.raises(ValueError, match="d = 9"):
        split_state(space, net.widths, net.state_dict(), [LayerSplit(0, (1,), torch.zeros(1, 8))], 0.1)
    with pytest.raises(ValueError, match="layers 0..2"):
        split_state(space, net.widths, net.state_dict(), [LayerSplit(0, (8,), torch.zeros(1, 9))], 0.1)
