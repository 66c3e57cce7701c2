"""Channel-group gates on the MobileNet backbone: the exported narrower network computes what the gated one does,
the expected cost of relaxed gates is the LUT grid's price, and Algorithm 1 runs on it through the ResNet's phases."""
from __future__ import annotations

import itertools
import random

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hilnas.searchers.cost import FlopsCost, MissingOpsError, ParamsCost
from hilnas.searchers.export import export_onnx
from hilnas.searchers.op_key import enumerate_op_keys
from hilnas.searchers.prune.cost import ModuleCosts
from hilnas.searchers.prune.gates import GateLayout, pattern_gates
from hilnas.searchers.prune.mobilenet.space import MobileNetGroups, PrunedWidths
from hilnas.searchers.spaces import create_space
from hilnas.searchers.spaces.base import SpaceError
from hilnas.searchers.spaces.mobilenet.grid import GridLatencyCost
from hilnas.searchers.spaces.resnet import GatePattern

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BACKBONE = create_space("mobilenet", in_channels=3, input_size=16, num_classes=4, base_widths=(8, 12, 16, 16),
                        strides=(1, 2, 2, 1))
SPACE = MobileNetGroups(BACKBONE, groups=3)
PATTERN = GatePattern(((False, True, True), (True, False, False), (False, False, True), (True, True, False)))


def gated_network(seed: int = 0):
    torch.manual_seed(seed)
    gated = SPACE.gated_network()
    for m in gated.modules():   # a trained network's BatchNorm: shifts and statistics far from the defaults
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return gated.eval()


def grid_lut(space=BACKBONE, drop: str | None = None) -> GridLatencyCost:
    """A LUT of the backbone's grid (FLOPs plus a fixed overhead per op: not proportional to the widths)."""
    return GridLatencyCost({k.encode(): FlopsCost().key_cost(k) + 0.01 for k in enumerate_op_keys(space)
                            if k.encode() != drop})


def test_the_exported_pruned_mobilenet_matches_the_gated_network():
    gated = gated_network()
    gates = pattern_gates(GateLayout(4, 3), PATTERN)
    pruned = gated.prune(PATTERN).eval()
    assert pruned.widths.widths == (6, 6, 8, 12)   # groups of 2, 3, 4, 4 channels gone: really narrower
    assert SPACE.widths_of(PATTERN) == pruned.widths
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in gated.net.parameters())
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        want = gated(x, gates)
        assert torch.allclose(pruned(x), want, atol=1e-5)
        assert not torch.allclose(gated(x), want, atol=1e-3)   # the gates change the output
    onnx_bytes = export_onnx(pruned, (1, 3, 16, 16))
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = np.concatenate([sess.run(None, {name: x[i:i + 1].numpy()})[0] for i in range(len(x))])
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_a_layer_gate_off_keeps_only_the_first_group_and_every_pattern_is_a_network():
    gated = gated_network(1)
    layout = GateLayout(4, 3)
    logits = torch.tensor([-1.0, 1, 1, 1] + [1.0] * 12)    # layer 0 off although its groups are on
    pattern = layout.pattern(logits)
    assert pattern.masks[0] == (False, False, False) and SPACE.widths_of(pattern).widths == (2, 12, 16, 16)
    empty = GatePattern.empty(4, 3)
    pruned = gated.prune(empty).eval()
    assert pruned.widths.widths == (2, 3, 4, 4)           # every layer keeps its first group
    with torch.no_grad():
        x = torch.randn(2, 3, 16, 16)
        assert torch.allclose(pruned(x), gated(x, pattern_gates(layout, empty)), atol=1e-5)
    with pytest.raises(SpaceError, match="3 gated groups for each of 4 layers"):
        gated.prune(GatePattern(PATTERN.masks[:2]))
    with pytest.raises(SpaceError, match="too few"):
        MobileNetGroups(BACKBONE, groups=8)


def test_per_sample_gates_compute_what_each_pattern_computes_alone():
    gated = gated_network(2)
    layout = GateLayout(4, 3)
    a, b = pattern_gates(layout, PATTERN), pattern_gates(layout, GatePattern.full(4, 3))
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        both = gated(x, (torch.stack([a[0], a[0], b[0], b[0]]), torch.stack([a[1], a[1], b[1], b[1]])))
        assert torch.allclose(both[:2], gated(x[:2], a), atol=1e-5)
        assert torch.allclose(both[2:], gated(x[2:], b), atol=1e-5)


def test_a_patterns_cost_is_the_lut_grids_price_of_its_widths():
    lut = grid_lut()
    costs = ModuleCosts.of(SPACE, lut)
    rng = random.Random(0)
    patterns = [SPACE.sample(rng) for _ in range(20)] + [GatePattern.full(4, 3), GatePattern.empty(4, 3)]
    for p in patterns:
        assert costs.pattern_cost(p) == pytest.approx(lut.genotype_cost(SPACE, p), rel=1e-9)
        assert lut.genotype_cost(SPACE, p) == pytest.approx(lut.genotype_cost(BACKBONE, SPACE.widths_of(p)), rel=1e-12)
    assert costs.rest == pytest.approx(lut.genotype_cost(BACKBONE, MobileNetWidths_of((2, 3, 4, 4))))
    assert costs.full == pytest.approx(lut.genotype_cost(BACKBONE, BACKBONE.widths_at(1.0)))
    assert costs.fraction(costs.full) == pytest.approx(1.0) and costs.branch.shape == (4, 4)
    # an exact cost model (parameters) agrees where it is bilinear in the widths, i.e. everywhere
    params = ModuleCosts.of(SPACE, ParamsCost())
    assert params.pattern_cost(PATTERN) == pytest.approx(ParamsCost().genotype_cost(SPACE, PATTERN), rel=1e-9)


def MobileNetWidths_of(widths):
    from hilnas.searchers.spaces.mobilenet import MobileNetWidths
    return MobileNetWidths(tuple(widths))


def test_the_relaxed_cost_is_differentiable_and_the_exact_expectation_within_one_grid_cell():
    # two grid points per layer: one cell, where independent layers make the price at the expected widths exact
    backbone = create_space("mobilenet", in_channels=1, input_size=8, num_classes=3, base_widths=(8, 12, 8),
                            strides=(1, 2, 1), grid_multipliers=(0.25, 1.0))
    space = MobileNetGroups(backbone, groups=2)
    lut = grid_lut(backbone)
    costs = ModuleCosts.of(space, lut)
    torch.manual_seed(0)
    q = torch.rand(3, 2, dtype=torch.float64)
    expected = 0.0
    for bits in itertools.product((0, 1), repeat=6):
        p = GatePattern(tuple(tuple(bool(b) for b in bits[2 * i:2 * i + 2]) for i in range(3)))
        prob = float(torch.prod(torch.where(torch.tensor(bits, dtype=torch.bool).view(3, 2), q, 1 - q)))
        expected += prob * lut.genotype_cost(space, p)
    assert float(costs.expected(torch.ones(3), q)) == pytest.approx(expected, rel=1e-9)
    q.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda g: costs.expected(torch.ones(3, dtype=torch.float64), g), (q,))
    costs.expected_fraction(torch.ones(3), q).backward()
    assert (q.grad > 0).all()   # every group costs something on this LUT


def test_a_lut_lacking_a_grid_key_names_it():
    needed = [k.encode() for k in enumerate_op_keys(SPACE)]
    missing = next(k for k in needed if k.startswith("dws_block"))
    with pytest.raises(MissingOpsError) as err:
        grid_lut(drop=missing).check(SPACE)
    assert missing in str(err.value)
    with pytest.raises(MissingOpsError, match=missing.replace("|", r"\|")):
        ModuleCosts.of(SPACE, grid_lut(drop=missing))
    # a grid key beyond what the gates reach is not needed (1.5x: wider than the pre-trained network)
    assert all("cout=24" not in k for k in needed) and ModuleCosts.of(SPACE, grid_lut())


def test_the_exported_genotype_carries_the_widths_and_the_masks():
    from hilnas.searchers.genotype import genotype_from_json

    space, genotype = SPACE.exported(PATTERN)
    assert space is BACKBONE and genotype.widths == (6, 6, 8, 12)
    again = genotype_from_json(genotype.to_json())
    assert isinstance(again, PrunedWidths) and again == genotype and again.masks == ("011", "100", "001", "110")
    assert grid_lut().genotype_cost(BACKBONE, again) == pytest.approx(grid_lut().genotype_cost(SPACE, PATTERN))


def test_a_dropped_group_gets_the_gradient_of_turning_it_on():
    """Under batch-statistics BatchNorm (as the search runs the network), the gradient at a gate that is off is the
    loss's change as the group comes back (a finite difference); masking the channel where it is made as well
    would leave it ~0, and a dropped group could never return."""
    import torch.nn.functional as F
    from hilnas.searchers.prune.gates import freeze

    gated = freeze(gated_network(3))
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 4, (16,))
    on, group = pattern_gates(GateLayout(4, 3), PATTERN)
    group = group.double().requires_grad_(True)

    def loss(g):
        return F.cross_entropy(gated.double()(x.double(), (on.double(), g)), y)

    loss(group).backward()
    off = [(l, g) for l in range(4) for g in range(3) if not PATTERN.masks[l][g]]
    for l, g in off:
        eps = torch.zeros_like(group)
        eps[l, g] = 1e-4
        with torch.no_grad():
            diff = float((loss(group + eps) - loss(group)) / 1e-4)
        assert group.grad[l, g].item() == pytest.approx(diff, rel=0.05, abs=1e-6)
    assert max(abs(group.grad[l, g].item()) for l, g in off) > 1e-3
