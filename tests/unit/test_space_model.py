"""Genotype -> discrete network for both spaces; its modules are exactly its op keys."""
import random

import pytest
import torch

from hilnas.searchers.genotype import DARTS_V2, Genotype, NB201Genotype
from hilnas.searchers.model import DartsNetwork, NB201Network, build_network
from hilnas.searchers.op_key import build_op_module, network_op_keys
from hilnas.searchers.spaces import SpaceError, create_space

SMALL = {"darts": {"C": 4, "layers": 3, "input_size": 16}, "nb201": {"C": 4, "N": 1, "input_size": 16}}


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", ["darts", "nb201"])
@pytest.mark.parametrize("seed", range(4))
def test_random_network_runs_and_matches_its_op_keys(name, seed):
    space = create_space(name, **SMALL[name])
    g = space.sample(random.Random(seed))
    net = build_network(space, g)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    keys = network_op_keys(space, g)
    # every parameter of the network belongs to exactly one keyed module
    assert n_params(net) == sum(n_params(build_op_module(k)) for k in keys)


def test_nb201_benchmark_network_size():
    space = create_space("nb201")
    g = NB201Genotype.from_arch_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
                                    "|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    net = build_network(space, g)
    assert isinstance(net, NB201Network) and len(net.layers) == 17
    # the largest cell of NAS-Bench-201 has 1.53 M parameters (benchmark's reported max, CIFAR-10)
    assert n_params(net) == pytest.approx(1.53e6, rel=0.01)


def test_nb201_cell_cut_off_from_its_output_gives_zeros():
    space = create_space("nb201", **SMALL["nb201"])
    g = NB201Genotype.from_arch_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|")
    net = build_network(space, g).eval()
    cell = net.layers[0]
    assert len(cell.ops) == 0  # the convs feed nothing, so they are not built
    x = torch.randn(2, 4, 16, 16)
    assert torch.equal(cell(x), torch.zeros_like(x))
    assert torch.isfinite(net(torch.randn(2, 3, 16, 16))).all()


def test_darts_network_on_fashion_mnist_shapes_and_drop_path():
    space = create_space("darts", C=4, layers=3, in_channels=1, input_size=28)
    net = build_network(space, DARTS_V2)
    assert isinstance(net, DartsNetwork)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    net.drop_path_prob = 0.5
    torch.manual_seed(0)
    x = torch.randn(4, 1, 28, 28)
    net.train()
    a, b = net(x), net(x)
    assert not torch.allclose(a, b)  # drop path is random in training ...
    net.eval()
    assert torch.equal(net(x), net(x))  # ... and off in eval


def test_darts_none_edges_and_unused_inputs_are_dropped():
    space = create_space("darts", **SMALL["darts"])
    cell = (("sep_conv_3x3", 1), ("none", 0), ("skip_connect", 2), ("none", 1),
            ("none", 0), ("none", 1), ("avg_pool_3x3", 3), ("max_pool_3x3", 1))
    g = Genotype(cell, (2, 3, 4, 5), DARTS_V2.reduce, (2, 3, 4, 5))
    net = build_network(space, g)
    normal = net.cells[0]
    assert set(normal.preprocess) == {"1"}  # input 0 only feeds none edges
    assert len(normal.ops) == 4  # node 4 has no live input: it is zero in the concat
    assert net(torch.randn(1, 3, 16, 16)).shape == (1, 10)
    assert n_params(net) == sum(n_params(build_op_module(k)) for k in network_op_keys(space, g))


def test_build_network_rejects_mismatched_genotype():
    with pytest.raises(SpaceError):
        build_network(create_space("nb201"), DARTS_V2)
