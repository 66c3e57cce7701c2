"""Derivation for the hypernetwork search: the valid genotype at a trade-off point.

``valid_genotype`` (the supernet's rule, NB201 cells kept connected), ``match_expected_cost``
(the genotype whose exact cost is the relaxation's expected cost), ``median_genotype`` (NB201: per edge, the op at
the median of the op weights ordered by cost; its ``"conv-median"`` form leaves free ops to the argmax) and
``derive`` (the hypernetwork's architecture at one lambda, then one of the rules).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from hilnas.searchers.hypernet.bound import is_valid, nb201_table
from hilnas.searchers.genotype import NB201Genotype
from hilnas.searchers.spaces import NB201Space
from hilnas.searchers.supernet import derive_genotype

if TYPE_CHECKING:
    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.hypernet import Hypernetwork, ValidSupernet
    from hilnas.searchers.hypernet.tradeoff import ScaleMap, TradeOff
    from hilnas.searchers.spaces import SearchSpace


def arch_weights(supernet: ValidSupernet, arch: Mapping[str, torch.Tensor]
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """(op weights, edge weights) of the supernet with ``arch`` in place of its architecture parameters."""
    with supernet.using(arch):
        return supernet.op_weights(), supernet.edge_weights()


def valid_genotype(space: SearchSpace, op_w: Mapping[str, torch.Tensor],
                   edge_w: Mapping[str, torch.Tensor] | None) -> tuple[Any, bool]:
    """The derived genotype, made a valid graph; True when the plain derivation had to be replaced.

    NB201: the argmax cell, or, when its output is cut off from its input, the valid cell with the
    largest product of op probabilities (over all cells). DARTS derivations are always valid.
    """
    g = derive_genotype(space, op_w, edge_w)  # the supernet's derivation already keeps NB201 cells connected
    if not isinstance(space, NB201Space):
        return g, False
    argmax = tuple(space.ops[int(i)] for i in op_w["cell"].argmax(dim=1))
    return g, g.ops != argmax


def match_expected_cost(space: SearchSpace, model: CostModel, op_w: Mapping[str, torch.Tensor],
                        edge_w: Mapping[str, torch.Tensor] | None, band: float) -> tuple[Any, bool]:
    """The most probable valid genotype whose exact cost is the relaxation's expected cost (within ``band``).

    The penalty controls the expected cost E of the derived network; the argmax cell alone can
    land anywhere from the cheapest to the dearest network when the op weights are still spread,
    which is how short searches leave them. NB201 (exact, over all cells): the valid cell with the
    largest product of op probabilities among those costing within ``band * E`` of E (the nearest
    costs when none does). DARTS: the supernet's derivation, repaired down along the alpha ranking
    (``repair.repair``) when it costs more than ``(1 + band) E``; it is not raised when cheaper.
    True when the result is not the plain derivation.
    """
    with torch.no_grad():
        e = float(model.expected_cost(space, op_w, edge_w))
    if not isinstance(space, NB201Space):
        from hilnas.searchers.dca.repair import repair
        g = derive_genotype(space, op_w, edge_w)
        if model.genotype_cost(space, g) <= (1 + band) * e:
            return g, False
        with torch.no_grad():
            return repair(space, model, g, (1 + band) * e, op_w, edge_w).genotype, True
    table = nb201_table(space.ops)
    cache = model.__dict__.setdefault("_hypernet_nb201_costs", {})
    if space not in cache:
        cache[space] = table.costs(model.tables(space))
    costs = cache[space]
    gap = np.where(table.valid, np.abs(costs - e), np.inf)
    near = gap <= max(band * abs(e), float(gap.min()) + 1e-12)
    logp = op_w["cell"].detach().double().clamp_min(1e-30).log().cpu().numpy()  # (E, O)
    score = np.where(near, logp[np.arange(table.arch.shape[1]), table.arch].sum(axis=1), -np.inf)
    g = table.genotype(int(np.argmax(score)))
    return g, g != derive_genotype(space, op_w, edge_w)


def check_median(space: SearchSpace, other: str = "", name: str = "median") -> None:
    """Refuse a median derivation (``name``) on a space other than NB201 (``other``: further values the caller takes)."""
    if not isinstance(space, NB201Space):
        raise ValueError(f"derivation '{name}' is defined for NB201 cells only; the {space.name} space takes "
                         f"derivation='argmax' or 'expected-cost'{other}")


def _median_ops(cost: list[list[float]], weights: list[list[float]]) -> list[int]:
    """Per edge, the index of the op at the weighted median of its weights with the ops ordered by ``cost``."""
    out = []
    for c, p in zip(cost, weights):
        tol = 1e-9 * max(map(abs, c))
        cum, level, group = 0.0, None, []
        for o in sorted(range(len(c)), key=lambda o: -c[o]):       # dearest first
            if level is not None and abs(c[o] - level) > tol:       # a cheaper level: is the median in the one before?
                if cum >= 0.5 * sum(p):
                    break
                group = []
            level = c[o]
            group.append(o)
            cum += p[o]
        out.append(max(group, key=lambda o: p[o]))
    return out


def median_genotype(space: SearchSpace, model: CostModel, op_w: Mapping[str, torch.Tensor], *,
                    free_by_argmax: bool = False) -> tuple[Any, bool]:
    """NB201: per edge, the op at the weighted median of the edge's op weights ordered by ``model``'s cost; True when
    that cell is disconnected and the argmax rule (``valid_genotype``) replaced it.

    Walking the ops from the dearest down, the median is the first whose cumulative weight reaches 1/2 (ops of equal
    cost form one step, the most probable of them taken). Why: the argmax jumps from ``nor_conv_3x3`` straight to a
    free op, since the cost term raises every cheaper op's logit and the free ones most; on the full-size NB201 the
    family then pruned the dearest cell one edge at a time, 7 members for 6 edges (docs/performance.md, seventh
    session). As weight moves down the cost order the median passes every op in between (3x3 -> 1x1 -> a free op),
    and it keeps the argmax's ends: an op of weight > 1/2 is the median.

    ``free_by_argmax`` (derivation ``"conv-median"``): an edge whose argmax op is a convolution keeps a convolution
    (the median, or the edge's cheapest convolution when the median is a free op), and an edge whose argmax op is free
    takes that op. Why: on the search-quality proxy the median's walk below 1x1 emptied cells of convolutions (50-54 %
    networks at the small budgets, ninth session); this keeps the median's 3x3 -> 1x1 steps and leaves the step to a
    free op, and the choice among them, to the argmax, whose cheap end was good there.
    """
    check_median(space, name="conv-median" if free_by_argmax else "median")
    cost = model.tables(space).edge.sum(dim=0).tolist()            # (edges, ops): the op's cost summed over cells
    w = op_w["cell"].detach().double().cpu()
    picks = _median_ops(cost, w.tolist())
    if free_by_argmax:
        conv = [i for i, op in enumerate(space.ops) if "conv" in op]
        for e, a in enumerate(w.argmax(dim=1).tolist()):
            if a not in conv:
                picks[e] = a
            elif picks[e] not in conv:
                picks[e] = min(conv, key=lambda o: cost[e][o])
    g = NB201Genotype(tuple(space.ops[o] for o in picks))
    if is_valid(space, g):
        return g, False
    return valid_genotype(space, op_w, None)[0], True


def derive(supernet: ValidSupernet, hypernet: Hypernetwork, tradeoff: TradeOff, Lambda: float, smap: ScaleMap,
           *, match: tuple[CostModel, float] | None = None, median: CostModel | None = None,
           free_by_argmax: bool = False) -> tuple[Any, bool, dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """(valid genotype, not the plain rule's?, op weights, edge weights) at ``tradeoff``.

    ``match``: (cost model, band) to derive with ``match_expected_cost``; ``median``: the cost model whose order
    ``median_genotype`` walks (``free_by_argmax``: its ``"conv-median"`` form); neither = ``valid_genotype``.
    """
    c = torch.tensor(tradeoff.coefficients(), dtype=torch.float32, device=hypernet.device)
    x = smap.encode(c, Lambda)
    with torch.no_grad():
        op_w, edge_w = arch_weights(supernet, hypernet(x))
    if median is not None:
        g, repaired = median_genotype(supernet.space, median, op_w, free_by_argmax=free_by_argmax)
    elif match is not None:
        g, repaired = match_expected_cost(supernet.space, match[0], op_w, edge_w, match[1])
    else:
        g, repaired = valid_genotype(supernet.space, op_w, edge_w)
    return g, repaired, op_w, edge_w
