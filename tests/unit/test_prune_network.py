"""The prunable ResNet: gate patterns as data, op keys, the gated network and the real smaller network it exports to."""
from __future__ import annotations

import itertools
import random

import numpy as np
import onnx
import pytest
import torch

from hilnas.searchers.cost import FlopsCost, LutLatencyCost, ParamsCost
from hilnas.searchers.export import export_onnx, verify_onnx
from hilnas.searchers.genotype import GenotypeError, genotype_from_json
from hilnas.searchers.model import build_network
from hilnas.searchers.op_key import (OpKey, build_op_module, decode, enumerate_op_keys, export_op_onnx,
                                     fixed_op_keys, network_op_keys, op_output_shape)
from hilnas.searchers.prune.cost import ModuleCosts, kept_distribution
from hilnas.searchers.prune.gates import GateLayout, pattern_gates
from hilnas.searchers.prune.network import GatedResNet
from hilnas.searchers.spaces import GatePattern, SpaceError, create_space
from hilnas.server import model_meta

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = create_space("resnet18", C=4, groups=2, blocks=(1, 2, 1), in_channels=1, input_size=8, num_classes=4)


def randomised(space) -> GatedResNet:
    """A gated network whose BatchNorms are not the identity (fresh ones would hide slicing mistakes)."""
    torch.manual_seed(0)
    net = GatedResNet(space)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return net.eval()


def all_patterns(space):
    B, G = len(space.layers()), space.groups
    for bits in itertools.product([False, True], repeat=B * G):
        yield GatePattern(tuple(tuple(bits[b * G:(b + 1) * G]) for b in range(B)))


# -- the space and its patterns ---------------------------------------------------------------------
def test_the_registered_spaces_are_resnet18_and_its_narrow_variant():
    full, narrow = create_space("resnet18"), create_space("resnet18-narrow")
    assert (full.C, narrow.C) == (64, 16) and full.blocks == narrow.blocks == (2, 2, 2, 2)
    blocks = full.layers()
    assert [b.C_out for b in blocks] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [b.stride for b in blocks] == [1, 1, 2, 1, 2, 1, 2, 1] and sum(b.projection for b in blocks) == 3
    assert full.head_channels == 512 and full.head_size == 4
    params = sum(p.numel() for p in GatedResNet(full).parameters())
    assert 11.1e6 < params < 11.2e6   # ResNet-18 for CIFAR-10: 11.17 M parameters
    with pytest.raises(SpaceError, match="divide"):
        create_space("resnet18", C=6, groups=4)


def test_a_pattern_round_trips_as_json_and_bad_ones_are_refused():
    rng = random.Random(0)
    for _ in range(20):
        p = TINY.sample(rng)
        assert genotype_from_json(p.to_json()) == p == GatePattern.from_dict(p.to_dict()) == GatePattern.from_bits(p.bits())
        TINY.check(p)
    assert GatePattern.full(4, 2).kept_groups == (2, 2, 2, 2) and not any(GatePattern.empty(4, 2).kept_blocks)
    with pytest.raises(GenotypeError):
        GatePattern(((True, 2),))
    with pytest.raises(GenotypeError):
        GatePattern(((True,), (True, False)))
    with pytest.raises(GenotypeError):
        GatePattern.from_dict({"space": "resnet", "masks": ["1x"]})
    for bad in ("11 1x", "11 1", "", None):
        with pytest.raises(GenotypeError):
            GatePattern.from_bits(bad)
    with pytest.raises(SpaceError, match="blocks"):
        TINY.check(GatePattern.full(3, 2))


# -- op keys --------------------------------------------------------------------------------------
def test_every_key_round_trips_builds_and_exports():
    for space in (TINY, create_space("resnet18-narrow")):
        keys = enumerate_op_keys(space)
        assert len(keys) == len(set(keys))
        for k in keys:
            assert decode(k.encode()) == k
    for k in enumerate_op_keys(TINY):
        m = build_op_module(k).eval()
        with torch.no_grad():
            out = m(torch.zeros(1, k.cin, k.h, k.w))
        assert tuple(out.shape) == op_output_shape(k)
        onnx.checker.check_model(onnx.load_from_string(export_op_onnx(k)))
    assert len(enumerate_op_keys(create_space("resnet18-narrow"))) == 40


def test_keys_of_a_pattern_follow_what_it_keeps():
    B = len(TINY.layers())
    full, empty = GatePattern.full(B, 2), GatePattern.empty(B, 2)
    ops = lambda p: [k.op for k in network_op_keys(TINY, p)]  # noqa: E731
    assert ops(full).count("res_branch") == B and ops(full).count("add_relu") == B
    assert "res_branch" not in ops(empty) and ops(empty).count("relu") == ops(empty).count("res_shortcut") == 2
    assert set(fixed_op_keys(TINY)) <= set(network_op_keys(TINY, empty))
    one = GatePattern(((True, False),) + ((False, False),) * (B - 1))
    mids = [dict(k.params)["mid"] for k in network_op_keys(TINY, one) if k.op == "res_branch"]
    assert mids == [TINY.layers()[0].group_width]
    assert set(network_op_keys(TINY, TINY.sample(random.Random(1)))) <= set(enumerate_op_keys(TINY))


# -- the gated network and the pruned one -----------------------------------------------------------
def test_the_pruned_network_computes_what_the_gated_network_computes_for_every_pattern():
    net = randomised(TINY)
    layout = GateLayout(len(TINY.layers()), TINY.groups)
    x = torch.randn(3, *TINY.input_shape[1:])
    with torch.no_grad():
        for p in all_patterns(TINY):
            want = net(x, pattern_gates(layout, p))
            got = net.prune(p).eval()(x)
            assert torch.allclose(got, want, atol=1e-5), p.bits()


def test_a_block_gated_off_with_its_groups_on_is_dropped_too():
    net = randomised(TINY)
    layout = GateLayout(len(TINY.layers()), TINY.groups)
    logits = torch.ones(layout.size)
    logits[1] = -1.0          # block 1's gate off, its groups on
    p = layout.pattern(logits)
    assert p.kept_groups[1] == 0 and p.kept_groups[0] == TINY.groups
    block, group = layout.split((logits > 0).float())
    x = torch.randn(2, *TINY.input_shape[1:])
    with torch.no_grad():
        assert torch.allclose(net(x, (block, group)), net.prune(p).eval()(x), atol=1e-5)


def test_exported_pruned_models_match_the_gated_network_and_are_really_smaller():
    net = randomised(create_space("resnet18", C=8, groups=4, input_size=16, num_classes=10))
    space = net.space
    layout = GateLayout(len(space.layers()), space.groups)
    rng = random.Random(3)
    x = np.random.default_rng(0).standard_normal(space.input_shape).astype(np.float32)
    full_convs = None
    for p in [GatePattern.full(8, 4)] + [space.sample(rng) for _ in range(6)] + [GatePattern.empty(8, 4)]:
        pruned = net.prune(p).eval()
        data = model_meta.attach(export_onnx(pruned, space.input_shape), space, p)
        verify_onnx(pruned, data, space.input_shape)
        import onnxruntime as ort
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        (got,) = sess.run(None, {sess.get_inputs()[0].name: x})
        with torch.no_grad():
            want = net(torch.from_numpy(x), pattern_gates(layout, p)).numpy()
        assert np.allclose(got, want, atol=1e-4), p.bits()
        graph = onnx.load_from_string(data).graph
        convs = sum(n.op_type == "Conv" for n in graph.node)
        weights = sum(int(np.prod(t.dims)) for t in graph.initializer)
        if full_convs is None:
            full_convs, full_weights = convs, weights
        else:   # gated-off parts are removed, not multiplied by zero
            assert convs == full_convs - 2 * sum(1 for k in p.kept_groups if k == 0)
            assert weights < full_weights or p.kept_groups == (4,) * 8
        assert model_meta.read(data)[1] == p
        assert model_meta.op_keys(data) == [k.encode() for k in network_op_keys(space, p)]


def test_build_network_gives_the_pruned_network_of_a_pattern():
    p = TINY.sample(random.Random(5))
    net = build_network(TINY, p)
    assert type(net).__name__ == "PrunedResNet" and net.pattern == p
    assert sum(q.numel() for q in net.parameters()) == pytest.approx(ParamsCost().genotype_cost(TINY, p) * 1e6)


def test_no_pattern_breaks_the_graph():
    """Every pattern, the fully pruned one included, still computes its output from its input."""
    net = randomised(TINY)
    x1, x2 = torch.randn(1, *TINY.input_shape[1:]), torch.randn(1, *TINY.input_shape[1:])
    with torch.no_grad():
        for p in all_patterns(TINY):
            pruned = net.prune(p).eval()
            assert not torch.allclose(pruned(x1), pruned(x2)), p.bits()


# -- module costs ---------------------------------------------------------------------------------
def test_module_costs_add_up_to_the_exact_network_cost():
    rng = random.Random(0)
    lut = {k.encode(): rng.uniform(0.01, 1.0) for k in enumerate_op_keys(TINY)}
    for model in (ParamsCost(), FlopsCost(), LutLatencyCost(lut)):
        costs = ModuleCosts.of(TINY, model)
        B = len(TINY.layers())
        assert costs.pattern_cost(GatePattern.empty(B, 2)) == pytest.approx(costs.rest)
        assert costs.full == pytest.approx(model.genotype_cost(TINY, GatePattern.full(B, 2)))
        for p in all_patterns(TINY):
            assert costs.pattern_cost(p) == pytest.approx(model.genotype_cost(TINY, p), rel=1e-9, abs=1e-12)


def test_expected_cost_is_the_mean_cost_of_the_derived_network():
    costs = ModuleCosts.of(TINY, ParamsCost())
    B, G = len(TINY.layers()), TINY.groups
    gen = torch.Generator().manual_seed(0)
    p, q = torch.rand(B, generator=gen, dtype=torch.float64), torch.rand(B, G, generator=gen, dtype=torch.float64)
    exact = 0.0   # enumerate every outcome of the independent gates
    for blocks in itertools.product([0, 1], repeat=B):
        for groups in itertools.product([0, 1], repeat=B * G):
            prob = 1.0
            for b in range(B):
                prob *= float(p[b] if blocks[b] else 1 - p[b])
                for g in range(G):
                    prob *= float(q[b, g] if groups[b * G + g] else 1 - q[b, g])
            pattern = GatePattern(tuple(tuple(bool(blocks[b] and groups[b * G + g]) for g in range(G))
                                        for b in range(B)))
            exact += prob * costs.pattern_cost(pattern)
    assert float(costs.expected(p, q)) == pytest.approx(exact, rel=1e-9)
    for pattern in (GatePattern.full(B, G), TINY.sample(random.Random(2))):   # at 0/1 it is the pattern's cost
        block, group = pattern_gates(GateLayout(B, G), pattern)
        assert float(costs.expected(block, group)) == pytest.approx(costs.pattern_cost(pattern))
    dist = kept_distribution(q)
    assert torch.allclose(dist.sum(1), torch.ones(B, dtype=torch.float64))
    assert torch.allclose((dist * torch.arange(G + 1)).sum(1), q.sum(1))


def test_an_unknown_op_key_parameter_is_refused():
    from hilnas.searchers.op_key import OpKeyError
    with pytest.raises(OpKeyError, match="mid"):
        build_op_module(OpKey("res_branch", 4, 4, 8, 8, 1))
