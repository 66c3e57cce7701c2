"""Baselines on the same footing as the growth: width multipliers (and random splitting, in ``grow``).

``width_multipliers`` trains the backbone at each width multiplier alpha (Howard et al., 2017:
every layer's width times alpha) from scratch for ``epochs`` epochs, with the same training loop,
learning rate, seed and measurement as the splitting checkpoints, and checkpoints each as
``Width-alpha``. By default the runner gives each the epochs the last splitting checkpoint's
weights have seen in total (``seed_epochs + steps * step_epochs``), so a comparison at matched
cost is also at a matched budget of epochs. Random splitting of equal cost is
``grow_by_splitting(..., GrowConfig(selection="random"))``: random neurons and directions under the same
step budgets, so the two curves differ only in how the neurons were chosen.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hilnas.searchers.cost import CostModel
from hilnas.searchers.result import Budget
from hilnas.searchers.splitting.checkpoint import Checkpoint, resume_from
from hilnas.searchers.splitting.grow import (GrowConfig, GrowthResult, MeasureFn, checkpoint_line, device_cost,
                                             finish_checkpoint, train_phase)
from hilnas.searchers.spaces.mobilenet import MobileNetSpace

if TYPE_CHECKING:
    from hilnas.searchers.data import Loaders


def width_name(multiplier: float) -> str:
    return f"Width-{multiplier:g}"


def width_multipliers(space: MobileNetSpace, costs: Mapping[str, CostModel], budget: Budget,
                      multipliers: Sequence[float], epochs: int, config: GrowConfig, loaders: Loaders, *,
                      measure: MeasureFn, checkpoint_dir: Path | str, resume: bool = False,
                      progress: Callable[[str], None] | None = None) -> GrowthResult:
    """Train and measure the backbone at every multiplier (checkpoints Width-alpha, resumable)."""
    import torch

    from hilnas.searchers.spaces.mobilenet.net import MobileNet

    if not multipliers or epochs < 1:
        raise ValueError("width multipliers need at least one multiplier and epochs >= 1")
    say = progress or (lambda msg: None)
    started = time.perf_counter()
    folder = Path(checkpoint_dir)
    names = [width_name(m) for m in multipliers]
    found = [ck for ck, _ in resume_from(folder, space, resume=resume,
                                         name_of=lambda step: names[step] if step < len(names) else None)]
    history = list(found)
    over = []
    for i in range(len(found), len(multipliers)):
        t0 = time.perf_counter()
        torch.manual_seed(config.seed)
        net = MobileNet(space, space.widths_at(multipliers[i]))
        say(f"{names[i]}: widths {list(net.widths.widths)}, training {epochs} epochs")
        acc, loss = train_phase(net, loaders, epochs, config, config.seed)
        ck = finish_checkpoint(space, Checkpoint(i, names[i], net.widths, acc, loss, epochs, {}), net, costs, measure,
                               folder, t0)
        history.append(ck)
        say(checkpoint_line(ck, budget.metric))
        if device_cost(ck, budget.metric) > budget.value:
            over.append(ck.name)
    notes = (f"over the budget {budget} on the device: {', '.join(over)}",) if over else ()
    return GrowthResult("width", budget, tuple(history), "all multipliers trained",
                        found[-1].step if found else None, notes, time.perf_counter() - started)
