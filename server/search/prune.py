"""Glue for ``hilnas search prune``: prune a pre-trained ResNet or MobileNet once, get every budget's network, measured.

The MobileNet (``--model mobilenet``) is pruned by channel groups (``searchers.prune.mobilenet.space``;
``--space-opt groups=N`` gated groups per layer, the other ``--space-opt`` are the backbone's), priced on
the device's LUT grid with widths in between interpolated (``GridLatencyCost``); its members are found by
bisection on lambda (the band search and device confirmation below score ResNet blocks only).

``run_prune(store, device_key, clients, config)``:

1. loads the dataset (with a validation split the gates are trained on) and builds the model's space
   to fit it; takes T(e) of every gateable module from the device's LUT (a LUT without a module's key
   is refused with the ``hilnas lut build`` command that measures it);
2. loads the pre-trained network (``--checkpoint``: a file hilnas saved, read ``weights_only`` and
   checked; a damaged, foreign or other-architecture file is refused before anything runs) or
   pre-trains it and saves it beside the run;
3. runs Algorithm 1 (``searchers.prune.search``: phase 1, the lambda sweep and Theorem 1, phase 2) and
   saves the trained hypernetwork (``searchers.prune.io``) so ``--from-run`` serves later budgets;
4. derives the members: for each device budget the member found by bisection on lambda (a latency
   budget through the LUT's fitted correction, when a fidelity run fitted one), or a lambda grid;
   a budget outside the family's range is reported with the range and skipped;
5. for each distinct pruned network: its accuracy on the test split (pre-trained weights; and after
   a brief fine-tuning with ``finetune_epochs``), ONNX export with its pattern in the metadata,
   measured on the device, recorded in the store;
6. writes the curve (CSV, JSON), the trade-off plot and the sweep plot (accuracy vs lambda with
   both Lambdas). A failure marks the run failed and re-raises.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from hilnas.agent.config import MeasureConfig
from hilnas.searchers.result import Budget
from hilnas.server.search.family import (dataset_of, family_members, lut_value, plain_config, prepared, recorded,
                                         saved_run)
from hilnas.server.store import LutId, Store

if TYPE_CHECKING:
    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.data import DatasetConfig
    from hilnas.searchers.hypernet import Architecture
    from hilnas.searchers.prune.confirm import DeviceBandConfig
    from hilnas.searchers.prune.search import PruneConfig, PruneResult
    from hilnas.searchers.spaces.resnet import ResNetSpace
    from hilnas.server.client import AgentClient

log = logging.getLogger("hilnas.search")

MODELS = ("resnet18-narrow", "resnet18", "mobilenet")
PRUNE_OPTS = {"mobilenet": ("groups",)}   # --space-opt of the gates, not of the backbone (``mobilenet.space``)


def _default_dataset() -> DatasetConfig:
    from hilnas.searchers.data import DatasetConfig
    return DatasetConfig(name="cifar10", val_fraction=0.2, batch_size=64)


def _default_search() -> PruneConfig:
    from hilnas.searchers.prune.search import PruneConfig
    return PruneConfig()


@dataclass(frozen=True)
class PruneRunConfig:
    """One pruning run on a device: the model, data, pre-training, search settings and which members to produce."""
    model: str = "resnet18-narrow"                   # resnet18-narrow | resnet18 | mobilenet (channel groups)
    space_overrides: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"groups": 2}
    dataset: DatasetConfig = field(default_factory=_default_dataset)  # val_fraction 0 -> 0.2 (the gates' split)
    checkpoint: str | None = None                    # a pre-trained network hilnas saved; None = pre-train here
    pretrain_epochs: int = 15
    pretrain_lr: float = 0.05
    search: PruneConfig = field(default_factory=_default_search)
    lambdas: tuple[float, ...] = ()                  # lambdas to derive; () = search.grid_points up to Lambda
    budgets: tuple[Budget, ...] = ()                 # device budgets: one member each (instead of the grid)
    use_correction: bool = True                      # map latency budgets through the LUT's fitted correction
    band: float = 0.9                                # a budget b's member is sought within [band x b, b] (0: bisection only)
    confirm_tries: int = 4                           # latency budgets: candidates measured on the device per budget to
                                                     # confirm a member inside the band (prune.confirm); 0: the LUT only
    confirm_spreads: float = 2.0                     # ... a confirmed member's windows' mean this many spreads of a
                                                     # fresh window inside [band x b, b] (prune.confirm's k; lower takes
                                                     # better-ranked candidates nearer the band's edge, at more risk
                                                     # that a fresh measurement leaves it)
    tune_steps: int = 0                              # candidates also from gate logits tuned this many steps at a
                                                     # budget's lambdas (prune.refine.tuned); 0: the hypernetwork's own
    chain_batches: int | None = None                 # candidates also from a chain of single-group drops from the
                                                     # dearer bracketing member, measured on this many batches of the
                                                     # gates' split (prune.chain); 0: none; None: the benchmarked
                                                     # 2 where the split holds them besides the held-out ones, else 0
    finetune_epochs: int = 0                         # brief fine-tuning of each member before export; 0 = none
    finetune_lr: float = 0.01
    seed: int = 0
    measure: MeasureConfig = MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.2)
    backend: str = ""                                # agent backend; "" = the device's default
    runtime: str | None = None                       # which of the device's LUTs (when it has several)
    out_dir: str | None = None                       # checkpoint, ONNX, CSV, JSON, PNG; None = <workspace>/models/prune-<run>
    max_batches_per_epoch: int | None = None         # cap for smoke runs (pre-training and fine-tuning)
    from_run: int | None = None                      # derive from the pruning run N trained (no training)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; prunable models: {', '.join(MODELS)}")
        if self.budgets and self.lambdas:
            raise ValueError("give lambdas or budgets, not both")
        if not 0 <= self.band < 1:
            raise ValueError(f"band must lie in [0, 1) (the member's share of its budget to aim above), got {self.band}")
        if self.confirm_tries < 0:
            raise ValueError(f"confirm_tries must be >= 0 (0: members chosen by the LUT only), got {self.confirm_tries}")
        if not (math.isfinite(self.confirm_spreads) and self.confirm_spreads >= 0):
            raise ValueError(f"confirm_spreads must be a number >= 0 (0: both windows inside the band's middle "
                             f"suffice), got {self.confirm_spreads}")
        if self.tune_steps < 0:
            raise ValueError(f"tune_steps must be >= 0 (0: the hypernetwork's own patterns only), got {self.tune_steps}")
        if self.chain_batches is not None and self.chain_batches < 0:
            raise ValueError(f"chain_batches must be >= 0 (0: no chain), got {self.chain_batches}")
        if self.pretrain_epochs < 1 or self.finetune_epochs < 0:
            raise ValueError("pretrain_epochs must be >= 1 and finetune_epochs >= 0")
        for b in self.budgets:
            if not isinstance(b, Budget):
                raise ValueError(f"budgets must be Budget objects (Budget.parse('latency_ms=5')), got {b!r}")
        for s in self.lambdas:
            if not (isinstance(s, (int, float)) and math.isfinite(s) and s >= 0):
                raise ValueError(f"lambdas must be finite numbers >= 0, got {s!r}")


@dataclass(frozen=True)
class PrunedMember:
    """One distinct pruned network: the lambdas that derive it, its costs, accuracy and measurement."""
    name: str
    lam: float                          # the (smallest) lambda it was derived at
    pattern: Any                        # GatePattern
    costs: Mapping[str, float]          # exact cost per metric (LUT sum for latency)
    predicted_ms: float                 # LUT latency with the correction applied
    measured_ms: float | None           # latency measured on the device
    status: str
    test_acc: float                     # pre-trained weights, pruned, on the test split
    finetuned_acc: float | None         # after ``finetune_epochs`` (None without)
    budgets: tuple[Budget, ...] = ()    # the device budgets it was chosen for
    within_budget: bool | None = None   # measured (or exact) <= every one of them
    model_id: int | None = None
    onnx_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pattern"] = self.pattern.to_dict()
        d["budgets"] = [str(b) for b in self.budgets]
        d["costs"] = dict(self.costs)
        return d


@dataclass(frozen=True)
class PruneRunReport:
    """What a pruning run produced (also the run's stored result)."""
    run_id: int
    Lambda: float
    estimate: dict[str, Any] | None                  # LambdaEstimate.to_dict(): the sweep and Theorem 1
    pretrained_acc: float                            # the unpruned network on the test split
    members: tuple[PrunedMember, ...]                # distinct networks, lambda ascending
    points: int                                      # lambdas / budgets asked for (several may give one network)
    failed_budgets: tuple[tuple[Budget, str], ...]
    curve: dict[str, Any]
    search: dict[str, Any]
    monotone_violations_predicted: int               # raw derivation along lambda, before isotonic selection
    monotone_violations_measured: int                # measured latency along the members, lambda ascending
    csv_path: str
    json_path: str
    plot_path: str | None
    sweep_plot_path: str | None
    checkpoint: str
    trained_dir: str | None
    notes: tuple[str, ...]
    wall_s: float
    from_run: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["members"] = [m.to_dict() for m in self.members]
        d["failed_budgets"] = [{"budget": str(b), "error": e} for b, e in self.failed_budgets]
        d["notes"] = list(self.notes)
        return d


# -- the run ----------------------------------------------------------------------------------------
def run_prune(store: Store, device_key: str, clients: Sequence[AgentClient], config: PruneRunConfig, *,
              progress: Callable[[str], None] | None = None) -> PruneRunReport:
    """Prune once, derive the members, export, measure and record each; see the module docstring."""
    from hilnas.server.search.common import cost_model_for, lut_needed

    say = progress or (lambda msg: log.info("%s", msg))
    started = time.perf_counter()
    trained_dir = None
    if config.from_run is not None:
        config, trained_dir = _config_from_run(store, config)
    loaders, space = _prunable(store, device_key, clients, config)
    config, early_notes = _chain_setting(config, loaders, say)
    _check_held_out(config, loaders)
    backbone = getattr(space, "backbone", space)
    with lut_needed(device_key, backbone, config.dataset.name):  # no LUT at all: the command that builds it
        latency, lut_id = cost_model_for(store, device_key, "latency_ms", runtime=config.runtime)
    if backbone is not space:   # widths between the LUT grid's are interpolated, as the search prices them
        from hilnas.searchers.spaces.mobilenet.grid import GridLatencyCost
        latency = GridLatencyCost(latency.lut)
    _check_lut(latency, space, device_key, config)
    net = None
    if trained_dir is None and config.checkpoint:   # a bad checkpoint is refused before anything runs
        net = _load_checkpoint(config, space, device_key)
    return recorded(store, "prune", plain_config(config, backbone), lambda run_id: _run(
        store, device_key, clients, config, space, loaders, latency, lut_id, net, run_id, say, started, trained_dir,
        early_notes))


def _chain_setting(config: PruneRunConfig, loaders: Any, say: Callable[[str], None]
                   ) -> tuple[PruneRunConfig, list[str]]:
    """``config`` with ``chain_batches`` decided when it was left to the run (None): the benchmarked
    ``DEFAULT_CHAIN_BATCHES`` where the validation split holds them besides the ``eval_batches`` held out, else 0
    (said in a note: a run on little data still runs); the ResNets' band search is the chain's only user."""
    from hilnas.searchers.prune.band import DEFAULT_CHAIN_BATCHES, default_chain

    if config.chain_batches is not None:
        return config, []
    if not config.budgets or config.band <= 0 or config.model == "mobilenet":
        return dataclasses.replace(config, chain_batches=0), []
    have = len(loaders.val) if loaders.val is not None else 0
    if chain := default_chain(have, config.search.eval_batches):
        return dataclasses.replace(config, chain_batches=chain), []
    note = (f"no chain of single-group drops among the band's candidates: the validation split has {have} batch(es), "
            f"{config.search.eval_batches} held out to rank them, and the chain needs {DEFAULT_CHAIN_BATCHES} more "
            f"(more training data or a larger --val-fraction turns it on)")
    say(note)
    return dataclasses.replace(config, chain_batches=0), [note]


def _check_held_out(config: PruneRunConfig, loaders: Any) -> None:
    """The band search's extra candidates (``chain_batches``, ``tune_steps``) use batches of the gates' split other than
    the ``eval_batches`` held out to rank them: too few is refused here, before anything trains, not after the search."""
    from hilnas.searchers.prune.band import extra_batches
    need = extra_batches(config.tune_steps, config.chain_batches)
    if not need or not config.budgets:
        return
    have = len(loaders.val) if loaders.val is not None else 0
    left = have - config.search.eval_batches
    if left < need:
        flag = f"--chain-batches {config.chain_batches}" if config.chain_batches else f"--tune-steps {config.tune_steps}"
        fix = f"--chain-batches {max(left, 0)}" if config.chain_batches else "--tune-steps 0"
        raise ValueError(f"{flag} needs {need} batch(es) of the validation split besides the {config.search.eval_batches} "
                         f"held out to rank the candidates, but the split has {have} batch(es); give {fix} (0 turns it "
                         f"off), or more training data")


def _prunable(store: Store, device_key: str, clients: Sequence[AgentClient], config: PruneRunConfig) -> tuple[Any, Any]:
    """(loaders, the prunable space): a ResNet space, or the MobileNet backbone with its channel-group gates."""
    gates = {k: v for k, v in config.space_overrides.items() if k in PRUNE_OPTS.get(config.model, ())}
    rest = {k: v for k, v in config.space_overrides.items() if k not in gates}
    loaders, space = prepared(store, device_key, clients, config.dataset, 0.2, config.model, rest)
    if config.model == "mobilenet":
        from hilnas.searchers.prune.mobilenet.space import MobileNetGroups
        space = MobileNetGroups(space, **gates)
    return loaders, space


def _exported(space: Any, pattern: Any) -> tuple[Any, Any]:
    """The space and genotype a pruned network's ONNX metadata carries (a MobileNet's: its widths and masks)."""
    return space.exported(pattern) if hasattr(space, "exported") else (space, pattern)


def _command(config: PruneRunConfig, device_key: str, action: str) -> str:
    opts = "".join(f" --space-opt {k}={','.join(map(str, v)) if isinstance(v, (tuple, list)) else v}"
                   for k, v in dict(config.space_overrides).items()
                   if action != "lut" or k not in PRUNE_OPTS.get(config.model, ()))
    if action == "lut":
        return f"hilnas lut build --device {device_key} --space {config.model} --dataset {config.dataset.name}{opts}"
    return (f"hilnas search prune --device {device_key} --model {config.model} --dataset {config.dataset.name}{opts} "
            f"--pretrain-epochs {config.pretrain_epochs}")


def _check_lut(latency: CostModel, space: ResNetSpace, device_key: str, config: PruneRunConfig) -> None:
    from hilnas.searchers.cost import MissingOpsError
    try:
        latency.check(space)
    except MissingOpsError as err:
        shown = ", ".join(err.keys[:3]) + (f" and {len(err.keys) - 3} more" if len(err.keys) > 3 else "")
        raise ValueError(f"the LUT of device {device_key!r} lacks {len(err.keys)} module key(s) of {config.model}: "
                         f"{shown}; measure them with: {_command(config, device_key, 'lut')}") from None


def _load_checkpoint(config: PruneRunConfig, space: ResNetSpace, device_key: str) -> Any:
    from hilnas.searchers.prune.pretrain import CheckpointError, load_pretrained
    try:
        return load_pretrained(config.checkpoint, space)[0]
    except CheckpointError as err:
        raise CheckpointError(f"{err}; give a checkpoint hilnas saved for this model (models/prune-<run>/"
                              f"pretrained.pt), or pre-train one: {_command(config, device_key, 'pretrain')}") from None


def _config_from_run(store: Store, config: PruneRunConfig) -> tuple[PruneRunConfig, Path]:
    """``config`` with the model, data, search settings and seed of run ``config.from_run``, and its saved folder."""
    from hilnas.searchers.prune.io import config_from_dict, read_meta

    run, trained = saved_run(store, config.from_run, "prune", "pruning hypernetwork")
    meta = read_meta(trained)  # TrainedFileError when the folder was moved or damaged
    old = run.config
    return dataclasses.replace(
        config, model=old["model"], space_overrides=dict(old.get("space_overrides") or {}),
        dataset=dataset_of(old["dataset"]), search=config_from_dict(meta["config"]), seed=int(old.get("seed", 0)),
        checkpoint=meta["checkpoint"]), Path(trained)


def _pretrained(config: PruneRunConfig, space: ResNetSpace, loaders: Any, out_dir: Path, net: Any,
                say: Callable[[str], None]) -> tuple[Any, Path]:
    """The pre-trained network and its checkpoint file: the given one, or trained now and saved."""
    from hilnas.searchers.prune.pretrain import pretrain, save_pretrained
    from hilnas.searchers.train import TrainConfig

    if net is not None:
        return net, Path(config.checkpoint)
    say(f"pre-training {config.model} for {config.pretrain_epochs} epochs (no checkpoint given)")
    net, res = pretrain(space, loaders, TrainConfig(
        epochs=config.pretrain_epochs, lr=config.pretrain_lr, weight_decay=5e-4, seed=config.seed, device="cpu",
        log_every=0, eval_split="none", max_batches_per_epoch=config.max_batches_per_epoch))
    path = save_pretrained(net, out_dir / "pretrained.pt", info={
        "dataset": config.dataset.name, "epochs": config.pretrain_epochs, "seed": config.seed,
        "train_acc": res.history[-1].train_acc})
    say(f"pre-trained in {res.wall_s:.0f} s (train accuracy {res.history[-1].train_acc:.3f}); saved {path}")
    return net, path


def _run(store: Store, device_key: str, clients: Sequence[AgentClient], config: PruneRunConfig,
         space: ResNetSpace, loaders: Any, latency: CostModel, lut_id: LutId | None, net: Any, run_id: int,
         say: Callable[[str], None], started: float, trained_dir: Path | None,
         early_notes: Sequence[str] = ()) -> PruneRunReport:
    from hilnas.searchers.cost import ParamsCost
    from hilnas.searchers.hypernet import count_violations
    from hilnas.searchers.prune.io import load_trained, save_trained
    from hilnas.searchers.prune.search import search
    from hilnas.searchers.train import evaluate
    from hilnas.server.validation import latest_correction

    out_dir = Path(config.out_dir) if config.out_dir else store.path.parent / "models" / f"prune-{run_id}"
    out_dir.mkdir(parents=True, exist_ok=True)
    others = (ParamsCost(),)
    if trained_dir is not None:
        result = load_trained(trained_dir, space, latency, others=others)
        checkpoint = Path(config.checkpoint)
        say(f"loaded the pruning hypernetwork of run {config.from_run} (no training); Lambda = {result.Lambda:.4g}")
    else:
        net, checkpoint = _pretrained(config, space, loaders, out_dir, net, say)
        say(f"pruning: phase 1, the lambda sweep, phase 2 ({config.search.steps} steps)")
        result = search(space, latency, config.search, net=net, data=loaders, seed=config.seed, others=others)
        trained_dir = save_trained(result, out_dir / "trained", checkpoint)
        est = result.estimate
        say(f"trained in {result.wall_s:.1f} s; Lambda = {result.Lambda:.4g} from the {est.source} (Theorem 1: "
            f"{est.theorem.theorem:.4g}{'' if est.theorem.applies else ', does not apply'})")
    pretrained_acc = evaluate(result.net, loaders.test)[1]
    correction = latest_correction(store, lut_id) if (lut_id and config.use_correction) else None
    chosen, failed, notes, curve = family_members(result, config.budgets, config.lambdas,
                                                  config.search.curve_points, correction, say)
    notes = [*early_notes, *notes]
    scorable = not hasattr(result.space, "gated_network")   # the band's held-out scorer runs the ResNet's blocks
    if config.budgets and config.band > 0 and not scorable:
        notes.append(f"{config.model}: members by bisection on lambda only (the band search and the device "
                     "confirmation score ResNet blocks; not built for the MobileNet)")
        say(notes[-1])
    if config.budgets and config.band > 0 and scorable:
        on_device = (config.confirm_tries > 0 and correction is not None and correction.fitted_on
                     and all(b.metric == result.primary == "latency_ms" for _, b in chosen))
        chosen = (_confirmed_on_device(result, chosen, correction, config, loaders, clients, notes, say) if on_device
                  else _within_bands(result, chosen, correction, config, loaders, notes, say))
    pruned = _measure(store, device_key, clients, config, space, loaders, result, chosen, latency, lut_id,
                      correction, run_id, out_dir, say)
    measured = [m.measured_ms for m in pruned if m.measured_ms is not None]
    csv_path, json_path = out_dir / "curve.csv", out_dir / "curve.json"
    _write_csv(csv_path, pruned)
    estimate = result.estimate.to_dict() if result.estimate else None
    json_path.write_text(json.dumps({"Lambda": result.Lambda, "estimate": estimate,
                                     "members": [m.to_dict() for m in pruned], "curve": curve.to_dict()},
                                    indent=2, default=str) + "\n")
    plot = _plot_tradeoff(out_dir / "tradeoff.png", pruned, result, curve, pretrained_acc, notes)
    sweep_plot = _plot_sweep(out_dir / "sweep.png", result, notes) if result.estimate else None
    return PruneRunReport(
        run_id=run_id, Lambda=result.Lambda, estimate=estimate, pretrained_acc=pretrained_acc, members=tuple(pruned),
        points=len(chosen), failed_budgets=tuple(failed), curve=curve.to_dict(), search=result.to_dict(),
        monotone_violations_predicted=curve.raw_violations, monotone_violations_measured=count_violations(measured),
        csv_path=str(csv_path), json_path=str(json_path), plot_path=str(plot) if plot else None,
        sweep_plot_path=str(sweep_plot) if sweep_plot else None, checkpoint=str(checkpoint),
        trained_dir=str(trained_dir), notes=tuple(notes), wall_s=time.perf_counter() - started,
        from_run=config.from_run)


def _band_search(result: PruneResult, config: PruneRunConfig, loaders: Any) -> Any:
    """The band search both member choices use: candidates ranked on the ``eval_batches`` held out of the validation
    split, tuned logits and chains (``tune_steps``, ``chain_batches``) on the rest of it."""
    from hilnas.searchers.prune.band import BandSearch
    return BandSearch.on_held_out(result, loaders.val, config.search.eval_batches, seed=config.seed,
                                  tune=config.tune_steps, chain=config.chain_batches)


def _within_bands(result: PruneResult, chosen: list[tuple[Architecture, Budget]], correction: Any,
                  config: PruneRunConfig, loaders: Any, notes: list[str], say: Callable[[str], None]
                  ) -> list[tuple[Architecture, Budget]]:
    """Each budget's member within [band x b, b] among the hypernetwork's own patterns (``prune.band``), the
    band's ends mapped to LUT sums like the budget; where none lands there the bisection member stays, said so."""
    from hilnas.searchers.prune.band import band_members

    bands = [(b.scaled(lut_value(b.metric, b.value, correction)), lut_value(b.metric, config.band * b.value, correction))
             for _, b in chosen]
    device = {id(search_b): b for (search_b, _), (_, b) in zip(bands, chosen)}
    out = []
    for c in band_members(_band_search(result, config, loaders), bands):
        b = device[id(c.budget)]
        if c.source in ("mode", "sample"):
            notes.append(f"{b}: a member within [{config.band:g} x budget, budget] from the hypernetwork's {c.source} "
                         f"at lambda {c.member.tradeoff.scale:.4g} (bisection fell in a gap of the family; {c.in_band} of "
                         f"{c.candidates} patterns near it were in the band, the least held-out loss taken)")
        elif c.source in ("below", "previous"):
            notes.append(f"{b}: no pattern the hypernetwork produces near it costs within [{config.band:g} x budget, "
                         f"budget]; the cheaper member at {c.member.costs[c.budget.metric]:.4g} is used")
        if c.source != "curve":
            say(notes[-1])
        out.append((c.member, b))
    return out


def device_band(config: PruneRunConfig) -> DeviceBandConfig:
    """How a run confirms members on the device: the inner band is the middle 60 % of [band x b, b] ([0.92, 0.98] x b
    at band 0.9), narrowed by the spread of a fresh window (``confirm_spreads`` of the run's spreads inside
    [band x b, b]); ``confirm_tries`` candidates tried, as many recentred."""
    from hilnas.searchers.prune.confirm import DeviceBandConfig

    margin = 0.2 * (1 - config.band)
    return DeviceBandConfig(inner=(config.band + margin, 1 - margin),
                            near=(max(config.band - 0.05, config.band / 2), 1.05), tries=config.confirm_tries,
                            recentre=config.confirm_tries, fallback=(config.band, 1 - margin / 2),
                            target=(config.band, 1.0), k=config.confirm_spreads)


def _confirmed_on_device(result: PruneResult, chosen: list[tuple[Architecture, Budget]], correction: Any,
                         config: PruneRunConfig, loaders: Any, clients: Sequence[AgentClient], notes: list[str],
                         say: Callable[[str], None]) -> list[tuple[Architecture, Budget]]:
    """Each latency budget's member confirmed on the device (``prune.confirm``, ``device_band``); the loop's windows
    are noted, the member is measured afresh afterwards (``_measure``)."""
    from hilnas.searchers.prune.confirm import device_members
    from hilnas.server.search.common import export_with_metadata, measured_ms

    def window(pattern: Any) -> float | None:
        onnx_bytes = export_with_metadata(result.net.prune(pattern).eval(), *_exported(result.space, pattern))
        bench = clients[0].benchmark(onnx_bytes, config=config.measure, backend=config.backend)
        return measured_ms(bench)

    device = device_band(config)
    search = _band_search(result, config, loaders)
    out = []
    for c in device_members(search, [b for _, b in chosen], correction, window,
                            device, lut_floor=config.band):
        tried = "; ".join(f"{'+'.join(f'{v:.4g}' for v in w.windows if v is not None)} ms" for w in c.loop)
        if c.source in ("device", "recentred"):
            again = (" after the prediction was corrected by the first windows" if c.source == "recentred" else "")
            notes.append(f"{c.budget}: member confirmed on the device within [{device.inner[0]:.3g}, {device.inner[1]:.3g}]"
                         f" x budget, its windows' mean within [{c.accepted[0]:.3g}, {c.accepted[1]:.3g}] (a window's "
                         f"spread {100 * c.spread:.2g} %) at lambda {c.member.tradeoff.scale:.4g}{again} (loop windows: {tried}; "
                         f"{c.candidates} candidates near the band, the least held-out loss first)")
        elif c.source == "loop":
            notes.append(f"{c.budget}: no candidate confirmed on the device (loop windows: {tried}); the least held-out "
                         f"loss one the loop measured within [{device.fallback[0]:.3g}, {device.fallback[1]:.3g}] x "
                         f"budget (none there: the one measured within [{device.target[0]:.3g}, 1] x budget nearest "
                         f"its middle, the LUT's member measured over) is used, at lambda {c.member.tradeoff.scale:.4g}")
        else:
            notes.append(f"{c.budget}: no candidate confirmed on the device (loop windows: {tried or 'none measured'}); "
                         f"the LUT's band member at {c.member.costs['latency_ms']:.4g} ms (LUT sum) is used")
        say(notes[-1])
        out.append((c.member, c.budget))
    return out


def _measure(store: Store, device_key: str, clients: Sequence[AgentClient], config: PruneRunConfig,
             space: ResNetSpace, loaders: Any, result: PruneResult, chosen: Sequence[tuple[Architecture, Budget | None]],
             latency: CostModel, lut_id: LutId | None, correction: Any, run_id: int, out_dir: Path,
             say: Callable[[str], None]) -> list[PrunedMember]:
    """Export, measure and record each distinct pattern once, lambda ascending."""
    from hilnas.searchers.prune.finetune import FinetuneConfig, finetune
    from hilnas.searchers.train import evaluate
    from hilnas.server.client import sha256_hex
    from hilnas.server.search.common import export_with_metadata, measured_ms

    by_pattern: dict[Any, list[tuple[Architecture, Budget | None]]] = {}
    for arch, budget in sorted(chosen, key=lambda ab: ab[0].tradeoff.scale):
        by_pattern.setdefault(arch.genotype, []).append((arch, budget))
    members = []
    for i, (pattern, uses) in enumerate(by_pattern.items()):
        arch = uses[0][0]
        name = f"run{run_id}-prune-{i}"
        pruned = result.network(pattern, loaders.train)   # BatchNorm statistics re-estimated for the pruned network
        test_acc = evaluate(pruned, loaders.test)[1]
        tuned = None
        if config.finetune_epochs:
            tuned = finetune(pruned, loaders, FinetuneConfig(
                epochs=config.finetune_epochs, lr=config.finetune_lr, seed=config.seed,
                max_batches_per_epoch=config.max_batches_per_epoch)).final_acc
        meta_space, genotype = _exported(space, pattern)
        onnx_bytes = export_with_metadata(pruned, meta_space, genotype)
        path = out_dir / f"{name}.onnx"
        path.write_bytes(onnx_bytes)
        lut_sum = latency.genotype_cost(space, pattern)
        predicted = correction.apply(lut_sum) if correction is not None else lut_sum
        model_id = store.add_model(name, genotype.to_dict(), run_id=run_id, onnx_sha256=sha256_hex(onnx_bytes),
                                   path=path, device_key=device_key, lut_id=lut_id, predicted_latency_ms=predicted)
        say(f"measuring {name} (lambda {arch.tradeoff.scale:.4g}, {sum(pattern.kept_blocks)}/{len(pattern.masks)} "
            f"blocks, predicted {predicted:.4g} ms)")
        bench = clients[0].benchmark(onnx_bytes, config=config.measure, backend=config.backend)
        lat = measured_ms(bench)
        store.add_validation(model_id, device_key, fingerprint=bench.device_fingerprint or "unknown",
                             status=bench.status.name.lower(), predicted_ms=predicted, measured_ms=lat,
                             stats={"latency": bench.latency, "simulated": bench.simulated, "backend": bench.backend,
                                    "lut_sum_ms": lut_sum, "error": bench.error, "test_acc": test_acc,
                                    "finetuned_acc": tuned})
        budgets = tuple(b for _, b in uses if b is not None)
        within = None
        if budgets:
            values = [{"latency_ms": lat}.get(b.metric, arch.costs.get(b.metric)) for b in budgets]
            within = None if None in values else all(v <= b.value for v, b in zip(values, budgets))
        members.append(PrunedMember(name, arch.tradeoff.scale, pattern, dict(arch.costs), predicted, lat,
                                    bench.status.name.lower(), test_acc, tuned, budgets, within, model_id, str(path)))
    return members


# -- outputs ----------------------------------------------------------------------------------------
def _write_csv(path: Path, members: Sequence[PrunedMember]) -> None:
    metrics = sorted({k for m in members for k in m.costs})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "lambda", "kept_blocks", *metrics, "predicted_ms", "measured_ms", "test_acc",
                    "finetuned_acc", "budgets", "within_budget", "status", "pattern"])
        for m in members:
            w.writerow([m.name, m.lam, sum(m.pattern.kept_blocks), *[m.costs.get(k) for k in metrics], m.predicted_ms,
                        m.measured_ms, m.test_acc, m.finetuned_acc, " ".join(map(str, m.budgets)), m.within_budget,
                        m.status, m.pattern.bits()])


def _pyplot(notes: list[str]) -> Any:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        notes.append("no plots: matplotlib is not installed (pip install 'hilnas[search]')")
        return None
    return plt


def _plot_tradeoff(path: Path, members: Sequence[PrunedMember], result: PruneResult, curve: Any,
                   pretrained_acc: float, notes: list[str]) -> Path | None:
    """Latency along lambda (the LUT's prediction for the family, the members measured) and accuracy vs latency."""
    plt = _pyplot(notes)
    if plt is None:
        return None
    metric = curve.metric
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [p.tradeoff.scale for p in curve.points]
    ax1.step(xs, [p.costs[metric] for p in curve.points], where="post", label=f"family ({metric}, LUT sum)")
    ax1.plot(xs, [p.costs[metric] for p in curve.raw], ".", color="grey", label="as derived (before isotonic)")
    pts = [(m.lam, m.measured_ms) for m in members if m.measured_ms is not None]
    if pts and metric == "latency_ms":
        ax1.plot(*zip(*pts), "o", color="C3", label="measured on the device")
    ax1.set_xlabel(f"lambda (nats per whole gateable cost; Lambda = {result.Lambda:.3g})")
    ax1.set_ylabel(f"{metric} ({result.models[metric].unit})")
    ax1.set_title("cost along the trade-off")
    ax1.legend(fontsize=7)
    acc = sorted((m.measured_ms, m.test_acc, m.finetuned_acc) for m in members if m.measured_ms is not None)
    if acc:
        ax2.plot([a[0] for a in acc], [a[1] for a in acc], "o-", label="pruned (pre-trained weights)")
        if any(a[2] is not None for a in acc):
            ax2.plot([a[0] for a in acc if a[2] is not None], [a[2] for a in acc if a[2] is not None], "s--",
                     label="pruned and fine-tuned")
    ax2.axhline(pretrained_acc, color="k", lw=0.5, ls=":", label="unpruned")
    ax2.set_xlabel("measured latency (ms)")
    ax2.set_ylabel("test accuracy")
    ax2.set_title("accuracy vs measured latency")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_sweep(path: Path, result: PruneResult, notes: list[str]) -> Path | None:
    """Seed 004's first experiment: accuracy (and cost) against lambda, with Lambda from the sweep and Theorem 1."""
    plt = _pyplot(notes)
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    draw_sweep(ax, result.estimate)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def draw_sweep(ax: Any, est: Any) -> None:
    """The lambda sweep on ``ax`` (matplotlib axes): held-out accuracy against lambda with the unpruned and
    every-block-dropped levels, Lambda from the sweep and (where it applies) Theorem 1, and on a twin axis the
    kept share of the gateable cost. ``est`` is a ``PruneResult.estimate``."""
    lams = [p.lam for p in est.points]
    ax.plot(lams, [p.accuracy for p in est.points], "o-", label="accuracy (held-out val)")
    ax.axhline(est.full_accuracy, color="k", lw=0.5, ls=":", label="unpruned")
    ax.axhline(est.floor_accuracy, color="grey", lw=0.5, ls="--", label="every block dropped")
    ax.axvline(est.sweep_Lambda, color="C3", label=f"Lambda from the sweep = {est.sweep_Lambda:.3g}")
    if est.theorem.applies:
        ax.axvline(est.theorem.Lambda, color="C2", ls="--", label=f"Lambda from Theorem 1 = {est.theorem.Lambda:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("lambda (nats per whole gateable cost)")
    ax.set_ylabel("accuracy")
    twin = ax.twinx()
    twin.plot(lams, [p.fraction for p in est.points], "s:", color="C1", label="cost (share of T^T 1)")
    twin.set_ylabel("kept share of the gateable cost", color="C1")
    title = "lambda sweep" + ("" if est.theorem.applies else
                              f" (Theorem 1 does not apply: bound {est.theorem.theorem:.3g})")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")


__all__ = ["MODELS", "PruneRunConfig", "PruneRunReport", "PrunedMember", "run_prune"]
