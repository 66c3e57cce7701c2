"""Keep a trained hypernetwork, so one training run serves budgets asked for later.

``save_trained(result, folder)`` writes two files:

- ``trained.json``: the format tag, the space, the op types, Lambda, the seed and every
  setting of the search (``HypernetConfig``);
- ``trained.pt``: the state dicts of the supernet and of the hypernetwork (tensors only).

``load_trained(folder, space, cost_model, ...)`` rebuilds both modules from the JSON and loads
the weights with ``torch.load(weights_only=True)``, which reads tensors and plain containers
and refuses anything that would run code. A file that is missing, damaged, of another format,
or made for another space raises ``TrainedFileError`` with the reason; nothing is guessed.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from hilnas.searchers.result import SearchError

if TYPE_CHECKING:
    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.hypernet import HypernetConfig, HypernetResult
    from hilnas.searchers.spaces import SearchSpace

FORMAT = "hilnas-hypernet/1"
JSON_NAME, WEIGHTS_NAME = "trained.json", "trained.pt"


class TrainedFileError(SearchError):
    """A saved hypernetwork cannot be loaded (missing, damaged, other format or other space)."""


def config_to_dict(config: HypernetConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(d: Mapping[str, Any]) -> HypernetConfig:
    """The inverse of ``config_to_dict`` (unknown keys refused, so a newer file is not half-read)."""
    from hilnas.searchers.dca.architect import ArchConfig
    from hilnas.searchers.hypernet import HypernetConfig
    from hilnas.searchers.supernet import SupernetOptions

    names = {f.name for f in dataclasses.fields(HypernetConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise TrainedFileError(f"unknown search settings {unknown}: the file was written by a newer hilnas")
    kw = dict(d)
    # files written before these settings existed were trained without them: keep what they were trained with
    kw.setdefault("kappa_scaling", "Lambda")
    # ... and a search records its settings resolved for the space, so a per-space setting missing from a file was not
    # yet a setting when it was written: the value every search ran then (``defaults.FALLBACK``), never "auto"
    from hilnas.searchers.hypernet.defaults import FALLBACK
    for name, value in FALLBACK.items():
        kw.setdefault(name, value)
    if isinstance(kw.get("arch"), Mapping):
        arch = dict(kw["arch"])
        if "betas" in arch:
            arch["betas"] = tuple(arch["betas"])
        kw["arch"] = ArchConfig(**arch)
    if isinstance(kw.get("options"), Mapping):
        kw["options"] = SupernetOptions(**kw["options"])
    try:
        return HypernetConfig(**kw)
    except (TypeError, ValueError) as err:
        raise TrainedFileError(f"the saved search settings are not valid: {err}") from None


def save_trained(result: HypernetResult, folder: Path | str) -> Path:
    """Write ``trained.json`` and ``trained.pt`` into ``folder`` (created); returns the folder."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "space": _space_dict(result.space), "ops": list(result.ops),
            "Lambda": result.Lambda, "seed": result.seed, "primary": result.primary,
            "config": config_to_dict(result.config), "steps": result.steps, "wall_s": result.wall_s}
    torch.save({"supernet": result.supernet.state_dict(), "hypernet": result.hypernet.state_dict()},
               folder / WEIGHTS_NAME)
    (folder / JSON_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def _space_dict(space: SearchSpace) -> dict[str, Any]:
    return json.loads(json.dumps({"name": space.name, **dataclasses.asdict(space)}))


def read_meta(folder: Path | str, *, fmt: str = FORMAT, what: str = "hypernetwork") -> dict[str, Any]:
    """The saved run's ``trained.json``, checked: format ``fmt`` (the pruning hypernetwork has its own), Lambda."""
    path = Path(folder) / JSON_NAME
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise TrainedFileError(f"{path} does not exist: that run saved no trained {what}") from None
    except (OSError, ValueError) as err:
        raise TrainedFileError(f"{path} cannot be read: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise TrainedFileError(f"{path} is not a saved hilnas {what} (format {fmt})")
    lam = meta.get("Lambda")
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
        raise TrainedFileError(f"{path}: Lambda must be a positive number, got {lam!r}")
    return meta


def load_weights(path: Path, **modules: Any) -> None:
    """Load ``modules[name]``'s state dict from the file's ``name`` entry (``weights_only``); TrainedFileError
    when the file is missing, damaged, a foreign pickle, or its tensors do not fit."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for name, module in modules.items():
            module.load_state_dict(state[name])
    except FileNotFoundError:
        raise TrainedFileError(f"{path} does not exist") from None
    except Exception as err:  # damaged file, foreign pickle, shape mismatch
        raise TrainedFileError(f"{path} cannot be loaded: {type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else ''}") from None


def load_trained(folder: Path | str, space: SearchSpace, cost_model: CostModel, *,
                 complexity: CostModel | None = None, energy: CostModel | None = None) -> HypernetResult:
    """Rebuild the ``HypernetResult`` saved in ``folder`` for ``space`` with the given cost models."""
    import torch

    from hilnas.searchers.hypernet import HypernetResult, ValidSupernet, arch_layout, new_hypernetwork
    from hilnas.searchers.hypernet.objective import checked_cost_models, coefficient_ops

    folder = Path(folder)
    meta = read_meta(folder)
    if meta.get("space") != _space_dict(space):
        raise TrainedFileError(f"{folder} was trained for the space {meta.get('space')}, not {_space_dict(space)}")
    config = config_from_dict(meta.get("config") or {})
    complexity = complexity or cost_model
    models = checked_cost_models(space, cost_model, complexity, energy)
    ops = coefficient_ops(space)
    if list(ops) != list(meta.get("ops", [])):
        raise TrainedFileError(f"{folder}: saved op types {meta.get('ops')} differ from the space's {list(ops)}")
    supernet = ValidSupernet(space, config.options)
    hypernet = new_hypernetwork(len(ops), arch_layout(supernet), config)   # "pinned": the state dict holds the pin
    load_weights(folder / WEIGHTS_NAME, supernet=supernet, hypernet=hypernet)
    supernet.eval()
    hypernet.eval()
    return HypernetResult(
        space=space, config=config, models=models, primary=cost_model.metric, complexity=complexity,
        supernet=supernet, hypernet=hypernet, Lambda=float(meta["Lambda"]), bound=None, Lambda_history=[],
        ops=tuple(ops), history={}, epoch_costs=[], val_acc=math.nan, steps=int(meta.get("steps", 0)),
        epochs=config.epochs, wall_s=0.0, peak_mem_mb=0.0, seed=int(meta.get("seed", 0)))


__all__ = ["FORMAT", "TrainedFileError", "config_from_dict", "config_to_dict", "load_trained", "load_weights",
           "read_meta", "save_trained"]
