"""The gates gamma and their relaxation: Gumbel-Softmax (binary Concrete) with a straight-through estimator.

A gate is a Bernoulli variable with logit theta (keep-probability sigmoid(theta)). Seed 004 relaxes
the discrete gamma with Gumbel-Softmax (Jang et al., 2016); for two classes {keep, drop} with logits
(theta, 0) that is

    gamma~ = sigmoid((theta + log u - log(1 - u)) / tau),   u ~ U(0, 1),

and the forward pass uses the hard gate ``gamma~ > 1/2`` while the gradient is gamma~'s
(straight-through), so the network always runs a real pattern, the one the device would measure.
The temperature tau is annealed during training. A derived pattern takes each gate's mode
(theta > 0).

``GateLayout`` says what the logits vector holds: one gate per block (``granularity="blocks"``) or
one per block and one per channel group of each block (``"groups"``, the default). Every pattern
is a valid network (a dropped block keeps its shortcut), so Gamma_valid is the whole {0, 1}^|E|.
``GateObjective`` is the loss both optimisers minimise: cross-entropy of the gated pre-trained
network (weights frozen, BatchNorm on batch statistics, as the pruned network runs once its
statistics are re-estimated: ``freeze``, ``recalibrate``) plus
lambda times the cost of the same sampled gates as a fraction of T^T 1 (``cost``; exact for the
hard pattern, differentiable through the relaxed gates).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import torch
import torch.nn.functional as F

from hilnas.searchers.prune.cost import ModuleCosts
from hilnas.searchers.prune.network import Gates, GatedResNet
from hilnas.searchers.prune.segments import segment_statistics
from hilnas.searchers.spaces.resnet import GatePattern

if TYPE_CHECKING:
    from hilnas.searchers.train import Batch

GRANULARITIES = ("groups", "blocks")


@dataclass(frozen=True)
class GateLayout:
    """Where each gate sits in the logits vector: B block gates, then B x G group gates (``"groups"``)."""
    blocks: int
    groups: int
    granularity: str = "groups"

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}")

    @property
    def size(self) -> int:
        return self.blocks * (1 + self.groups) if self.granularity == "groups" else self.blocks

    def split(self, values: torch.Tensor, fill: float = 1.0) -> Gates:
        """(..., size) -> block (..., B) and group (..., B, G) values; without group gates the groups are ``fill``."""
        block = values[..., : self.blocks]
        lead = values.shape[:-1]
        if self.granularity == "groups":
            return block, values[..., self.blocks:].reshape(*lead, self.blocks, self.groups)
        return block, torch.full((*lead, self.blocks, self.groups), fill, dtype=values.dtype, device=values.device)

    def pattern(self, logits: torch.Tensor) -> GatePattern:
        """The derived pattern: every gate at its mode (theta > 0); a block without groups is dropped."""
        block, group = self.split((logits.detach() > 0).float())
        return GatePattern(tuple(tuple(bool(block[b]) and bool(g) for g in group[b].tolist())
                                 for b in range(self.blocks)))

    def logits_of(self, pattern: GatePattern, magnitude: float) -> torch.Tensor:
        """Logits whose mode is ``pattern`` (every gate at +-magnitude)."""
        on = [float(any(m)) for m in pattern.masks]
        if self.granularity == "groups":
            on += [float(b) for m in pattern.masks for b in m]
        return (torch.tensor(on) * 2 - 1) * magnitude


class _StraightThrough(torch.autograd.Function):
    """Exactly 0/1 forward (``hard + soft - soft`` would round to 0.99999994), the identity backward."""

    @staticmethod
    def forward(ctx, soft: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (soft > 0.5).to(soft.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def concrete(logits: torch.Tensor, tau: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hard 0/1 gates in the forward pass, binary-Concrete gradients in the backward pass."""
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp(1e-6, 1 - 1e-6).to(logits.device)
    soft = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / tau)
    return _StraightThrough.apply(soft)


def annealed(step: int, steps: int, tau_start: float, tau_end: float) -> float:
    """Geometric annealing of the temperature from tau_start (step 0) to tau_end (last step)."""
    if steps <= 1:
        return tau_end
    return tau_start * (tau_end / tau_start) ** (min(step, steps - 1) / (steps - 1))


class GateObjective:
    """``L(gamma) + lambda E[T(gamma)] / T^T 1`` for one gated network, its module costs and gate layout."""

    def __init__(self, net: GatedResNet, costs: ModuleCosts, layout: GateLayout):
        self.net, self.costs, self.layout = net, costs, layout

    def __call__(self, logits: torch.Tensor, lam: float | torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 tau: float, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, cross-entropy) on one batch with gates drawn from ``logits``."""
        gates = self.layout.split(concrete(logits, tau, generator=generator))
        ce = F.cross_entropy(self.net(x, gates), y)
        # the cost of the same relaxed sample: the pattern's exact cost forward, the same Concrete gradient as the
        # cross-entropy's backward (pricing sigmoid(theta) instead gave the penalty gradients ~100x larger at low tau)
        return ce + lam * self.costs.expected_fraction(*gates), ce

    def several(self, logits: torch.Tensor, lams: torch.Tensor, x: torch.Tensor, y: torch.Tensor, tau: float, *,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """k lambdas in one pass: (k, size) logits and (k,) lambdas, lambda j's gates on the j-th of ``x.chunk(k)``
        (k such chunks); -> (k,) losses and (k,) cross-entropies, each what ``__call__`` gives on that chunk
        (``segments``)."""
        sizes = [len(part) for part in y.chunk(len(lams))]
        if len(sizes) != len(lams):
            raise ValueError(f"{len(y)} samples do not split into {len(lams)} chunks")
        # one draw for the k rows: the same numbers as k draws in ``__call__``'s order (the generator fills a
        # tensor's elements in order; tested), and k Concrete relaxations and costs in one call each rather than k
        block, group = self.layout.split(concrete(logits, tau, generator=generator))   # (k, B), (k, B, G)
        per = torch.tensor(sizes)
        with segment_statistics(self.net, sizes):
            out = self.net(x, (block.repeat_interleave(per, dim=0), group.repeat_interleave(per, dim=0)))
        ce = torch.stack([F.cross_entropy(o, t) for o, t in zip(out.split(sizes), y.split(sizes))])
        cost = self.costs.expected_fractions(block, group)
        return ce + lams.to(ce.dtype) * cost, ce

    def cost_fraction(self, logits: torch.Tensor) -> torch.Tensor:
        block, group = self.layout.split(torch.sigmoid(logits))
        return self.costs.expected_fraction(block, group)

    def cost_fractions(self, logits: torch.Tensor) -> torch.Tensor:
        """``cost_fraction`` of each row of (k, size) logits -> (k,), in one call."""
        block, group = self.layout.split(torch.sigmoid(logits))
        return self.costs.expected_fractions(block, group)


def pattern_gates(layout: GateLayout, pattern: GatePattern) -> Gates:
    """0/1 gate tensors that run ``pattern`` in the gated network."""
    block = torch.tensor([float(any(m)) for m in pattern.masks])
    group = torch.tensor([[float(b) for b in m] for m in pattern.masks])
    return block, group


def freeze(net: GatedResNet) -> GatedResNet:
    """The pre-trained network as the gate optimisers use it: weights fixed, BatchNorm on batch statistics.

    Pruning changes what every later BatchNorm sees, and the pre-trained running statistics no longer
    fit (a half-width network: 15 % test accuracy with them, 50 % once they are re-estimated, on the
    CIFAR-10 subset). So the gates are judged as the pruned network will run after ``recalibrate``:
    each BatchNorm normalises with the batch's statistics (momentum 0: the running ones stay as saved).
    """
    for p in net.parameters():
        p.requires_grad_(False)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.train()
            m.momentum = 0.0
    return net


def recalibrate(net: torch.nn.Module, batches: Iterable[Batch]) -> torch.nn.Module:
    """Re-estimate every BatchNorm's running statistics of a pruned network on ``batches`` (forward passes only,
    no weight changes); returns it in eval mode."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None   # a cumulative average over the batches
    net.train()
    with torch.no_grad():
        for x, _ in batches:
            net(x)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    return net.eval()


def pattern_loss_accuracy(net: GatedResNet, layout: GateLayout, pattern: GatePattern,
                          batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the pruned network ``pattern`` (run gated, weights frozen) on ``batches``."""
    gates = pattern_gates(layout, pattern)
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in batches:
            logits = net(x, gates)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
    return loss / n, correct / n
