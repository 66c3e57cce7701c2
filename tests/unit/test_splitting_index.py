"""The splitting index: exact against the explicit matrix, negative on a trained net, and it predicts the loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from splitting_helpers import tiny_space, trained_net
from hilnas.searchers.cost import FlopsCost
from hilnas.searchers.splitting.costs import split_costs
from hilnas.searchers.splitting.grow import index_batches
from hilnas.searchers.splitting.index import (IndexConfig, inverse_sqrt, layer_index, layer_terms, random_directions,
                                              splitting_indices, splitting_matrix, surrogate_second_derivative)
from hilnas.searchers.splitting.knapsack import knapsack_dp
from hilnas.searchers.splitting.split import LayerSplit, split_network

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {seed: trained_net(tiny_space(), seed=seed) for seed in (0, 1)}
    finally:
        torch.set_num_threads(threads)


def _loss(net, batches):
    net.eval()
    with torch.no_grad():
        return sum(F.cross_entropy(net(x), y, reduction="sum").item() for x, y in batches) / \
            sum(len(y) for _, y in batches)


def test_the_surrogate_is_relus_second_derivative_smoothed():
    u = torch.linspace(-5, 5, 20001, dtype=torch.float64)
    d2 = surrogate_second_derivative(u, 10.0)
    assert float(torch.trapezoid(d2, u)) == pytest.approx(1.0, abs=1e-6)  # a delta of mass 1 at the kink
    assert float(d2[u.abs() > 1].max()) < 1e-3 and float(d2.max()) == pytest.approx(2.5)


@pytest.mark.parametrize("metric", ["weights", "output"])
def test_lanczos_matches_the_explicit_splitting_matrix(trained, metric):
    net, loaders = trained[0]
    terms = layer_terms(net, index_batches(loaders, 2, 64, 3), beta=10.0)
    for layer, t in enumerate(terms):
        d = t.X.shape[1]
        exact_cfg, short_cfg = IndexConfig(lanczos_steps=d, metric=metric), IndexConfig(lanczos_steps=6, metric=metric)
        li, short = layer_index(t, layer, exact_cfg), layer_index(t, layer, short_cfg)
        W = inverse_sqrt(t.gram(), exact_cfg.ridge)
        for j in range(t.a.shape[0]):
            S = splitting_matrix(t, j)  # formed column by column from the same products
            A = S if metric == "weights" else W @ S @ W / float(t.a[j]) ** 2
            want = float(torch.linalg.eigvalsh(A)[0])
            assert float(li.eigenvalues[j]) == pytest.approx(want, rel=1e-4, abs=1e-7)
            assert float(short.eigenvalues[j]) >= want - 1e-7  # a Ritz value: never below the true minimum
            v = li.directions[j].double()
            assert float(v @ S @ v) == pytest.approx(want, rel=1e-3, abs=1e-7)  # v is the eigenvector, unit in the metric


def test_the_depthwise_term_is_part_of_the_matrix(trained):
    """Layers before a block include the depthwise unit their channels pass through alone; the last does not."""
    net, loaders = trained[0]
    terms = layer_terms(net, index_batches(loaders, 2, 64, 3), beta=10.0)
    assert [t.depthwise is not None for t in terms] == [True, True, False]
    first = terms[0]
    X, c = first.X.double(), first.c[:, 0].double()
    only_first_term = X.T @ (c[:, None] * X)
    assert not torch.allclose(splitting_matrix(first, 0), only_first_term, atol=1e-9)


def test_a_trained_network_has_negative_splitting_indices(trained):
    net, loaders = trained[0]
    indices = splitting_indices(net, index_batches(loaders, 4, 64, 1))
    assert [len(li.eigenvalues) for li in indices] == list(net.widths.widths)
    for li in indices:
        assert float(li.eigenvalues.min()) < -1e-4          # non-trivial: relu'' would make S vanish
        assert len(li.splittable) >= 1
        assert torch.isfinite(li.directions).all()


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_the_index_predicts_the_loss_change_of_a_small_split(trained, layer):
    net, loaders = trained[0]
    batches = index_batches(loaders, 8, 64, 1)
    li = splitting_indices(net, batches, IndexConfig(batches=8))[layer]
    best = torch.argsort(li.eigenvalues)[:2].tolist()
    tau = 0.03
    split = split_network(net, [LayerSplit(layer, tuple(best), li.directions[best])], tau)
    predicted = tau ** 2 / 2 * float(li.eigenvalues[best].sum())
    actual = _loss(split, batches) - _loss(net, batches)
    assert predicted < 0 and actual < 0
    assert actual == pytest.approx(predicted, rel=0.6)


@pytest.mark.parametrize("net_seed", [0, 1])
def test_the_step_chosen_by_the_index_beats_random_splits_of_equal_cost(trained, net_seed):
    """Eq. (1) on the indices, against the same number of random neurons per layer (so exactly the same
    cost) split along random directions of the same length, several seeded trials each."""
    net, loaders = trained[net_seed]
    space = net.space
    batches = index_batches(loaders, 8, 64, 1)
    indices = splitting_indices(net, batches, IndexConfig(batches=8))
    e, _ = split_costs(space, net.widths, FlopsCost())
    items = [(li.layer, j, -float(li.eigenvalues[j]), e[li.layer]) for li in indices
             for j in range(len(li.eigenvalues)) if li.eigenvalues[j] < 0]
    budget = 0.3 * FlopsCost().genotype_cost(space, net.widths)
    chosen = knapsack_dp([g for *_, g, _ in items], [c for *_, c in items], budget)
    per_layer: dict[int, list[int]] = {}
    for i in chosen:
        per_layer.setdefault(items[i][0], []).append(items[i][1])
    tau = 0.1
    base = _loss(net, batches)
    ours = _loss(split_network(net, [LayerSplit(l, tuple(js), indices[l].directions[js])
                                     for l, js in per_layer.items()], tau), batches) - base
    terms = layer_terms(net, batches, 10.0, gradients=False)
    randoms = []
    for trial in range(5):
        gen = torch.Generator().manual_seed(100 * net_seed + trial)
        splits = []
        for l, js in per_layer.items():
            picks = torch.randperm(net.widths.widths[l], generator=gen)[:len(js)].tolist()
            splits.append(LayerSplit(l, tuple(picks), random_directions(terms[l], gen)[picks]))
        randoms.append(_loss(split_network(net, splits, tau), batches) - base)
    assert ours < 0
    assert all(ours < r for r in randoms), (ours, randoms)
    assert math.isfinite(sum(randoms))
