"""The one training loop: weight training for supernet search and for final training alike.

One job: run SGD epochs over ``Loaders``, evaluate, checkpoint, resume. Searchers do not copy
this loop; they plug into it with ``TrainHooks``: ``excluded_parameters`` keeps architecture
parameters out of the weight optimiser, ``before_step`` takes the architecture step on a
validation batch between weight steps (DARTS), ``loss`` adds cost terms to the weight loss,
and ``state_dict``/``load_state_dict`` put the hook's own state (its optimiser, a Lagrange
multiplier) into the checkpoint so a search resumes exactly.

Checkpoints hold only tensors and plain containers and are read with
``torch.load(weights_only=True)`` (see ``state``). The loop's config and result types live
in ``types``, the hooks in ``hooks``, evaluation in ``eval``; this module
re-exports them, so ``from hilnas.searchers.train import ...`` is the one import callers need.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilnas.searchers.train.eval import evaluate
from hilnas.searchers.train.hooks import TrainHooks
from hilnas.searchers.train.progress import current_reporter, reporting_to
from hilnas.searchers.train.state import (CHECKPOINT_FORMAT, _loader_generator, _rng_state,
                                          _set_rng_state, load_checkpoint, save_checkpoint,
                                          seed_everything)
from hilnas.searchers.train.types import (Batch, EpochStats, StepContext, TrainConfig,
                                          TrainEvent, TrainResult)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hilnas.searchers.data import Loaders

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as torch parses it."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
    ambient = current_reporter() if progress is None else None  # gets every step (progress.py)
    steps_per_epoch = _steps_per_epoch(loaders.train, cfg.max_batches_per_epoch)

    def event(kind: str, epoch: int, loss: float, stats: EpochStats | None = None) -> TrainEvent:
        metrics: dict[str, float] = {}
        for hook in hook_list:
            metrics.update(hook.progress_metrics())
        return TrainEvent(kind, epoch, global_step, loss, lr, stats, epochs=cfg.epochs,
                          steps_per_epoch=steps_per_epoch, metrics=metrics)

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
                    progress(event("step", epoch, step_loss))
            if ambient is not None:
                ambient(event("step", epoch, step_loss))
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
        if progress is not None or ambient is not None:
            (progress or ambient)(event("epoch", epoch, stats.train_loss, stats))

    evals = [h.eval_acc for h in history if not math.isnan(h.eval_acc)]
    last = history[-1] if history else None
    return TrainResult(history=tuple(history),
                       final_acc=last.eval_acc if last else math.nan,
                       best_acc=max(evals) if evals else math.nan,
                       final_loss=last.eval_loss if last else math.nan,
                       wall_s=time.perf_counter() - started,
                       resumed_from_epoch=resumed_from, device=str(device))


def _steps_per_epoch(loader: Iterable[Batch], cap: int | None) -> int:
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:  # an iterable without a length
        return cap or 0
    return min(n, cap) if cap is not None else n


def _warn_config_changes(saved: Mapping[str, Any], cfg: TrainConfig) -> None:
    ignore = {"resume", "checkpoint_path", "log_every", "device", "epochs"}
    changed = [k for k, v in asdict(cfg).items()
               if k not in ignore and k in saved and saved[k] != v]
    if changed:
        log.warning("resuming with changed settings %s; the run is no longer reproducible",
                    ", ".join(changed))


__all__ = ["CHECKPOINT_FORMAT", "Batch", "TrainConfig", "StepContext", "EpochStats", "TrainEvent",
           "TrainResult", "TrainHooks", "resolve_device", "seed_everything", "evaluate",
           "save_checkpoint", "load_checkpoint", "train", "reporting_to"]
