"""DCA-NAS: the multiplier's dual ascent, budgets met exactly, infeasible budgets, repair, baselines."""
import random
import zlib

import pytest
import torch

from hilnas.searchers.dca.architect import ArchConfig
from hilnas.searchers.dca.baselines import (DartsConfig, PenaltyConfig, RandomConfig, methods, search_darts,
                                        search_penalty, search_random)
from hilnas.searchers.cost import LutLatencyCost, ParamsCost, extremes
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.dca import DcaConfig, LagrangeMultiplier, search
from hilnas.searchers.op_key import enumerate_op_keys
from hilnas.searchers.dca.repair import repair
from hilnas.searchers.result import Budget, InfeasibleBudgetError, SearchError
from hilnas.searchers.spaces import create_space
from hilnas.searchers.supernet import SupernetOptions
from testmodels import tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NB201 = tiny_space("nb201")
DARTS = tiny_space("darts")
FAST = dict(epochs=2, options=SupernetOptions(bottleneck=2), arch=ArchConfig(lr=0.05), select="alpha")   # the multiplier's
#   mechanism: the alphas choose (NB201's "auto" would choose by the supernet's score)


@pytest.fixture(scope="module")
def data():
    _, loaders = loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                           synthetic_train=192, synthetic_test=32, val_fraction=0.5, batch_size=16))
    return loaders


def lut_model(space):
    return LutLatencyCost({k.encode(): 0.05 + zlib.crc32(k.encode().encode()) % 1000 / 1000.0
                           for k in enumerate_op_keys(space)})


def test_multiplier_rises_while_violated_and_decays_to_zero_when_slack():
    lam = LagrangeMultiplier(budget=10.0, lr=0.5)
    seen = []
    for cost in [15.0, 14.0, 12.0, 11.0]:  # over budget: lambda grows every step
        lam.update(cost)
        seen.append(lam.value)
    assert all(b > a for a, b in zip([0.0] + seen, seen))
    for _ in range(50):  # 20 % under budget: lambda falls and stops at exactly 0
        lam.update(8.0)
    assert lam.value == 0.0
    assert float(lam.penalty(torch.tensor(12.0))) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("space", [NB201, DARTS], ids=["nb201", "darts"])
def test_tight_budget_raises_the_multiplier_and_is_met(space, data):
    model = lut_model(space)
    ex = extremes(space, model)
    budget = Budget("latency_ms", ex.cheapest_cost + 0.15 * (ex.dearest_cost - ex.cheapest_cost))
    r = search(space, model, DcaConfig(budget=budget, **FAST), seed=0, data=data)
    assert r.within_budget and r.cost <= budget.value
    assert r.cost == pytest.approx(model.genotype_cost(space, r.genotype))
    hist = r.multiplier_history
    assert len(hist) == r.steps and max(hist) > 0
    # with the default constrain="derived" the multiplier compares the derived genotype's cost
    over = [c > budget.value for c in r.extra["constraint_history"]]
    for prev, cur, violated in zip((0.0,) + hist, hist, over):
        assert (cur > prev) if violated else (cur <= prev)


@pytest.mark.slow
@pytest.mark.parametrize("constrain", ["expected", "derived"])
def test_slack_budget_lets_the_multiplier_decay_to_zero(constrain, data):
    space, model = DARTS, lut_model(DARTS)
    ex = extremes(space, model)
    budget = Budget("latency_ms", ex.dearest_cost)  # nothing derivable costs more
    # the paper's one-sided constraint (lo = 0, no augmented term)
    r = search(space, model, DcaConfig(budget=budget, multiplier_init=1.0, multiplier_lr=0.5, constrain=constrain,
                                       band=(0.0, 1.0), rho=0.0, **FAST), seed=0, data=data)
    hist = r.multiplier_history
    assert hist[0] < 1.0 and all(b <= a for a, b in zip(hist, hist[1:]))
    assert hist[-1] == 0.0
    assert r.within_budget and not r.repaired


def test_infeasible_budget_names_the_cheapest_cost(data):
    model = lut_model(NB201)
    cheapest = extremes(NB201, model).cheapest_cost
    with pytest.raises(InfeasibleBudgetError, match=f"{cheapest:.6g}") as err:
        search(NB201, model, DcaConfig(budget=Budget("latency_ms", 0.9 * cheapest)), seed=0, data=data)
    assert err.value.cheapest_cost == pytest.approx(cheapest)


def test_budget_metric_must_match_the_cost_model(data):
    with pytest.raises(SearchError, match="params_m"):
        search(NB201, lut_model(NB201), DcaConfig(budget=Budget("params_m", 1.0)), seed=0, data=data)


def test_data_must_fit_the_space(data):
    wrong = create_space("nb201", C=4, N=1, input_size=12, in_channels=1, num_classes=4)
    with pytest.raises(SearchError, match="input_size=8"):
        search(wrong, ParamsCost(), DcaConfig(budget=Budget("params_m", 1.0)), seed=0, data=data)
    _, no_val = loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                          synthetic_train=32))
    with pytest.raises(SearchError, match="val_fraction"):
        search(NB201, ParamsCost(), DcaConfig(budget=Budget("params_m", 1.0)), seed=0, data=no_val)


@pytest.mark.parametrize("space", [NB201, DARTS], ids=["nb201", "darts"])
def test_repair_brings_the_dearest_genotype_within_budget(space):
    model = lut_model(space)
    ex = extremes(space, model)
    budget = ex.cheapest_cost + 0.3 * (ex.dearest_cost - ex.cheapest_cost)
    types = ("cell",) if space.name == "nb201" else ("normal", "reduce")
    weights = {t: torch.rand(len(space.edges), len(space.ops), generator=torch.Generator().manual_seed(0)).softmax(-1)
               for t in types}
    fixed = repair(space, model, ex.dearest, budget, weights)
    assert fixed.cost <= budget and fixed.moves
    assert model.genotype_cost(space, fixed.genotype) == pytest.approx(fixed.cost)


@pytest.mark.slow
def test_baselines_share_the_entry_point(data):
    model = lut_model(NB201)
    ex = extremes(NB201, model)
    budget = Budget("latency_ms", ex.cheapest_cost + 0.4 * (ex.dearest_cost - ex.cheapest_cost))
    assert set(methods()) == {"dca", "darts", "penalty", "random"}
    d = search_darts(NB201, model, DartsConfig(epochs=1, budget=budget), seed=0, data=data)
    p = search_penalty(NB201, model, PenaltyConfig(epochs=1, budget=budget, penalty_weight=2.0), seed=0, data=data)
    r = search_random(NB201, model, RandomConfig(budget=budget, samples=3, epochs=1), seed=0, data=data)
    for res, name in ((d, "darts"), (p, "penalty"), (r, "random")):
        assert res.method == name and res.cost == pytest.approx(model.genotype_cost(NB201, res.genotype))
        assert res.within_budget == (res.cost <= budget.value)
    assert d.multiplier_history and set(d.multiplier_history) == {0.0}
    assert set(p.multiplier_history) == {2.0}
    assert r.within_budget and len(r.extra["samples"]) == 3
    assert all(s["cost"] <= budget.value for s in r.extra["samples"])


def test_random_samples_are_within_a_tight_budget():
    from hilnas.searchers.dca.baselines import sample_within_budget
    model = lut_model(DARTS)
    ex = extremes(DARTS, model)
    budget = Budget("latency_ms", ex.cheapest_cost * 1.02)
    got = sample_within_budget(DARTS, model, budget, 3, random.Random(0), max_tries=50)
    assert len(got) == 3 and all(model.genotype_cost(DARTS, g) <= budget.value for g in got)


def test_the_cli_flags_of_the_decisions_on_the_device_default_to_dca_configs_fields():
    import dataclasses

    from hilnas.searchers.dca.search import DcaConfig
    from hilnas.server.cli.search.dca import DEVICE_DEFAULTS

    fields = {f.name: f.default for f in dataclasses.fields(DcaConfig)}
    assert DEVICE_DEFAULTS == {k: fields[k] for k in DEVICE_DEFAULTS}


def test_a_network_measured_again_costs_the_median_of_its_measurements():
    from hilnas.searchers.dca.feedback import DeviceFeedback

    values = iter([10.0, 14.0, 11.0, 0.0])
    fb = DeviceFeedback(lambda g: next(values), lambda g: 10.0)
    assert fb.cost_of("a") == 10.0 and fb.cost_of("a") == 10.0          # measured once, then remembered
    assert fb.remeasure("a") == 14.0 and fb.measured["a"] == 12.0       # two: their median
    assert fb.remeasure("a") == 11.0 and fb.measured["a"] == 11.0 and fb.samples["a"] == [10.0, 14.0, 11.0]
    with pytest.raises(ValueError, match="must be positive"):
        fb.remeasure("a")
    assert fb.samples["a"] == [10.0, 14.0, 11.0]   # the bad value is not kept
