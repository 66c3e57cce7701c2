"""The growth loop on the tiny backbone (FLOPs budgets, no device): budget, checkpoints, resume, baselines."""
import math

import pytest
import torch

from splitting_helpers import tiny_data, tiny_space
from hilnas.searchers.cost import FlopsCost, ParamsCost
from hilnas.searchers.data import loaders_for
from hilnas.searchers.result import Budget, InfeasibleBudgetError
from hilnas.searchers.spaces import MobileNetWidths
from hilnas.searchers.splitting import CheckpointError, GrowConfig, grow_by_splitting, width_multipliers
from hilnas.searchers.splitting.checkpoint import WEIGHTS, list_checkpoints, load_weights
from hilnas.searchers.splitting.costs import split_costs

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPACE = tiny_space()
COSTS = {"mflops": FlopsCost(), "params_m": ParamsCost()}
CONFIG = GrowConfig(steps=2, seed_epochs=1, step_epochs=1, max_batches_per_epoch=4)


@pytest.fixture(scope="module")
def loaders():
    return loaders_for(tiny_data())[1]


def _no_device(calls=None):
    def measure(ck, net):
        if calls is not None:
            calls.append(ck.name)
        return {}
    return measure


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_split_costs_are_the_networks_cost_increase_per_layer():
    widths = SPACE.widths_at(0.5)
    e, floored = split_costs(SPACE, widths, FlopsCost())
    flops = FlopsCost()
    for layer, cost in enumerate(e):
        assert cost == pytest.approx(flops.genotype_cost(SPACE, widths.grown(layer)) - flops.genotype_cost(SPACE, widths))
    assert floored == 0 and all(c > 0 for c in e)
    at_top = MobileNetWidths((SPACE.max_width(0), 8, 8))
    assert split_costs(SPACE, at_top, flops)[0][0] == math.inf  # a layer never grows past its grid


def test_growth_stays_within_the_budget_and_checkpoints_every_step(tmp_path, loaders):
    seed_cost = FlopsCost().genotype_cost(SPACE, SPACE.widths_at(0.3))
    budget = Budget("mflops", 2.2 * seed_cost)
    calls = []
    result = grow_by_splitting(SPACE, COSTS, budget, GrowConfig(steps=6, seed_epochs=1, step_epochs=1, max_batches_per_epoch=4,
                                                   growth=0.4), loaders,
                  measure=_no_device(calls), checkpoint_dir=tmp_path)
    cks = result.checkpoints
    assert [c.name for c in cks] == [f"Splitting-{k}" for k in range(len(cks))] == calls
    assert len(cks) >= 3 and "budget" in result.stop_reason  # it grew until the next split no longer fit
    costs = [c.predicted["mflops"] for c in cks]
    assert costs == sorted(costs) and costs[-1] <= budget.value
    for prev, ck in zip(cks, cks[1:]):
        assert ck.split_cost <= ck.step_budget + 1e-12   # eq. (1)'s constraint
        assert ck.step_budget <= 0.4 * prev.predicted["mflops"] + 1e-12
        assert ck.gain > 0 and sum(ck.splits.values()) == sum(ck.widths.widths) - sum(prev.widths.widths)
        assert all(b >= a for a, b in zip(prev.widths.widths, ck.widths.widths))
    assert [c.epochs for c in cks] == [1 + k for k in range(len(cks))]
    assert [c.name for c, _ in list_checkpoints(tmp_path, SPACE)] == [c.name for c in cks]


def test_resume_continues_from_the_last_checkpoint(tmp_path, loaders):
    budget = Budget("mflops", 1.0)
    whole = grow_by_splitting(SPACE, COSTS, budget, CONFIG, loaders, measure=_no_device(), checkpoint_dir=tmp_path / "a")
    first = grow_by_splitting(SPACE, COSTS, budget, GrowConfig(**{**CONFIG.__dict__, "steps": 1}), loaders, measure=_no_device(),
                 checkpoint_dir=tmp_path / "b")
    assert len(first.checkpoints) == 2
    calls = []
    resumed = grow_by_splitting(SPACE, COSTS, budget, CONFIG, loaders, measure=_no_device(calls), checkpoint_dir=tmp_path / "b",
                   resume=True)
    assert calls == ["Splitting-2"] and resumed.resumed_from == 1  # nothing before the last checkpoint is redone
    assert [c.widths for c in resumed.checkpoints] == [c.widths for c in whole.checkpoints]
    a = load_weights(tmp_path / "a" / "splitting-2", SPACE, whole.checkpoints[-1]).state_dict()
    b = load_weights(tmp_path / "b" / "splitting-2", SPACE, resumed.checkpoints[-1]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-exact: the resumed run is the uninterrupted one


def test_a_fresh_run_never_overwrites_checkpoints(tmp_path, loaders):
    grow_by_splitting(SPACE, COSTS, Budget("mflops", 1.0), GrowConfig(steps=0, seed_epochs=1, max_batches_per_epoch=2), loaders,
         measure=_no_device(), checkpoint_dir=tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="already holds checkpoints .*Splitting-0.*resume"):
        grow_by_splitting(SPACE, COSTS, Budget("mflops", 1.0), CONFIG, loaders, measure=_no_device(), checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="not this run's checkpoints"):  # RandomSplit-k expected
        grow_by_splitting(SPACE, COSTS, Budget("mflops", 1.0), GrowConfig(**{**CONFIG.__dict__, "selection": "random"}), loaders,
             measure=_no_device(), checkpoint_dir=tmp_path, resume=True)
    assert _snapshot(tmp_path) == before


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch says so before refusing the foreign pickle
@pytest.mark.parametrize("damage", ["weights-bytes", "weights-pickle", "json", "missing-step"])
def test_a_damaged_checkpoint_folder_is_refused_and_left_as_it_is(tmp_path, loaders, damage):
    grow_by_splitting(SPACE, COSTS, Budget("mflops", 1.0), GrowConfig(steps=1, seed_epochs=1, step_epochs=1,
                                                          max_batches_per_epoch=2), loaders,
         measure=_no_device(), checkpoint_dir=tmp_path)
    last = tmp_path / "splitting-1"
    if damage == "weights-bytes":
        (last / WEIGHTS).write_bytes((last / WEIGHTS).read_bytes()[:-10])
    elif damage == "weights-pickle":  # a file that would run code, with its digest recorded to match
        import hashlib
        import json
        import pickle
        (last / WEIGHTS).write_bytes(pickle.dumps({"x": __import__("os").getcwd}))
        meta = json.loads((last / "checkpoint.json").read_text())
        meta["weights_sha256"] = hashlib.sha256((last / WEIGHTS).read_bytes()).hexdigest()
        (last / "checkpoint.json").write_text(json.dumps(meta))
    elif damage == "json":
        (last / "checkpoint.json").write_text("{not json")
    else:
        import shutil
        shutil.rmtree(tmp_path / "splitting-0")
    before = _snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="damaged|missing") as err:
        grow_by_splitting(SPACE, COSTS, Budget("mflops", 1.0), CONFIG, loaders, measure=_no_device(), checkpoint_dir=tmp_path,
             resume=True)
    assert "nothing was changed" in str(err.value)
    assert _snapshot(tmp_path) == before


def test_checkpoints_of_another_backbone_are_refused(tmp_path, loaders):
    grow_by_splitting(SPACE, COSTS, Budget("mflops", 1.0), GrowConfig(steps=0, seed_epochs=1, max_batches_per_epoch=2), loaders,
         measure=_no_device(), checkpoint_dir=tmp_path)
    other = tiny_space(base_widths=(8, 16, 32))
    with pytest.raises(CheckpointError, match=r"another backbone \(base_widths=\[8, 16, 16\]; this run's: "
                                              r"base_widths=\[8, 16, 32\]\)"):
        grow_by_splitting(other, COSTS, Budget("mflops", 1.0), CONFIG, loaders, measure=_no_device(), checkpoint_dir=tmp_path,
             resume=True)


def test_a_budget_below_the_seed_network_is_refused_with_its_cost(tmp_path, loaders):
    seed_cost = FlopsCost().genotype_cost(SPACE, SPACE.widths_at(0.3))
    with pytest.raises(InfeasibleBudgetError, match=f"below the seed network's cost.*{seed_cost:.4g} MFLOPs") as err:
        grow_by_splitting(SPACE, COSTS, Budget("mflops", seed_cost / 2), CONFIG, loaders, measure=_no_device(),
             checkpoint_dir=tmp_path)
    assert err.value.cheapest_cost == pytest.approx(seed_cost)


def test_the_baselines(tmp_path, loaders):
    budget = Budget("mflops", 1.0)
    widths = width_multipliers(SPACE, COSTS, budget, (0.25, 0.5, 1.0), 2,
                               GrowConfig(max_batches_per_epoch=2), loaders, measure=_no_device(),
                               checkpoint_dir=tmp_path / "w")
    assert [c.name for c in widths.checkpoints] == ["Width-0.25", "Width-0.5", "Width-1"]
    assert [c.widths for c in widths.checkpoints] == [SPACE.widths_at(m) for m in (0.25, 0.5, 1.0)]
    assert all(c.epochs == 2 for c in widths.checkpoints)
    rand = grow_by_splitting(SPACE, COSTS, budget, GrowConfig(**{**CONFIG.__dict__, "selection": "random"}), loaders,
                measure=_no_device(), checkpoint_dir=tmp_path / "r")
    assert [c.name for c in rand.checkpoints] == ["RandomSplit-0", "RandomSplit-1", "RandomSplit-2"]
    assert all(c.split_cost <= c.step_budget + 1e-12 for c in rand.checkpoints[1:])
    assert rand.checkpoints[0].widths == SPACE.widths_at(0.3)


def test_a_width_multiple_keeps_every_width_aligned(tmp_path, loaders):
    result = grow_by_splitting(SPACE, COSTS, Budget("mflops", 1.0),
                               GrowConfig(**{**CONFIG.__dict__, "width_multiple": 2}), loaders, measure=_no_device(),
                               checkpoint_dir=tmp_path)
    assert result.checkpoints[0].widths == MobileNetWidths((2, 6, 6))  # (2, 5, 5) rounded to multiples of 2
    for ck in result.checkpoints:
        assert all(w % 2 == 0 for w in ck.widths.widths) and all(n % 2 == 0 for n in ck.splits.values())
    assert sum(result.checkpoints[-1].widths.widths) > sum(result.checkpoints[0].widths.widths)


class _FlopsAsLatency(FlopsCost):
    """A stand-in device LUT: latency_ms priced as the FLOPs (the device below is an offset and a slope off)."""
    metric = "latency_ms"


def test_the_budget_is_kept_on_a_device_that_differs_from_the_lut_by_an_offset_and_a_slope(tmp_path, loaders):
    """A whole network measures 0.02 + 0.8 x the LUT sum: the growth converts its headroom with the measured
    slope (never below 1) and stops under the budget without any checkpoint over it."""
    lut = _FlopsAsLatency()
    device = lambda ck, net: {"latency_ms": 0.02 + 0.8 * ck.predicted["latency_ms"]}  # noqa: E731
    seed = 0.02 + 0.8 * lut.genotype_cost(SPACE, SPACE.widths_at(0.3))
    budget = Budget("latency_ms", 1.6 * seed)  # the widest network of the grid would measure 1.84 x seed
    result = grow_by_splitting(SPACE, {"latency_ms": lut}, budget,
                               GrowConfig(steps=8, seed_epochs=1, step_epochs=1, max_batches_per_epoch=2, growth=0.6),
                               loaders, measure=device, checkpoint_dir=tmp_path)
    measured = [c.measured["latency_ms"] for c in result.checkpoints]
    assert "does not fit" in result.stop_reason and len(measured) >= 3
    assert max(measured) <= budget.value and measured[-1] > 0.8 * budget.value  # it used most of the budget
