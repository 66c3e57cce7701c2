"""The one training loop: weight training for supernet search and for final training alike.

One job: run SGD epochs over ``Loaders``, evaluate, checkpoint, resume. Searchers do not copy
this loop; they plug into it with ``TrainHooks``: ``excluded_parameters`` keeps architecture
parameters out of the weight optimiser, ``before_step`` takes the architecture step on a
validation batch between weight steps (DARTS), ``loss`` adds cost terms to the weight loss,
and ``state_dict``/``load_state_dict`` put the hook's own state (its optimiser, a Lagrange
multiplier) into the checkpoint so a search resumes exactly.

Checkpoints hold only tensors and plain containers and are read with
``torch.load(weights_only=True)``: RNG states are stored as tensors, never as pickled objects.
"""
from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hilnas.searchers.data import Loaders

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "hilnas-train-checkpoint/1"
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
    """What ``progress`` receives: every ``log_every`` steps ("step") and at each epoch end."""

    kind: str  # "step" | "epoch"
    epoch: int  # 0-based epoch in progress
    global_step: int
    loss: float  # latest step loss ("step") or epoch mean ("epoch")
    lr: float
    stats: EpochStats | None = None  # set for "epoch"


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


class TrainHooks:
    """Extension points of ``train``; subclass and override what a searcher needs.

    Every method has a do-nothing default, so a plain final training passes no hooks.
    """

    def excluded_parameters(self, model: nn.Module) -> Iterable[torch.nn.Parameter]:
        """Parameters the weight optimiser must not touch (architecture parameters)."""
        return ()

    def on_train_start(self, model: nn.Module, device: torch.device) -> None:
        """Called once after the model moved to ``device`` (move hook-owned modules here)."""

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None:
        """Called before each epoch (anneal a temperature, ...)."""

    def before_step(self, ctx: StepContext, model: nn.Module, train_batch: Batch,
                    next_val_batch: Callable[[], Batch]) -> None:
        """Called before each weight step: the place for an architecture step.

        ``next_val_batch()`` returns the next validation batch, already on the device
        (cycling through the val loader; raises ``RuntimeError`` when there is none).
        """

    def loss(self, ctx: StepContext, model: nn.Module, logits: torch.Tensor,
             targets: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """Return the weight-step loss; ``loss`` is the cross-entropy (or the previous hook's)."""
        return loss

    def after_step(self, ctx: StepContext, model: nn.Module, loss: float) -> None:
        """Called after each weight step with the step's loss."""

    def on_epoch_end(self, epoch: int, model: nn.Module) -> Mapping[str, float] | None:
        """Called after each epoch's evaluation; returned numbers go into ``EpochStats.extra``."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Hook state for the checkpoint: tensors and plain containers only."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as torch parses it."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices); ``deterministic`` also forbids
    nondeterministic kernels (slower on CUDA)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA too
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def evaluate(model: nn.Module, loader: Iterable[Batch], *, device: torch.device | None = None,
             max_batches: int | None = None) -> tuple[float, float]:
    """Return (mean cross-entropy, accuracy in [0, 1]) of ``model`` over ``loader``."""
    import torch
    import torch.nn.functional as F

    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
            count += len(y)
    model.train(was_training)
    if count == 0:
        return math.nan, math.nan
    return total_loss / count, correct / count


# --- checkpoints -------------------------------------------------------------------------------

def _rng_state() -> dict[str, Any]:
    """All global RNG states as tensors and plain numbers (loadable with weights_only=True)."""
    import torch

    version, mt, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import torch

    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` atomically (temp file + rename), so a crash never leaves half a file."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(dict(state), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``train`` (weights_only: never unpickles objects) to CPU."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a hilnas training checkpoint ({CHECKPOINT_FORMAT})")
    return state


def _loader_generator(loader: object) -> torch.Generator | None:
    return getattr(loader, "generator", None)


# --- the loop ----------------------------------------------------------------------------------

class _ValBatches:
    """Cycles through the val loader within an epoch, moving batches to the device on demand."""

    def __init__(self, loader: Iterable[Batch] | None, device: torch.device) -> None:
        self._loader, self._device, self._it = loader, device, None

    def __call__(self) -> Batch:
        if self._loader is None:
            raise RuntimeError("a hook asked for a validation batch but loaders.val is None "
                               "(set DatasetConfig.val_fraction > 0)")
        for _ in range(2):
            if self._it is None:
                self._it = iter(self._loader)
            try:
                x, y = next(self._it)
                return x.to(self._device, non_blocking=True), y.to(self._device, non_blocking=True)
            except StopIteration:
                self._it = None
        raise RuntimeError("the val loader yields no batches")


def train(model: nn.Module, loaders: Loaders, cfg: TrainConfig, *,
          hooks: TrainHooks | Sequence[TrainHooks] | None = None,
          progress: Callable[[TrainEvent], None] | None = None) -> TrainResult:
    """Train ``model``'s weights with SGD on ``loaders.train`` for ``cfg.epochs`` epochs.

    Evaluates on ``cfg.eval_split`` after each epoch, writes a checkpoint after each epoch
    when ``cfg.checkpoint_path`` is set, and with ``cfg.resume`` continues from it (model,
    optimiser, schedule, epoch, history, RNG and loader-shuffle states, hook states), so an
    interrupted run ends with the same weights as an uninterrupted one (bit-exact on CPU).
    """
    import torch
    from torch import nn

    started = time.perf_counter()
    hook_list = [hooks] if isinstance(hooks, TrainHooks) else list(hooks or ())
    device = resolve_device(cfg.device)
    model.to(device)
    excluded = {id(p) for h in hook_list for p in h.excluded_parameters(model)}
    weights = [p for p in model.parameters() if p.requires_grad and id(p) not in excluded]
    optimizer = torch.optim.SGD(weights, lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs,
                                                            eta_min=cfg.lr_min)
                 if cfg.cosine else None)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    eval_loader = {"test": loaders.test, "val": loaders.val, "none": None}[cfg.eval_split]
    if cfg.eval_split != "none" and eval_loader is None:
        raise ValueError(f"eval_split={cfg.eval_split!r} but loaders.{cfg.eval_split} is None")
    generators = {"train": _loader_generator(loaders.train),
                  "val": _loader_generator(loaders.val)}

    history: list[EpochStats] = []
    start_epoch, resumed_from = 0, None
    if cfg.resume and cfg.checkpoint_path and Path(cfg.checkpoint_path).is_file():
        state = load_checkpoint(cfg.checkpoint_path)
        _warn_config_changes(state.get("config", {}), cfg)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        if len(state["hooks"]) != len(hook_list):
            raise ValueError(f"{cfg.checkpoint_path}: saved with {len(state['hooks'])} hooks, "
                             f"resumed with {len(hook_list)}")
        for hook, hook_state in zip(hook_list, state["hooks"]):
            hook.load_state_dict(hook_state)
        _set_rng_state(state["rng"])
        for name, gen in generators.items():
            if gen is not None and state["loader_rng"].get(name) is not None:
                gen.set_state(state["loader_rng"][name])
        history = [EpochStats(**h) for h in state["history"]]
        start_epoch = resumed_from = int(state["epoch"])
        log.info("resumed from %s after epoch %d", cfg.checkpoint_path, start_epoch)
    else:
        if cfg.resume:
            log.info("no checkpoint at %s yet; starting from scratch", cfg.checkpoint_path)
        seed_everything(cfg.seed)

    for hook in hook_list:
        hook.on_train_start(model, device)
    global_step = sum(h.batches for h in history)
    for epoch in range(start_epoch, cfg.epochs):
        epoch_start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        for hook in hook_list:
            hook.on_epoch_start(epoch, model)
        model.train()
        next_val = _ValBatches(loaders.val, device)
        loss_sum, correct, seen, batches = 0.0, 0, 0, 0
        for b, (x, y) in enumerate(loaders.train):
            if cfg.max_batches_per_epoch is not None and b >= cfg.max_batches_per_epoch:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            ctx = StepContext(epoch=epoch, batch_index=b, global_step=global_step, lr=lr,
                              optimizer=optimizer, device=device)
            for hook in hook_list:
                hook.before_step(ctx, model, (x, y), next_val)
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)  # (B, num_classes)
            loss = criterion(logits, y)
            for hook in hook_list:
                loss = hook.loss(ctx, model, logits, y, loss)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(weights, cfg.grad_clip)
            optimizer.step()
            step_loss = loss.item()
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"loss became {step_loss} at epoch {epoch} batch {b}")
            for hook in hook_list:
                hook.after_step(ctx, model, step_loss)
            loss_sum += step_loss * len(y)
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += len(y)
            batches += 1
            global_step += 1
            if cfg.log_every and global_step % cfg.log_every == 0:
                log.info("epoch %d step %d loss %.4f lr %.4g", epoch, global_step, step_loss, lr)
                if progress is not None:
                    progress(TrainEvent("step", epoch, global_step, step_loss, lr))
        if scheduler is not None:
            scheduler.step()
        eval_loss, eval_acc = (evaluate(model, eval_loader, device=device,
                                        max_batches=cfg.max_eval_batches)
                               if eval_loader is not None else (math.nan, math.nan))
        extra: dict[str, float] = {}
        for hook in hook_list:
            extra.update(hook.on_epoch_end(epoch, model) or {})
        stats = EpochStats(epoch=epoch + 1, train_loss=loss_sum / max(seen, 1),
                           train_acc=correct / max(seen, 1), eval_loss=eval_loss,
                           eval_acc=eval_acc, lr=lr, seconds=time.perf_counter() - epoch_start,
                           batches=batches, extra=extra)
        history.append(stats)
        log.info("epoch %d/%d train loss %.4f acc %.4f eval loss %.4f acc %.4f (%.1f s)",
                 epoch + 1, cfg.epochs, stats.train_loss, stats.train_acc, eval_loss, eval_acc,
                 stats.seconds)
        if cfg.checkpoint_path:
            save_checkpoint(cfg.checkpoint_path, {
                "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "config": asdict(cfg),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "hooks": [h.state_dict() for h in hook_list], "rng": _rng_state(),
                "loader_rng": {n: g.get_state() if g is not None else None
                               for n, g in generators.items()},
                "history": [{**asdict(h), "extra": dict(h.extra)} for h in history]})
        if progress is not None:
            progress(TrainEvent("epoch", epoch, global_step, stats.train_loss, lr, stats))

    evals = [h.eval_acc for h in history if not math.isnan(h.eval_acc)]
    last = history[-1] if history else None
    return TrainResult(history=tuple(history),
                       final_acc=last.eval_acc if last else math.nan,
                       best_acc=max(evals) if evals else math.nan,
                       final_loss=last.eval_loss if last else math.nan,
                       wall_s=time.perf_counter() - started,
                       resumed_from_epoch=resumed_from, device=str(device))


def _warn_config_changes(saved: Mapping[str, Any], cfg: TrainConfig) -> None:
    ignore = {"resume", "checkpoint_path", "log_every", "device", "epochs"}
    changed = [k for k, v in asdict(cfg).items()
               if k not in ignore and k in saved and saved[k] != v]
    if changed:
        log.warning("resuming with changed settings %s; the run is no longer reproducible",
                    ", ".join(changed))
