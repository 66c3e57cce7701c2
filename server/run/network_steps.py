"""The two steps every found network goes through, whichever method found it: ``train`` and ``validate``.

``train``: the genotype a method's step produced (its result's ``genotype``) is built, trained on
the run's data with the one training loop (checkpointed every epoch, so a killed training
resumes at its last epoch), exported to ONNX with the hilnas metadata, checked against torch,
and written atomically into the run's folder.

``validate``: the ONNX model is measured on the device and predicted from the device's LUT
(``server.validation``), checked against the budget it was searched for (met = the upper end of
the 95 % CI within the budget), and recorded in the store under the run. The step's result is
the found network as the report shows it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from hilnas.server.progress import train_reporter
from hilnas.server.run.context import DeviceState, RunContext


def genotype_of(result: dict[str, Any]):
    from hilnas.searchers.genotype import genotype_from_json

    return genotype_from_json(json.dumps(result["genotype"]))


def genotype_text(genotype: Any) -> str:
    """A one-line form for tables: NB201's arch string, or DARTS' two cells."""
    if hasattr(genotype, "arch_str"):
        return genotype.arch_str
    d = genotype.to_dict()
    cells = [f"{name}: " + " ".join(f"{op}<-{src}" for op, src in d[name]) for name in ("normal", "reduce") if name in d]
    return " | ".join(cells) or json.dumps(d)


def write_model(ctx: RunContext, name: str, data: bytes) -> Path:
    """The ONNX model written atomically into the run's ``models`` folder (a kill never leaves half a file)."""
    path = ctx.path("models", f"{name}.onnx")
    tmp = path.with_suffix(".onnx.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def member_or_end(result: Any, b: Any, budget: str, *, top: str = "most accurate member",
                  bottom: str = "cheapest member") -> tuple[Any, list[str]]:
    """A trained family's member for budget ``b`` (written ``budget``), and notes. Outside the family's
    range: above it, lambda = 0 (``top``, within budget); below it, the cheapest member (``bottom``),
    which validation then flags if the device measures it over the budget."""
    from hilnas.searchers.hypernet import BudgetRangeError

    try:
        return result.for_budget(b), []
    except BudgetRangeError as err:
        lo, hi = err.range
        above = b.value >= hi
        arch = result.architecture(0.0) if above else min(
            result.curve(result.grid(result.config.curve_points), metric=b.metric).points,
            key=lambda a: a.costs[b.metric])
        return arch, [f"{budget} ({b.value:.4g}) is {'above' if above else 'below'} the family's range "
                      f"[{lo:.4g}, {hi:.4g}] {result.models[b.metric].unit}: took its "
                      f"{top + ' (lambda = 0)' if above else bottom}"]


def train_step(ctx: RunContext, device: DeviceState, *, source: str, name: str, seed: int, label: str) -> dict[str, Any]:
    import torch

    from hilnas.searchers.cost import FlopsCost, ParamsCost
    from hilnas.searchers.model import build_network
    from hilnas.searchers.train import TrainConfig, reporting_to, train
    from hilnas.server.client import sha256_hex
    from hilnas.server.search.common import export_with_metadata

    cfg, space = ctx.config, ctx.space
    genotype = genotype_of(ctx.result(source))
    _, loaders = ctx.loaders(val_fraction=0.0, seed=seed)
    torch.manual_seed(seed)
    net = build_network(space, genotype)
    checkpoint = ctx.path("checkpoints", f"{name}.pt")
    train_cfg = TrainConfig(epochs=cfg.train_epochs, lr=cfg.lr, seed=seed, device="cpu", log_every=0,
                            max_batches_per_epoch=cfg.max_batches, checkpoint_path=str(checkpoint), resume=True)
    with ctx.progress.task(label, unit="step") as task, reporting_to(train_reporter(task)):
        trained = train(net, loaders, train_cfg)
        task.close(f"test accuracy {100 * trained.final_acc:.1f}%")
    data = export_with_metadata(net.eval(), space, genotype)
    path = write_model(ctx, name, data)
    checkpoint.unlink(missing_ok=True)
    return {"onnx_path": str(path), "sha256": sha256_hex(data), "test_acc": trained.final_acc,
            "params_m": ParamsCost().genotype_cost(space, genotype), "mflops": FlopsCost().genotype_cost(space, genotype),
            "epochs": cfg.train_epochs, "train_wall_s": trained.wall_s,
            "resumed_from_epoch": trained.resumed_from_epoch}


def validate_step(ctx: RunContext, device: DeviceState, *, method: str, seed: int, budget: str, source: str,
                  trained: str, name: str) -> dict[str, Any]:
    from hilnas.server.validation import validate_model_bytes

    found, train_result = ctx.result(source), ctx.result(trained)
    b = ctx.budget(device.key, budget)
    data = Path(train_result["onnx_path"]).read_bytes()
    measure = dataclasses.replace(ctx.config.measure, energy=ctx.config.energy or b.metric == "energy_mj")
    ctx.progress.say(f"  measuring {name} on {device.key} ...")
    report = validate_model_bytes(ctx.store, device.key, device.clients, data, name=name, measure=measure,
                                  budgets=[b], lut_id=ctx.lut_id(device.key), run_id=ctx.run_id)
    if report.measured_ms is None:
        raise RuntimeError(f"{device.key} could not measure {name}: {report.status}: {report.error}")
    check = report.checks[0]
    genotype = genotype_of(found)
    return {
        "device": device.key, "method": method, "seed": seed, "budget": budget, "budget_metric": b.metric,
        "budget_value": b.value, "genotype": found["genotype"], "genotype_text": genotype_text(genotype),
        "search_cost": found.get("cost"), "test_acc": train_result["test_acc"], "params_m": train_result["params_m"],
        "mflops": train_result["mflops"], "predicted_ms": report.predicted_ms, "lut_sum_ms": report.lut_sum_ms,
        "measured_ms": report.measured_ms, "ci95_ms": list(report.measured_ci95_ms or ()),
        "predicted_energy_mj": report.predicted_energy_mj, "measured_energy_mj": report.measured_energy_mj,
        "energy_ci95_mj": list(report.energy_ci95_mj or ()), "status": report.status,
        "met": check.met, "bound": check.upper, "measured_for_budget": check.measured,
        "conditions": report.conditions, "simulated": report.simulated, "onnx_path": train_result["onnx_path"],
        "model_id": report.model_id, "validation_id": report.validation_id,
        "notes": list(found.get("notes", ())) + ([report.note] if report.note else []),
        "error_pct": report.error_pct if report.error_pct is None or math.isfinite(report.error_pct) else None}
