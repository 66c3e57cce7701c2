"""The steps of ``prune`` (seed 004) in a ``hilnas run``: one pre-training and one pruning hypernetwork per
device and seed, then for each budget the member, its network and its validation.

``pretrain``: the whole network of the run's ResNet space trained on the run's training split
(``PruneMethodConfig.epochs``, the run's search epochs; checkpointed every epoch, so a killed
pre-training resumes), saved as a checked hilnas checkpoint.

``hypernetwork``: Algorithm 1 on the device's LUT (``searchers.prune.search``: phase 1, the lambda
sweep and Theorem 1, phase 2) with the gates trained on the validation split; the hypernetwork is
saved beside the run, so every budget's member comes from this one training.

``derive`` (per budget): the member for the budget by bisection on lambda; where that falls below
``band`` x budget (a gap of the family), the least held-out-loss pattern the hypernetwork produces
near it within [band, 1] x budget (``searchers.prune.band``; the LUT's budget, as the run resolved
it). Outside the family's range: above it, lambda = 0 (the unpruned network, within budget); below
it, the cheapest member, which validation then flags if the device measures it over the budget.

``export`` (per budget, in place of the other methods' ``train``): the pruned network with the
pre-trained weights (BatchNorm statistics re-estimated on training batches), fine-tuned for
``finetune_epochs`` if asked, exported to ONNX with its gate pattern in the metadata. The shared
``validate`` step (``network_steps``) measures and checks it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hilnas.server.progress import train_reporter
from hilnas.server.run.context import DeviceState, RunContext
from hilnas.server.run.network_steps import member_or_end

VAL_FRACTION = 0.2   # the share of the training images the gates are trained on (the rest pre-trains)


@dataclass(frozen=True)
class PruneMethodConfig:
    """What a run file's ``[prune]`` table may set (the run's ``search_epochs`` and ``max_batches`` set
    ``epochs`` and ``max_batches_per_epoch``)."""
    epochs: int = 2                      # pre-training epochs of the unpruned network
    max_batches_per_epoch: int | None = None
    pretrain_lr: float = 0.05
    granularity: str = "groups"          # gates on "blocks", or on blocks and their channel "groups"
    steps: int = 600                     # phase-2 steps of the hypernetwork
    sweep_points: int = 6                # lambdas of the sweep that measures Lambda (PruneConfig's) ...
    sweep_steps: int = 20                # ... each with this many gate steps
    Lambda: str = "sweep"                # "sweep" | "theorem" | a positive number (as text)
    finetune_epochs: int = 0             # brief fine-tuning of each member before export; 0 = none
    finetune_lr: float = 0.01
    band: float = 0.9                    # a member below band x budget is sought within [band, 1] x it (0: bisection)

    def search(self) -> Any:
        from hilnas.searchers.prune.search import PruneConfig
        lam: float | str = self.Lambda if self.Lambda in ("sweep", "theorem") else float(self.Lambda)
        return PruneConfig(granularity=self.granularity, steps=self.steps, Lambda=lam, sweep_points=self.sweep_points,
                           sweep_steps=self.sweep_steps)


def _models(ctx: RunContext, device: DeviceState) -> tuple[Any, tuple[Any, ...]]:
    from hilnas.searchers.cost import ParamsCost
    return ctx.cost_model(device.key, "latency_ms"), (ParamsCost(),)


def pretrain_step(ctx: RunContext, device: DeviceState, *, config: PruneMethodConfig, seed: int, folder: str,
                  label: str) -> dict[str, Any]:
    from hilnas.searchers.prune.pretrain import pretrain, save_pretrained
    from hilnas.searchers.train import TrainConfig, reporting_to

    _, loaders = ctx.loaders(val_fraction=VAL_FRACTION, seed=seed)
    resume = ctx.path(folder, "pretrain-checkpoint.pt")
    train_cfg = TrainConfig(epochs=config.epochs, lr=config.pretrain_lr, weight_decay=5e-4, seed=seed, device="cpu",
                            log_every=0, eval_split="none", max_batches_per_epoch=config.max_batches_per_epoch,
                            checkpoint_path=str(resume), resume=True)
    with ctx.progress.task(label, unit="step") as task, reporting_to(train_reporter(task)):
        net, res = pretrain(ctx.space, loaders, train_cfg)
        task.close(f"train accuracy {100 * res.history[-1].train_acc:.1f}%")
    path = save_pretrained(net, ctx.path(folder, "pretrained.pt"), info={
        "dataset": ctx.config.dataset, "epochs": config.epochs, "seed": seed, "train_acc": res.history[-1].train_acc})
    resume.unlink(missing_ok=True)
    return {"checkpoint": str(path), "epochs": config.epochs, "train_acc": res.history[-1].train_acc,
            "wall_s": res.wall_s}


def hypernetwork_step(ctx: RunContext, device: DeviceState, *, config: PruneMethodConfig, seed: int, source: str,
                      folder: str, label: str) -> dict[str, Any]:
    from hilnas.searchers.prune.io import save_trained
    from hilnas.searchers.prune.pretrain import load_pretrained
    from hilnas.searchers.prune.search import search

    checkpoint = ctx.result(source)["checkpoint"]
    space = ctx.space
    net, _ = load_pretrained(checkpoint, space)   # weights_only, checked against the space
    latency, others = _models(ctx, device)
    _, loaders = ctx.loaders(val_fraction=VAL_FRACTION, seed=seed)
    with ctx.progress.task(label, unit="phase") as task:
        result = search(space, latency, config.search(), net=net, data=loaders, seed=seed, others=others)
        task.close(f"Lambda {result.Lambda:.3g}")
    folder_path = save_trained(result, ctx.path(folder, "trained"), checkpoint)
    curve = result.curve()
    est = result.estimate
    return {"trained_dir": str(folder_path), "Lambda": result.Lambda, "estimate": est.to_dict() if est else None,
            "pretrained_acc": result.pretrained_accuracy, "raw_violations": curve.raw_violations,
            "curve": [{"scale": p.tradeoff.scale, **p.costs, "genotype_text": p.genotype.arch_str}
                      for p in curve.points],
            "distinct": len({p.genotype for p in curve.raw}), "wall_s": result.wall_s}


def derive_step(ctx: RunContext, device: DeviceState, *, source: str, budget: str,
                config: PruneMethodConfig = PruneMethodConfig()) -> dict[str, Any]:
    from hilnas.searchers.prune.band import BandSearch, default_chain
    from hilnas.searchers.prune.io import load_trained

    latency, others = _models(ctx, device)
    result = load_trained(ctx.result(source)["trained_dir"], ctx.space, latency, others=others)
    b = ctx.budget(device.key, budget)
    if b.metric not in result.models:
        raise ValueError(f"the pruning hypernetwork prices {', '.join(result.models)}, not {b.metric} (budget "
                         f"{budget}); prune for a latency or parameter budget")
    arch, notes = member_or_end(result, b, budget, top="unpruned member", bottom="most pruned member")
    if config.band > 0 and not notes and arch.costs[b.metric] < config.band * b.value:
        _, loaders = ctx.loaders(val_fraction=VAL_FRACTION, seed=result.seed)
        held_out = result.config.eval_batches   # the chain as `hilnas search prune` takes it by default
        search = BandSearch.on_held_out(result, loaders.val, held_out, seed=result.seed,
                                        chain=default_chain(len(loaders.val), held_out))
        c = search.member(b, config.band * b.value)
        if c.in_band_found:
            arch = c.member
            notes.append(f"{budget}: bisection fell below {config.band:g} x budget (a gap of the family); the "
                         f"hypernetwork's {c.source} at lambda {arch.tradeoff.scale:.4g} is within it ({c.in_band} of "
                         f"{c.candidates} patterns near it were, the least held-out loss taken)")
        else:
            notes.append(f"{budget}: bisection fell below {config.band:g} x budget and no pattern the hypernetwork "
                         f"produces near it is within [{config.band:g}, 1] x budget; the bisection member is kept")
    return {"genotype": arch.genotype.to_dict(), "cost": arch.costs[b.metric], "scale": arch.tradeoff.scale,
            "notes": notes}


def export_step(ctx: RunContext, device: DeviceState, *, config: PruneMethodConfig, trained: str, source: str,
                name: str, seed: int, label: str) -> dict[str, Any]:
    """The pruned network of the ``derive`` step ``source``: re-calibrated, fine-tuned if asked, exported."""
    import time

    from hilnas.searchers.cost import FlopsCost, ParamsCost
    from hilnas.searchers.prune.io import load_trained
    from hilnas.searchers.prune.finetune import FinetuneConfig, finetune
    from hilnas.searchers.train import evaluate, reporting_to
    from hilnas.server.client import sha256_hex
    from hilnas.server.run.network_steps import genotype_of, write_model
    from hilnas.server.search.common import export_with_metadata

    space = ctx.space
    latency, others = _models(ctx, device)
    result = load_trained(ctx.result(trained)["trained_dir"], space, latency, others=others)
    pattern = genotype_of(ctx.result(source))
    _, loaders = ctx.loaders(val_fraction=VAL_FRACTION, seed=seed)
    started = time.perf_counter()
    net = result.network(pattern, loaders.train)
    acc = evaluate(net, loaders.test)[1]
    tuned = None
    if config.finetune_epochs:
        with ctx.progress.task(label, unit="step") as task, reporting_to(train_reporter(task)):
            tuned = finetune(net, loaders, FinetuneConfig(epochs=config.finetune_epochs, lr=config.finetune_lr,
                                                          seed=seed,
                                                          max_batches_per_epoch=config.max_batches_per_epoch)).final_acc
            task.close(f"test accuracy {100 * tuned:.1f}%")
    data = export_with_metadata(net.eval(), space, pattern)
    path = write_model(ctx, name, data)
    return {"onnx_path": str(path), "sha256": sha256_hex(data), "test_acc": tuned if tuned is not None else acc,
            "pruned_acc": acc, "finetuned_acc": tuned, "params_m": ParamsCost().genotype_cost(space, pattern),
            "mflops": FlopsCost().genotype_cost(space, pattern), "epochs": config.finetune_epochs,
            "train_wall_s": time.perf_counter() - started, "resumed_from_epoch": 0}
