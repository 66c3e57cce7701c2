"""The MobileNet backbone: widths as data, its op keys (round trip, grid), the grid LUT, torch and ONNX."""
import json
import random

import pytest
import torch

from splitting_helpers import calibrated, tiny_space
from hilnas.searchers.cost import FlopsCost, MissingOpsError, ParamsCost
from hilnas.searchers.export import export_onnx, verify_onnx
from hilnas.searchers.genotype import GenotypeError, genotype_from_json
from hilnas.searchers.model import build_network
from hilnas.searchers.op_key import OpKey, build_op_module, decode, enumerate_op_keys, network_op_keys
from hilnas.searchers.spaces import MobileNetWidths, SpaceError, create_space
from hilnas.searchers.spaces.mobilenet.grid import GridLatencyCost
from hilnas.server import model_meta


def test_the_default_backbone_is_mobilenet_v1():
    space = create_space("mobilenet")
    assert space.num_layers == 14 and space.head_size == 2  # stem + 13 blocks, 32x32 -> 2x2
    assert space.widths_at(1.0).widths == (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    assert space.widths_at(0.3).widths[:3] == (10, 19, 38)  # seed 003's seed network
    assert space.grid(0) == (8, 16, 24, 32, 48)


@pytest.mark.parametrize("space", [tiny_space(), create_space("mobilenet", in_channels=1, input_size=28)])
def test_every_key_round_trips(space):
    keys = enumerate_op_keys(space)
    assert len(keys) == len(set(keys))
    for k in keys:
        assert decode(k.encode()) == k and decode(k.encode()).encode() == k.encode()
    widths = space.sample(random.Random(0))
    for k in network_op_keys(space, widths):
        assert decode(k.encode()) == k


def test_the_grid_keys():
    space = tiny_space()
    keys = enumerate_op_keys(space)
    g0, g1, g2 = space.grid(0), space.grid(1), space.grid(2)
    assert len(keys) == len(g0) + len(g0) * len(g1) + len(g1) * len(g2) + len(g2)
    assert OpKey("dws_block", g0[0], g1[-1], 8, 8, 2) in keys and OpKey("gap_linear", g2[1], 4, 4, 4, 1) in keys
    net_keys = network_op_keys(space, space.widths_at(1.0))
    assert [k.op for k in net_keys] == ["mobilenet_stem", "dws_block", "dws_block", "gap_linear"]
    assert set(net_keys) <= set(keys)  # multiplier 1.0 is a grid point of every layer


def test_the_network_is_built_from_its_keys_and_exports_to_onnx():
    space = create_space("mobilenet", in_channels=1, input_size=28, base_widths=(16, 32, 64), strides=(2, 2, 1))
    widths = MobileNetWidths((5, 11, 23))
    net = calibrated(build_network(space, widths), shape=(16, 1, 28, 28))
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    keys = network_op_keys(space, widths)
    modules = [net.stem, *net.blocks, net.head]
    for k, m in zip(keys, modules):
        ref = build_op_module(k)
        assert [p.shape for p in ref.parameters()] == [p.shape for p in m.parameters()]
    data = export_onnx(net, space.input_shape)
    assert verify_onnx(net, data, space.input_shape, atol=1e-4) <= 1e-4
    params = sum(p.numel() for p in net.parameters())
    assert ParamsCost().genotype_cost(space, widths) == pytest.approx(params / 1e6)
    meta = model_meta.read(model_meta.attach(data, space, widths))  # what `hilnas validate` reads
    assert meta == (space, widths)


def test_widths_as_data():
    w = MobileNetWidths((3, 7, 9))
    assert genotype_from_json(w.to_json()) == w
    assert json.loads(w.to_json()) == {"space": "mobilenet", "widths": [3, 7, 9]}
    assert w.grown(1, 2).widths == (3, 9, 9)
    for bad in ((), (3, 0, 1), (3, 2.5, 1), ("a",)):
        with pytest.raises(GenotypeError):
            MobileNetWidths(bad)
    with pytest.raises(SpaceError, match="3 layers"):
        tiny_space().check(MobileNetWidths((1, 2)))
    with pytest.raises(SpaceError, match="strides must be 1 or 2"):
        create_space("mobilenet", base_widths=(8, 16), strides=(1, 3))


def test_the_grid_lut_interpolates_between_grid_widths():
    """FLOPs are bilinear in (cin, cout): priced from the grid keys only, they come out exact."""
    space = tiny_space()
    flops = FlopsCost()
    lut = {k.encode(): flops.key_cost(k) for k in enumerate_op_keys(space)}
    grid = GridLatencyCost(lut)
    grid.check(space)
    rng = random.Random(0)
    for _ in range(5):
        widths = space.sample(rng)
        assert grid.genotype_cost(space, widths) == pytest.approx(flops.genotype_cost(space, widths), rel=1e-9)
    too_wide = MobileNetWidths((space.max_width(0) + 1, 8, 8))
    with pytest.raises(MissingOpsError, match="outside the grid"):
        grid.genotype_cost(space, too_wide)
    some = dict(list(lut.items())[:-3])
    with pytest.raises(MissingOpsError) as err:
        GridLatencyCost(some).check(space)
    assert set(err.value.keys) == set(list(lut)[-3:])
