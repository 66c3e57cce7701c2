"""The shared training loop: learning, hooks, checkpoints and exact resume."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hilnas.searchers.data import DatasetConfig, Loaders, load_dataset, loaders_for, make_loaders
from hilnas.searchers.train import (StepContext, TrainConfig, TrainHooks, evaluate,
                                    load_checkpoint, resolve_device, seed_everything, train)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinySearchNet(nn.Module):
    """A CNN whose middle is a two-way mixed op weighted by an architecture parameter."""

    def __init__(self, c_in: int = 1, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(c_in, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.ops = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1), nn.AvgPool2d(3, 1, 1)])
        self.alpha = nn.Parameter(torch.zeros(2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(8, classes))  # dropout: global RNG matters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 8, H, W)
        w = self.alpha.softmax(0)
        return self.head(sum(wi * op(x) for wi, op in zip(w, self.ops)))


def small_cnn(c_in: int, classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, classes))


class Evil:
    """Not a tensor: a checkpoint holding it must not load."""


class ArchStep(TrainHooks):
    """A first-order DARTS architecture step with its own optimiser, plus a cost term."""

    def __init__(self, model: TinySearchNet, lr: float = 0.05, cost: float = 0.1,
                 fail_at: tuple[int, int] | None = None) -> None:
        self.opt = torch.optim.Adam([model.alpha], lr=lr)
        self.cost, self.fail_at = cost, fail_at
        self.calls: list[tuple[int, int, int]] = []
        self.after = 0
        self.arch_steps = torch.zeros((), dtype=torch.int64)

    def excluded_parameters(self, model):
        return [model.alpha]

    def before_step(self, ctx: StepContext, model, train_batch, next_val_batch):
        if self.fail_at == (ctx.epoch, ctx.batch_index):
            raise KeyboardInterrupt("simulated crash")
        self.calls.append((ctx.epoch, ctx.batch_index, ctx.global_step))
        x, y = next_val_batch()
        assert x.device == ctx.device
        self.opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        self.opt.step()
        self.arch_steps += 1

    def loss(self, ctx, model, logits, targets, loss):
        return loss + self.cost * model.alpha.softmax(0)[0]

    def after_step(self, ctx, model, loss):
        self.after += 1

    def on_epoch_end(self, epoch, model):
        return {"alpha0": float(model.alpha.detach()[0])}

    def state_dict(self):
        return {"opt": self.opt.state_dict(), "arch_steps": self.arch_steps.clone()}

    def load_state_dict(self, state):
        self.opt.load_state_dict(state["opt"])
        self.arch_steps = state["arch_steps"].clone()


def _search_setup(seed: int = 0) -> tuple[TinySearchNet, ArchStep, Loaders]:
    cfg = DatasetConfig("synthetic", train_size=256, test_size=64, synthetic_shape=(1, 8, 8),
                        val_fraction=0.5, batch_size=32)
    _, loaders = loaders_for(cfg)
    torch.manual_seed(seed)
    model = TinySearchNet()
    return model, ArchStep(model), loaders


def test_train_synthetic_reduces_loss_and_learns():
    _, loaders = loaders_for(DatasetConfig("synthetic", batch_size=64))
    torch.manual_seed(0)
    model = small_cnn(1, 4)
    result = train(model, loaders, TrainConfig(epochs=3, lr=0.1, log_every=0))
    losses = [h.train_loss for h in result.history]
    assert len(losses) == 3 and losses[-1] < 0.5 * losses[0]
    assert result.final_acc > 0.9 and result.best_acc >= result.final_acc
    assert result.device == "cpu" and result.wall_s > 0 and result.resumed_from_epoch is None
    assert evaluate(model, loaders.test) == pytest.approx((result.final_loss, result.final_acc))


def test_train_hooks_see_every_step_and_own_their_parameters():
    model, hook, loaders = _search_setup()
    alpha_opt_lr0 = ArchStep(model, lr=0.0, cost=10.0)  # the arch step changes nothing...
    events = []
    stem_before = model.stem[0].weight.detach().clone()
    result = train(model, loaders, TrainConfig(epochs=2, log_every=1),
                   hooks=alpha_opt_lr0, progress=events.append)
    steps_per_epoch = len(loaders.train)  # 128 train samples / 32
    assert steps_per_epoch == 4
    assert alpha_opt_lr0.calls == [(e, b, e * 4 + b) for e in range(2) for b in range(4)]
    assert alpha_opt_lr0.after == 8
    assert torch.equal(model.alpha.detach(), torch.zeros(2))  # ...and weight SGD leaves it
    assert not torch.equal(model.stem[0].weight.detach(), stem_before)  # weights did train
    assert all(h.train_loss > 10.0 * 0.5 - 1e-6 for h in result.history)  # cost term in loss
    assert result.history[-1].extra == {"alpha0": 0.0}
    assert [e.kind for e in events].count("step") == 8 and events[-1].kind == "epoch"
    assert events[-1].stats == result.history[-1]
    capped = train(model, loaders, TrainConfig(epochs=1, max_batches_per_epoch=2), hooks=hook)
    assert capped.history[0].batches == 2 and len(hook.calls) == 2


def test_train_resume_gives_the_same_weights(tmp_path):
    cfg = dict(epochs=3, lr=0.05, log_every=0)
    model_a, hook_a, loaders_a = _search_setup()
    result_a = train(model_a, loaders_a, TrainConfig(**cfg, checkpoint_path=str(tmp_path / "a.pt")),
                     hooks=hook_a)

    ckpt = tmp_path / "b.pt"
    model_b, hook_b, loaders_b = _search_setup()
    hook_b.fail_at = (1, 2)  # crash in the middle of the second epoch
    with pytest.raises(KeyboardInterrupt):
        train(model_b, loaders_b, TrainConfig(**cfg, checkpoint_path=str(ckpt)), hooks=hook_b)
    assert load_checkpoint(ckpt)["epoch"] == 1

    model_c, hook_c, loaders_c = _search_setup(seed=123)  # fresh objects, different init
    result_c = train(model_c, loaders_c, TrainConfig(**cfg, checkpoint_path=str(ckpt), resume=True),
                     hooks=hook_c)
    assert result_c.resumed_from_epoch == 1
    state_a, state_c = model_a.state_dict(), model_c.state_dict()
    assert state_a.keys() == state_c.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_c[key]), key
    assert int(hook_c.arch_steps) == int(hook_a.arch_steps) == 3 * 4
    assert [h.train_loss for h in result_c.history] == [h.train_loss for h in result_a.history]
    assert result_c.final_acc == result_a.final_acc
    # Resuming a finished run trains no further and returns the stored history.
    done = train(model_c, loaders_c, TrainConfig(**cfg, checkpoint_path=str(ckpt), resume=True),
                 hooks=ArchStep(model_c))
    assert done.history == result_c.history


def test_train_checkpoint_loads_weights_only(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match="not a hilnas training checkpoint"):
        load_checkpoint(foreign)

    torch.save({"format": "hilnas-train-checkpoint/1", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        load_checkpoint(tmp_path / "evil.pt")


def test_train_val_batches_need_a_val_split():
    _, loaders = loaders_for(DatasetConfig("synthetic", train_size=64, synthetic_shape=(1, 8, 8)))
    model = TinySearchNet()
    with pytest.raises(RuntimeError, match="val_fraction"):
        train(model, loaders, TrainConfig(epochs=1), hooks=ArchStep(model))
    result = train(model, loaders, TrainConfig(epochs=1, eval_split="none"))
    assert math.isnan(result.final_acc)
    with pytest.raises(ValueError, match="loaders.val is None"):
        train(model, loaders, TrainConfig(epochs=1, eval_split="val"))


def test_train_evaluate_and_helpers():
    ds = load_dataset(DatasetConfig("synthetic", test_size=50, synthetic_shape=(1, 8, 8)))
    loaders = make_loaders(ds, 16, seed=0)
    model = TinySearchNet().train()
    loss, acc = evaluate(model, loaders.test)
    x, y = ds.test.tensors
    with torch.no_grad():
        model.eval()
        logits = model(x)
    assert acc == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert loss == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-5)
    assert evaluate(model.train(), loaders.test, max_batches=1)[1] is not None and model.training
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    seed_everything(7)
    a = torch.rand(3)
    seed_everything(7)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(ValueError, match="checkpoint_path"):
        TrainConfig(resume=True)
