"""T(e) of the MobileNet's channel groups from the device, and the differentiable expected cost of relaxed gates.

A MobileNet layer's cost depends on two widths: its input's (the layer before, or the image) and its
own; the head's on the last layer's. The device's LUT holds each layer's key at the backbone's grid
widths, and a width in between is priced by bilinear interpolation of the four grid keys around it,
as the splitting search prices widths (``spaces.mobilenet.grid``). Under gates that keep group ``g`` of
layer ``l`` with probability ``q_lg`` (its layer gate times its group gate; the first group always),
the layer's kept width is ``w_l = sum_g q_lg |group_lg|`` in expectation, and the cost is priced at
those expected widths:

    E[cost] ~= sum_l f_l(w_{l-1}, w_l) + head(w_L),

with ``f_l`` the interpolated LUT. Gates of different layers are independent and ``f_l`` is bilinear
within one grid cell, so there this is the expected cost exactly; across cells it is the cost at the
expected widths. It is differentiable in ``q`` (the interpolation weights are linear in the widths),
and at 0/1 gates it is the pattern's exact LUT price, what ``GridLatencyCost.genotype_cost`` gives
(tested). ``rest`` is the fully pruned network (every layer at its first group), ``span = T^T 1`` what
all gated groups add to it; the search's penalty is ``(E[cost] - rest) / span`` as for the ResNet.

A LUT without a key the grid needs raises ``MissingOpsError`` naming it (the runner adds the
``hilnas lut build`` command); ``price_points`` says which keys those are.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from hilnas.searchers.prune.mobilenet.space import MobileNetGroups
from hilnas.searchers.spaces.resnet import GatePattern

if TYPE_CHECKING:
    from hilnas.searchers.cost import CostModel


@dataclass(frozen=True)
class PriceGrid:
    """One layer's (or the head's) prices at grid widths: ``values[i, j]`` at input ``cin[i]``, output ``cout[j]``."""
    cin: torch.Tensor      # (I,) float64, ascending
    cout: torch.Tensor     # (J,)
    values: torch.Tensor   # (I, J)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Bilinear interpolation at input width ``x`` and output width ``y`` (0-d tensors, differentiable)."""
        (i, a), (j, b) = _cell(self.cin, x), _cell(self.cout, y)
        v = self.values
        if v.shape[0] == 1 and v.shape[1] == 1:
            return v[0, 0] + 0 * (x + y)
        if v.shape[0] == 1:
            return (1 - b) * v[0, j] + b * v[0, j + 1]
        if v.shape[1] == 1:
            return (1 - a) * v[i, 0] + a * v[i + 1, 0]
        return ((1 - a) * ((1 - b) * v[i, j] + b * v[i, j + 1]) + a * ((1 - b) * v[i + 1, j] + b * v[i + 1, j + 1]))


def _cell(points: torch.Tensor, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(lower index, weight of the upper point) of the grid cell holding ``x`` (the last cell at the top)."""
    if len(points) == 1:
        return 0, x * 0
    i = int(torch.searchsorted(points, x.detach().reshape(1).to(points.dtype), right=True)) - 1
    i = min(max(i, 0), len(points) - 2)
    return i, (x - points[i]) / (points[i + 1] - points[i])


@dataclass(frozen=True)
class ChannelCosts:
    """A cost model's prices of one ``MobileNetGroups``' widths (see the module docstring); ``ModuleCosts``' interface."""
    metric: str
    unit: str
    in_channels: int
    grids: tuple[PriceGrid, ...]   # the stem and each block (by input and own width), then the head (by its input)
    sizes: tuple[torch.Tensor, ...]   # per layer: channels per group, the fixed first group first
    rest: float                    # the fully pruned network
    full: float                    # the unpruned network
    branch: torch.Tensor           # (L, G + 1): what layer l adds keeping k gated groups, the others at full width

    @classmethod
    def of(cls, space: MobileNetGroups, model: CostModel) -> ChannelCosts:
        points, keys = space.price_points(), space.price_keys()
        grids = []
        for i, layer_keys in enumerate(keys):
            cin = (space.in_channels,) if i == 0 else points[i - 1]
            cout = points[i] if i < len(points) else (space.num_classes,)
            values = torch.tensor([model.key_cost(k) for k in layer_keys], dtype=torch.float64)
            grids.append(PriceGrid(torch.tensor(cin, dtype=torch.float64), torch.tensor(cout, dtype=torch.float64),
                                   values.view(len(cin), len(cout))))
        sizes = tuple(torch.tensor(layer.sizes, dtype=torch.float64) for layer in space.layers())
        L, G = len(sizes), space.groups
        ones, zeros = torch.ones(L, dtype=torch.float64), torch.zeros(L, G, dtype=torch.float64)
        costs = cls(model.metric, model.unit, space.in_channels, tuple(grids), sizes, 0.0, 0.0, torch.zeros(L, G + 1))
        rest = float(costs.cost_at(costs.widths(ones, zeros)))
        full = float(costs.cost_at(costs.widths(ones, torch.ones(L, G, dtype=torch.float64))))
        branch = torch.zeros(L, G + 1, dtype=torch.float64)
        for l in range(L):
            for k in range(1, G + 1):
                q = torch.ones(L, G, dtype=torch.float64)
                q[l] = (torch.arange(G) < k).to(torch.float64)
                q0 = q.clone()
                q0[l] = 0
                branch[l, k] = costs.cost_at(costs.widths(ones, q)) - costs.cost_at(costs.widths(ones, q0))
        return cls(model.metric, model.unit, space.in_channels, tuple(grids), sizes, rest, full, branch)

    def widths(self, block_p: torch.Tensor, group_p: torch.Tensor) -> list[torch.Tensor]:
        """(L,) layer and (L, G) group keep-probabilities -> each layer's expected kept width."""
        q = block_p.unsqueeze(-1) * group_p
        return [s[0] + (q[l].to(s.dtype) * s[1:]).sum() for l, s in enumerate(self.sizes)]

    def cost_at(self, widths: list[torch.Tensor]) -> torch.Tensor:
        """The interpolated price of the network at (possibly fractional) ``widths``."""
        cin = torch.tensor(float(self.in_channels), dtype=torch.float64)
        total = torch.zeros((), dtype=torch.float64)
        for grid, w in zip(self.grids, widths):
            total = total + grid(cin, w)
            cin = w
        head = self.grids[-1]
        return total + head(cin, head.cout[0])

    def expected(self, block_p: torch.Tensor, group_p: torch.Tensor) -> torch.Tensor:
        """E[cost] at the expected widths, (L,) and (L, G) keep-probabilities -> scalar (differentiable)."""
        return self.cost_at(self.widths(block_p.to(torch.float64), group_p.to(torch.float64)))

    def expected_fraction(self, block_p: torch.Tensor, group_p: torch.Tensor) -> torch.Tensor:
        return (self.expected(block_p, group_p) - self.rest) / self.span

    def expected_fractions(self, block_p: torch.Tensor, group_p: torch.Tensor) -> torch.Tensor:
        """``expected_fraction`` of each of k gate vectors, (k, L) and (k, L, G) -> (k,) (``ModuleCosts``' interface;
        the interpolated price grids take one vector at a time)."""
        return torch.stack([self.expected_fraction(b, g) for b, g in zip(block_p, group_p)])

    @property
    def span(self) -> float:
        """T^T 1: what all gated groups add to the fully pruned network."""
        return self.full - self.rest

    def pattern_cost(self, pattern: GatePattern) -> float:
        group = torch.tensor([[float(b) for b in m] for m in pattern.masks])
        return float(self.expected(torch.ones(len(pattern.masks)), group))

    def fraction(self, cost: float) -> float:
        return (cost - self.rest) / self.span
