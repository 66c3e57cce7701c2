"""The pre-trained network seed 004 prunes (Algorithm 1, line 1): train it, save it, load it back safely.

``pretrain`` trains a ``GatedResNet`` with every gate on through the one training loop.
``save_pretrained`` writes one file holding tensors and plain data only: the format tag, the space
(the architecture), the state dict and how it was trained. ``load_pretrained`` reads it with
``torch.load(weights_only=True)``, which refuses anything that would run code, and then checks
the format, that the space is the one asked for, and that every tensor is there with its shape.
A damaged, foreign or other-architecture file raises ``CheckpointError`` naming the reason, and
nothing is loaded.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hilnas.searchers.prune.network import GatedResNet
from hilnas.searchers.result import SearchError
from hilnas.searchers.train import TrainConfig, TrainResult, save_checkpoint, train

if TYPE_CHECKING:
    from hilnas.searchers.data import Loaders
    from hilnas.searchers.spaces.resnet import ResNetSpace

FORMAT = "hilnas-prune-pretrained/1"


class CheckpointError(SearchError):
    """A pre-trained checkpoint cannot be used: missing, damaged, foreign, or for another architecture."""


def space_dict(space: ResNetSpace) -> dict[str, Any]:
    return json.loads(json.dumps({"name": space.name, **dataclasses.asdict(space)}))


def gated_network(space: ResNetSpace) -> GatedResNet:
    """The gated network of a prunable space: the ResNet's, or the one another backbone's space builds
    (``mobilenet.space.MobileNetGroups.gated_network``)."""
    build = getattr(space, "gated_network", None)
    return build() if build is not None else GatedResNet(space)


def pretrain(space: ResNetSpace, data: Loaders, config: TrainConfig) -> tuple[GatedResNet, TrainResult]:
    """Train the whole network (no gates) with ``config``; returns it in eval mode and the training record."""
    torch.manual_seed(config.seed)
    net = gated_network(space)
    result = train(net, data, config)
    return net.eval(), result


def save_pretrained(net: GatedResNet, path: str | os.PathLike[str], *, info: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint (atomically); ``info``: plain data on how it was trained (dataset, accuracy)."""
    path = Path(path)
    save_checkpoint(path, {"format": FORMAT, "space": json.dumps(space_dict(net.space)),
                           "state_dict": net.state_dict(), "info": json.dumps(info or {})})
    return path


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's content, checked to be a hilnas pre-trained network (any space)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file, or a pickle of anything but tensors and plain data
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"{path} is not a checkpoint hilnas can load safely ({type(err).__name__}: "
                              f"{first[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pre-trained network saved by hilnas (format {FORMAT})")
    try:
        state["space"] = json.loads(state["space"])
        state["info"] = json.loads(state.get("info") or "{}")
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: its architecture record is damaged") from None
    if not isinstance(state.get("state_dict"), dict):
        raise CheckpointError(f"{path}: it holds no weights")
    return state


def load_pretrained(path: str | os.PathLike[str], space: ResNetSpace) -> tuple[GatedResNet, dict[str, Any]]:
    """The network saved at ``path`` for ``space`` (eval mode) and its training info; CheckpointError otherwise."""
    state = read_checkpoint(path)
    want = space_dict(space)
    if state["space"] != want:
        diff = sorted(k for k in set(want) | set(state["space"]) if want.get(k) != state["space"].get(k))
        shown = ", ".join(f"{k}={state['space'].get(k)!r} (asked: {want.get(k)!r})" for k in diff)
        raise CheckpointError(f"{path} holds another architecture: {shown}")
    net = gated_network(space)
    try:
        net.load_state_dict(state["state_dict"], strict=True)
    except (RuntimeError, TypeError) as err:  # missing, extra or mis-shaped tensors
        first = str(err).strip().splitlines()
        raise CheckpointError(f"{path}: its weights do not fit {space.name}: "
                              f"{' '.join(s.strip() for s in first[:2])[:200]}") from None
    return net.eval(), state["info"]


