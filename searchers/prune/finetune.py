"""A brief fine-tune of a pruned network (issue 12 item 4): the one implementation the CLI, the run steps and the
benchmark use.

All the pruned network's weights are trained with SGD (``train``'s defaults: momentum 0.9, cosine schedule) on
the training split. Two networks fine-tuned with the same ``FinetuneConfig`` get the same fine-tune: the same
epochs, optimiser and seed (``train`` seeds torch), and the same batches in the same order: the training loader's
shuffle generator is re-seeded from ``seed`` first, so a later fine-tune does not see the order an earlier one
left behind (the benchmark compares a family member and a fixed-lambda network fine-tuned alike).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from hilnas.searchers.data import Loaders
    from hilnas.searchers.train import TrainResult


@dataclass(frozen=True)
class FinetuneConfig:
    """How a pruned network is fine-tuned: ``epochs`` 0 = not at all."""
    epochs: int = 0
    lr: float = 0.01
    seed: int = 0
    max_batches_per_epoch: int | None = None   # cap for smoke runs; None = whole epochs
    eval_split: str = "test"                   # evaluated after each epoch ("none": the caller evaluates)

    def __post_init__(self) -> None:
        if self.epochs < 0 or not self.lr > 0:
            raise ValueError(f"fine-tune epochs must be >= 0 and lr > 0, got {self.epochs} and {self.lr}")


def finetune(net: torch.nn.Module, loaders: Loaders, config: FinetuneConfig) -> TrainResult | None:
    """Fine-tune ``net`` in place (None when ``config.epochs`` is 0); it is left in eval mode."""
    from hilnas.searchers.train import TrainConfig, train

    if not config.epochs:
        return None
    generator: Any = getattr(loaders.train, "generator", None)
    if generator is not None:
        generator.manual_seed(config.seed)   # the same batch order for every network tuned with this config
    result = train(net, loaders, TrainConfig(epochs=config.epochs, lr=config.lr, seed=config.seed, device="cpu",
                                             log_every=0, eval_split=config.eval_split,
                                             max_batches_per_epoch=config.max_batches_per_epoch))
    net.eval()
    return result
