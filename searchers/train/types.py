"""The training loop's data: its config, where a step is, and what an epoch and a run produced.

All frozen dataclasses; ``TrainConfig`` is the one object that says how to train (defaults
follow DARTS), ``StepContext`` is what hooks receive at each step, ``EpochStats``/``TrainEvent``
/``TrainResult`` are what ``train`` reports.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Batch = tuple["torch.Tensor", "torch.Tensor"]  # (inputs (B, C, H, W), targets (B,))


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, budget, device, checkpointing. Defaults follow DARTS."""

    epochs: int = 10
    lr: float = 0.025  # SGD learning rate at epoch 0
    lr_min: float = 0.0  # floor of the cosine schedule
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float | None = 5.0  # max global grad norm of the weights; None = no clipping
    cosine: bool = True  # cosine-anneal lr over `epochs` (stepped per epoch); False = constant
    label_smoothing: float = 0.0
    seed: int = 0  # seeds python, numpy and torch at the start of a fresh run
    device: str = "auto"  # "auto" = CUDA when available, else CPU; or any torch device string
    log_every: int = 50  # steps between progress events / log lines; 0 = epoch ends only
    eval_split: str = "test"  # evaluated after each epoch: "test", "val" or "none"
    checkpoint_path: str | None = None  # written atomically after every epoch when set
    resume: bool = False  # continue from checkpoint_path if that file exists
    max_batches_per_epoch: int | None = None  # cap for smoke runs; None = whole epoch
    max_eval_batches: int | None = None  # cap on evaluation batches; None = whole split

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.eval_split not in ("test", "val", "none"):
            raise ValueError(f"eval_split must be 'test', 'val' or 'none', not {self.eval_split!r}")
        if self.resume and self.checkpoint_path is None:
            raise ValueError("resume=True needs a checkpoint_path")


@dataclass(frozen=True)
class StepContext:
    """Where the loop is, handed to every hook call."""

    epoch: int  # 0-based
    batch_index: int  # within the epoch
    global_step: int  # weight steps taken before this one, over all epochs
    lr: float  # current weight learning rate (DARTS' unrolled step needs it)
    optimizer: torch.optim.Optimizer  # the weight optimiser (second-order DARTS reads it)
    device: torch.device


@dataclass(frozen=True)
class EpochStats:
    """One epoch's numbers. Accuracies are fractions in [0, 1]; eval_* are nan without eval."""

    epoch: int  # 1-based: the number of epochs completed
    train_loss: float  # mean loss the weights were stepped on (hooks' cost terms included)
    train_acc: float
    eval_loss: float
    eval_acc: float
    lr: float  # learning rate used during this epoch
    seconds: float
    batches: int
    extra: Mapping[str, float] = field(default_factory=dict)  # from hooks' on_epoch_end


@dataclass(frozen=True)
class TrainEvent:
    """What ``progress`` receives: every ``log_every`` steps ("step") and at each epoch end.

    An ambient reporter (``progress.reporting_to``) receives every step."""

    kind: str  # "step" | "epoch"
    epoch: int  # 0-based epoch in progress
    global_step: int
    loss: float  # latest step loss ("step") or epoch mean ("epoch")
    lr: float
    stats: EpochStats | None = None  # set for "epoch"
    epochs: int = 0  # epochs of the whole training (TrainConfig.epochs)
    steps_per_epoch: int = 0  # weight steps per epoch (the cap applied); 0 = unknown
    metrics: Mapping[str, float] = field(default_factory=dict)  # hooks' progress_metrics(), e.g. a multiplier


@dataclass(frozen=True)
class TrainResult:
    """The outcome of ``train``: per-epoch history and headline accuracies."""

    history: tuple[EpochStats, ...]  # all completed epochs, including any before a resume
    final_acc: float  # eval accuracy after the last epoch (nan when eval_split == "none")
    best_acc: float  # best eval accuracy over the history
    final_loss: float  # eval loss after the last epoch
    wall_s: float  # wall time of this call (a resumed run counts only its own part)
    resumed_from_epoch: int | None  # epochs already done in the checkpoint we resumed from
    device: str
