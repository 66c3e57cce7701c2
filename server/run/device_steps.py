"""A device's own steps, before any search: its LUT, then its budgets resolved against the LUT.

``lut``: every op instance the space can place, measured on the device (``LutBuilder``: only
missing or failed rows are measured, each row committed as it arrives, so a killed build resumes
where it stopped). Energy is measured too when a budget of the device bounds energy.

``budgets``: each budget in the device's unit (a relative budget placed between the cheapest and
the dearest network of the space by this LUT), and whether any network of the space can meet it:
one that none can is reported with the cheapest cost, and no search is spent on it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from hilnas.server.progress import lut_reporter
from hilnas.server.run.context import DeviceState, RunContext


def lut_step(ctx: RunContext, device: DeviceState) -> dict[str, Any]:
    from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
    from hilnas.server.lut.micromodels import MicroModels

    space = ctx.space
    energy = "energy_mj" in ctx.config.budget_metrics(device.spec)
    config = LutBuildConfig(measure=dataclasses.replace(ctx.config.lut_measure, energy=energy), retry_failed=True)
    micro = MicroModels(ctx.workspace / "micromodels")
    keys = MicroModels.keys_for_space(space)
    with ctx.progress.task(f"{device.key} · LUT ({len(keys)} op instances)", unit="op") as task:
        report = LutBuilder(ctx.store, device.key, device.clients, config).build(keys, micro.onnx,
                                                                               progress=lut_reporter(task))
        task.close(f"{report.measured} measured, {report.already_present} already in the store")
    if report.failed:
        shown = "; ".join(f"{k}: {v}" for k, v in list(report.failed.items())[:3])
        raise RuntimeError(f"{len(report.failed)} op instance(s) could not be measured on {device.key}: {shown}")
    return {"lut_id": report.lut_id.as_dict(), "requested": report.requested, "measured": report.measured,
            "already_present": report.already_present, "energy": energy, "wall_s": report.wall_s}


def budgets_step(ctx: RunContext, device: DeviceState) -> dict[str, Any]:
    from hilnas.searchers.cost import extremes
    from hilnas.searchers.prune.cost import pattern_extremes
    from hilnas.searchers.spaces.resnet import ResNetSpace

    space, out = ctx.space, {}
    span = pattern_extremes if isinstance(space, ResNetSpace) else extremes  # gate patterns, not cells
    for spec in device.spec.budgets:
        entry: dict[str, Any] = {"metric": spec.metric, "written": spec.text}
        try:
            model = ctx.cost_model(device.key, spec.metric)
        except ValueError as err:  # e.g. an energy budget on a device without a meter
            out[spec.text] = {**entry, "feasible": False, "error": f"{spec.text} on {device.key}: {err}"}
            continue
        ex = span(space, model)
        value = spec.resolve(ex.cheapest_cost, ex.dearest_cost)
        feasible = value >= ex.cheapest_cost * (1 - 1e-9)
        entry.update(value=value, unit=model.unit, cheapest=ex.cheapest_cost, dearest=ex.dearest_cost,
                     feasible=feasible, error="")
        if not feasible:
            entry["error"] = (f"no network of the {space.name} space meets {spec.text} on {device.key}: the cheapest "
                              f"costs {ex.cheapest_cost:.4g} {model.unit} by its LUT; raise the budget to at least "
                              f"{ex.cheapest_cost:.4g} {model.unit} (or use a relative budget such as "
                              f"{spec.metric}=20%), or shrink the space")
        out[spec.text] = entry
    return {"budgets": out}
