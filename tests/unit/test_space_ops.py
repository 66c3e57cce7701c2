"""Each op and fixed block builds, runs, and gives the shape the papers define."""
import pytest
import torch

from hilnas.searchers.genotype import DARTS_OPS, NB201_OPS
from hilnas.searchers.ops import (OPS, Add, BNReLU, ClassifierHead, Concat, ConvBN, FactorizedReduce, ResNetBlock,
                                  Zero)

ALL_OPS = sorted(set(DARTS_OPS) | set(NB201_OPS))


def test_ops_dict_covers_both_spaces():
    assert set(OPS) == set(DARTS_OPS) | set(NB201_OPS)


@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7])
def test_op_output_shape(name, stride, size):
    op = OPS[name](6, 6, stride, True)
    y = op(torch.randn(2, 6, size, size))
    out = -(-size // stride)
    assert y.shape == (2, 6, out, out)


@pytest.mark.parametrize("name", ["skip_connect", "sep_conv_3x3", "dil_conv_5x5", "nor_conv_3x3", "avg_pool_3x3",
                                  "max_pool_3x3", "none"])
def test_ops_change_channels_when_asked(name):
    assert OPS[name](4, 10, 1, True)(torch.randn(1, 4, 6, 6)).shape == (1, 10, 6, 6)
    assert OPS[name](4, 10, 2, False)(torch.randn(1, 4, 6, 6)).shape == (1, 10, 3, 3)


def test_ops_follow_the_paper_definitions():
    nc = OPS["nor_conv_3x3"](4, 4, 1, True)
    assert [type(m).__name__ for m in nc] == ["ReLU", "Conv2d", "BatchNorm2d"]
    sep = OPS["sep_conv_5x5"](4, 8, 2, True)
    convs = [m for m in sep.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.groups, c.out_channels) for c in convs] == [
        ((5, 5), (2, 2), 4, 4), ((1, 1), (1, 1), 1, 4), ((5, 5), (1, 1), 4, 4), ((1, 1), (1, 1), 1, 8)]
    dil = OPS["dil_conv_3x3"](4, 4, 1, True)
    assert dil[1].dilation == (2, 2) and dil[1].padding == (2, 2)
    assert isinstance(OPS["skip_connect"](4, 4, 1, True), torch.nn.Identity)
    assert isinstance(OPS["skip_connect"](4, 4, 2, True), FactorizedReduce)
    pool = OPS["avg_pool_3x3"](4, 4, 1, True)[-1]
    assert pool.count_include_pad is False
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(OPS["none"](4, 4, 1, True)(x), torch.zeros_like(x))


def test_factorized_reduce_uses_both_pixel_grids():
    fr = FactorizedReduce(1, 2, affine=False).eval()
    with torch.no_grad():
        fr.conv_1.weight.fill_(1.0)
        fr.conv_2.weight.fill_(1.0)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = fr(x) * (1 + 1e-5) ** 0.5  # undo the eval-mode BN (mean 0, var 1, eps)
    assert torch.allclose(y[0, 0], x[0, 0, ::2, ::2]) and torch.allclose(y[0, 1], x[0, 0, 1::2, 1::2])
    assert Zero(3, 5, 2)(torch.randn(2, 3, 7, 7)).shape == (2, 5, 4, 4)


def test_fixed_blocks():
    assert ConvBN(3, 16)(torch.randn(2, 3, 32, 32)).shape == (2, 16, 32, 32)
    rb = ResNetBlock(16, 32, 2)
    assert rb(torch.randn(2, 16, 32, 32)).shape == (2, 32, 16, 16)
    assert isinstance(rb.shortcut[0], torch.nn.AvgPool2d)
    assert BNReLU(8)(torch.randn(2, 8, 4, 4)).min() >= 0
    assert ClassifierHead(8, 10)(torch.randn(2, 8, 4, 4)).shape == (2, 10)
    x = torch.randn(1, 3, 2, 2)
    assert torch.equal(Add()(x), 2 * x)
    assert Concat(4)(x).shape == (1, 12, 2, 2)
