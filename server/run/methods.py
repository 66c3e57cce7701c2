"""The search methods ``hilnas run`` and ``hilnas demo`` know, one entry each in ``METHODS``.

An entry says what the method searches (its spaces), which options a run file may give it (the
fields of its config class, as ``[name]`` tables), and which steps it takes for one device and
seed (``chains``): usually one chain per budget, ending in the shared ``train`` and ``validate``
steps (``network_steps``). A step whose key carries no budget is shared by the chains of all
budgets and runs once (the hypernetwork's one training, DARTS' budget-free search).

- ``dca`` (seed 001) and its baselines ``darts``, ``penalty``, ``random``: one search per budget
  (``searchers.dca``), the found genotype trained and validated;
- ``hypernet`` (seeds 002, 004): one training per device and seed, then a member derived for each
  budget from the trained family (``searchers.hypernet``);
- ``prune`` (seed 004 as written, ResNet spaces): one pre-training and one pruning hypernetwork per
  device and seed, then for each budget the member, its pruned network exported with the pre-trained
  weights (no training from scratch) and validated (``run.prune_steps``);
- ``splitting`` (seed 003): the MobileNet backbone grown by splitting neurons under each budget,
  every checkpoint measured on the device, the last within budget validated (``run.splitting``).

Adding a method is one ``MethodSpec`` here: its search step(s) return ``{"genotype": ..., "cost":
..., "notes": [...]}`` and ``network_steps`` does the rest.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hilnas.server.progress import train_reporter
from hilnas.server.run.context import Chain, DeviceState, RunContext, Step
from hilnas.server.run.network_steps import genotype_text, member_or_end, train_step, validate_step
from hilnas.server.run import splitting as _splitting

_PROXY_BATCHES = 5  # validation batches of each curve point's supernet accuracy (a proxy, kept cheap)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    summary: str
    spaces: tuple[str, ...]
    chains: Callable[[RunContext, DeviceState, int], list[Chain]]
    config_class: Callable[[], type]       # the method's config dataclass (imported when asked: torch)
    baseline: bool = False
    fixed: tuple[str, ...] = ("budget", "epochs", "max_batches_per_epoch")  # set from [search], not [name]

    def options(self) -> dict[str, tuple[Any, str]]:
        """Fields a run file's ``[name]`` table may set: name -> (default, annotation)."""
        out = {}
        for f in dataclasses.fields(self.config_class()):
            if f.name in self.fixed or f.name.startswith("_"):
                continue
            default = f.default if f.default is not dataclasses.MISSING else None
            if isinstance(default, (bool, int, float, str)):
                out[f.name] = (default, str(f.type))
        return out

    def config(self, ctx: RunContext, **fixed: Any) -> Any:
        """The method's config: the run's epochs and batch cap, the run file's options, ``fixed``."""
        kw = {"epochs": ctx.config.search_epochs, "max_batches_per_epoch": ctx.config.max_batches,
              **dict(ctx.config.method_options.get(self.name, {})), **fixed}  # code may set epochs (the demo does)
        return self.config_class()(**kw)


# -- the steps a method adds ----------------------------------------------------------------------------
def step_label(ctx: RunContext, device: DeviceState, method: str, seed: int, budget: str | None, what: str) -> str:
    parts = [device.key, method] + ([budget] if budget else []) + ([f"seed {seed}"] if len(ctx.config.seeds) > 1 else [])
    return " · ".join(parts + [what])


def _network_steps(ctx: RunContext, device: DeviceState, method: str, seed: int, budget: str, source: str,
                   base: str) -> tuple[Step, Step]:
    """``train`` and ``validate`` for the genotype step ``source`` produced, keyed under ``base``."""
    name = f"run{ctx.run_id}/{base}"
    full = name + ("" if base.endswith(budget) else f"/{budget}")  # the validated model's name in the store
    train = Step(f"{base}/train", step_label(ctx, device, method, seed, budget, "train"),
                 functools.partial(train_step, ctx, device, source=source, name=name.replace("/", "-"), seed=seed,
                                   label=step_label(ctx, device, method, seed, budget, "train")))
    key = f"{base}/validate" + ("" if base.endswith(budget) else f"/{budget}")  # a budget-free base: one per budget
    validate = Step(key, step_label(ctx, device, method, seed, budget, "validate"),
                    functools.partial(validate_step, ctx, device, method=method, seed=seed, budget=budget,
                                      source=source, trained=train.key, name=full))
    return train, validate


def _search_step(ctx: RunContext, device: DeviceState, *, method: str, budget: str, seed: int,
                 label: str) -> dict[str, Any]:
    """One search of DCA-NAS or a baseline (``searchers.dca``) under the device budget (which only labels
    the result of a budget-free baseline)."""
    from hilnas.searchers.dca.baselines import methods
    from hilnas.searchers.train import reporting_to

    search = methods()[method][0]
    b = ctx.budget(device.key, budget)
    model = ctx.cost_model(device.key, b.metric)
    config = METHODS[method].config(ctx, budget=b)
    _, loaders = ctx.loaders(val_fraction=0.5, seed=seed)
    with ctx.progress.task(label, unit="step") as task, reporting_to(train_reporter(task, unit=model.unit)):
        result = search(ctx.space, model, config, seed=seed, data=loaders)
        task.close(f"{model.name} {result.cost:.4g} {model.unit}")
    return {"genotype": result.genotype.to_dict(), "cost": result.cost, "metric": result.metric,
            "notes": list(result.notes), "search": result.to_dict()}


def _dca_chains(method: str, *, budget_free: bool = False) -> Callable[[RunContext, DeviceState, int], list[Chain]]:
    def chains(ctx: RunContext, device: DeviceState, seed: int) -> list[Chain]:
        out = []
        for b in device.spec.budgets:
            budget = None if budget_free else b.text
            base = "/".join([device.key, method, f"seed{seed}"] + ([budget] if budget else []))
            search = Step(f"{base}/search", step_label(ctx, device, method, seed, budget, "search"),
                          functools.partial(_search_step, ctx, device, method=method, budget=b.text, seed=seed,
                                            label=step_label(ctx, device, method, seed, budget, "search")))
            out.append(Chain(device.key, method, seed, b.text,
                             (search, *_network_steps(ctx, device, method, seed, b.text, search.key, base))))
        return out
    return chains


def _hypernet_models(ctx: RunContext, device: DeviceState):
    """(latency, energy or None): the device's LUT as the hypernetwork's cost models."""
    latency = ctx.cost_model(device.key, "latency_ms")
    energy = ctx.cost_model(device.key, "energy_mj") if ctx.result(f"{device.key}/lut")["energy"] else None
    return latency, energy


def _hypernet_train(ctx: RunContext, device: DeviceState, *, seed: int, label: str) -> dict[str, Any]:
    """One hypernetwork training for the device: the whole family, saved, and its curve for the report."""
    from hilnas.searchers.hypernet import search
    from hilnas.searchers.hypernet.io import save_trained
    from hilnas.searchers.train import reporting_to

    latency, energy = _hypernet_models(ctx, device)
    config = METHODS["hypernet"].config(ctx)
    _, loaders = ctx.loaders(val_fraction=0.5, seed=seed)
    with ctx.progress.task(label, unit="step") as task, reporting_to(train_reporter(task, unit=latency.unit)):
        result = search(ctx.space, latency, config, seed=seed, data=loaders, energy=energy)
        task.close(f"Lambda {result.Lambda:.3g}")
    folder = save_trained(result, ctx.path(f"hypernet-{device.key}-seed{seed}"))
    curve = result.curve(result.grid(config.grid_points))
    points = [{"scale": p.tradeoff.scale, **{m: v for m, v in p.costs.items()},
               "supernet_acc": result.accuracy(p.tradeoff, loaders.val, max_batches=_PROXY_BATCHES),
               "genotype_text": genotype_text(p.genotype)} for p in curve.points]
    return {"trained_dir": str(folder), "Lambda": result.Lambda, "curve": points,
            "raw_violations": curve.raw_violations, "val_acc": result.val_acc, "wall_s": result.wall_s}


def _hypernet_derive(ctx: RunContext, device: DeviceState, *, source: str, budget: str) -> dict[str, Any]:
    """The family's least-penalised member within the budget (by the LUT). Outside the family's range:
    above it, lambda = 0 (the most accurate member, within budget); below it, the cheapest member,
    which validation then flags if the device measures it over the budget."""
    from hilnas.searchers.hypernet.io import load_trained

    latency, energy = _hypernet_models(ctx, device)
    result = load_trained(ctx.result(source)["trained_dir"], ctx.space, latency, energy=energy)
    b = ctx.budget(device.key, budget)
    if b.metric not in result.models:
        raise ValueError(f"the hypernetwork prices {', '.join(result.models)}, not {b.metric} (budget {budget}); "
                         f"search this budget with dca instead")
    arch, notes = member_or_end(result, b, budget)
    return {"genotype": arch.genotype.to_dict(), "cost": arch.costs[b.metric], "scale": arch.tradeoff.scale,
            "notes": notes}


def _hypernet_chains(ctx: RunContext, device: DeviceState, seed: int) -> list[Chain]:
    base = f"{device.key}/hypernet/seed{seed}"
    label = step_label(ctx, device, "hypernet", seed, None, "train the hypernetwork")
    trained = Step(f"{base}/hypernetwork", label, functools.partial(_hypernet_train, ctx, device, seed=seed, label=label))
    out = []
    for b in device.spec.budgets:
        derive = Step(f"{base}/{b.text}/derive", step_label(ctx, device, "hypernet", seed, b.text, "derive"),
                      functools.partial(_hypernet_derive, ctx, device, source=trained.key, budget=b.text))
        out.append(Chain(device.key, "hypernet", seed, b.text,
                         (trained, derive, *_network_steps(ctx, device, "hypernet", seed, b.text, derive.key,
                                                           f"{base}/{b.text}"))))
    return out


def _prune_chains(ctx: RunContext, device: DeviceState, seed: int) -> list[Chain]:
    from hilnas.server.run import prune_steps as ps

    config = METHODS["prune"].config(ctx)
    base = f"{device.key}/prune/seed{seed}"
    folder = f"prune-{device.key}-seed{seed}"
    label = step_label(ctx, device, "prune", seed, None, "pre-train")
    pre = Step(f"{base}/pretrain", label, functools.partial(ps.pretrain_step, ctx, device, config=config, seed=seed,
                                                            folder=folder, label=label))
    label = step_label(ctx, device, "prune", seed, None, "pruning hypernetwork")
    trained = Step(f"{base}/hypernetwork", label, functools.partial(
        ps.hypernetwork_step, ctx, device, config=config, seed=seed, source=pre.key, folder=folder, label=label))
    out = []
    for b in device.spec.budgets:
        key = f"{base}/{b.text}"
        derive = Step(f"{key}/derive", step_label(ctx, device, "prune", seed, b.text, "derive"),
                      functools.partial(ps.derive_step, ctx, device, source=trained.key, budget=b.text,
                                        config=config))
        label = step_label(ctx, device, "prune", seed, b.text, "export")
        export = Step(f"{key}/export", label, functools.partial(
            ps.export_step, ctx, device, config=config, trained=trained.key, source=derive.key,
            name=f"run{ctx.run_id}/{key}".replace("/", "-"), seed=seed, label=label))
        validate = Step(f"{key}/validate", step_label(ctx, device, "prune", seed, b.text, "validate"),
                        functools.partial(validate_step, ctx, device, method="prune", seed=seed, budget=b.text,
                                          source=derive.key, trained=export.key, name=f"run{ctx.run_id}/{key}"))
        out.append(Chain(device.key, "prune", seed, b.text, (pre, trained, derive, export, validate)))
    return out


def _prune_config() -> type:
    from hilnas.server.run.prune_steps import PruneMethodConfig
    return PruneMethodConfig


def _dca_config(name: str) -> Callable[[], type]:
    def config_class() -> type:
        from hilnas.searchers.dca.baselines import methods
        return methods()[name][1]
    return config_class


def _hypernet_config() -> type:
    from hilnas.searchers.hypernet import HypernetConfig
    return HypernetConfig


_CELL_SPACES = ("nb201", "darts")
_RESNET_SPACES = ("resnet18-narrow", "resnet18")
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("dca", "DCA-NAS (seed 001): the budget as a constraint with a learned Lagrange multiplier",
               _CELL_SPACES, _dca_chains("dca"), _dca_config("dca")),
    MethodSpec("hypernet", "hypernetwork DARTS-CC (seeds 002, 004): one training, a member per budget",
               _CELL_SPACES, _hypernet_chains, _hypernet_config),
    MethodSpec("prune", "pruning hypernetwork (seed 004): prune a network pre-trained in the run, a member per budget",
               _RESNET_SPACES, _prune_chains, _prune_config, fixed=("epochs", "max_batches_per_epoch")),
    MethodSpec("darts", "baseline: DARTS without a cost term (one search, checked against every budget)",
               _CELL_SPACES, _dca_chains("darts", budget_free=True), _dca_config("darts"), baseline=True),
    MethodSpec("penalty", "baseline: a fixed-weight cost penalty (ProxylessNAS style)",
               _CELL_SPACES, _dca_chains("penalty"), _dca_config("penalty"), baseline=True),
    MethodSpec("random", "baseline: random genotypes within the budget, each trained briefly, the best kept",
               _CELL_SPACES, _dca_chains("random"), _dca_config("random"), baseline=True),
    MethodSpec("splitting", "energy-aware splitting (seed 003): grow a MobileNet by splitting neurons, each step "
               "priced by the device's LUT", ("mobilenet",), _splitting.chains, _splitting.config_class,
               fixed=_splitting.FIXED),
)}

