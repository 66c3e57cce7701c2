"""Splitting-k on disk: one folder per checkpoint, so a killed run resumes from the last one.

``<dir>/<name>/checkpoint.json`` holds the widths, the space, accuracy and costs (predicted and
measured) and the sha256 of ``weights.pt``, the state dict (tensors only, read with
``torch.load(weights_only=True)``). A checkpoint is written into a temporary folder and renamed
into place, so a folder either is complete or does not exist. Loading checks everything before
anything is used: the format, the space (another backbone or shape is refused), the digest and
the tensor shapes against the widths. A damaged or foreign folder raises ``CheckpointError`` and
is never overwritten.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilnas.searchers.spaces.mobilenet import MobileNetSpace, MobileNetWidths

if TYPE_CHECKING:
    import torch

FORMAT = "hilnas-splitting-checkpoint/1"
META, WEIGHTS = "checkpoint.json", "weights.pt"


class CheckpointError(ValueError):
    """A checkpoint folder is damaged, from another space, or in the way of a fresh run."""


@dataclass(frozen=True)
class Checkpoint:
    """One point of the growth curve (Splitting-k) or of a baseline (Width-0.5, RandomSplit-k)."""
    step: int                              # k: splitting steps taken (baselines: position in their list)
    name: str                              # "Splitting-k", "RandomSplit-k", "Width-0.5"
    widths: MobileNetWidths
    test_acc: float                        # after this checkpoint's training, on the test split
    train_loss: float                      # mean training loss of its last epoch
    epochs: int                            # epochs of training its weights have seen, in total
    predicted: Mapping[str, float]         # cost per metric under the run's cost models (LUT, FLOPs, params)
    measured: Mapping[str, float | None] = field(default_factory=dict)  # on the device: latency_ms, energy_mj
    splits: Mapping[int, int] = field(default_factory=dict)  # neurons split per layer at this step
    gain: float = 0.0                      # sum of -lambda_min of the split neurons (eq. (1)'s objective)
    step_budget: float = 0.0               # e_budget of this step, in the budget metric's unit
    split_cost: float = 0.0                # sum of e_l of the split neurons (the cost eq. (1) saw)
    wall_s: float = 0.0                    # time of this step (index, split, training, measurement)
    notes: tuple[str, ...] = ()

    @property
    def folder_name(self) -> str:
        return self.name.lower()

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "name": self.name, "widths": list(self.widths.widths), "test_acc": self.test_acc,
                "train_loss": self.train_loss, "epochs": self.epochs, "predicted": dict(self.predicted),
                "measured": dict(self.measured), "splits": {str(k): v for k, v in self.splits.items()},
                "gain": self.gain, "step_budget": self.step_budget, "split_cost": self.split_cost,
                "wall_s": self.wall_s, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Checkpoint:
        return cls(step=int(d["step"]), name=str(d["name"]), widths=MobileNetWidths(tuple(d["widths"])),
                   test_acc=float(d["test_acc"]), train_loss=float(d["train_loss"]), epochs=int(d["epochs"]),
                   predicted={str(k): float(v) for k, v in d["predicted"].items()},
                   measured={str(k): (None if v is None else float(v)) for k, v in d["measured"].items()},
                   splits={int(k): int(v) for k, v in d.get("splits", {}).items()}, gain=float(d.get("gain", 0.0)),
                   step_budget=float(d.get("step_budget", 0.0)), split_cost=float(d.get("split_cost", 0.0)),
                   wall_s=float(d.get("wall_s", 0.0)), notes=tuple(d.get("notes", ())))


def _space_dict(space: MobileNetSpace) -> dict[str, Any]:
    import dataclasses
    return {"name": space.name, **{f.name: (list(v) if isinstance(v := getattr(space, f.name), tuple) else v)
                                   for f in dataclasses.fields(space)}}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(folder: Path | str, space: MobileNetSpace, ck: Checkpoint, state: Mapping[str, torch.Tensor]
                    ) -> Path:
    """Write ``ck`` and its weights as ``folder/<name>/`` atomically; returns that path."""
    import torch

    folder = Path(folder)
    final = folder / ck.folder_name
    if final.exists():
        raise CheckpointError(f"{final} already exists; a checkpoint is never overwritten")
    tmp = folder / f".{ck.folder_name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a run killed while writing: never a complete checkpoint
    tmp.mkdir(parents=True)
    torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp / WEIGHTS)
    meta = {"format": FORMAT, "space": _space_dict(space), "checkpoint": ck.to_dict(),
            "weights_sha256": _sha256(tmp / WEIGHTS)}
    (tmp / META).write_text(json.dumps(meta, indent=1, default=_json_float) + "\n")
    os.replace(tmp, final)
    return final


def _json_float(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else str(x)


def read_checkpoint(path: Path | str, space: MobileNetSpace) -> Checkpoint:
    """The checkpoint in folder ``path``, after checking its format, space and weights' digest."""
    path = Path(path)
    try:
        meta = json.loads((path / META).read_text())
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        ck = Checkpoint.from_dict(meta["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} is damaged ({path / META}: {err}); nothing was changed") from None
    want = _space_dict(space)
    if meta.get("space") != want:
        theirs = meta.get("space") or {}
        diff = sorted(k for k in set(want) | set(theirs) if want.get(k) != theirs.get(k))
        raise CheckpointError(f"checkpoint {path} is of another backbone ({', '.join(f'{k}={theirs.get(k)}' for k in diff)}"
                              f"; this run's: {', '.join(f'{k}={want.get(k)}' for k in diff)}); nothing was changed")
    try:
        digest = _sha256(path / WEIGHTS)
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} is damaged ({err.strerror or err}); nothing was changed") from None
    if digest != meta.get("weights_sha256"):
        raise CheckpointError(f"checkpoint {path} is damaged: {WEIGHTS} does not match its recorded sha256; "
                              "nothing was changed")
    return ck


def load_weights(path: Path | str, space: MobileNetSpace, ck: Checkpoint):
    """The network of checkpoint ``ck`` in ``path`` with its weights (shapes checked against the widths)."""
    import torch

    from hilnas.searchers.spaces.mobilenet.net import MobileNet

    path = Path(path)
    try:
        state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
        net = MobileNet(space, ck.widths)
        net.load_state_dict(state)
    except Exception as err:  # unpickling refused, wrong shapes, ...: one error type for the caller
        raise CheckpointError(f"checkpoint {path} is damaged ({type(err).__name__}: {str(err)[:200]}); "
                              "nothing was changed") from None
    return net


def list_checkpoints(folder: Path | str, space: MobileNetSpace) -> list[tuple[Checkpoint, Path]]:
    """Every checkpoint in ``folder`` (one per sub-folder), checked, by step 0, 1, ...; [] for none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(read_checkpoint(p, space), p) for p in sorted(folder.iterdir())
             if p.is_dir() and not p.name.startswith(".")]
    found.sort(key=lambda cp: cp[0].step)
    steps = [ck.step for ck, _ in found]
    if steps != list(range(len(steps))):
        raise CheckpointError(f"checkpoint folder {folder} holds steps {steps}, not 0..{len(steps) - 1}: a checkpoint "
                              "is missing; nothing was changed")
    return found


def resume_from(folder: Path | str, space: MobileNetSpace, *, resume: bool, name_of: Callable[[int], str | None]
                ) -> list[tuple[Checkpoint, Path]]:
    """The checkpoints a run continues from: none in a fresh folder; refused when the folder holds
    checkpoints and ``resume`` is off, or holds ones this run would not write (``name_of(step)``)."""
    found = list_checkpoints(folder, space)
    if found and not resume:
        raise CheckpointError(f"{folder} already holds checkpoints ({', '.join(c.name for c, _ in found)}); resume "
                              "them or choose an empty folder; nothing was changed")
    foreign = [c.name for c, _ in found if name_of(c.step) != c.name]
    if foreign:
        want = ", ".join(n for n in (name_of(c.step) for c, _ in found) if n)
        raise CheckpointError(f"{folder} holds {', '.join(foreign)}, not this run's checkpoints"
                              f"{f' ({want})' if want else ''}; nothing was changed")
    return found
