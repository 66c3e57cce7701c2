"""The hypernetwork search on tiny spaces and synthetic data: one run, a monotone family of valid networks."""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from hilnas.searchers.cost import ParamsCost
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.export import export_onnx
from hilnas.searchers.genotype import NB201Genotype
from hilnas.searchers.hypernet import (Architecture, BudgetRangeError, HypernetConfig, TradeOff, TradeOffError,
                                       check_simplex, count_violations, isotonic, match_expected_cost, parse_direction,
                                       search, valid_genotype)
from hilnas.searchers.hypernet.bound import cost_span, is_valid, nb201_table, one_hot_arch
from hilnas.searchers.hypernet.sweep import descent_scale
from hilnas.searchers.model import build_network
from hilnas.searchers.result import Budget, SearchError
from testmodels import tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NB201 = tiny_space("nb201")
DARTS = tiny_space("darts")
DATA = DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=384,
                     synthetic_test=64, val_fraction=0.5, batch_size=16)
# the knee and the uniform draws (NB201's "auto" since the seventh session) move Lambda after each epoch: these tests
# are of the sweep, the theorem and the derivation, so they keep Lambda where those put it
FAST = HypernetConfig(epochs=2, grid_points=7, curve_points=9, bisect_steps=3, bound_samples=2, bound_batches=2,
                      knee="none", scale_sampling="log")


@pytest.fixture(scope="module")
def loaders():
    return loaders_for(DATA)[1]


@pytest.fixture(scope="module")
def nb201_run(loaders):
    torch.set_num_threads(1)
    return search(NB201, ParamsCost(), FAST, seed=0, data=loaders)


@pytest.fixture(scope="module")
def auto_run(loaders):
    """Lambda from Theorem 1 alone (re-estimated every epoch), as before the sweep."""
    torch.set_num_threads(1)
    return search(NB201, ParamsCost(), dataclasses.replace(FAST, Lambda="auto"), seed=0, data=loaders)


@pytest.fixture(scope="module")
def strong_run(loaders):
    """A large given Lambda: at its top the penalty outweighs any accuracy the cells can buy."""
    torch.set_num_threads(1)
    return search(NB201, ParamsCost(), dataclasses.replace(FAST, Lambda=3.0, epochs=3, anchor="none"), seed=1, data=loaders)


def forward_ok(space, genotype):
    net = build_network(space, genotype).eval()
    with torch.no_grad():
        out = net(torch.randn(2, *space.input_shape[1:]))
    return out.shape == (2, space.num_classes) and bool(torch.isfinite(out).all())


# -- one run, the family ------------------------------------------------------------------------
def test_lambda_is_measured_by_the_sweep_and_the_theorem_recorded_beside_it(nb201_run):
    r = nb201_run
    sw = r.sweep
    assert sw is not None and r.Lambda == sw.Lambda and r.Lambda_history == [(r.Lambda_history[0][0], r.Lambda)]
    scales = [p.scale for p in sw.points]
    assert scales == sorted(scales) and scales[0] == FAST.sweep_min and sw.Lambda_reach == scales[-1]
    assert sw.rule == "descent" and sw.Lambda == sw.Lambda_descent == descent_scale(sw.points, FAST.sweep_descent)
    if sw.reached:   # it stopped at the first scale whose network is (nearly) the cheapest valid one
        assert sw.points[-1].fraction <= sw.cheapest_fraction + FAST.sweep_reach * (1 - sw.cheapest_fraction)
        assert all(p.fraction > sw.cheapest_fraction + FAST.sweep_reach * (1 - sw.cheapest_fraction)
                   for p in sw.points[:-1])
    assert r.bound is not None and r.bound.constant_loss == pytest.approx(math.log(4), abs=0.05)
    assert r.bound.source == "theorem" if r.bound.applies else r.bound.source.startswith("none")
    d = r.to_dict()
    assert d["sweep"]["Lambda"] == r.Lambda and d["bound"]["theorem"] == pytest.approx(r.bound.theorem)


def test_theorem_1_over_the_sweeps_networks_is_recorded_beside_it(nb201_run):
    r = nb201_run
    pb = r.sweep.path_bound
    assert pb is not None and pb.constant_loss == pytest.approx(r.bound.constant_loss)
    path = list(dict.fromkeys(p.genotype for p in r.sweep.points))
    assert [p.genotype for p in pb.probes] == path     # the probes are the networks the sweep walked through
    assert pb.worst_valid_loss == max(p.loss for p in pb.probes)
    assert pb.theorem == pytest.approx(pb.constant_loss - pb.worst_valid_loss)
    assert pb.source == ("sweep path" if pb.applies else "none")
    assert r.to_dict()["sweep"]["path_bound"]["theorem"] == pytest.approx(pb.theorem)


def test_auto_lambda_is_estimated_from_data(auto_run):
    r = auto_run
    assert r.bound is not None and math.isfinite(r.Lambda) and r.Lambda > 0
    assert r.Lambda == r.bound.Lambda and r.Lambda_history and r.Lambda_history[-1][1] == r.Lambda
    assert r.bound.constant_loss == pytest.approx(math.log(4), abs=0.05)  # balanced synthetic labels
    if r.bound.source == "theorem":
        assert r.Lambda == pytest.approx(r.bound.constant_loss - r.bound.worst_valid_loss)
    assert r.steps == 2 * 12 and r.ops == tuple(op for op in NB201.ops if op != "none")
    first_step = r.Lambda_history[0][0]  # the warm-up trains weights only, and lasts until the theorem applies
    assert round(0.25 * r.steps) <= first_step <= round(0.5 * r.steps)
    assert len(r.history["scale"]) == (r.steps - first_step) * FAST.lambdas_per_step   # lambdas per step
    assert r.bound.source in ("theorem", "previous")
    assert max(r.history["scale"]) <= max(v for _, v in r.Lambda_history) + 1e-9  # drawn within [0, Lambda]


def test_family_gets_cheaper_as_the_coefficient_grows(nb201_run, strong_run):
    for r in (nb201_run, strong_run):
        curve = r.curve()
        costs = [p.costs["params_m"] for p in curve.points]
        scales = [p.tradeoff.scale for p in curve.points]
        assert scales == sorted(scales) and scales[0] == 0 and scales[-1] == pytest.approx(r.Lambda)
        assert all(b <= a + 1e-12 for a, b in zip(costs, costs[1:]))
        assert curve.violations == 0 and curve.raw_violations == count_violations([p.costs["params_m"]
                                                                                   for p in curve.raw])
    # the hypernetwork learned the dependence: the relaxed cost falls with the coefficient
    curve = nb201_run.curve()
    assert curve.raw[-1].expected["params_m"] < curve.raw[0].expected["params_m"]
    # with a strong enough coefficient the family reaches the cheapest valid network
    span = cost_span(NB201, ParamsCost())
    assert strong_run.curve().points[-1].costs["params_m"] == pytest.approx(span.cheapest_cost)


def test_every_member_is_a_valid_graph_that_builds_runs_and_exports(nb201_run):
    curve = nb201_run.curve()
    for a in curve.raw + curve.points:
        assert is_valid(NB201, a.genotype)
    for g in {a.genotype for a in curve.raw}:
        assert forward_ok(NB201, g)
    export_onnx(build_network(NB201, curve.points[-1].genotype), NB201.input_shape)


def test_any_direction_of_the_simplex_gives_a_monotone_valid_family(nb201_run):
    r = nb201_run
    vertex = [1.0 if op == "nor_conv_3x3" else 0.0 for op in r.ops]
    curve = r.curve(weights=vertex)
    assert curve.violations == 0 and all(is_valid(NB201, a.genotype) for a in curve.raw)
    assert all(a.tradeoff.weights == tuple(vertex) for a in curve.points)
    # a vertex penalises one op type with the full scale, the others not at all
    assert TradeOff(tuple(vertex), 0.5).coefficients() == tuple(0.5 * w for w in vertex)
    assert TradeOff((0.25,) * 4, 0.5).coefficients() == (0.5,) * 4


def test_architectures_at_given_lambdas(nb201_run):
    r = nb201_run
    archs = r.architectures([0.0, TradeOff((0.25, 0.25, 0.25, 0.25), r.Lambda / 2), r.Lambda])
    assert [a.tradeoff.scale for a in archs] == [0.0, r.Lambda / 2, r.Lambda]
    for a in archs:
        assert set(a.costs) == {"params_m"} and a.costs["params_m"] == ParamsCost().genotype_cost(NB201, a.genotype)
        assert a.expected["params_m"] > 0
    assert math.isfinite(r.accuracy(0.0, loaders_for(DATA)[1].val))
    d = r.to_dict()
    assert d["Lambda"] == r.Lambda and d["curve"]["violations"] == 0 and d["bound"]["source"] == r.bound.source


# -- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", [(0.5, 0.5, 0.5, 0.5), (1.2, -0.2, 0.0, 0.0), (0.5, 0.5), (math.nan, 1, 0, 0),
                                     ("a", 1, 0, 0)])
def test_lambda_outside_the_simplex_raises(nb201_run, weights):
    with pytest.raises(TradeOffError, match="simplex|numbers"):
        nb201_run.architecture(TradeOff(weights, 0.1))
    with pytest.raises(TradeOffError):
        nb201_run.curve(weights=weights)


@pytest.mark.parametrize("scale", [-0.1, 1e9, math.inf, math.nan])
def test_scale_outside_the_trained_range_raises(nb201_run, scale):
    with pytest.raises(TradeOffError, match=r"\[0, "):
        nb201_run.architecture(scale)


def test_budget_outside_the_reachable_range_raises_with_the_range(nb201_run):
    r = nb201_run
    lo, hi = r.reachable()
    for value in (lo * 0.5, hi * 2):
        with pytest.raises(BudgetRangeError) as err:
            r.for_budget(Budget("params_m", value))
        assert err.value.range == (lo, hi)
        assert f"{lo:.6g}" in str(err.value) and f"{hi:.6g}" in str(err.value)
    with pytest.raises(SearchError, match="latency_ms"):
        r.for_budget("latency_ms=3")


def steered(result, start, end, seed=0):
    """A copy of ``result`` whose hypernetwork interpolates the logits from ``start`` (scale 0) to ``end`` (Lambda),
    with a random per-edge offset so the edges switch at different scales: a family that spans for sure."""
    r = copy.deepcopy(result)
    gen = torch.Generator().manual_seed(seed)
    a0 = {k: 3 * v / 30 for k, v in one_hot_arch(r.supernet, start).items()}
    a1 = {k: 3 * v / 30 for k, v in one_hot_arch(r.supernet, end).items()}
    h = r.hypernet
    lo = torch.cat([a0[k].reshape(-1) for k in h.layout])
    hi = torch.cat([a1[k].reshape(-1) for k in h.layout])
    noise = torch.randn(lo.shape, generator=gen)
    k = h.linear.in_features
    with torch.no_grad():
        h.head.weight.zero_()
        h.head.bias.copy_((lo + hi) / 2 + noise)
        h.linear.weight.copy_(((hi - lo) / (2 * k))[:, None].expand(-1, k))  # input -1 at 0, +1 at Lambda
    r._curves.clear()
    return r


def test_for_budget_returns_the_least_penalised_member_within_budget(strong_run):
    span = cost_span(NB201, ParamsCost())
    r = steered(strong_run, span.dearest, span.cheapest)
    lo, hi = r.reachable()
    assert lo < hi
    assert r.curve().violations == 0
    dense = r.curve(r.grid(r.config.curve_points))
    for frac in (0.0, 0.3, 0.7, 1.0):
        b = Budget("params_m", lo + frac * (hi - lo))
        a = r.for_budget(b)
        assert a.costs["params_m"] <= b.value + 1e-12 and is_valid(NB201, a.genotype)
        # the first grid point within budget brackets the answer: every smaller grid scale is over budget
        first = next(p for p in dense.points if p.costs["params_m"] <= b.value)
        assert a.tradeoff.scale <= first.tradeoff.scale + 1e-12
        assert all(p.costs["params_m"] > b.value for p in dense.points if p.tradeoff.scale < a.tradeoff.scale)
    assert r.for_budget(f"params_m={hi}").tradeoff.scale == 0.0
    assert r.for_budget(Budget("params_m", lo)).costs["params_m"] == pytest.approx(lo)


def test_parse_direction_and_check_simplex():
    ops = ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert parse_direction("nor_conv_3x3=0.75, nor_conv_1x1=0.25", ops) == (0.0, 0.25, 0.75, 0.0)
    with pytest.raises(TradeOffError, match="OP=WEIGHT"):
        parse_direction("sep_conv_3x3=1", ops)
    with pytest.raises(TradeOffError, match="sum"):
        parse_direction("nor_conv_3x3=0.5", ops)
    assert check_simplex([0.25] * 4, ops) == (0.25,) * 4


@pytest.mark.parametrize("bad", [dict(Lambda=-1.0), dict(Lambda="big"), dict(sampling="normal"),
                                 dict(warmup_fraction=1.0), dict(grid_points=1), dict(kappa=-1),
                                 dict(scale_sampling="cubic"), dict(log_floor=0.0), dict(epochs=0)])
def test_config_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        HypernetConfig(**bad)


# -- derivation rules -------------------------------------------------------------------------------
def test_nb201_derivation_repairs_a_broken_cell_to_the_most_probable_valid_one():
    torch.manual_seed(0)
    logits = torch.randn(6, 5)
    logits[:, 0] += 5.0  # "none" wins every edge: the argmax cell is all none
    op_w = {"cell": logits.softmax(-1)}
    g, repaired = valid_genotype(NB201, op_w, None)
    assert repaired and is_valid(NB201, g)
    logp = op_w["cell"].log().numpy()
    best = max((c for c in itertools.product(range(5), repeat=6) if is_valid(NB201, NB201Genotype(
        tuple(NB201.ops[o] for o in c)))), key=lambda c: sum(logp[e, o] for e, o in enumerate(c)))
    assert g == NB201Genotype(tuple(NB201.ops[o] for o in best))
    op_w = {"cell": torch.eye(5)[[3, 3, 3, 3, 3, 3]] * 0.9 + 0.02}
    assert valid_genotype(NB201, op_w, None) == (NB201Genotype(("nor_conv_3x3",) * 6), False)
    assert nb201_table(NB201.ops).valid.sum() < 5 ** 6


def test_isotonic_selection_keeps_the_cheaper_earlier_member():
    def arch(scale, cost):
        return Architecture(TradeOff((1.0,), scale), NB201Genotype(("skip_connect",) * 6), {"m": cost}, {"m": cost})
    raw = [arch(0.0, 5.0), arch(0.1, 3.0), arch(0.2, 4.0), arch(0.3, 2.0), arch(0.4, 2.0)]
    out = isotonic(raw, "m")
    assert [a.costs["m"] for a in out] == [5.0, 3.0, 3.0, 2.0, 2.0]
    assert out[2].kept_from == 0.1 and out[2].tradeoff.scale == 0.2 and out[3].kept_from is None
    assert count_violations([a.costs["m"] for a in raw]) == 1 and count_violations([5.0, 3.0, 3.0]) == 0


@pytest.mark.slow
def test_darts_family_is_monotone_and_every_node_keeps_two_non_none_inputs(loaders):
    r = search(DARTS, ParamsCost(), dataclasses.replace(FAST, epochs=1, Lambda=1.0), seed=0, data=loaders)
    curve = r.curve()
    assert curve.violations == 0
    assert curve.raw[-1].expected["params_m"] <= curve.raw[0].expected["params_m"]
    for g in {a.genotype for a in curve.raw}:
        for cell in (g.normal, g.reduce):
            assert all(op != "none" for op, _ in cell)
            for k in range(0, len(cell), 2):
                assert cell[k][1] != cell[k + 1][1]  # two distinct inputs per node
        assert is_valid(DARTS, g) and forward_ok(DARTS, g)
    lo, hi = r.reachable()
    assert r.for_budget(Budget("params_m", hi)).costs["params_m"] <= hi
    assert np.isfinite(r.val_acc)


def test_without_signal_the_warmup_waits_for_the_theorem_then_falls_back():
    """Labels independent of the images: no network beats a constant predictor, so Theorem 1 never
    applies; the warm-up lasts as long as allowed, then the configured fallback is used and reported."""
    from torch.utils.data import DataLoader, TensorDataset

    from hilnas.searchers.data import Loaders

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(192, 1, 8, 8, generator=gen), torch.randint(0, 4, (192,), generator=gen)
    ds = [TensorDataset(x[i::3], y[i::3]) for i in range(3)]
    data = Loaders(DataLoader(ds[0], batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1)),
                   DataLoader(ds[1], batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(2)),
                   DataLoader(ds[2], batch_size=16))
    cfg = dataclasses.replace(FAST, Lambda="auto", epochs=2, Lambda_fallback=0.2, max_warmup_fraction=0.5, bound_samples=1,
                              bound_batches=1)
    r = search(NB201, ParamsCost(), cfg, seed=0, data=data)
    if r.bound.applies:  # chance can make every probe beat the constant on 48 samples; then it is the theorem's
        assert r.Lambda == pytest.approx(r.bound.theorem)
    else:
        assert r.bound.source in ("fallback", "previous") and r.Lambda == 0.2
        assert any("does not apply" in n for n in r.bound.notes)
        assert r.Lambda_history[0][0] >= round(0.25 * r.steps)
    assert r.curve().violations == 0 and all(is_valid(NB201, a.genotype) for a in r.curve().raw)


def test_expected_cost_derivation_matches_the_relaxation():
    torch.manual_seed(3)
    model = ParamsCost()
    op_w = {"cell": (0.5 * torch.randn(6, 5)).softmax(-1)}
    e = float(model.expected_cost(NB201, op_w))
    g, _ = match_expected_cost(NB201, model, op_w, None, 0.1)
    cost = model.genotype_cost(NB201, g)
    assert is_valid(NB201, g) and abs(cost - e) <= 0.1 * e + 1e-12
    logp = op_w["cell"].log().numpy()
    table = nb201_table(NB201.ops)
    costs = table.costs(model.tables(NB201))
    ok = table.valid & (np.abs(costs - e) <= 0.1 * e)
    scores = logp[np.arange(6), table.arch].sum(axis=1)
    assert sum(logp[e_, NB201.ops.index(op)] for e_, op in enumerate(g.ops)) == pytest.approx(scores[ok].max())
    # DARTS: a derivation dearer than the expectation is repaired down to it
    w = torch.full((14, 8), 0.7 / 6)
    w[:, DARTS.ops.index("none")] = 0.0
    w[:, DARTS.ops.index("sep_conv_5x5")] = 0.3  # the argmax everywhere, but most of the mass is on cheaper ops
    dart_w = {"normal": w, "reduce": w.clone()}
    g, repaired = match_expected_cost(DARTS, model, dart_w, None, 0.0)
    e = float(model.expected_cost(DARTS, dart_w))
    assert repaired and model.genotype_cost(DARTS, g) <= e + 1e-12
