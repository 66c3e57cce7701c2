"""Keep a trained pruning hypernetwork, so one run serves budgets asked for later.

``save_trained(result, folder, checkpoint)`` writes ``trained.json`` (format tag, space, settings,
Lambda and its estimate, the path and sha256 of the pre-trained checkpoint) and ``trained.pt`` (the
hypernetwork's state dict; tensors only). ``load_trained(folder, space, cost_model)`` checks both,
loads the pre-trained network with ``pretrain.load_pretrained`` (``weights_only``, checked) and the
hypernetwork with ``torch.load(weights_only=True)``. A missing, damaged or foreign file, another
space, or a pre-trained checkpoint that changed since raises ``TrainedFileError``; nothing is guessed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import torch

from hilnas.searchers.hypernet import io as hypernet_io
from hilnas.searchers.hypernet.io import TrainedFileError
from hilnas.searchers.prune.pretrain import CheckpointError, load_pretrained, space_dict

if TYPE_CHECKING:
    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.prune.search import PruneConfig, PruneResult
    from hilnas.searchers.spaces.resnet import ResNetSpace

FORMAT = "hilnas-prune/1"
JSON_NAME, WEIGHTS_NAME = "trained.json", "trained.pt"


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_trained(result: PruneResult, folder: Path | str, checkpoint: Path | str) -> Path:
    """Write ``trained.json`` and ``trained.pt`` into ``folder`` (created); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "space": space_dict(result.space), "config": dataclasses.asdict(result.config),
            "Lambda": result.Lambda, "estimate": result.estimate.to_dict() if result.estimate else None,
            "pretrained_accuracy": result.pretrained_accuracy, "primary": result.primary, "seed": result.seed,
            "checkpoint": str(Path(checkpoint).resolve()), "checkpoint_sha256": sha256_file(checkpoint),
            "steps": result.steps, "wall_s": result.wall_s}
    torch.save({"hypernet": result.hypernet.state_dict()}, folder / WEIGHTS_NAME)
    (folder / JSON_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def read_meta(folder: Path | str) -> dict[str, Any]:
    return hypernet_io.read_meta(folder, fmt=FORMAT, what="pruning hypernetwork")


def config_from_dict(d: Mapping[str, Any]) -> PruneConfig:
    from hilnas.searchers.prune.search import PruneConfig

    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(PruneConfig)})
    if unknown:
        raise TrainedFileError(f"unknown pruning settings {unknown}: the file was written by a newer hilnas")
    try:
        return PruneConfig(**d)
    except (TypeError, ValueError) as err:
        raise TrainedFileError(f"the saved pruning settings are not valid: {err}") from None


def load_trained(folder: Path | str, space: ResNetSpace, cost_model: CostModel, *,
                 others: Iterable[CostModel] = ()) -> PruneResult:
    """Rebuild the ``PruneResult`` saved in ``folder`` for ``space``, priced with the given cost models."""
    from hilnas.searchers.prune.cost import ModuleCosts
    from hilnas.searchers.prune.gates import GateLayout, freeze
    from hilnas.searchers.prune.search import PruneResult, new_hypernet

    folder = Path(folder)
    meta = read_meta(folder)
    if meta.get("space") != space_dict(space):
        raise TrainedFileError(f"{folder} was trained for the space {meta.get('space')}, not {space_dict(space)}")
    config = config_from_dict(meta.get("config") or {})
    checkpoint = Path(meta.get("checkpoint", ""))
    if not checkpoint.is_file() or sha256_file(checkpoint) != meta.get("checkpoint_sha256"):
        raise TrainedFileError(f"{folder}: its pre-trained network {checkpoint} is missing or has changed since "
                               "(sha256 differs); the hypernetwork only fits that network")
    try:
        net, _ = load_pretrained(checkpoint, space)
    except CheckpointError as err:
        raise TrainedFileError(str(err)) from None
    layout = GateLayout(len(space.layers()), space.groups, config.granularity)
    hypernet = new_hypernet(layout, config.hidden)
    hypernet_io.load_weights(folder / WEIGHTS_NAME, hypernet=hypernet)
    hypernet.eval()
    models = {cost_model.metric: cost_model, **{m.metric: m for m in others}}
    return PruneResult(space=space, config=config, net=freeze(net), layout=layout, hypernet=hypernet, models=models,
                       primary=cost_model.metric, costs={k: ModuleCosts.of(space, m) for k, m in models.items()},
                       Lambda=float(meta["Lambda"]), estimate=None,
                       pretrained_accuracy=float(meta.get("pretrained_accuracy", math.nan)), phase1={}, history={},
                       timings={}, steps=int(meta.get("steps", 0)), wall_s=0.0, peak_mem_mb=0.0,
                       seed=int(meta.get("seed", 0)))


__all__ = ["FORMAT", "TrainedFileError", "load_trained", "read_meta", "save_trained"]
