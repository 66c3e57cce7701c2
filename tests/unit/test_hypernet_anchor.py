"""The pinned anchor on the DARTS-space/NB201 hypernetwork (``HypernetConfig.anchor="pinned"``, issue 12 item 5).

After phase 1 lambda = 0's architecture logits are pinned to phase 1's fit (the dearest cell) and the other lambdas
learn offsets from it, theta(u) = h(u) - h(0) + anchor (``anchor.Anchored``, shared with the pruning hypernetwork).
The toy: the latency term at every scale (``kappa_scaling="Lambda"``, a large kappa on FLOPs) makes the
architecture loss at lambda = 0 favour cheaper cells, so the trade-off steps would move h(0) off the dearest cell.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from hilnas.searchers.cost import FlopsCost, ParamsCost
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.dca.architect import ArchConfig
from hilnas.searchers.hypernet import (Anchored, HyperArchitect, HypernetConfig, TradeOff, center, derive,
                                       new_hypernetwork, search)
from hilnas.searchers.hypernet.bound import cost_span
from hilnas.searchers.hypernet.io import load_trained, save_trained
from hilnas.searchers.prune.search import PruneHypernet
from hilnas.searchers.train import StepContext
from testmodels import hyper_architect, tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=192,
                     synthetic_test=32, val_fraction=0.5, batch_size=16)
# phase 1 at the first step (no warm-up), then architecture steps whose loss at every lambda, lambda = 0 included,
# carries kappa x Lambda x FLOPs: the cheap cells win at lambda = 0
TOY = HypernetConfig(phase1="dearest", Lambda=1.0, warmup_fraction=0.0, kappa=20.0, kappa_scaling="Lambda",
                     arch=ArchConfig(lr=0.02, weight_decay=0.0))


def _outputs(hook: HyperArchitect, scale: float) -> dict[str, torch.Tensor]:
    k = len(hook.objective.ops)
    x = hook.smap.encode(torch.tensor(TradeOff(center(k), scale).coefficients(), dtype=torch.float32), 1.0)
    with torch.no_grad():
        return {n: t.clone() for n, t in hook.hypernet(x).items()}


def _derived(hook: HyperArchitect, scale: float):
    k = len(hook.objective.ops)
    return derive(hook.supernet, hook.hypernet, TradeOff(center(k), scale), 1.0, hook.smap)[0]


def _trade_off_steps(hook: HyperArchitect, steps: int) -> None:
    loader = loaders_for(DATA)[1]
    val = iter(loader.val)

    def next_val():
        nonlocal val
        try:
            return next(val)
        except StopIteration:
            val = iter(loader.val)
            return next(val)

    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    for step in range(steps):
        ctx = StepContext(epoch=0, batch_index=step, global_step=step, lr=0.1, optimizer=dummy,
                          device=torch.device("cpu"))
        hook.before_step(ctx, hook.relaxed, None, next_val)
        hook.after_step(ctx, hook.relaxed, 0.0)


@pytest.mark.parametrize("kind", ["nb201", "darts"])
def test_pinned_lambda_zero_keeps_phase_1_s_cell_where_unpinned_it_moves_and_other_lambdas_still_learn(kind):
    space = tiny_space(kind)
    dear = cost_span(space, ParamsCost()).dearest
    derived = {}
    for anchor in ("none", "pinned"):
        hook = hyper_architect(space, dataclasses.replace(TOY, anchor=anchor), latency=FlopsCost())
        _trade_off_steps(hook, 1)                  # phase 1 runs at the first step, then one trade-off step
        assert hook.phase1_loss and _derived(hook, 0.0) == dear
        before = {s: _outputs(hook, s) for s in (0.0, 0.5)}
        _trade_off_steps(hook, 40)
        derived[anchor] = _derived(hook, 0.0)
        after = {s: _outputs(hook, s) for s in (0.0, 0.5)}
        moved = {s: max(float((after[s][n] - before[s][n]).abs().max()) for n in after[s]) for s in after}
        assert moved[0.5] > 1e-2                  # lambda > 0 learn either way
        if anchor == "pinned":
            assert moved[0.0] == 0.0              # lambda = 0's logits are phase 1's fit, to the bit
            assert isinstance(hook.hypernet, Anchored) and bool(hook.hypernet.pinned)
        else:
            assert moved[0.0] > 1e-2
    assert derived["pinned"] == dear
    assert derived["none"] != dear                # the same steps move the unpinned lambda = 0 off the dearest cell


def test_the_anchor_stays_out_of_the_trade_off_optimiser():
    hook = hyper_architect(tiny_space("nb201"), dataclasses.replace(TOY, anchor="pinned"), latency=FlopsCost())
    optimised = {id(p) for g in hook.optimizer.param_groups for p in g["params"]}
    assert id(hook.hypernet.anchor) not in optimised
    assert optimised == {id(p) for p in hook.hypernet.h.parameters()}


def test_a_saved_pinned_run_loads_with_its_pin(tmp_path):
    space = tiny_space("nb201")
    config = HypernetConfig(epochs=3, max_batches_per_epoch=4, phase1="dearest", anchor="pinned",
                            weight_lambda="sandwich", bound_samples=1, bound_batches=1, sweep_points=3, sweep_steps=1,
                            grid_points=3, curve_points=3, bisect_steps=0, eval_batches=1)
    result = search(space, ParamsCost(), config, seed=0, data=loaders_for(DATA)[1])
    assert bool(result.hypernet.pinned)
    loaded = load_trained(save_trained(result, tmp_path / "run"), space, ParamsCost())
    assert loaded.config.anchor == "pinned" and isinstance(loaded.hypernet, Anchored) and bool(loaded.hypernet.pinned)
    torch.testing.assert_close(loaded.hypernet.anchor, result.hypernet.anchor)
    for scale in (0.0, 0.3 * result.Lambda, result.Lambda):
        assert loaded.architecture(scale).genotype == result.architecture(scale).genotype
    # unpinned, the loaded h alone would give lambda = 0 another output than the pin: the pin is what was kept
    k = len(loaded.ops)
    with torch.no_grad():
        pinned0 = loaded.hypernet(torch.zeros(k))
        free0 = loaded.hypernet.h(torch.zeros(k))
    assert any(not torch.equal(pinned0[n], free0[n]) for n in pinned0)


def test_anchor_none_builds_the_plain_hypernetwork_and_prune_shares_the_anchor():
    layout = {"alphas.cell": (6, 5)}
    assert not isinstance(new_hypernetwork(4, layout, HypernetConfig(anchor="none")), Anchored)
    assert isinstance(new_hypernetwork(4, layout, HypernetConfig(phase1="dearest", anchor="pinned")), Anchored)
    assert issubclass(PruneHypernet, Anchored)


@pytest.mark.parametrize("bad, match", [
    (dict(anchor="learned"), "anchor must be 'auto', 'none' or 'pinned'"),
    (dict(anchor="pinned", phase1="none"), r"set phase1='dearest' \(or anchor='none'\)"),
])
def test_bad_anchor_settings_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        HypernetConfig(**bad)
