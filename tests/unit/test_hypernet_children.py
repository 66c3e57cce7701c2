"""``weight_lambda="sandwich-children"`` (issue 12 item 5): the weight steps train the dearest cell, a child of it
with k edges redrawn (k uniform in 1..E) and a uniform cell, in turn, so cells at every distance from the dearest
get steps and the loss can fall gradually toward the dear end (BigNAS's sandwich with intermediate children)."""
from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from hilnas.searchers.cost import ParamsCost
from hilnas.searchers.hypernet import HypernetConfig
from hilnas.searchers.hypernet.bound import _ONE_HOT, cost_span, is_valid, one_hot_arch
from hilnas.searchers.hypernet.children import child, distance, edge_ops
from testmodels import hyper_architect, tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("kind", ["nb201", "darts"])
def test_a_child_at_k_is_a_valid_cell_exactly_k_edges_from_its_parent(kind):
    space = tiny_space(kind)
    dear = cost_span(space, ParamsCost()).dearest
    E = len(edge_ops(space, dear))
    rng = random.Random(0)
    for k in range(1, E + 1):
        for _ in range(20):
            g = child(space, dear, k, rng)
            assert distance(space, g, dear) == k and is_valid(space, g)
    for k in (0, E + 1):
        with pytest.raises(ValueError, match=f"1..{E} edges"):
            child(space, dear, k, rng)


@pytest.mark.parametrize("kind", ["nb201", "darts"])
def test_the_weight_steps_run_the_dearest_a_child_and_a_uniform_cell_in_turn_one_path_each(kind):
    """Over a run the children's distances from the dearest cover 1..E; each step is one one-hot cell, as before."""
    space = tiny_space(kind)
    hook = hyper_architect(space, HypernetConfig(weight_lambda="sandwich-children", Lambda=1.0))
    dear = cost_span(space, ParamsCost()).dearest
    E = len(edge_ops(space, dear))
    dear_arch = one_hot_arch(hook.supernet, dear)
    seen: dict[int, Counter] = {0: Counter(), 1: Counter(), 2: Counter()}
    for step in range(60 * E):
        path = hook.weight_path(step)
        for name, a in path.items():   # one path: every edge's architecture is a single op at the one-hot gap
            if name.startswith("alphas."):
                assert torch.equal(a.max(dim=1).values, torch.full((a.shape[0],), _ONE_HOT))
                assert int((a != 0).sum()) == a.shape[0]
        same = all(torch.equal(path[n], dear_arch[n]) for n in dear_arch)
        seen[step % 3][same] += 1
    assert seen[0] == Counter({True: 20 * E})                       # the dearest cell on every third step
    assert seen[1][True] == 0                                        # a child is never the dearest cell itself
    assert sorted(hook.child_distances) == list(range(1, E + 1))     # children at every distance 1..E
    assert sum(hook.child_distances.values()) == 20 * E
    assert min(hook.child_distances.values()) >= 0.4 * 20             # k uniform: each distance ~20 times
    assert seen[2][False] > 0.8 * 20 * E                             # the third step: a uniform cell


def test_an_unknown_weight_lambda_names_the_five_choices():
    with pytest.raises(ValueError, match="'sandwich' or 'sandwich-children'"):
        HypernetConfig(weight_lambda="children")
