"""T(e): what each gateable module of a ResNet costs, and the expected cost of relaxed gates.

Under any cost model (a device's LUT latency, parameters, FLOPs), from the same op keys the network
is built from (``keys``): ``rest`` is what every pattern pays (the network with every block dropped:
stem, projections and their ReLU, head) and ``branch[b, k]`` what block ``b`` adds when it keeps ``k``
of its channel groups (``branch[b, 0] = 0``). So ``cost(pattern) = rest + sum_b branch[b, k_b]``, which
equals ``CostModel.genotype_cost`` exactly (tested), and ``T^T 1 = sum_b branch[b, G]``.

Seed 004's penalty is linear, ``lambda T^T gamma``. With channel groups a branch's cost depends on
how many groups it keeps, not linearly on each group gate, so the penalty is

    E[cost] = rest + sum_b p_b sum_{k>=1} P(K_b = k) branch[b, k],   K_b ~ PoissonBinomial(q_b.),

the expected cost of the derived network under independent gates that keep block ``b`` with
probability ``p_b`` and its group ``g`` with ``q_bg``. At 0/1 gates it is the pattern's exact cost,
for block gates alone it is ``rest + T^T p``, and it is differentiable in p and q: the optimisers
evaluate it at the relaxed gates they sampled (``gates``), as a fraction of ``T^T 1`` (so lambda is
in nats per whole gateable cost).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from hilnas.searchers.op_key import network_op_keys
from hilnas.searchers.prune.keys import block_keys
from hilnas.searchers.spaces.resnet import GatePattern, ResNetSpace

if TYPE_CHECKING:
    from hilnas.searchers.cost import CostModel, Extremes


@dataclass(frozen=True)
class ModuleCosts:
    """A cost model's prices of one ResNet space's modules (see the module docstring)."""
    metric: str
    unit: str
    rest: float                # the network with every block dropped
    branch: torch.Tensor       # (B, G + 1) float64: what block b adds keeping k groups; column 0 is 0

    @classmethod
    def of(cls, space: ResNetSpace, model: CostModel) -> ModuleCosts:
        if not isinstance(space, ResNetSpace):   # another backbone prices its own gates (``mobilenet.cost``)
            return space.module_costs(model)
        model.check(space)   # MissingOpsError names what a LUT lacks
        G = space.groups
        rest = float(sum(model.key_cost(k) for k in network_op_keys(space, GatePattern.empty(len(space.layers()), G))))
        branch = torch.zeros(len(space.layers()), G + 1, dtype=torch.float64)
        for b, block in enumerate(space.layers()):
            off = sum(model.key_cost(k) for k in block_keys(block, 0))
            for k in range(1, G + 1):
                branch[b, k] = sum(model.key_cost(key) for key in block_keys(block, k)) - off
        return cls(model.metric, model.unit, rest, branch)

    @property
    def span(self) -> float:
        """T^T 1: what all gateable modules cost together (the full network minus ``rest``)."""
        return float(self.branch[:, -1].sum())

    @property
    def full(self) -> float:
        return self.rest + self.span

    def pattern_cost(self, pattern: GatePattern) -> float:
        return self.rest + float(sum(self.branch[b, k] for b, k in enumerate(pattern.kept_groups)))

    def fraction(self, cost: float) -> float:
        return (cost - self.rest) / self.span

    def expected(self, block_p: torch.Tensor, group_p: torch.Tensor) -> torch.Tensor:
        """E[cost] of the derived network, (..., B) and (..., B, G) keep-probabilities -> (...) (differentiable):
        a scalar for one gate vector, one cost per row for a stack of them."""
        dist = kept_distribution(group_p)                               # (..., B, G + 1): P(K_b = k)
        branch = self.branch.to(dist.dtype)
        return self.rest + (block_p.to(dist.dtype) * (dist * branch).sum(dim=-1)).sum(dim=-1)

    def expected_fraction(self, block_p: torch.Tensor, group_p: torch.Tensor) -> torch.Tensor:
        return (self.expected(block_p, group_p) - self.rest) / self.span

    def expected_fractions(self, block_p: torch.Tensor, group_p: torch.Tensor) -> torch.Tensor:
        """``expected_fraction`` of k gate vectors at once, (k, B) and (k, B, G) -> (k,): phase 2 prices its k
        lambdas' draws, and its log their keep-probabilities, in one call rather than k (the same numbers)."""
        return self.expected_fraction(block_p, group_p)


def pattern_extremes(space: ResNetSpace, model: CostModel) -> Extremes:
    """The cheapest (every branch dropped) and dearest (the unpruned network) patterns with their costs: what
    ``cost.extremes`` gives for the cell spaces, for a relative budget (``latency_ms=40%``) of a run."""
    from hilnas.searchers.cost import Extremes

    blocks = len(space.layers())
    cheap, full = GatePattern.empty(blocks, space.groups), GatePattern.full(blocks, space.groups)
    return Extremes(cheap, model.genotype_cost(space, cheap), full, model.genotype_cost(space, full))


def kept_distribution(q: torch.Tensor) -> torch.Tensor:
    """(..., B, G) independent keep-probabilities -> (..., B, G + 1) distribution of the number kept (Poisson
    binomial)."""
    G = q.shape[-1]
    dist = torch.zeros(*q.shape[:-1], G + 1, dtype=q.dtype, device=q.device)
    dist[..., 0] = 1.0
    for g in range(G):
        qg = q[..., g:g + 1]
        dist = torch.cat([dist[..., :1] * (1 - qg), dist[..., 1:] * (1 - qg) + dist[..., :-1] * qg], dim=-1)
    return dist
