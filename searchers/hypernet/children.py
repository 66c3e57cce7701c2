"""Children of a cell: the cell with k of its edges' ops redrawn (``weight_lambda="sandwich-children"``).

BigNAS's sandwich rule trains the largest child, the smallest and random ones; OFA's progressive shrinking trains
the networks between the largest and the small ones too. The hypernetwork's ``"sandwich"`` weight steps train the
dearest cell and uniform cells only, and on the full-size NB201 the dearest cell then is an isolated optimum: cells
one edge away fit no better than cheap ones, so a family spanning the latency range has no accuracy gradient along
it (docs/performance.md). A child at k redrawn edges, k drawn from 1..E, gives weight steps to cells at every
distance from the dearest, so the loss can fall gradually towards the dear end.

An edge here is one op choice of the genotype: NB201's 6 edges; a DARTS genotype's 2 x steps kept edges per cell
type, normal and reduce (their inputs stay the parent's: a DARTS cell's cost is in its ops).
"""
from __future__ import annotations

import random
from typing import Any

from hilnas.searchers.genotype import Genotype, NB201Genotype
from hilnas.searchers.hypernet.bound import is_valid
from hilnas.searchers.spaces import NB201Space, SearchSpace

_TRIES = 100   # NB201: redraws of a child that disconnects the cell (with k <= 6 a connected one is always drawable)


def edge_ops(space: SearchSpace, genotype: Any) -> list[str]:
    """The genotype's op per edge, in a fixed order (NB201: its 6 edges; DARTS: normal then reduce kept edges)."""
    if isinstance(space, NB201Space):
        return list(genotype.ops)
    return [op for op, _ in genotype.normal] + [op for op, _ in genotype.reduce]


def distance(space: SearchSpace, a: Any, b: Any) -> int:
    """Edges whose op differs between ``a`` and ``b`` (same space; DARTS inputs not compared)."""
    return sum(x != y for x, y in zip(edge_ops(space, a), edge_ops(space, b)))


def child(space: SearchSpace, parent: Any, k: int, rng: random.Random) -> Any:
    """``parent`` with the ops of k distinct edges, chosen uniformly, each redrawn to another op uniformly; a valid
    cell at distance exactly k (NB201: redrawn until connected; DARTS: ``none`` is never drawn, as derived cells
    have none). Raises ValueError for k outside 1..E."""
    ops = edge_ops(space, parent)
    if not 1 <= k <= len(ops):
        raise ValueError(f"a child redraws 1..{len(ops)} edges, got k={k}")
    choices = [op for op in space.ops if isinstance(space, NB201Space) or op != "none"]
    if len(choices) < 2:
        raise ValueError(f"a child needs two ops to choose between on an edge, the space has {choices}")
    for _ in range(_TRIES):
        new = list(ops)
        for e in rng.sample(range(len(ops)), k):
            new[e] = rng.choice([op for op in choices if op != ops[e]])
        g = _with_ops(space, parent, new)
        if is_valid(space, g):
            return g
    raise RuntimeError(f"no valid child at distance {k} of {parent} in {_TRIES} draws")


def _with_ops(space: SearchSpace, parent: Any, ops: list[str]) -> Any:
    if isinstance(space, NB201Space):
        return NB201Genotype(tuple(ops))
    n = len(parent.normal)
    return Genotype(tuple((op, src) for op, (_, src) in zip(ops[:n], parent.normal)), parent.normal_concat,
                    tuple((op, src) for op, (_, src) in zip(ops[n:], parent.reduce)), parent.reduce_concat)
