"""Seed 004's bound Lambda: the formula, its estimate from data, and the valid-graph machinery under it."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch.func import functional_call

from hilnas.searchers.cost import ParamsCost, table_cost
from hilnas.searchers.genotype import NB201Genotype
from hilnas.searchers.hypernet.bound import (Probe, constant_predictor_loss, cost_span, estimate_bound,
                                             estimate_from_supernet, genotype_loss, is_valid, nb201_table,
                                             one_hot_arch, probe_genotypes, theorem_bound)
from hilnas.searchers.supernet import build_supernet, derive_genotype
from testmodels import tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NB201 = tiny_space("nb201")
DARTS = tiny_space("darts")


def test_constant_predictor_loss_is_the_label_entropy():
    assert constant_predictor_loss(np.arange(400) % 4, 4) == pytest.approx(math.log(4))
    assert constant_predictor_loss(torch.tensor([0, 0, 0, 1]), 10) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert constant_predictor_loss([2, 2, 2], 3) == 0.0
    # it is the smallest cross-entropy any constant prediction reaches
    y = torch.tensor([0, 1, 1, 2, 2, 2])
    p = torch.bincount(y, minlength=3) / len(y)
    for q in (p, torch.full((3,), 1 / 3), torch.tensor([0.2, 0.3, 0.5])):
        assert float(torch.nn.functional.nll_loss(q.log().expand(len(y), 3), y)) >= \
            constant_predictor_loss(y, 3) - 1e-6
    with pytest.raises(ValueError):
        constant_predictor_loss([0, 5], 4)
    with pytest.raises(ValueError):
        constant_predictor_loss([], 4)


def test_theorem_bound_formula():
    assert theorem_bound(math.log(10), 0.5, 2.0) == pytest.approx((math.log(10) - 0.5) / 2.0)
    assert theorem_bound(1.0, 1.2) < 0  # the theorem's condition fails
    with pytest.raises(ValueError):
        theorem_bound(1.0, 0.5, 0.0)


def test_estimate_bound_applies_only_when_every_valid_probe_beats_the_constant():
    g = NB201Genotype(("skip_connect",) * 6)
    h = math.log(4)
    est = estimate_bound(h, [Probe(g, 0.4, 0.0), Probe(g, 0.9, 1.0), Probe(g, 0.7, 0.5)])
    assert est.applies and est.source == "theorem" and est.Lambda == pytest.approx(h - 0.9)
    assert est.worst_valid_loss == 0.9 and est.per_network == math.inf  # a free probe beats the constant
    # a probe no better than the constant: the theorem bounds nothing, and says why
    est = estimate_bound(h, [Probe(g, 1.5, 1.0), Probe(g, 1.0, 0.5)])
    assert not est.applies and math.isnan(est.Lambda) and "does not apply" in est.notes[0]
    assert est.per_network == pytest.approx((h - 1.0) / 0.5)  # reported, never used
    assert est.to_dict()["Lambda"] is None
    with pytest.raises(ValueError):
        estimate_bound(h, [])


def test_nb201_table_matches_the_exact_cost_and_the_wiring():
    table = nb201_table(NB201.ops)
    assert len(table.arch) == 5 ** 6
    model = ParamsCost()
    costs = table.costs(model.tables(NB201))
    rng = random.Random(0)
    for i in rng.sample(range(len(table.arch)), 40) + [0]:
        g = table.genotype(i)
        assert table.valid[i] == is_valid(NB201, g)
        assert costs[i] == pytest.approx(model.genotype_cost(NB201, g), rel=1e-9, abs=1e-12)
    assert not is_valid(NB201, NB201Genotype(("none",) * 6))
    # output cut off although node 1 and 2 compute something
    assert not is_valid(NB201, NB201Genotype(("nor_conv_3x3", "nor_conv_3x3", "skip_connect", "none", "none", "none")))
    assert is_valid(NB201, NB201Genotype(("none", "none", "none", "skip_connect", "none", "none")))


def test_cost_span_picks_valid_extremes():
    model = ParamsCost()
    span = cost_span(NB201, model)
    assert is_valid(NB201, span.cheapest) and is_valid(NB201, span.dearest)
    table = nb201_table(NB201.ops)
    costs = table.costs(model.tables(NB201))
    assert span.cheapest_cost == pytest.approx(costs[table.valid].min())
    assert span.dearest_cost == pytest.approx(costs[table.valid].max())
    assert span.fraction(span.dearest_cost) == pytest.approx(1.0)
    dspan = cost_span(DARTS, model)
    assert dspan.fraction(dspan.cheapest_cost) >= 0 and dspan.span > 0
    tables = model.tables(DARTS)
    for g in (DARTS.sample(random.Random(s)) for s in range(5)):
        assert dspan.cheapest_cost - 1e-12 <= table_cost(DARTS, tables, g) <= dspan.dearest_cost + 1e-12


def test_probes_are_distinct_valid_networks():
    span = cost_span(NB201, ParamsCost())
    probes = probe_genotypes(NB201, span, 5, seed=0)
    assert len(probes) == 7 and len(set(probes)) == 7
    assert all(is_valid(NB201, g) for g in probes)
    assert probes[:2] == [span.cheapest, span.dearest]


@pytest.mark.parametrize("space", [NB201, DARTS], ids=["nb201", "darts"])
def test_one_hot_arch_makes_the_supernet_compute_the_genotype(space):
    torch.manual_seed(0)
    net = build_supernet(space)
    rng = random.Random(1)
    for _ in range(3):
        g = space.sample(rng)
        arch = one_hot_arch(net, g)

        class View(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self):
                return self.net.op_weights(), self.net.edge_weights()

        op_w, edge_w = functional_call(View(), {f"net.{k}": v for k, v in arch.items()}, (), strict=False)
        assert derive_genotype(space, op_w, edge_w) == g


def test_genotype_loss_leaves_batchnorm_statistics_alone():
    torch.manual_seed(0)
    net = build_supernet(NB201)
    before = {n: b.clone() for n, b in net.named_buffers()}
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8) % 4
    loss = genotype_loss(net, NB201Genotype(("nor_conv_3x3",) * 6), [(x, y)])
    assert math.isfinite(loss) and loss > 0
    assert all(torch.equal(before[n], b) for n, b in net.named_buffers())
    assert net.training


def test_estimate_from_an_untrained_supernet_follows_the_theorem():
    torch.manual_seed(0)
    net = build_supernet(NB201)
    y = torch.arange(32) % 4  # uniform labels: the constant predictor loses log(4)
    batches = [(torch.randn(16, 1, 8, 8), y[:16]), (torch.randn(16, 1, 8, 8), y[16:])]
    est = estimate_from_supernet(net, cost_span(NB201, ParamsCost()), ParamsCost(), batches, samples=2, seed=0)
    assert est.constant_loss == pytest.approx(math.log(4))
    assert est.samples == 32 and len(est.probes) == 4
    assert all(math.isfinite(p.loss) and p.loss > 0 for p in est.probes)
    assert est.theorem == pytest.approx(math.log(4) - max(p.loss for p in est.probes))
    assert est.applies == (est.theorem > 0) and (math.isnan(est.Lambda) or est.Lambda == est.theorem)
    d = est.to_dict()
    assert d["source"] == est.source and len(d["probes"]) == 4
