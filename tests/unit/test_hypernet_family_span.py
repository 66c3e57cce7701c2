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
                      Lambda=1.0, kappa=1.0, arch_step="straight-through", anchor="none", scale_sampling="log",
                      knee="none")   # lambda = 0 free (not pinned): kappa's scaling is what moves it


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


@pytest.fixture(scope="module")
def derived_cells():
    """Per weight step of a short search, the cells the derived (not searched) cells ran, by ``weight_lambda``; and
    the number of warm-up steps."""
    from hilnas.searchers.hypernet import RelaxedSupernet
    from hilnas.searchers.supernet import SearchCell

    out, state = {}, {"step": False, "cells": None}
    forward, cell_forward = RelaxedSupernet.forward, SearchCell.forward

    def spy(self, x):
        if not torch.is_grad_enabled():   # an evaluation, not a weight step
            return forward(self, x)
        state["step"], state["cells"] = True, []
        try:
            return forward(self, x)
        finally:
            state["step"] = False
            out[state["mode"]].append(tuple(state["cells"]))

    def cell_spy(self, inputs, weights=None, edge_w=None, choice=None):
        if state["step"] and choice is not None:
            state["cells"].append(tuple(sorted(choice)))
        return cell_forward(self, inputs, weights, edge_w, choice)

    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RelaxedSupernet, "forward", spy)
        mp.setattr(SearchCell, "forward", cell_spy)
        for mode in ("zero", "uniform", "sandwich"):
            state["mode"], out[mode] = mode, []
            search(NB201, ParamsCost(), dataclasses.replace(BASE, epochs=2, kappa=0.0, weight_lambda=mode), seed=0,
                   data=loaders_for(DATA)[1])
    steps = len(out["zero"])
    return out, int(round(BASE.warmup_fraction * steps))


def test_the_warm_up_trains_one_cell_unless_the_weight_steps_are_uniform(derived_cells):
    """The collapse's cause on the full-size NB201 (14 of its 15 cells are derived cells): with "zero" (and "drawn")
    the warm-up's derived cells are the argmax of the initial alphas, one cell trained at every step, so it becomes
    a low-loss cell on the shared weights. "uniform" trains a freshly drawn valid cell at every step."""
    cells, warmup = derived_cells
    assert warmup >= 4
    assert len(set(cells["zero"][:warmup])) == 1
    assert len(set(cells["uniform"][:warmup])) == warmup
    assert len(set(cells["uniform"])) > 0.9 * len(cells["uniform"])


def test_uniform_weight_steps_train_every_op_about_equally(derived_cells):
    """Over the run, each op runs in the derived cells' edges about equally often with "uniform" (``none`` is rarer:
    cells it disconnects are redrawn), while the family's choice ("zero") trains some ops far more than others."""
    ops = NB201.ops
    cells, _ = derived_cells

    def counts(mode: str) -> dict[str, int]:
        c = dict.fromkeys([op for op in ops if op != "none"], 0)
        for step in cells[mode]:
            for cell in step:
                for _, o in cell:
                    c[ops[o]] += 1
        return c

    uniform, zero = counts("uniform"), counts("zero")
    mean = sum(uniform.values()) / len(uniform)
    assert all(0.6 * mean <= n <= 1.4 * mean for n in uniform.values()), uniform
    assert max(zero.values()) > 3 * max(1, min(zero.values())), zero


def test_sandwich_weight_steps_run_the_dearest_cell_every_other_step(derived_cells):
    """"sandwich": even steps (the warm-up included) run the dearest valid cell by the complexity Reg in every derived
    cell, odd steps a freshly drawn one, so the dear end is the network the shared weights serve first."""
    cells, _ = derived_cells
    dear = cost_span(NB201, ParamsCost()).dearest
    dear_cell = tuple(sorted((e, NB201.ops.index(op)) for e, op in enumerate(dear.ops) if op != "none"))
    even, odd = cells["sandwich"][0::2], cells["sandwich"][1::2]
    assert even and all(step and set(step) == {dear_cell} for step in even)
    assert sum(dear_cell in step for step in odd) < 0.2 * len(odd)
    assert len(set(odd)) > 0.8 * len(odd)


def test_an_unknown_weight_lambda_names_the_choices():
    with pytest.raises(ValueError, match="'drawn', 'zero', 'uniform', 'sandwich' or 'sandwich-children'"):
        HypernetConfig(weight_lambda="fair")


def test_an_unknown_eval_bn_is_refused():
    with pytest.raises(ValueError, match="'batch' or 'running'"):
        HypernetConfig(eval_bn="frozen")
