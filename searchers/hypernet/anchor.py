"""The anchor: the family's lambda = 0 end held where phase 1 put it (seed 004's hypernet(0) after phase 1).

``Anchored(h)`` wraps a hypernetwork ``h``. Until ``pin()`` it is ``h``. ``pin()`` copies h(0), phase 1's fit,
into the anchor; from then on ``theta(u) = h(u) - h(0) + anchor``: lambda = 0 gets the anchor itself and every
other lambda learns its offset from it through ``h``, which the anchor's gradient never reaches (it is detached
there). At the moment of pinning nothing changes (the anchor is h(0)); afterwards no step at any lambda can move
lambda = 0's output, unless the anchor itself is trained (the pruning hypernetwork's ``anchor="learned"``, where
only lambda = 0's own loss reaches it). One implementation for both hypernetworks: ``PruneHypernet`` (gates) and
the DARTS-space/NB201 hypernetwork with ``HypernetConfig.anchor = "pinned"`` (architecture parameters).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch
from torch import nn

if TYPE_CHECKING:
    from hilnas.searchers.hypernet.search import Hypernetwork


class Anchored(nn.Module):
    """``h`` with lambda = 0's output pinned to the anchor once ``pin()`` has run (the state dict keeps the pin)."""

    def __init__(self, h: Hypernetwork):
        super().__init__()
        self.h = h
        self.anchor = nn.Parameter(torch.zeros(sum(h.sizes)))   # flat, in h's output layout
        self.register_buffer("pinned", torch.zeros((), dtype=torch.bool))

    @property
    def device(self) -> torch.device:
        return self.h.device

    @property
    def num_coeffs(self) -> int:
        return self.h.num_coeffs

    def trained_parameters(self) -> Iterator[nn.Parameter]:
        """What the trade-off steps train: ``h`` (the offsets), never the anchor."""
        return self.h.parameters()

    def pin(self) -> None:
        with torch.no_grad():
            self.anchor.copy_(self.h.flat(torch.zeros(self.num_coeffs, device=self.device)))
            self.pinned.fill_(True)

    def flat(self, u: torch.Tensor) -> torch.Tensor:  # (..., k) in [0, 1] -> (..., total): a row per input row
        """Every output in one vector per row of ``u``, one call of ``h`` for all rows (pruning's phase 2 passes its
        step's lambdas at once). A row at lambda = 0 is the anchor itself, so its gradient reaches the anchor alone."""
        if not bool(self.pinned):
            return self.h.flat(u)
        at_zero = ~u.bool().any(dim=-1, keepdim=True)
        if bool(at_zero.all()):
            return self.anchor.expand(*u.shape[:-1], -1).clone()
        out = self.h.flat(u) - self.h.flat(torch.zeros(self.num_coeffs, device=self.device)) + self.anchor.detach()
        return torch.where(at_zero, self.anchor.expand_as(out), out) if bool(at_zero.any()) else out

    def forward(self, u: torch.Tensor) -> dict[str, torch.Tensor]:  # (k,) in [0, 1] -> {name: shape of the layout}
        return self.h.unflatten(self.flat(u))


__all__ = ["Anchored"]
