"""Derivation for the hypernetwork search: the valid genotype at a trade-off point.

``valid_genotype`` (the supernet's rule, NB201 cells kept connected), ``match_expected_cost``
(the genotype whose exact cost is the relaxation's expected cost) and ``derive`` (the hypernetwork's
architecture at one lambda, then either rule).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from hilnas.searchers.hypernet.bound import nb201_table
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


def derive(supernet: ValidSupernet, hypernet: Hypernetwork, tradeoff: TradeOff, Lambda: float, smap: ScaleMap,
           *, match: tuple[CostModel, float] | None = None
           ) -> tuple[Any, bool, dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """(valid genotype, not the plain argmax?, op weights, edge weights) at ``tradeoff``.

    ``match``: (cost model, band) to derive with ``match_expected_cost``; None = ``valid_genotype``.
    """
    c = torch.tensor(tradeoff.coefficients(), dtype=torch.float32, device=hypernet.device)
    x = smap.encode(c, Lambda)
    with torch.no_grad():
        op_w, edge_w = arch_weights(supernet, hypernet(x))
    if match is not None:
        g, repaired = match_expected_cost(supernet.space, match[0], op_w, edge_w, match[1])
    else:
        g, repaired = valid_genotype(supernet.space, op_w, edge_w)
    return g, repaired, op_w, edge_w
