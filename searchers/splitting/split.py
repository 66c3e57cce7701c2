"""The split: neuron theta becomes two offspring at theta +- eps v, each with half the outgoing weight.

For a neuron j of layer l (output channel j of the stem or of block l's pointwise conv):

- its conv row theta_j becomes theta_j + eps v_j, and a new channel j' = theta_j - eps v_j is
  appended; j' copies j's BatchNorm (weight, bias, running mean and variance), so at eps = 0
  both channels compute the same activation;
- where the channel goes next, the next block's depthwise conv gets a copy of filter j (and of
  its BN) for channel j', and the next pointwise conv's input column j is halved and appended as
  column j' (the classifier's column j when l is the last layer). The sum the next layer computes,
  ``w_j / 2 * h_j + w_j / 2 * h_j'``, is ``w_j h_j`` at eps = 0: the network's function is
  unchanged at the moment of the split, and for eps > 0 the loss moves by
  ``eps^2 / 2 * v^T S v`` to second order (``index.py``).

Several layers split in one step are applied from the last layer to the first, so each layer's
directions v (computed on the network before the step) still match its conv's input channels.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hilnas.searchers.spaces.mobilenet import MobileNetSpace, MobileNetWidths

if TYPE_CHECKING:
    import torch

    from hilnas.searchers.spaces.mobilenet.net import MobileNet

_BN = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class LayerSplit:
    """Which neurons of one layer split, and along which unit directions."""
    layer: int
    neurons: tuple[int, ...]
    directions: torch.Tensor  # (len(neurons), d): v of each neuron, d = the conv's cin * k * k

    def __post_init__(self) -> None:
        if len(set(self.neurons)) != len(self.neurons):
            raise ValueError(f"layer {self.layer}: a neuron is split at most once per step, got {self.neurons}")
        if self.directions.shape[0] != len(self.neurons):
            raise ValueError(f"layer {self.layer}: {len(self.neurons)} neurons but {self.directions.shape[0]} directions")


def unit_prefix(layer: int) -> str:
    """State-dict prefix of the unit whose output channels are layer ``layer``'s neurons."""
    return "stem" if layer == 0 else f"blocks.{layer - 1}.pointwise"


def _append(t: torch.Tensor, rows: torch.Tensor, dim: int = 0) -> torch.Tensor:
    import torch
    return torch.cat([t, rows], dim=dim)


def split_state(space: MobileNetSpace, widths: MobileNetWidths, state: Mapping[str, torch.Tensor],
                splits: Sequence[LayerSplit], epsilon: float) -> tuple[MobileNetWidths, dict[str, torch.Tensor]]:
    """The widths and state dict after ``splits`` (see the module docstring); ``state`` is not modified."""
    import torch

    space.check(widths)
    out = {k: v.clone() for k, v in state.items()}
    new_widths = widths
    last = space.num_layers - 1
    for split in sorted(splits, key=lambda s: -s.layer):
        layer, J = split.layer, torch.tensor(split.neurons, dtype=torch.long)
        if not split.neurons:
            continue
        if not 0 <= layer <= last or int(J.max()) >= widths.widths[layer] or int(J.min()) < 0:
            raise ValueError(f"split of layer {layer} neurons {split.neurons}: the network has layers 0..{last} "
                             f"and {widths.widths[layer] if 0 <= layer <= last else 0} neurons there")
        unit = unit_prefix(layer)
        W = out[f"{unit}.conv.weight"]                      # (C, cin, k, k)
        if split.directions.shape[1:] != (W[0].numel(),):
            raise ValueError(f"layer {layer}: directions of shape {tuple(split.directions.shape)}, the conv's "
                             f"neurons have d = {W[0].numel()} weights")
        V = split.directions.to(W.dtype).reshape(len(J), *W.shape[1:])
        theta = W[J]
        W[J] = theta + epsilon * V
        out[f"{unit}.conv.weight"] = _append(W, theta - epsilon * V)
        for p in _BN:
            t = out[f"{unit}.bn.{p}"]
            out[f"{unit}.bn.{p}"] = _append(t, t[J])
        if layer < last:  # the channel feeds block `layer`'s depthwise conv, then its pointwise conv
            dw = f"blocks.{layer}.depthwise"
            t = out[f"{dw}.conv.weight"]                     # (C, 1, 3, 3)
            out[f"{dw}.conv.weight"] = _append(t, t[J])
            for p in _BN:
                t = out[f"{dw}.bn.{p}"]
                out[f"{dw}.bn.{p}"] = _append(t, t[J])
            consumer = f"blocks.{layer}.pointwise.conv.weight"  # (C_next, C, 1, 1)
        else:
            consumer = "head.classifier.weight"              # (classes, C)
        P = out[consumer]
        P[:, J] = P[:, J] / 2
        out[consumer] = _append(P, P[:, J], dim=1)
        new_widths = new_widths.grown(layer, len(J))
    return new_widths, out


def split_network(net: MobileNet, splits: Sequence[LayerSplit], epsilon: float) -> MobileNet:
    """A new network with ``splits`` applied to ``net``'s weights (``net`` is left as it is)."""
    from hilnas.searchers.spaces.mobilenet.net import MobileNet

    widths, state = split_state(net.space, net.widths, net.state_dict(), splits, epsilon)
    new = MobileNet(net.space, widths)
    new.load_state_dict(state)
    return new.train(net.training)
