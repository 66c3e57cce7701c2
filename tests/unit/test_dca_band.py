"""DCA-NAS's own constraint handling: the band, the device in the loop, repair recorded, best of seeds.

The task is small and its answer known: every genotype of the tiny NB201 space is priced exactly,
so the band [0.9, 1.0] x budget is known to hold genotypes, and a search landing there by its
dual ascent alone (no repair) is checked against the same search with the multipliers frozen.
"""
import itertools
import math

import pytest

from hilnas.searchers.cost import CorrectedCost, extremes
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.dca import DcaConfig, search
from hilnas.searchers.dca.architect import ArchConfig
from hilnas.searchers.dca.repair import edges_changed
from hilnas.searchers.dca.seeds import best_of_seeds
from hilnas.searchers.genotype import NB201Genotype
from hilnas.searchers.result import Budget, SearchResult
from hilnas.searchers.supernet import SupernetOptions
from testmodels import tiny_space
from test_dca_search import lut_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = tiny_space("nb201")
BAND = (0.9, 1.0)
# select="alpha": the Lagrangian chooses the ops (the mechanism under test; NB201's "auto" would score them instead)
SETTINGS = dict(epochs=10, options=SupernetOptions(bottleneck=2), arch=ArchConfig(lr=6e-3, warmup_epochs=1), band=BAND,
                multiplier_lr=0.05, rho=100.0, select="alpha")
DUAL = {**SETTINGS, "lookahead": False}   # the dual ascent alone: the decisions do not look ahead to the band
FROZEN = {**DUAL, "multiplier_lr": 0.0, "rho": 0.0}


def fresh_data():
    """New loaders for every search: their shuffling state would otherwise carry over from one search to the next."""
    _, loaders = loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                           synthetic_train=768, synthetic_test=32, val_fraction=0.5, batch_size=16))
    return loaders


@pytest.fixture
def data():
    return fresh_data()


def in_band(cost, budget):
    return BAND[0] * budget <= cost <= BAND[1] * budget


def all_costs(model):
    return [model.genotype_cost(SPACE, NB201Genotype(ops)) for ops in itertools.product(SPACE.ops, repeat=6)]


def budget_at(model, frac):
    ex = extremes(SPACE, model)
    return ex.cheapest_cost + frac * (ex.dearest_cost - ex.cheapest_cost)


@pytest.mark.slow
def test_the_dual_ascent_alone_lands_the_derived_cell_in_the_band(data):
    model = lut_model(SPACE)
    budget = budget_at(model, 0.4)
    assert any(in_band(c, budget) for c in all_costs(model))  # the answer exists
    frozen = search(SPACE, model, DcaConfig(budget=Budget("latency_ms", budget), **FROZEN), seed=0, data=fresh_data())
    assert not in_band(frozen.derived_cost, budget)  # without the multipliers the same search lands elsewhere
    r = search(SPACE, model, DcaConfig(budget=Budget("latency_ms", budget), **DUAL), seed=0, data=data)
    assert not r.repaired and r.edges_changed == 0 and r.genotype == r.derived_genotype
    assert in_band(r.derived_cost, budget), (r.derived_cost / budget, r.extra["decisions"])
    # every edge was decided by the Lagrangian, one at a time, the last on the last architecture step
    assert [d["arch_step"] for d in r.extra["decisions"]][-1] == r.steps - len(data.train) - 1
    assert sorted(d["edge"] for d in r.extra["decisions"]) == list(range(6))
    # the side that was violated moved the multiplier: lambda above the band, mu below
    hist = r.extra["constraint_history"]
    assert len(hist) == len(r.multiplier_history)
    for prev, cur, c in zip((0.0,) + r.multiplier_history, r.multiplier_history, hist):
        if c > BAND[1] * budget:
            assert cur > prev
        elif c < BAND[0] * budget:
            assert cur < prev


@pytest.mark.slow
def test_the_look_ahead_alone_lands_the_search_the_frozen_multipliers_miss_in_the_band(data):
    model = lut_model(SPACE)
    budget = budget_at(model, 0.4)   # the budget the frozen search misses (the test above)
    r = search(SPACE, model, DcaConfig(budget=Budget("latency_ms", budget), **{**FROZEN, "lookahead": True}),
               seed=0, data=data)
    assert not r.repaired and r.genotype == r.derived_genotype
    assert in_band(r.derived_cost, budget), (r.derived_cost / budget, r.extra["decisions"])
    assert r.extra["decisions_restricted"] >= 1 and r.extra["decisions_fallback"] == 0
    assert r.extra["decisions_restricted"] == sum(d["restricted"] for d in r.extra["decisions"])


@pytest.mark.slow
def test_the_dual_ascent_brings_the_cost_nearer_the_band_across_budgets(data):
    model = lut_model(SPACE)

    def miss(config, frac):
        b = budget_at(model, frac)
        r = search(SPACE, model, DcaConfig(budget=Budget("latency_ms", b), **config), seed=0, data=fresh_data())
        return abs(r.derived_cost / b - 0.95)
    fracs = (0.2, 0.4, 0.6, 0.8)
    with_dual = sorted(miss(DUAL, f) for f in fracs)
    frozen = sorted(miss(FROZEN, f) for f in fracs)
    assert with_dual[1] < frozen[1] and with_dual[2] < frozen[2]   # the middle of the four, either side


@pytest.mark.slow
def test_the_device_in_the_loop_holds_the_measured_cost_within_the_budget(data):
    """A device 25 % slower than the prediction: blind, the cell is over on the device; with feedback, within."""
    model = lut_model(SPACE)
    device = CorrectedCost(model, 1.25, 0.0)
    measured_calls = []

    def measure(g):
        measured_calls.append(g)
        return device.genotype_cost(SPACE, g)
    ex = extremes(SPACE, model)
    budget = Budget("latency_ms", ex.cheapest_cost + 0.4 * (ex.dearest_cost - ex.cheapest_cost))
    blind = search(SPACE, model, DcaConfig(budget=budget, **SETTINGS), seed=0, data=fresh_data())
    assert in_band(blind.derived_cost, budget.value)  # in the band as predicted ...
    assert device.genotype_cost(SPACE, blind.derived_genotype) > budget.value  # ... over it on the device
    r = search(SPACE, model, DcaConfig(budget=budget, **SETTINGS), seed=0, data=data, measure=measure)
    # the same search with the device's ratio in its penalty and its last decision: within budget on the device
    assert device.genotype_cost(SPACE, r.derived_genotype) <= budget.value and not r.repaired
    assert all(e["ratio"] == pytest.approx(1.25) for e in r.extra["device"]["log"])
    # the last decision chose between cells measured on the device, the one returned among them
    last = r.extra["decisions"][-1]["device_costs"]
    assert last[r.derived_genotype.ops[r.extra["decisions"][-1]["edge"]]] == \
        pytest.approx(device.genotype_cost(SPACE, r.derived_genotype))
    assert r.extra["device"]["derived_cost"] == pytest.approx(device.genotype_cost(SPACE, r.derived_genotype))
    # each network measured once, except the cells the last decisions measured again to confirm (at most 3 in all)
    assert len(set(measured_calls)) == r.extra["device"]["networks_measured"]
    assert len(measured_calls) - len(set(measured_calls)) == r.extra["cell_remeasurements"]
    assert max(measured_calls.count(g) for g in measured_calls) <= 3
    assert [e["epoch"] for e in r.extra["device"]["log"]] == list(range(1, 11))


@pytest.mark.slow
def test_repair_is_recorded_with_the_edges_it_changed(data):
    model = lut_model(SPACE)
    ex = extremes(SPACE, model)
    budget = Budget("latency_ms", ex.cheapest_cost + 0.05 * (ex.dearest_cost - ex.cheapest_cost))
    # all edges derived at the end (no progressive decisions, whose last one keeps the cell within budget)
    r = search(SPACE, model, DcaConfig(budget=budget, **{**FROZEN, "band": (0.0, 1.0), "progressive": False}),
               seed=0, data=data)
    assert r.derived_cost > budget.value and r.repaired
    assert r.cost <= budget.value and r.edges_changed == edges_changed(r.derived_genotype, r.genotype) >= 1
    d = r.to_dict()
    assert d["repaired"] is True and d["edges_changed"] == r.edges_changed and "repaired" in d["notes"][0]


def test_per_epoch_validation_accuracy_is_reported(data):
    model = lut_model(SPACE)
    budget = Budget("latency_ms", extremes(SPACE, model).dearest_cost)
    r = search(SPACE, model, DcaConfig(budget=budget, epochs=2, max_batches_per_epoch=2,
                                       options=SupernetOptions(bottleneck=2)), seed=0, data=data)
    epochs = r.extra["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(0.0 <= e["val_acc"] <= 1.0 and e["genotype_cost"] > 0 for e in epochs)


def fake_result(seed, val_acc):
    g = NB201Genotype(("nor_conv_3x3",) * 6)
    return SearchResult(method="dca", genotype=g, cost=1.0, metric="latency_ms", budget=None, within_budget=None,
                        derived_genotype=g, derived_cost=1.0, val_acc=val_acc, seed=seed)


def test_best_of_seeds_keeps_the_highest_validation_accuracy():
    scores = {3: 0.41, 4: 0.58, 5: float("nan"), 6: 0.52}
    seen = []

    def one(seed):
        seen.append(seed)
        return fake_result(seed, scores[seed])
    best = best_of_seeds(one, [3, 4, 5, 6])
    assert seen == [3, 4, 5, 6] and best.seed == 4 and best.extra["chosen_seed"] == 4
    assert [s["seed"] for s in best.extra["seeds"]] == [3, 4, 5, 6]
    assert [s["val_acc"] for s in best.extra["seeds"]][1] == 0.58 and math.isnan(best.extra["seeds"][2]["val_acc"])
    with pytest.raises(ValueError, match="at least one seed"):
        best_of_seeds(one, [])


def test_repair_never_cuts_an_nb201_cell_off_from_its_input():
    """The benchmark's case: the cheapest single change (the last live edge into the output -> none) is refused."""
    from hilnas.searchers.cost import _nb201_connected
    from hilnas.searchers.dca.repair import repair

    model = lut_model(SPACE)
    g = NB201Genotype.from_arch_str("|none~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|")
    cheaper = NB201Genotype(g.ops[:5] + ("none",))
    assert not _nb201_connected(cheaper.ops) and model.genotype_cost(SPACE, cheaper) < model.genotype_cost(SPACE, g)
    budget = model.genotype_cost(SPACE, g) - 1e-6
    import torch
    fix = repair(SPACE, model, g, budget, {"cell": torch.full((6, len(SPACE.ops)), 1 / len(SPACE.ops))})
    assert fix.cost <= budget and _nb201_connected(fix.genotype.ops)
