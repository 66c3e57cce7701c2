"""Why the family collapsed, and the two mechanisms that keep it spread (issue 12).

1. kappa x Latency at every scale (``kappa_scaling="Lambda"``) pushes the lambda = 0 end as hard as the
   rest: the cross-entropy's pull on the alphas is far weaker than any cost term's, so every member
   becomes the same cheap cell. Riding with the scale (``"scale"``, the default), lambda = 0 is accuracy
   alone and the family spreads from there.
2. The hypernetwork's output moves about ``hidden`` times its Adam learning rate per step: at 0.01 the
   softmax goes (nearly) one-hot within a short search (almost no gradient, every lambda the same cell);
   the default 0.001 keeps the op weights softer.
"""
from __future__ import annotations

import dataclasses
import pytest
import torch

from hilnas.searchers.cost import FlopsCost, ParamsCost
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.hypernet import HypernetConfig, Hypernetwork, Objective, search
from hilnas.searchers.hypernet.bound import cost_span
from testmodels import tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NB201 = tiny_space("nb201")
DATA = DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=384,
                     synthetic_test=64, val_fraction=0.5, batch_size=16)
# a strong latency term (kappa = 1, i.e. a whole Lambda) and a given Lambda, so only kappa's scaling differs
BASE = HypernetConfig(epochs=3, grid_points=12, curve_points=9, bisect_steps=2, bound_samples=1, bound_batches=1,
                      Lambda=1.0, kappa=1.0)


def test_kappa_rides_with_the_scale_so_lambda_zero_is_accuracy_alone():
    objective = Objective(NB201, ParamsCost(), FlopsCost(), None, kappa=0.5, kappa_energy=0.0)
    k = len(objective.ops)
    op_w = {"cell": torch.full((len(NB201.edges), len(NB201.ops)), 1.0 / len(NB201.ops))}
    flops = float(objective.fraction(FlopsCost(), op_w, None))
    assert flops > 0
    assert float(objective.penalty(torch.zeros(k), op_w, None)) == 0.0          # lambda = 0: no cost term at all
    at = torch.full((k,), 0.2)
    assert float(objective.penalty(at, op_w, None)) == pytest.approx(
        float(objective.complexity_term(at, op_w, None)) + 0.5 * 0.2 * flops)
    old = Objective(NB201, ParamsCost(), FlopsCost(), None, kappa=0.5, kappa_energy=0.0, kappa_scaling="Lambda")
    old.kappa_scale = 3.0   # Lambda
    assert float(old.penalty(torch.zeros(k), op_w, None)) == pytest.approx(0.5 * 3.0 * flops)


@pytest.fixture(scope="module")
def runs():
    loaders = loaders_for(DATA)[1]
    torch.set_num_threads(1)
    return {mode: search(NB201, FlopsCost(), dataclasses.replace(BASE, kappa_scaling=mode), seed=0, data=loaders,
                         complexity=ParamsCost())
            for mode in ("scale", "Lambda")}


def test_with_kappa_at_every_scale_the_lambda_zero_end_is_pushed_with_the_rest(runs):
    """The same run but for kappa's scaling: at every scale, the latency term drags lambda = 0 towards the
    cheap end (the relaxed cost of the whole family falls); riding with the scale, it does not."""
    span = cost_span(NB201, FlopsCost())
    reach = span.dearest_cost - span.cheapest_cost
    top = {mode: r.architecture(0.0).expected["mflops"] for mode, r in runs.items()}
    assert top["scale"] > top["Lambda"] + 0.05 * reach
    raw = runs["scale"].curve(runs["scale"].grid(12), metric="mflops").raw   # and the family falls from there
    assert raw[-1].expected["mflops"] < raw[0].expected["mflops"]


@pytest.mark.parametrize("lr, saturates", [(None, False), (1e-2, True)])
def test_the_default_learning_rate_keeps_the_op_weights_soft(lr, saturates):
    """A steady push towards one op on every edge (no cross-entropy pulling back), for as many steps as a
    3-epoch demo search takes (70): at lr 0.01 the hypernetwork's output leaves the other ops < 1e-3 of the
    weight (the softmax's gradient to them is as small); at the default they keep > 3e-3, about 50x more."""
    cfg = HypernetConfig() if lr is None else HypernetConfig(arch=dataclasses.replace(HypernetConfig().arch, lr=lr))
    torch.manual_seed(0)
    h = Hypernetwork(4, {"alphas.cell": (6, 5)}, hidden=cfg.hidden)
    opt = torch.optim.Adam(h.parameters(), lr=cfg.arch.lr, betas=cfg.arch.betas)
    for _ in range(70):
        w = h(torch.zeros(4))["alphas.cell"].softmax(-1)
        loss = -w[:, 0].log().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        least = float(h(torch.zeros(4))["alphas.cell"].softmax(-1)[:, 1:].max())
    assert (least < 1e-3) if saturates else (least > 3e-3)


@pytest.mark.parametrize("mode", ["drawn", "zero"])
def test_the_weight_steps_architecture_is_a_drawn_lambdas_or_lambda_zeros(mode, monkeypatch):
    """``weight_lambda``: after the warm-up the weight step runs the architecture at a drawn lambda ("drawn"), or
    at lambda = 0 throughout ("zero", as in the warm-up: the weights serve the accuracy-first end)."""
    from hilnas.searchers.hypernet import RelaxedSupernet

    seen = []
    forward = RelaxedSupernet.forward

    def spy(self, x):
        if torch.is_grad_enabled():   # a weight step, not an evaluation
            seen.append(None if self.coeffs is None else self.coeffs.clone())
        return forward(self, x)

    monkeypatch.setattr(RelaxedSupernet, "forward", spy)
    torch.set_num_threads(1)
    search(NB201, ParamsCost(), dataclasses.replace(BASE, epochs=2, kappa=0.0, weight_lambda=mode), seed=0,
           data=loaders_for(DATA)[1])
    drawn = [c for c in seen if c is not None]
    assert seen[0] is None                                       # the warm-up: lambda = 0's architecture
    if mode == "zero":
        assert not drawn
    else:
        assert len(drawn) > len(seen) // 2 and len({float(c.max()) for c in drawn}) > 5


def test_an_unknown_weight_lambda_is_refused():
    with pytest.raises(ValueError, match="weight_lambda"):
        HypernetConfig(weight_lambda="random")
