"""The ``splitting`` method of ``hilnas run`` (seed 003): grow the MobileNet backbone under each budget.

One chain per device, seed and budget: ``grow`` then the shared ``validate``. ``grow`` does what
``hilnas search splitting`` does (``server.search.splitting.grow_and_record``), inside the run:
its cost is the grid LUT the run's ``lut`` step built (interpolated between grid widths), the
budget is the one ``budgets`` resolved, the seed network's measured cost is checked against it,
and every checkpoint Splitting-k is exported, measured on the device (energy where it has a meter)
and recorded as a model of the run. The network ``validate`` checks is the last checkpoint the
device measured within the budget; it was trained by the growth itself (the seed's and each step's
epochs, ``[splitting] seed_epochs`` / ``step_epochs``), so the chain has no ``train`` step.

Resuming: the checkpoints live in the run's folder under a name fixed by the chain, so a ``grow``
killed part-way continues from its last checkpoint when the run is resumed.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from hilnas.server.run.context import Chain, DeviceState, RunContext, Step
from hilnas.server.run.network_steps import validate_step

FIXED = ("seed", "selection", "max_batches_per_epoch")  # from [search] (seeds, max_batches) and the method itself


def config_class() -> type:
    from hilnas.searchers.splitting import GrowConfig
    return GrowConfig


def grow_config(ctx: RunContext, seed: int):
    """``GrowConfig`` from the run file's ``[splitting]`` table, the run's seed and batch cap."""
    from hilnas.searchers.splitting import GrowConfig

    options = dict(ctx.config.method_options.get("splitting", {}))
    return GrowConfig(**options, seed=seed, max_batches_per_epoch=ctx.config.max_batches)


def within_budget(checkpoints: list[dict[str, Any]], metric: str, value: float) -> dict[str, Any] | None:
    """The last checkpoint whose cost on the device (measured latency / energy, exact params / FLOPs) is
    within ``value``; None when none is."""
    def cost(ck: dict[str, Any]) -> float | None:
        return ck["measured"].get(metric) if metric in ("latency_ms", "energy_mj") else ck["predicted"].get(metric)
    fits = [ck for ck in checkpoints if (c := cost(ck)) is not None and c <= value]
    return fits[-1] if fits else None


def grow_step(ctx: RunContext, device: DeviceState, *, seed: int, budget: str, base: str, label: str
              ) -> dict[str, Any]:
    from hilnas.searchers.splitting.checkpoint import list_checkpoints
    from hilnas.server.search.splitting import (SplittingRunConfig, check_seed, cost_models, energy_mode,
                                                grow_and_record)

    b = ctx.budget(device.key, budget)
    config = SplittingRunConfig(budget=b, grow=grow_config(ctx, seed), measure=ctx.config.measure,
                                out_dir=str(ctx.path(base)))
    space = ctx.space
    _, loaders = ctx.loaders(val_fraction=0.0, seed=seed)
    client = device.clients[0]
    energy = energy_mode(client, device.key, config)
    costs, notes = cost_models(ctx.store, device.key, config, space, energy, lut_id=ctx.lut_id(device.key))
    out_dir = Path(config.out_dir)
    checkpoint_dir = out_dir / "checkpoints"
    resume = checkpoint_dir.is_dir() and bool(list_checkpoints(checkpoint_dir, space))
    with ctx.progress.task(label, unit="step") as task:
        say = lambda msg: ctx.progress.say(f"  {label}: {msg}")  # noqa: E731
        if not resume:
            check_seed(client, device.key, config, space, costs, energy, say)
        report = grow_and_record(ctx.store, device.key, client, config, space, loaders, costs, energy,
                                 run_id=ctx.run_id, out_dir=out_dir, checkpoint_dir=checkpoint_dir, resume=resume,
                                 notes=notes, started=time.perf_counter(), say=say,
                                 name_prefix=f"run{ctx.run_id}-{base.replace('/', '-')}")
        task.close(f"{len(report.checkpoints)} checkpoints; {report.stop_reason}")
    rows = list(report.checkpoints)
    final = within_budget(rows, b.metric, b.value)
    if final is None:  # check_seed refuses a seed over the budget, so only device noise gets here
        raise RuntimeError(f"no checkpoint of the growth on {device.key} measured within {budget}: "
                           + "; ".join(f"{ck['name']} {ck['measured']}" for ck in rows))
    widths = final["widths"]
    genotype = {"space": "mobilenet", "widths": list(widths)}
    params = costs["params_m"].genotype_cost(space, _widths(widths))
    mflops = costs["mflops"].genotype_cost(space, _widths(widths))
    return {"genotype": genotype, "cost": final["predicted"].get(b.metric), "checkpoint": final["name"],
            "onnx_path": final["onnx_path"], "test_acc": final["test_acc"], "epochs": final["epochs"],
            "params_m": params, "mflops": mflops, "stop_reason": report.stop_reason,
            "notes": list(report.notes) + [f"{final['name']} of {len(rows)} checkpoints; {report.stop_reason}"],
            "checkpoints": [{k: ck[k] for k in ("name", "widths", "test_acc", "epochs", "predicted", "measured",
                                                "model_id")} for ck in rows],
            "curve_csv": report.csv_path, "plot": report.plot_path}


def _widths(widths: list[int]):
    from hilnas.searchers.spaces.mobilenet import MobileNetWidths
    return MobileNetWidths(tuple(widths))


def chains(ctx: RunContext, device: DeviceState, seed: int) -> list[Chain]:
    from hilnas.server.run.methods import step_label  # methods imports this module

    out = []
    for b in device.spec.budgets:
        base = f"{device.key}/splitting/seed{seed}/{b.text}"
        label = step_label(ctx, device, "splitting", seed, b.text, "grow")
        grow = Step(f"{base}/grow", label,
                    functools.partial(grow_step, ctx, device, seed=seed, budget=b.text, base=base, label=label))
        validate = Step(f"{base}/validate", step_label(ctx, device, "splitting", seed, b.text, "validate"),
                        functools.partial(validate_step, ctx, device, method="splitting", seed=seed, budget=b.text,
                                          source=grow.key, trained=grow.key, name=f"run{ctx.run_id}/{base}"))
        out.append(Chain(device.key, "splitting", seed, b.text, (grow, validate)))
    return out
