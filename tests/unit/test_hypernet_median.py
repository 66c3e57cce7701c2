"""The median derivations (``HypernetConfig.derivation="median"`` and ``"conv-median"``, ``derive.median_genotype``;
issue 12 item 5).

The toy: a stand-in hypernetwork whose op weights move, edge after edge, from ``nor_conv_3x3`` (0.6, phase 1's fit)
to ``skip_connect``, with ``nor_conv_1x1`` gaining less than the free op (as the cost term's gradient does): the
argmax never picks 1x1, so the family prunes one edge at a time (7 members for NB201's 6 edges); the median passes
1x1 on every edge (13 members), with the same two ends. On it the median leaves 1x1 for skip (at progress 0.4) before
the argmax leaves 3x3 (at 0.53), so "conv-median" walks 3x3 -> 1x1 -> skip with its free edges exactly the argmax's.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from hilnas.searchers.cost import ParamsCost
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.hypernet import HypernetConfig, HypernetResult, ScaleMap, search
from hilnas.searchers.hypernet.derive import arch_weights, median_genotype, valid_genotype
from testmodels import hyper_architect, tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def _weights(space, rows):
    """op weights of a cell from one {op: weight} row per edge (ops not named: 0)."""
    return {"cell": torch.tensor([[r.get(op, 0.0) for op in space.ops] for r in rows], dtype=torch.float64)}


def test_the_median_op_of_one_edge_walks_down_the_cost_order():
    space = tiny_space("nb201")
    assert tuple(space.ops) == OPS
    model = ParamsCost()
    cost = model.tables(space).edge.sum(dim=0)[0]
    c = {op: float(cost[i]) for i, op in enumerate(space.ops)}
    assert c["nor_conv_3x3"] > c["nor_conv_1x1"] > c["skip_connect"] == c["none"] == c["avg_pool_3x3"] == 0.0
    dear = {"nor_conv_3x3": 0.6, "none": 0.1, "skip_connect": 0.1, "nor_conv_1x1": 0.1, "avg_pool_3x3": 0.1}
    between = {"nor_conv_3x3": 0.4, "nor_conv_1x1": 0.15, "none": 0.15, "skip_connect": 0.15, "avg_pool_3x3": 0.15}
    free = {"nor_conv_3x3": 0.3, "nor_conv_1x1": 0.15, "none": 0.1, "skip_connect": 0.25, "avg_pool_3x3": 0.2}
    for row, want, argmax in ((dear, "nor_conv_3x3", "nor_conv_3x3"), (between, "nor_conv_1x1", "nor_conv_3x3"),
                              (free, "skip_connect", "nor_conv_3x3")):
        g, repaired = median_genotype(space, model, _weights(space, [row] * 6))
        assert g.ops == (want,) * 6 and not repaired
        assert valid_genotype(space, _weights(space, [row] * 6), None)[0].ops == (argmax,) * 6


def test_a_disconnected_median_cell_is_replaced_by_the_argmax_rule_and_flagged():
    space = tiny_space("nb201")
    cut = {"none": 0.55, "nor_conv_3x3": 0.45}          # median and argmax: none on every edge (no path)
    w = _weights(space, [cut] * 6)
    g, repaired = median_genotype(space, ParamsCost(), w)
    assert repaired and g == valid_genotype(space, w, None)[0] and "nor_conv_3x3" in g.ops


def test_the_darts_space_is_refused_naming_the_derivations_it_takes():
    space = tiny_space("darts")
    with pytest.raises(ValueError, match="NB201 cells only.*'argmax' or 'expected-cost'"):
        median_genotype(space, ParamsCost(), {})


class StaggeredHypernet(nn.Module):
    """Edge e moves from 3x3 to skip over input positions (e + 1) / 7 +- 0.1: 3x3 0.6 -> 0.05, 1x1 0.1 -> 0.15,
    skip 0.1 -> 0.5, pool 0.1 -> 0.2, none 0.1; as logits (the supernet's softmax gives the weights back)."""

    def __init__(self, space):
        super().__init__()
        self.space, self.num_coeffs = space, 5

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        v = float(x.max())
        rows = []
        for e in range(6):
            a = min(1.0, max(0.0, (v - (e + 1) / 7 + 0.1) / 0.2))
            rows.append({"nor_conv_3x3": 0.6 - 0.55 * a, "nor_conv_1x1": 0.1 + 0.05 * a, "none": 0.1,
                         "skip_connect": 0.1 + 0.4 * a, "avg_pool_3x3": 0.1 + 0.1 * a})
        return {"alphas.cell": _weights(self.space, rows)["cell"].log().float()}


def _family(derivation: str) -> HypernetResult:
    space = tiny_space("nb201")
    hook = hyper_architect(space, HypernetConfig(scale_sampling="uniform"))
    config = dataclasses.replace(hook.config, derivation=derivation)
    model = ParamsCost()
    return HypernetResult(space=space, config=config, models={model.metric: model}, primary=model.metric,
                          complexity=model, supernet=hook.supernet, hypernet=StaggeredHypernet(space), Lambda=1.0,
                          bound=None, Lambda_history=[], ops=hook.objective.ops, history={}, epoch_costs=[],
                          val_acc=math.nan, steps=0, epochs=0, wall_s=0.0, peak_mem_mb=0.0, seed=0)


def test_on_the_staggered_family_the_median_walks_every_edge_through_1x1_where_the_argmax_skips_it():
    argmax, median = _family("argmax").fine_curve(), _family("median").fine_curve()
    a_members = list(dict.fromkeys(p.genotype for p in argmax.points))
    m_members = list(dict.fromkeys(p.genotype for p in median.points))
    assert len(a_members) == 7 and len(m_members) == 13
    assert not any("nor_conv_1x1" in g.ops for g in a_members)
    assert sum("nor_conv_1x1" in g.ops for g in m_members) == 6       # each edge's 1x1 step
    assert a_members[0] == m_members[0] and a_members[-1] == m_members[-1]   # the same two ends
    assert m_members[0].ops == ("nor_conv_3x3",) * 6 and m_members[-1].ops == ("skip_connect",) * 6
    assert median.raw_violations == 0    # the raw derivation is monotone: no member kept by isotonic selection
    assert _family("median").breakpoints(12) and len({_family("median").architecture(s).genotype
                                                      for s in _family("median").breakpoints(12)}) == 12


def test_a_search_derives_its_family_with_the_median_rule_and_the_config_refuses_an_unknown_one():
    data = loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                     synthetic_train=64, synthetic_test=32, val_fraction=0.5, batch_size=16))[1]
    cfg = HypernetConfig(epochs=1, Lambda=1.0, derivation="median", warmup_fraction=0.0, eval_batches=1,
                         phase1_steps=5)
    res = search(tiny_space("nb201"), ParamsCost(), cfg, data=data)
    assert res.config.derivation == "median"
    smap = ScaleMap.of(res.config)
    for s in (0.0, 0.5, 1.0):
        a = res.architecture(s)
        c = torch.tensor(a.tradeoff.coefficients())
        op_w, _ = arch_weights(res.supernet, res.hypernet(smap.encode(c, res.Lambda)))
        assert a.genotype == median_genotype(res.space, res.complexity, op_w)[0]
    with pytest.raises(ValueError, match="'argmax', 'expected-cost', 'median' or 'conv-median'"):
        HypernetConfig(derivation="mode")


def test_auto_derives_by_the_argmax_an_explicit_median_is_kept_on_nb201_and_refused_on_darts_before_training():
    assert HypernetConfig().resolved(tiny_space("nb201")).derivation == "argmax"
    assert HypernetConfig().resolved(tiny_space("darts")).derivation == "argmax"
    assert HypernetConfig(derivation="median").resolved(tiny_space("nb201")).derivation == "median"   # explicit wins
    with pytest.raises(ValueError, match="NB201 cells only.*'argmax' or 'expected-cost'"):
        HypernetConfig(derivation="median").resolved(tiny_space("darts"))
    assert HypernetConfig(derivation="conv-median").resolved(tiny_space("nb201")).derivation == "conv-median"
    with pytest.raises(ValueError, match="'conv-median' is defined for NB201 cells only"):
        HypernetConfig(derivation="conv-median").resolved(tiny_space("darts"))


def test_conv_median_keeps_a_convolution_on_each_edge_whose_argmax_is_one_and_takes_the_argmax_free_op_elsewhere():
    space, model = tiny_space("nb201"), ParamsCost()
    between = {"nor_conv_3x3": 0.4, "nor_conv_1x1": 0.15, "none": 0.15, "skip_connect": 0.15, "avg_pool_3x3": 0.15}
    free = {"nor_conv_3x3": 0.3, "nor_conv_1x1": 0.15, "none": 0.1, "skip_connect": 0.25, "avg_pool_3x3": 0.2}
    left = {"nor_conv_3x3": 0.3, "nor_conv_1x1": 0.25, "skip_connect": 0.35, "avg_pool_3x3": 0.1}   # median 1x1
    # edge by edge: the median's 1x1 kept; its free op refused while the argmax is 3x3 (-> the cheapest conv, 1x1);
    # an argmax free op taken even where the median is still a convolution
    rows = [between, free, left, between, free, left]
    median = median_genotype(space, model, _weights(space, rows))[0]
    assert median.ops == ("nor_conv_1x1", "skip_connect", "nor_conv_1x1") * 2
    g, repaired = median_genotype(space, model, _weights(space, rows), free_by_argmax=True)
    assert g.ops == ("nor_conv_1x1", "nor_conv_1x1", "skip_connect") * 2 and not repaired


def test_on_the_staggered_family_conv_median_frees_an_edge_only_where_the_argmax_does():
    argmax, median, conv = (_family(d) for d in ("argmax", "median", "conv-median"))
    scales = [p.tradeoff for p in argmax.fine_curve().points]
    free = {"none", "skip_connect", "avg_pool_3x3"}
    more_free = 0
    for t in scales:
        a, m, c = (r.architecture(t).genotype.ops for r in (argmax, median, conv))
        assert [op in free for op in c] == [op in free for op in a]          # free edges: the argmax's, op and all
        assert all(ci == ai for ci, ai in zip(c, a) if ai in free)
        assert all(ci in ("nor_conv_1x1", mi) for ci, mi in zip(c, m) if ci not in free)   # else the median, >= 1x1
        more_free += sum(op in free for op in m) > sum(op in free for op in a)
    assert more_free > 0          # the median frees edges the argmax keeps: where the two rules differ
    members = list(dict.fromkeys(p.genotype for p in conv.fine_curve().points))
    assert len(members) == 13 and sum("nor_conv_1x1" in g.ops for g in members) == 6    # each edge's 1x1 step
    assert members[0].ops == ("nor_conv_3x3",) * 6 and members[-1].ops == ("skip_connect",) * 6
    assert conv.fine_curve().raw_violations == 0
