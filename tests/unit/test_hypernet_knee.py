"""Lambda at the family's knee (``HypernetConfig.knee="family"``, ``hypernet.knee``; issue 12 item 5).

The toy: a stand-in hypernetwork whose architecture is the dearest valid cell below a known input position and the
cheapest one from it on, so the family's knee is known exactly; the rule must find it (to bisection's precision),
set Lambda to the margin times it (at most the estimate), let a Lambda shrunk too far grow back, and leave Lambda
alone when the family is cheap at lambda = 0 already.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from hilnas.searchers.cost import ParamsCost
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.hypernet import HypernetConfig, ScaleMap, search
from hilnas.searchers.hypernet.bound import cost_span, one_hot_arch
from hilnas.searchers.hypernet.knee import Knee, family_knee, next_Lambda
from testmodels import hyper_architect, tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class StepHypernet(nn.Module):
    """The dearest cell's architecture at input positions below ``at``, the cheapest cell's from ``at`` on."""

    def __init__(self, supernet, at: float):
        super().__init__()
        span = cost_span(supernet.space, ParamsCost())
        self.dear, self.cheap = one_hot_arch(supernet, span.dearest), one_hot_arch(supernet, span.cheapest)
        self.at = at
        self.num_coeffs = 0

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.cheap if float(x.max()) >= self.at else self.dear


def _knee(kind: str, at: float, smap: ScaleMap, Lambda: float = 2.0, bisect_steps: int = 8) -> Knee:
    space = tiny_space(kind)
    hook = hyper_architect(space, HypernetConfig())
    model = ParamsCost()
    return family_knee(hook.supernet, StepHypernet(hook.supernet, at), model, cost_span(space, model),
                       len(hook.objective.ops), Lambda, smap, points=33, floor=0.01, reach=0.05,
                       bisect_steps=bisect_steps)


@pytest.mark.parametrize("kind", ["nb201", "darts"])
@pytest.mark.parametrize("smap", [ScaleMap(None), ScaleMap(0.01)], ids=["uniform", "log"])
@pytest.mark.parametrize("at", [0.004, 0.3])
def test_the_knee_is_the_scale_where_the_family_turns_cheap(kind, smap, at):
    Lambda = 2.0
    knee = _knee(kind, at, smap, Lambda)
    true = Lambda * smap.fraction(at)   # the scale whose input position is ``at``
    assert knee.scale is not None
    # bisection keeps the cheap end: at or just above the true knee (8 halvings of a probe interval < Lambda / 4)
    assert true <= knee.scale <= true + Lambda / 4 / 2 ** 8
    assert next_Lambda(knee, Lambda, cap=Lambda, margin=1.5) == pytest.approx(1.5 * knee.scale)


def test_no_knee_below_Lambda_grows_Lambda_up_to_the_estimate_and_a_family_cheap_at_zero_keeps_it():
    at_end = _knee("nb201", 1.0, ScaleMap(None))          # cheap only at Lambda itself
    never = _knee("nb201", 2.0, ScaleMap(None))           # never cheap
    at_zero = _knee("nb201", 0.0, ScaleMap(None))         # cheap everywhere
    assert at_end.scale is None and never.scale is None and at_zero.scale == 0.0
    assert next_Lambda(at_end, 1.0, cap=10.0, margin=1.5) == 1.5       # shrunk too far: grows back
    assert next_Lambda(never, 8.0, cap=10.0, margin=1.5) == 10.0       # never above the estimate
    assert next_Lambda(at_zero, 1.0, cap=10.0, margin=1.5) == 1.0


def test_fit_knee_moves_the_hooks_Lambda_and_the_draws_with_it_and_records_it():
    hook = hyper_architect(tiny_space("nb201"), HypernetConfig(knee="family", scale_sampling="uniform"))
    hook.set_Lambda(2.0)
    hook.hypernet = StepHypernet(hook.supernet, 0.01)    # the family turns cheap at scale 0.02
    out: dict[str, float] = {}
    hook.fit_knee(out)
    assert 0.02 <= out["knee"] <= 0.021 and hook.Lambda == pytest.approx(1.5 * out["knee"])
    assert hook.Lambda_cap == 2.0 and hook.Lambda_history[-1][1] == hook.Lambda
    assert hook.knees[-1]["Lambda"] == 2.0 and hook.knees[-1]["next_Lambda"] == hook.Lambda
    assert max(float(hook.sample().max()) for _ in range(200)) <= hook.Lambda


def test_config_refuses_an_unknown_knee_rule_and_a_margin_that_cuts_the_cheap_end_off():
    with pytest.raises(ValueError, match="knee must be 'auto', 'none' or 'family'"):
        HypernetConfig(knee="elbow")
    with pytest.raises(ValueError, match="knee_margin > 1"):
        HypernetConfig(knee="family", knee_margin=1.0)


def test_a_search_with_the_knee_rule_records_each_epochs_knee_and_derives_at_the_last_Lambda():
    data = loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                     synthetic_train=128, synthetic_test=32, val_fraction=0.5, batch_size=16))[1]
    cfg = HypernetConfig(epochs=3, knee="family", Lambda=50.0, warmup_fraction=0.0, eval_batches=1)
    res = search(tiny_space("nb201"), ParamsCost(), cfg, data=data)
    assert len(res.knees) == 2                                   # after each epoch but the last
    assert [k["Lambda"] for k in res.knees] == [50.0, res.knees[0]["next_Lambda"]]
    assert res.Lambda == res.knees[-1]["next_Lambda"] and res.Lambda <= 50.0
    assert res.to_dict()["knees"] == res.knees and not math.isnan(res.Lambda)
    # without the rule Lambda stays the given one
    assert search(tiny_space("nb201"), ParamsCost(), dataclasses.replace(cfg, knee="none"), data=data).Lambda == 50.0
