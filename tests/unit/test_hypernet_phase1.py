"""Seed 004's phase 1 on the DARTS-CC hypernetwork (``phase1="dearest"``, issue 12 item 5).

Before the trade-off phase the hypernetwork is fitted so that its architecture at and near lambda = 0 is the dearest
valid cell (seed 004's hypernet(0) = the unpruned network); the family then starts at the dear end and larger lambdas
walk down from it, instead of the architecture step having to find an isolated dear optimum from the near-uniform init.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from hilnas.searchers.cost import ParamsCost
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.hypernet import HyperArchitect, HypernetConfig, ScaleMap, TradeOff, center, derive, search
from hilnas.searchers.hypernet.bound import cost_span
from testmodels import hyper_architect, tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=192,
                     synthetic_test=32, val_fraction=0.5, batch_size=16)


def _derived(hook: HyperArchitect, scale: float = 0.0, Lambda: float = 1.0):
    k = len(hook.objective.ops)
    return derive(hook.supernet, hook.hypernet, TradeOff(center(k), scale), Lambda, hook.smap)[0]


@pytest.mark.parametrize("kind", ["nb201", "darts"])
def test_after_phase_1_lambda_zero_derives_the_dearest_cell_and_not_before(kind):
    space = tiny_space(kind)
    config = HypernetConfig(phase1="dearest", Lambda=1.0)
    hook = hyper_architect(space, config)
    dear = cost_span(space, ParamsCost()).dearest
    assert _derived(hook) != dear             # the near-uniform init derives some other cell
    hook.fit_phase1()
    assert len(hook.phase1_loss) == config.phase1_steps and hook.phase1_loss[-1] < hook.phase1_loss[0]
    assert _derived(hook) == dear
    # near lambda = 0 too (scale positions up to phase1_reach), and the op weights stay soft, so the
    # architecture step still has a gradient: the dear op's weight near the target's confidence, not one-hot
    near = hook.smap.fraction(config.phase1_reach)
    assert _derived(hook, scale=near) == dear
    k = len(hook.objective.ops)
    x = hook.smap.encode(torch.zeros(k), 1.0)
    with torch.no_grad(), hook.supernet.using(hook.hypernet(x)):
        top = torch.cat([w.max(dim=1).values for w in hook.supernet.op_weights().values()])
    assert float(top.max()) < 0.9 and float(top.min()) > 0.4


def test_phase_1_runs_once_in_the_search_after_the_warm_up_before_the_sweep(monkeypatch):
    space = tiny_space("nb201")
    dear = cost_span(space, ParamsCost()).dearest
    calls = []
    fit = HyperArchitect.fit_phase1

    def spy(self):
        calls.append((self.steps_done, self.warmup_steps, self.Lambda))
        fit(self)
        calls.append(_derived(self))

    monkeypatch.setattr(HyperArchitect, "fit_phase1", spy)
    torch.set_num_threads(1)
    config = HypernetConfig(epochs=2, max_batches_per_epoch=4, phase1="dearest", phase1_steps=200,
                            weight_lambda="sandwich", bound_samples=1, bound_batches=1, sweep_points=3,
                            sweep_steps=1, grid_points=3, curve_points=3, bisect_steps=0, eval_batches=1)
    search(space, ParamsCost(), config, seed=0, data=loaders_for(DATA)[1])
    (step, warmup, Lambda), derived = calls
    assert step == warmup == 2 and Lambda is None   # at the warm-up's end, before the sweep sets Lambda
    assert derived == dear
    calls.clear()
    search(space, ParamsCost(), dataclasses.replace(config, phase1="none"), seed=0, data=loaders_for(DATA)[1])
    assert calls == []


@pytest.mark.parametrize("bad, match", [
    (dict(phase1="all-on"), "'none' or 'dearest'"),
    (dict(phase1_steps=0), r"phase1_steps >= 1"),
    (dict(phase1_confidence=0.5), r"phase1_confidence in \(0.5, 1\)"),
    (dict(phase1_confidence=1.0), r"phase1_confidence in \(0.5, 1\)"),
    (dict(phase1_reach=1.5), r"phase1_reach in \[0, 1\]"),
])
def test_bad_phase_1_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        HypernetConfig(**bad)
