"""Energy-aware splitting steepest descent (seed 003): grow a small network by splitting neurons.

Starting from the backbone shrunk uniformly (``seed_multiplier``, seed 003 uses 0.3), alternate

1. *parametric updates*: train the weights for ``step_epochs`` epochs (the shared loop, a cosine
   schedule per phase; ``seed_epochs`` for the seed), then save a checkpoint Splitting-k with its
   widths, test accuracy, the cost models' predictions, and what the run's ``measure`` callback
   measured on the device;
2. *splitting*: compute every neuron's splitting index (``index.py``), price a split of each layer
   on the device (``costs.split_costs``: e_l, re-evaluated at every step), and choose the neurons
   by eq. (1) (``knapsack.py``)

       max sum_l beta_l (-lambda_min(l))   s.t.   sum_l beta_l e_l <= e_budget,  beta_l in {0, 1},

   then split them along their eigenvectors (``split.py``),

until ``steps`` splits were made, the next split would not fit the device budget, or no neuron
has a negative index. ``selection="random"`` is the baseline "random splitting of equal cost":
random neurons (random directions) under the same step budget.

Deviations from the paper, where the code makes them:

- e_l is the device's measured cost (LUT latency or energy, interpolated on the width grid) or
  FLOPs / parameters, not FLOPs only; all neurons of a layer cost the same e_l, and the cross term
  of widening two adjacent layers in one step (about e_l e_(l+1) / layer cost) is left out, as in
  eq. (1). The realised cost of the split network is checked, and if the cross terms took it past
  the device budget the least efficient chosen splits are dropped (reported in the notes).
- The step budget is ``growth`` times the current network's cost on the device (seed 003 does
  not say how it sized its steps; its checkpoints grow 1.4-2.1x in MACs), capped by the headroom
  to the device budget. Both are measured and converted into the cost model's units with the
  slope measured/predicted between the last two checkpoints (clamped to [0.5, 2]; 1 before
  there are two): a LUT sum differs from a whole network's latency mostly by an offset (each
  micro-model's own call overhead, fusion), not a factor, so a ratio of totals would misjudge
  what one more neuron costs. The headroom uses the slope only when it is above 1: on the
  simulated Pi it rose from 0.87 to 0.99 as the network grew, and a last step sized with 0.87
  measured 4.6 % over the budget. The headroom also leaves ``margin`` (2 %) of the budget: with
  the slope at 1 a last step on the Pi still measured 0.4 % over (slope 1.03 in that step, and
  the simulated Pi's 1 % run-to-run noise).
- A layer never grows past the top of its LUT grid (``MobileNetSpace.max_width``).
- ``width_multiple`` m > 1 (not in the paper) keeps every width a multiple of m: the seed's
  widths are rounded to multiples of m and the knapsack's items are groups of m neurons of a
  layer (its m most negative indices not yet taken; gain the sum, cost the cost of m more
  neurons). ONNX Runtime on x86 runs a network whose channels are multiples of 8 in a blocked
  layout: here one layer at 17 channels instead of 16 made a whole network 65 % slower
  (0.026 -> 0.043 ms), which a LUT of aligned grid widths cannot see. The width multipliers
  of the baseline are aligned by construction.
- BN uses running statistics for the index; a split channel copies its BN (``split.py``).
"""
from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilnas.searchers.cost import CostModel
from hilnas.searchers.result import Budget, InfeasibleBudgetError
from hilnas.searchers.splitting.checkpoint import Checkpoint, load_weights, resume_from, save_checkpoint
from hilnas.searchers.splitting.costs import split_costs
from hilnas.searchers.splitting.index import IndexConfig
from hilnas.searchers.splitting.knapsack import SOLVERS
from hilnas.searchers.splitting.split import LayerSplit, split_network
from hilnas.searchers.spaces.mobilenet import MobileNetSpace, MobileNetWidths

if TYPE_CHECKING:
    import torch

    from hilnas.searchers.data import Loaders
    from hilnas.searchers.spaces.mobilenet.net import MobileNet

log = logging.getLogger("hilnas.splitting")

DEVICE_METRICS = ("latency_ms", "energy_mj")  # measured on the device; params and FLOPs are exact
MeasureFn = Callable[[Checkpoint, "MobileNet"], Mapping[str, float | None]]


@dataclass(frozen=True)
class GrowConfig:
    """How the network grows and trains."""
    seed_multiplier: float = 0.3    # Splitting-0 is the backbone at this width multiplier (seed 003: 0.3)
    steps: int = 4                  # splitting steps at most: checkpoints Splitting-1 .. Splitting-steps
    growth: float = 0.5             # one step adds at most this fraction of the current network's cost
    margin: float = 0.02            # aim the last step this fraction under the budget (device noise, slope drift)
    seed_epochs: int = 3            # parametric training of the seed network
    step_epochs: int = 2            # parametric training after each split
    lr: float = 0.05                # SGD learning rate at the start of every phase (cosine to 0)
    batch_size: int = 64            # of the index's batches (training uses the loaders' batches)
    epsilon: float = 0.1            # the split step: offspring at theta +- epsilon v, v of unit length in the
                                    # index's metric (default: 0.1 = an RMS change of 0.1 of the BN output)
    selection: str = "index"        # "index" (eq. (1)) | "random" (random neurons and directions, same budget)
    width_multiple: int = 1         # widths stay multiples of this: neurons split in groups of it (1 = the paper)
    knapsack: str = "dp"            # "dp" (exact on a discretised budget) | "greedy" (gain / cost ratio)
    resolution: int = 1000          # budget units of the DP
    index: IndexConfig = IndexConfig()
    seed: int = 0
    max_batches_per_epoch: int | None = None  # cap for smoke runs

    def __post_init__(self) -> None:
        if self.selection not in ("index", "random"):
            raise ValueError(f"selection must be 'index' or 'random', got {self.selection!r}")
        if self.knapsack not in SOLVERS:
            raise ValueError(f"knapsack must be one of {', '.join(SOLVERS)}, got {self.knapsack!r}")
        if self.steps < 0 or self.seed_epochs < 1 or self.step_epochs < 1:
            raise ValueError("steps must be >= 0, seed_epochs and step_epochs >= 1")
        if not self.growth > 0 or not self.seed_multiplier > 0 or self.epsilon < 0:
            raise ValueError("growth and seed_multiplier must be > 0, epsilon >= 0")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")
        if self.width_multiple < 1:
            raise ValueError(f"width_multiple must be >= 1, got {self.width_multiple}")

    @property
    def prefix(self) -> str:
        return "Splitting" if self.selection == "index" else "RandomSplit"


@dataclass(frozen=True)
class GrowthResult:
    """A growth curve (or a baseline's points): the checkpoints, and why it stopped."""
    method: str                            # "splitting" | "random" | "width"
    budget: Budget
    checkpoints: tuple[Checkpoint, ...]
    stop_reason: str
    resumed_from: int | None = None        # the last step found on disk, when resumed
    notes: tuple[str, ...] = ()
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "budget": str(self.budget), "stop_reason": self.stop_reason,
                "resumed_from": self.resumed_from, "wall_s": self.wall_s, "notes": list(self.notes),
                "checkpoints": [c.to_dict() for c in self.checkpoints]}


def device_cost(ck: Checkpoint, metric: str) -> float:
    """The checkpoint's cost in ``metric`` on the device: measured (latency, energy), else exact."""
    if metric in DEVICE_METRICS:
        value = ck.measured.get(metric)
        return ck.predicted[metric] if value is None else float(value)
    return ck.predicted[metric]


def seed_widths(space: MobileNetSpace, config: GrowConfig) -> MobileNetWidths:
    """Splitting-0: the backbone at ``seed_multiplier``, each width rounded to ``width_multiple`` (at least one)."""
    m = config.width_multiple
    widths = space.widths_at(config.seed_multiplier).widths
    return MobileNetWidths(tuple(max(m, m * int(w / m + 0.5)) for w in widths))  # half up, as make_divisible


def measured_slope(history: Sequence[Checkpoint], metric: str, clamp: tuple[float, float] = (0.5, 2.0)) -> float:
    """d(device cost) / d(predicted cost) between the last two checkpoints, clamped; 1 before there are two."""
    if len(history) < 2:
        return 1.0
    a, b = history[-2], history[-1]
    dp = b.predicted[metric] - a.predicted[metric]
    if dp <= 0:
        return 1.0
    return min(max((device_cost(b, metric) - device_cost(a, metric)) / dp, clamp[0]), clamp[1])


def index_batches(loaders: Loaders, n: int, batch_size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` seeded random batches of the training set (the splitting index's expectation)."""
    import torch

    ds = loaders.train.dataset
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[: n * batch_size]
    return [ds[perm[i: i + batch_size]] for i in range(0, len(perm), batch_size)]


def train_phase(net: MobileNet, loaders: Loaders, epochs: int, config: GrowConfig, seed: int) -> tuple[float, float]:
    """(test accuracy, last epoch's training loss) after ``epochs`` epochs of the shared training loop.

    The training loader's shuffling is re-seeded from ``seed``, so a phase sees the same batches
    whatever ran before it in the process: a resumed run trains exactly as the uninterrupted one.
    """
    from hilnas.searchers.train import TrainConfig, train

    generator = getattr(loaders.train, "generator", None)
    if generator is not None:
        generator.manual_seed(seed)
    result = train(net, loaders, TrainConfig(epochs=epochs, lr=config.lr, seed=seed, device="cpu", log_every=0,
                                             max_batches_per_epoch=config.max_batches_per_epoch))
    return result.final_acc, result.history[-1].train_loss


def predicted_costs(space: MobileNetSpace, widths: MobileNetWidths, costs: Mapping[str, CostModel]) -> dict[str, float]:
    return {metric: model.genotype_cost(space, widths) for metric, model in costs.items()}


def finish_checkpoint(space: MobileNetSpace, ck: Checkpoint, net: MobileNet, costs: Mapping[str, CostModel],
                      measure: MeasureFn, folder: Path, started: float) -> Checkpoint:
    """Price, measure and save a trained checkpoint; returns it complete."""
    ck = replace(ck, predicted=predicted_costs(space, ck.widths, costs))
    ck = replace(ck, measured=dict(measure(ck, net)))
    ck = replace(ck, wall_s=time.perf_counter() - started)
    save_checkpoint(folder, space, ck, net.state_dict())
    return ck


def grow_by_splitting(space: MobileNetSpace, costs: Mapping[str, CostModel], budget: Budget, config: GrowConfig,
                      loaders: Loaders, *, measure: MeasureFn, checkpoint_dir: Path | str, resume: bool = False,
                      progress: Callable[[str], None] | None = None) -> GrowthResult:
    """Grow from the seed network to the device budget; see the module docstring.

    ``costs`` maps metrics to cost models and must include ``budget.metric`` (the one eq. (1)
    prices splits with); every checkpoint records the prediction of each. ``measure(checkpoint,
    net)`` measures a trained checkpoint on the device and returns {"latency_ms": .., ...}.
    """
    if budget.metric not in costs:
        raise ValueError(f"no cost model for the budget's metric {budget.metric} (have {', '.join(costs)})")
    say = progress or (lambda msg: log.info("%s", msg))
    folder = Path(checkpoint_dir)
    started = time.perf_counter()
    found = resume_from(folder, space, resume=resume, name_of=lambda step: f"{config.prefix}-{step}")
    history, last_path = [c for c, _ in found], (found[-1][1] if found else None)
    resumed_from = history[-1].step if history else None
    notes: list[str] = []
    metric, model = budget.metric, costs[budget.metric]
    if history:
        net = load_weights(last_path, space, history[-1])
        say(f"resuming after {history[-1].name} (widths {list(history[-1].widths.widths)})")
    else:
        net, ck = _seed_checkpoint(space, costs, budget, config, loaders, measure, folder, say)
        history.append(ck)
    stop = "steps"
    for k in range(len(history), config.steps + 1):
        t0 = time.perf_counter()
        prev = history[-1]
        slope = measured_slope(history, metric)
        # in the cost model's units; a slope below 1 is not trusted here (it changes as the network grows:
        # 0.87 then 0.99 on the simulated Pi), so the last step never aims past the budget
        headroom = ((1 - config.margin) * budget.value - device_cost(prev, metric)) / max(slope, 1.0)
        step_budget = min(config.growth * device_cost(prev, metric) / slope, headroom)
        e, floored = split_costs(space, net.widths, model, by=config.width_multiple)
        if floored:
            notes.append(f"step {k}: {floored} layer cost(s) e_l below the floor raised to it (noisy or flat grid)")
        if min(e) == math.inf:
            stop = "every layer is at the top of its LUT grid (MobileNetSpace.max_width)"
            break
        if step_budget < min(e):
            stop = (f"the next split does not fit the budget: {budget.value - device_cost(prev, metric):.4g} "
                    f"{budget.unit} left, the cheapest split costs {min(e) * slope:.4g}")
            break
        items, directions = _candidates(net, loaders, e, config, k)
        chosen = _choose(items, step_budget, config, k)
        if not chosen:
            stop = "no neuron has a negative splitting index" if config.selection == "index" else "nothing to split"
            break
        chosen, dropped = _fit(space, net.widths, items, chosen, model, prev.predicted[metric] + headroom)
        if dropped:
            notes.append(f"step {k}: dropped {dropped} chosen split(s) whose joint cost passed the budget")
        splits = _layer_splits(items, chosen, directions)
        net = split_network(net, splits, config.epsilon)
        say(f"step {k}: split {sum(len(s.neurons) for s in splits)} neurons "
            f"({', '.join(f'layer {s.layer}: {len(s.neurons)}' for s in splits)}) -> {list(net.widths.widths)}; "
            f"training {config.step_epochs} epochs")
        acc, loss = train_phase(net, loaders, config.step_epochs, config, config.seed + k)
        ck = Checkpoint(k, f"{config.prefix}-{k}", net.widths, acc, loss, prev.epochs + config.step_epochs, {},
                        splits={s.layer: len(s.neurons) for s in splits}, gain=sum(items[i][2] for i in chosen),
                        step_budget=step_budget, split_cost=sum(items[i][3] for i in chosen))
        ck = finish_checkpoint(space, ck, net, costs, measure, folder, t0)
        history.append(ck)
        say(checkpoint_line(ck, metric))
        if device_cost(ck, metric) > budget.value:
            stop = f"{ck.name} measures {device_cost(ck, metric):.4g} {budget.unit}, over the budget {budget}"
            break
    method = "splitting" if config.selection == "index" else "random"
    return GrowthResult(method, budget, tuple(history), stop, resumed_from, tuple(notes), time.perf_counter() - started)


def _seed_checkpoint(space: MobileNetSpace, costs: Mapping[str, CostModel], budget: Budget, config: GrowConfig,
                     loaders: Loaders, measure: MeasureFn, folder: Path, say: Callable[[str], None]
                     ) -> tuple[MobileNet, Checkpoint]:
    """Splitting-0: the seed network, trained, measured and saved; refused when it is over the budget."""
    import torch

    from hilnas.searchers.spaces.mobilenet.net import MobileNet

    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    net = MobileNet(space, seed_widths(space, config))
    say(f"training the seed network {list(net.widths.widths)} ({config.seed_epochs} epochs)")
    acc, loss = train_phase(net, loaders, config.seed_epochs, config, config.seed)
    ck = finish_checkpoint(space, Checkpoint(0, f"{config.prefix}-0", net.widths, acc, loss, config.seed_epochs, {}),
                           net, costs, measure, folder, t0)
    say(checkpoint_line(ck, budget.metric))
    cost = device_cost(ck, budget.metric)
    if cost > budget.value:
        raise InfeasibleBudgetError(f"the budget {budget} is below the seed network's cost on the device: {ck.name} "
                                    f"{list(ck.widths.widths)} costs {cost:.4g} {budget.unit}",
                                    cheapest_cost=cost, cheapest_genotype=ck.widths)
    return net, ck


def checkpoint_line(ck: Checkpoint, metric: str) -> str:
    measured = ", ".join(f"{k} {v:.4g}" for k, v in ck.measured.items() if v is not None) or "not measured"
    return (f"{ck.name}: widths {list(ck.widths.widths)}, test accuracy {100 * ck.test_acc:.2f}%, "
            f"predicted {metric} {ck.predicted[metric]:.4g}, measured {measured}")


Item = tuple[int, tuple[int, ...], float, float]  # (layer, neurons split together, gain, cost)


def _groups(layer: int, neurons: Sequence[int], gains: Sequence[float], cost: float, m: int, room: int) -> list[Item]:
    """Consecutive groups of m neurons (in the given order), at most ``room`` neurons in all."""
    n = min(len(neurons), room) // m * m
    return [(layer, tuple(neurons[i:i + m]), float(sum(gains[i:i + m])), cost) for i in range(0, n, m)]


def _candidates(net: MobileNet, loaders: Loaders, e: Sequence[float], config: GrowConfig, step: int
                ) -> tuple[list[Item], dict[int, torch.Tensor]]:
    """The knapsack's items (groups of ``width_multiple`` neurons) and each layer's split directions (neurons, d)."""
    import torch

    items: list[Item] = []
    directions: dict[int, torch.Tensor] = {}
    widths, m = net.widths.widths, config.width_multiple
    batches = index_batches(loaders, config.index.batches, config.batch_size, config.seed * 7919 + step)
    if config.selection == "index":
        from hilnas.searchers.splitting.index import splitting_indices
        for li in splitting_indices(net, batches, replace(config.index, seed=config.index.seed + step)):
            room = net.space.max_width(li.layer) - widths[li.layer] if math.isfinite(e[li.layer]) else 0
            order = [int(j) for j in torch.argsort(li.eigenvalues) if li.eigenvalues[j] < 0]
            items += _groups(li.layer, order, [-float(li.eigenvalues[j]) for j in order], e[li.layer], m, room)
            directions[li.layer] = li.directions
        return items, directions
    from hilnas.searchers.splitting.index import layer_terms, random_directions
    gen = torch.Generator().manual_seed(config.seed * 7919 + step)
    for layer, terms in enumerate(layer_terms(net, batches, config.index.beta, gradients=False)):
        directions[layer] = random_directions(terms, gen, config.index)  # unit steps in the index's metric
        if math.isfinite(e[layer]):
            room = net.space.max_width(layer) - widths[layer]
            picks = torch.randperm(widths[layer], generator=gen).tolist()
            items += _groups(layer, picks, [0.0] * len(picks), e[layer], m, room)
    return items, directions


def _choose(items: Sequence[Item], step_budget: float, config: GrowConfig, step: int) -> list[int]:
    if config.selection == "index":
        return SOLVERS[config.knapsack]([g for *_, g, _ in items], [c for *_, c in items], step_budget,
                                        **({"resolution": config.resolution} if config.knapsack == "dp" else {}))
    rng = random.Random(config.seed * 7919 + step)
    order = list(range(len(items)))
    rng.shuffle(order)
    chosen, spent = [], 0.0
    for i in order:  # random neurons while they fit: the same step budget as eq. (1), no index
        cost = items[i][3]
        if spent + cost <= step_budget:
            chosen.append(i)
            spent += cost
    return sorted(chosen)


def _fit(space: MobileNetSpace, widths: MobileNetWidths, items: Sequence[Item], chosen: list[int],
         model: CostModel, limit: float) -> tuple[list[int], int]:
    """Drop the least efficient chosen splits while the split network's real predicted cost passes ``limit``."""
    chosen = list(chosen)
    dropped = 0

    def cost_of(sel: list[int]) -> float:
        w = list(widths.widths)
        for i in sel:
            w[items[i][0]] += len(items[i][1])
        return model.genotype_cost(space, MobileNetWidths(tuple(w)))

    while chosen and cost_of(chosen) > limit:
        worst = min(chosen, key=lambda i: items[i][2] / items[i][3] if items[i][3] > 0 else math.inf)
        chosen.remove(worst)
        dropped += 1
    return chosen, dropped


def _layer_splits(items: Sequence[Item], chosen: Sequence[int], directions: Mapping[int, torch.Tensor]
                  ) -> list[LayerSplit]:
    per_layer: dict[int, list[int]] = {}
    for i in chosen:
        per_layer.setdefault(items[i][0], []).extend(items[i][1])
    return [LayerSplit(layer, tuple(js), directions[layer][js]) for layer, js in sorted(per_layer.items())]
