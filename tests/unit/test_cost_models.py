"""Cost models: the exact cost identity, the tables, the differentiable relaxation, missing LUT keys."""
import itertools
import math
import random
import zlib

import pytest
import torch

from hilnas.searchers.cost import (FlopsCost, LutEnergyCost, LutLatencyCost, MissingOpsError, ParamsCost,
                                   cell_types, extremes, table_cost)
from hilnas.searchers.genotype import NB201Genotype
from hilnas.searchers.model import build_network
from hilnas.searchers.op_key import OpKey, enumerate_op_keys, network_op_keys
from hilnas.searchers.supernet import derive_genotype
from testmodels import tiny_space

SPACES = {
    "nb201": tiny_space("nb201"),
    "darts": tiny_space("darts"),
}


def fake_lut(space, scale=1.0):
    """A deterministic pseudo-LUT: every key of the space gets a value from its hash."""
    return {k.encode(): scale * (0.05 + zlib.crc32(k.encode().encode()) % 1000 / 1000.0)
            for k in enumerate_op_keys(space)}


def genotypes(space, n=25, seed=0):
    rng = random.Random(seed)
    out = [space.sample(rng) for _ in range(n)]
    if space.name == "nb201":  # none edges, dead edges and an all-none cell too
        out += [NB201Genotype(("none",) * 6), NB201Genotype(("none", "nor_conv_3x3", "skip_connect", "none",
                                                                  "avg_pool_3x3", "nor_conv_1x1"))]
    return out


@pytest.mark.parametrize("name", SPACES)
def test_lut_cost_is_the_sum_over_network_op_keys(name):
    space = SPACES[name]
    lut = fake_lut(space)
    model = LutLatencyCost(lut)
    tables = model.tables(space)
    for g in genotypes(space):
        want = sum(lut[k.encode()] for k in network_op_keys(space, g))
        assert model.genotype_cost(space, g) == pytest.approx(want, rel=1e-12)
        assert table_cost(space, tables, g) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("name", SPACES)
def test_params_cost_counts_the_built_network(name):
    space = SPACES[name]
    for g in genotypes(space, n=6):
        n = sum(p.numel() for p in build_network(space, g).parameters())
        assert ParamsCost().genotype_cost(space, g) == pytest.approx(n / 1e6, rel=1e-12)


def test_flops_of_one_conv():
    key = OpKey("nor_conv_3x3", 4, 8, 10, 10, 1)  # ReLU, 3x3 conv 4->8, BN: 8*10*10 outputs x 4*9 MACs
    assert FlopsCost().key_cost(key) == pytest.approx(8 * 10 * 10 * 4 * 9 / 1e6)
    assert ParamsCost().key_cost(key) == pytest.approx((8 * 4 * 9 + 2 * 8) / 1e6)


def decisive(space, g, sharp=40.0):
    """Alphas (and betas) whose derivation is ``g``, softmaxed."""
    ops = space.ops
    if space.name == "nb201":
        a = torch.full((6, len(ops)), -sharp)
        for e, op in enumerate(g.ops):
            a[e, ops.index(op)] = sharp
        return {"cell": a.softmax(-1)}, None
    index = {e: i for i, e in enumerate(space.edges)}
    w, b = {}, {}
    for t, cell in (("normal", g.normal), ("reduce", g.reduce)):
        a = torch.zeros(len(space.edges), len(ops))
        beta = torch.full((len(space.edges),), -sharp)
        for k, (op, src) in enumerate(cell):
            e = index[(src, k // 2 + 2)]
            a[e, ops.index(op)] = sharp
            beta[e] = sharp
        w[t] = a.softmax(-1)
        parts = []
        for node in range(space.steps):
            idx = [i for i, (_, d) in enumerate(space.edges) if d == node + 2]
            parts.append(beta[idx].softmax(0))
        b[t] = torch.cat(parts)
    return w, b


@pytest.mark.parametrize("name", SPACES)
def test_expected_cost_at_decisive_alphas_is_the_exact_cost(name):
    space = SPACES[name]
    model = LutLatencyCost(fake_lut(space))
    rng = random.Random(3)
    for _ in range(10):
        g = space.sample(rng)
        if name == "nb201":  # without none no edge is dead, so the relaxation is exact
            g = NB201Genotype(tuple(op if op != "none" else "skip_connect" for op in g.ops))
        w, b = decisive(space, g)
        assert derive_genotype(space, w, b) == g
        got = float(model.expected_cost(space, {k: v.double() for k, v in w.items()}, b))
        assert got == pytest.approx(model.genotype_cost(space, g), rel=1e-6)


@pytest.mark.parametrize("name", SPACES)
def test_expected_cost_is_differentiable(name):
    space = SPACES[name]
    model = LutEnergyCost(fake_lut(space))
    alphas = {t: torch.randn(len(space.edges), len(space.ops), requires_grad=True)
              for t in dict.fromkeys(cell_types(space))}
    betas = {t: torch.randn(len(space.edges), requires_grad=True) for t in alphas} if name == "darts" else None
    e = model.expected_cost(space, {t: a.softmax(-1) for t, a in alphas.items()},
                            {t: b.sigmoid() for t, b in betas.items()} if betas else None)
    e.backward()
    assert e.requires_grad and math.isfinite(float(e.detach()))
    for a in alphas.values():
        assert a.grad is not None and a.grad.abs().sum() > 0
    for b in (betas or {}).values():
        assert b.grad is not None and b.grad.abs().sum() > 0


def test_missing_lut_keys_are_named():
    space = SPACES["darts"]
    lut = fake_lut(space)
    dropped = sorted(lut)[:3]
    for k in dropped:
        del lut[k]
    model = LutLatencyCost(lut)
    with pytest.raises(MissingOpsError) as err:
        model.check(space)
    assert err.value.keys == tuple(dropped)
    for k in dropped:
        assert k in str(err.value)
    with pytest.raises(MissingOpsError):
        model.tables(space)


@pytest.mark.parametrize("bad", [float("nan"), -1.0, None])
def test_lut_values_must_be_finite_and_non_negative(bad):
    with pytest.raises(ValueError, match="finite and >= 0"):
        LutLatencyCost({"add|cin=4|cout=4|h=8|w=8|s=1": bad})


def test_nb201_extremes_are_the_brute_force_extremes():
    space = SPACES["nb201"]
    model = LutLatencyCost(fake_lut(space))
    from hilnas.searchers.cost import _nb201_connected

    costs = [model.genotype_cost(space, NB201Genotype(ops))
             for ops in itertools.islice(itertools.product(space.ops, repeat=6), 0, None, 7)
             if _nb201_connected(ops)]  # a cell cut off from its input is not a network
    ex = extremes(space, model)
    assert _nb201_connected(ex.cheapest.ops) and _nb201_connected(ex.dearest.ops)
    assert ex.cheapest_cost <= min(costs) and ex.dearest_cost >= max(costs)
    assert model.genotype_cost(space, ex.cheapest) == pytest.approx(ex.cheapest_cost)
    assert model.genotype_cost(space, ex.dearest) == pytest.approx(ex.dearest_cost)


def test_darts_extremes_bound_every_sample():
    space = SPACES["darts"]
    model = LutLatencyCost(fake_lut(space))
    ex = extremes(space, model)
    costs = [model.genotype_cost(space, g) for g in genotypes(space, n=200, seed=5)]
    assert ex.cheapest_cost <= min(costs) and ex.dearest_cost >= max(costs)
    assert model.genotype_cost(space, ex.cheapest) == pytest.approx(ex.cheapest_cost)
    assert model.genotype_cost(space, ex.dearest) == pytest.approx(ex.dearest_cost)
    assert "none" not in {op for op, _ in ex.cheapest.normal + ex.cheapest.reduce}


@pytest.mark.parametrize("name", SPACES)
def test_corrected_cost_is_the_affine_map_everywhere(name):
    """The exact, tabled and relaxed costs all go through scale * sum + offset, so constraining it is exact."""
    from hilnas.searchers.cost import CorrectedCost

    space = SPACES[name]
    base = LutLatencyCost(fake_lut(space))
    model = CorrectedCost(base, 0.8, -0.3)
    for g in genotypes(space, n=8):
        want = 0.8 * base.genotype_cost(space, g) - 0.3
        assert model.genotype_cost(space, g) == pytest.approx(want)
        assert table_cost(space, model.tables(space), g) == pytest.approx(want)
    w = {t: torch.rand(len(space.edges), len(space.ops), dtype=torch.float64).softmax(-1)
         for t in dict.fromkeys(cell_types(space))}
    b = {t: torch.rand(len(space.edges), dtype=torch.float64) for t in w} if name == "darts" else None
    assert float(model.expected_cost(space, w, b)) == pytest.approx(0.8 * float(base.expected_cost(space, w, b)) - 0.3)
    ex, bx = extremes(space, model), extremes(space, base)
    assert ex.cheapest == bx.cheapest and ex.cheapest_cost == pytest.approx(0.8 * bx.cheapest_cost - 0.3)
    with pytest.raises(ValueError, match="scale"):
        CorrectedCost(base, 0.0, 1.0)


@pytest.mark.parametrize("name", SPACES)
def test_full_size_cost_prices_a_proxy_at_full_size(name):
    """A proxy supernet's genotypes cost what the full-size network costs, exactly and relaxed."""
    from hilnas.searchers.cost import FullSizeCost
    from hilnas.searchers.spaces import SpaceError

    full = SPACES[name]
    proxy = full.replace(C=2) if name == "nb201" else full.replace(C=2, layers=3)
    base = LutLatencyCost(fake_lut(full))  # has only the full-size keys
    model = FullSizeCost(base, full)
    model.check(proxy)
    for g in genotypes(full, n=8):
        assert model.genotype_cost(proxy, g) == pytest.approx(base.genotype_cost(full, g))
        assert table_cost(proxy, model.tables(proxy), g) == pytest.approx(base.genotype_cost(full, g))
    assert extremes(proxy, model).dearest_cost == pytest.approx(extremes(full, base).dearest_cost)
    other = SPACES["darts" if name == "nb201" else "nb201"]
    with pytest.raises(SpaceError, match="cells differ"):
        model.check(other)


def test_nb201_cells_are_wired_as_wire_cell_wires_each():
    """The vectorised table of all 15,625 cells agrees with the one-cell reference and with table_cost."""
    from hilnas.searchers.cost import nb201_cell_costs, nb201_cells
    from hilnas.searchers.genotype import NB201_EDGES, wire_cell

    space = SPACES["nb201"]
    cells = nb201_cells(space.ops)
    tables = LutLatencyCost(fake_lut(space)).tables(space)
    costs = nb201_cell_costs(cells, tables)
    for i in range(0, len(cells.arch), 7):
        g = cells.genotype(i)
        w = wire_cell([(s, d, op) for (s, d), op in zip(NB201_EDGES, g.ops)], 1, (3,))
        assert tuple(cells.live[i]) == w.live and bool(cells.valid[i]) == (3 not in w.zero_nodes)
        assert costs[i] == pytest.approx(table_cost(space, tables, g))
