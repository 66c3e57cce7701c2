"""Phase 2's shares in one forward pass (``prune.segments``): the same losses and gradients as a pass per share."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hilnas.searchers.cost import FlopsCost
from hilnas.searchers.prune.cost import ModuleCosts
from hilnas.searchers.prune.gates import GateLayout, GateObjective, concrete, freeze
from hilnas.searchers.prune.network import GatedResNet
from hilnas.searchers.prune.search import PruneConfig
from hilnas.searchers.prune.segments import segment_statistics
from hilnas.searchers.spaces import create_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = create_space("resnet18", C=4, groups=2, blocks=(1, 1, 1), in_channels=1, input_size=8, num_classes=4)


def _objective() -> GateObjective:
    torch.manual_seed(0)
    net = GatedResNet(SPACE)
    for m in net.modules():   # BatchNorm with non-trivial affine parameters, so per-share statistics matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    layout = GateLayout(len(SPACE.layers()), SPACE.groups)
    return GateObjective(freeze(net), ModuleCosts.of(SPACE, FlopsCost()), layout)


@pytest.mark.parametrize("n", [32, 30])   # equal shares, and a last share smaller than the others
def test_one_pass_gives_each_share_the_loss_and_gradient_of_its_own_pass(n):
    obj = _objective()
    x, y = torch.randn(n, 1, 8, 8) * 3 + 1, torch.randint(0, 4, (n,))
    logits = torch.randn(4, obj.layout.size, requires_grad=True)
    lams = torch.tensor([0.0, 0.3, 1.0, 5.0])
    loss, ce = obj.several(logits, lams, x, y, 0.7, generator=torch.Generator().manual_seed(3))
    (loss * torch.arange(1.0, 5.0)).sum().backward()
    one = logits.grad.clone()
    logits.grad = None
    g = torch.Generator().manual_seed(3)
    split_losses, split_ce = [], []
    for j, (xs, ys) in enumerate(zip(x.chunk(4), y.chunk(4))):
        lj, cj = obj(logits[j], float(lams[j]), xs, ys, 0.7, generator=g)
        split_losses.append(lj)
        split_ce.append(cj)
    (torch.stack(split_losses) * torch.arange(1.0, 5.0)).sum().backward()
    torch.testing.assert_close(ce, torch.stack(split_ce).detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss.detach(), torch.stack(split_losses).detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(one, logits.grad, rtol=1e-4, atol=1e-6)
    assert one.abs().sum() > 0


def _several_per_lambda(obj, logits, lams, x, y, tau, generator):
    """``several`` as it was before the sixth session: a draw, a split and a cost per lambda (the reference)."""
    sizes = [len(part) for part in y.chunk(len(lams))]
    gates = [obj.layout.split(concrete(theta, tau, generator=generator)) for theta in logits]
    per = torch.tensor(sizes)
    block = torch.stack([g[0] for g in gates]).repeat_interleave(per, dim=0)
    group = torch.stack([g[1] for g in gates]).repeat_interleave(per, dim=0)
    with segment_statistics(obj.net, sizes):
        out = obj.net(x, (block, group))
    ce = torch.stack([F.cross_entropy(o, t) for o, t in zip(out.split(sizes), y.split(sizes))])
    cost = torch.stack([obj.costs.expected_fraction(*g) for g in gates])
    return ce + lams.to(ce.dtype) * cost, ce


@pytest.mark.parametrize("granularity", ["groups", "blocks"])
def test_the_k_lambdas_drawn_and_priced_in_one_call_are_bit_for_bit_the_per_lambda_ones(granularity):
    # a change for speed only: the same draws and losses exactly, not to rounding
    obj = _objective()
    torch.manual_seed(3)
    obj = GateObjective(obj.net, obj.costs, GateLayout(obj.layout.blocks, obj.layout.groups, granularity))
    x, y = torch.randn(32, 1, 8, 8) * 3 + 1, torch.randint(0, 4, (32,))
    logits = torch.randn(4, obj.layout.size, requires_grad=True)
    lams = torch.tensor([0.0, 0.3, 1.0, 5.0])
    g = torch.Generator().manual_seed(5)
    loss, ce = obj.several(logits, lams, x, y, 0.7, generator=g)
    (loss * torch.arange(1.0, 5.0)).sum().backward()
    batched, after = logits.grad.clone(), torch.rand(3, generator=g)
    logits.grad = None
    g = torch.Generator().manual_seed(5)
    ref_loss, ref_ce = _several_per_lambda(obj, logits, lams, x, y, 0.7, g)
    (ref_loss * torch.arange(1.0, 5.0)).sum().backward()
    # the draws, the losses and the generator's state exactly; the gradients to float rounding (a float64 cost's
    # gradient summed in another order: at most an ulp in a few entries)
    assert torch.equal(loss, ref_loss) and torch.equal(ce, ref_ce)
    assert torch.equal(after, torch.rand(3, generator=g))   # the generator moved on alike
    torch.testing.assert_close(batched, logits.grad, rtol=1e-6, atol=1e-9)
    assert batched.abs().sum() > 0 and len(set(loss.tolist())) == 4


def test_the_phase_histories_cost_fractions_priced_at_once_are_each_lambdas_own():
    obj = _objective()
    logits = torch.randn(12, obj.layout.size)
    together = obj.cost_fractions(logits)
    assert together.shape == (12,)
    assert all(torch.equal(together[i], obj.cost_fraction(logits[i])) for i in range(12))


def test_statistics_of_the_whole_batch_would_mix_the_shares_patterns():
    # the mechanism, not the safety net: without per-share statistics the one pass is not the split passes
    obj = _objective()
    x = torch.randn(32, 1, 8, 8) * 3 + 1
    gates = (torch.ones(32, 3), torch.cat([torch.ones(16, 3, 2), torch.zeros(16, 3, 2)]))
    with torch.no_grad():
        mixed = obj.net(x, gates)
        with segment_statistics(obj.net, [16, 16]):
            apart = obj.net(x, gates)
        alone = obj.net(x[:16], (torch.ones(3), torch.ones(3, 2)))
    torch.testing.assert_close(apart[:16], alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(mixed[:16], alone, atol=1e-3)
    assert all("forward" not in vars(m) for m in obj.net.modules())   # the BatchNorms are themselves again


def test_the_phase2_pass_setting_is_checked():
    with pytest.raises(ValueError, match="phase2_pass"):
        PruneConfig(phase2_pass="both")


def test_the_anchor_setting_is_checked():
    with pytest.raises(ValueError, match="anchor must be"):
        PruneConfig(anchor="free")
    with pytest.raises(ValueError, match="lambdas_per_step >= 2"):
        PruneConfig(anchor="learned", lambdas_per_step=1)
    PruneConfig(anchor="pinned", lambdas_per_step=1)


def test_only_lambda_zero_moves_the_anchor_and_it_gives_lambda_zero_its_logits():
    from hilnas.searchers.prune.search import new_hypernet
    obj = _objective()
    hyper = new_hypernet(obj.layout, 8)
    hyper.pin()
    torch.testing.assert_close(hyper(torch.zeros(1))["gates"], hyper.anchor.detach())
    hyper(torch.tensor([0.4]))["gates"].sum().backward()
    assert hyper.anchor.grad is None and any(p.grad is not None for p in hyper.h.parameters())
    hyper.zero_grad(set_to_none=True)
    hyper(torch.zeros(1))["gates"].sum().backward()
    assert hyper.anchor.grad is not None
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in hyper.h.parameters())


@pytest.mark.parametrize("pinned", [True, False])
def test_the_k_lambdas_logits_in_one_call_of_the_hypernetwork_are_the_per_lambda_ones(pinned):
    """``Anchored.flat`` on (k, 1) rows (phase 2: one call of h for the step's lambdas): the logits and gradients those of a
    call per lambda to float rounding (a (k, 1) matmul rounds as k (1,) ones may not); lambda = 0's row is the anchor
    and only it reaches the anchor's gradient."""
    from hilnas.searchers.prune.search import new_hypernet
    torch.manual_seed(0)
    obj = _objective()
    u = torch.tensor([[0.0], [0.15], [0.5], [0.9]])
    grads = []
    for one_call in (True, False):
        hyper = new_hypernet(obj.layout, 8)
        with torch.no_grad():    # a hypernetwork that has moved off its zero-initialised output layers
            for p in hyper.h.parameters():
                p.copy_(torch.linspace(-0.5, 0.5, p.numel()).reshape(p.shape))
        if pinned:
            hyper.pin()
        logits = hyper.flat(u) if one_call else torch.stack([hyper(row)["gates"] for row in u])
        weight = torch.linspace(1.0, 2.0, logits.numel()).reshape(logits.shape)
        (logits * weight).sum().backward()
        grads.append((logits.detach(), [p.grad.clone() for p in hyper.h.parameters()],
                      None if hyper.anchor.grad is None else hyper.anchor.grad.clone()))
    (a, ga, anchor_a), (b, gb, anchor_b) = grads
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
    if pinned:
        assert torch.equal(a[0], b[0]) and torch.equal(a[0], hyper.anchor.detach())   # lambda = 0: the anchor itself
        assert torch.equal(anchor_a, anchor_b)   # lambda = 0's row alone reaches it: its weights
    else:
        assert anchor_a is None and anchor_b is None
