"""Glue for ``hilnas search splitting``: a device's grid LUT -> split costs -> growth -> every checkpoint
exported, measured on the device and stored.

``run_splitting(store, device_key, clients, config)``:

1. loads the dataset and builds the MobileNet space to fit it;
2. builds the cost models: the budget's metric (latency / energy from the device's LUT of the
   backbone's width grid, interpolated between grid widths; or exact FLOPs / parameters), the
   LUT latency when the LUT has it, FLOPs and parameters. A LUT missing grid keys is refused,
   naming the keys and the ``hilnas lut build`` command that measures them. Energy is measured
   wherever the device has a meter (and predicted from the LUT when it was built with
   ``--energy``); an energy budget on a device without a meter is refused, naming its meters,
   unless ``energy_estimate_w`` asks for the stated estimate ``energy = W x latency``;
3. measures the seed network (Splitting-0's widths) on the device and refuses a budget below it;
4. grows (``searchers.splitting.grow``), or trains the baselines (``width`` multipliers,
   ``random`` splitting of equal cost). Each checkpoint is exported to ONNX with its widths as
   hilnas metadata, measured on the device and recorded as a model and a validation of the run;
5. writes the curve as CSV, JSON and a PNG plot (accuracy vs measured latency) and the run's
   result. ``resume_run`` continues run N from the last checkpoint in its folder (recorded in
   run N's config when it started, so a killed run is found), as a new run whose parent is N,
   with run N's settings. A failure marks the run failed and re-raises.
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
from hilnas.searchers.cost import METRICS, CostModel
from hilnas.searchers.result import Budget, InfeasibleBudgetError
from hilnas.server.search.common import measured_mj, measured_ms, recorded, torch_threads
from hilnas.server.store import Store

if TYPE_CHECKING:
    from hilnas.searchers.data import DatasetConfig
    from hilnas.searchers.splitting import Checkpoint, GrowConfig, GrowthResult
    from hilnas.searchers.spaces.mobilenet import MobileNetSpace
    from hilnas.server.client import AgentClient
    from hilnas.server.store import LutId

log = logging.getLogger("hilnas.search")

METHODS = ("splitting", "width", "random")
KIND = "splitting"  # the run kind in the store (``hilnas runs --kind splitting``), whatever the method


def _default_dataset() -> DatasetConfig:
    from hilnas.searchers.data import DatasetConfig
    return DatasetConfig(name="demo", batch_size=64)


def _default_grow() -> GrowConfig:
    from hilnas.searchers.splitting import GrowConfig
    return GrowConfig()


@dataclass(frozen=True)
class SplittingRunConfig:
    """One splitting run (or baseline) on a device."""
    budget: Budget                                   # the device budget the growth stops at
    method: str = "splitting"                        # "splitting" | "width" (multipliers) | "random" (equal cost)
    space_overrides: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"base_widths": (32, 64, 128)}
    dataset: DatasetConfig = field(default_factory=_default_dataset)
    grow: GrowConfig = field(default_factory=_default_grow)
    multipliers: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)  # method "width"
    width_epochs: int | None = None                  # method "width"; None = seed_epochs + steps * step_epochs
    energy_estimate_w: float | None = None           # energy = W x latency on a device without a meter (asked for)
    measure: MeasureConfig = MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.2)
    backend: str = ""                                # agent backend; "" = the device's default
    runtime: str | None = None                       # which of the device's LUTs (when it has several)
    out_dir: str | None = None                       # ONNX, checkpoints, curve; None = <workspace>/models/splitting-<time>
    resume_run: int | None = None                    # continue run N from its last checkpoint (run N's settings)
    threads: int | None = None                       # torch threads during the run; None = leave torch's setting

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; use one of {', '.join(METHODS)}")
        if not isinstance(self.budget, Budget):
            raise ValueError(f"budget must be a Budget (Budget.parse('latency_ms=5')), got {self.budget!r}")
        if not self.multipliers or any(not m > 0 for m in self.multipliers):
            raise ValueError(f"width multipliers must be > 0, got {self.multipliers}")
        if self.energy_estimate_w is not None and not self.energy_estimate_w > 0:
            raise ValueError(f"--energy-estimate-w must be a power > 0 W, got {self.energy_estimate_w}")
        if self.width_epochs is not None and self.width_epochs < 1:
            raise ValueError("width_epochs must be >= 1")

    @property
    def width_training_epochs(self) -> int:
        g = self.grow
        return self.width_epochs or g.seed_epochs + g.steps * g.step_epochs


@dataclass(frozen=True)
class SplittingRunReport:
    """What a run produced (also the run's stored result)."""
    run_id: int
    method: str
    budget: Budget
    checkpoints: tuple[dict[str, Any], ...]          # Checkpoint.to_dict() plus model_id and onnx_path
    stop_reason: str
    checkpoint_dir: str
    csv_path: str
    json_path: str
    plot_path: str | None
    notes: tuple[str, ...]
    wall_s: float
    resumed_run: int | None = None                   # the run whose checkpoints this one continued

    def to_dict(self) -> dict[str, Any]:
        best = max((c["test_acc"] for c in self.checkpoints), default=math.nan)
        return {"method": self.method, "budget": str(self.budget), "checkpoints_n": len(self.checkpoints),
                "best_acc": best, "resumed_run": self.resumed_run, "run_id": self.run_id,
                "stop_reason": self.stop_reason, "checkpoints": list(self.checkpoints),
                "checkpoint_dir": self.checkpoint_dir, "csv_path": self.csv_path, "json_path": self.json_path,
                "plot_path": self.plot_path, "notes": list(self.notes), "wall_s": self.wall_s}


class EstimatedEnergyCost(CostModel):
    """Energy per inference estimated as a stated power times the LUT latency (W x ms = mJ).

    Only for a device without an energy meter, and only when the user asks (``--energy-estimate-w``):
    it says nothing the latency does not, it only expresses the budget in mJ.
    """
    name, metric, unit = "energy (estimated)", "energy_mj", METRICS["energy_mj"]

    def __init__(self, latency: CostModel, watts: float):
        self.latency, self.watts = latency, float(watts)

    def key_cost(self, key) -> float:
        return self.watts * self.latency.key_cost(key)

    def check(self, space) -> None:
        self.latency.check(space)

    def genotype_cost(self, space, genotype) -> float:
        return self.watts * self.latency.genotype_cost(space, genotype)


def lut_command(device_key: str, config: SplittingRunConfig, space: MobileNetSpace, energy: bool = False) -> str:
    """The ``hilnas lut build`` command that measures this run's grid keys on the device."""
    cmd = f"hilnas lut build --device {device_key} --space mobilenet"
    opts = dict(config.space_overrides)
    if config.dataset.name in ("demo", "fashion-mnist", "cifar10"):
        cmd += f" --dataset {config.dataset.name}"
    else:  # the LUT builder knows no shape for this data: say it field by field
        opts = {"in_channels": space.in_channels, "input_size": space.input_size, "num_classes": space.num_classes,
                **opts}
    for k, v in opts.items():
        cmd += f" --space-opt {k}={','.join(map(str, v)) if isinstance(v, (tuple, list)) else v}"
    return cmd + (" --energy" if energy else "")


# -- the run ----------------------------------------------------------------------------------------
def run_splitting(store: Store, device_key: str, clients: Sequence[AgentClient], config: SplittingRunConfig, *,
                  progress: Callable[[str], None] | None = None) -> SplittingRunReport:
    """Grow (or train the baselines), export, measure and record every checkpoint; see the module docstring."""
    from hilnas.searchers.data import loaders_for
    from hilnas.searchers.spaces import create_space
    from hilnas.searchers.splitting.checkpoint import list_checkpoints

    say = progress or (lambda msg: log.info("%s", msg))
    if not clients:
        raise ValueError(f"device {device_key!r} has no agents to measure on")
    store.get_device(device_key)  # UnknownDeviceError early, with the known keys
    started = time.perf_counter()
    checkpoint_dir = None
    if config.resume_run is not None:
        config, checkpoint_dir = _config_from_run(store, config)
    datasets, loaders = loaders_for(dataclasses.replace(config.dataset, val_fraction=0.0))
    c, h, _ = datasets.input_shape
    space = create_space("mobilenet", in_channels=c, input_size=h, num_classes=datasets.num_classes,
                         **dict(config.space_overrides))
    if checkpoint_dir is not None:
        list_checkpoints(checkpoint_dir, space)  # CheckpointError (damaged, another backbone) before a run is recorded
    energy = energy_mode(clients[0], device_key, config)
    costs, notes = cost_models(store, device_key, config, space, energy)
    if checkpoint_dir is None and config.method != "width":
        check_seed(clients[0], device_key, config, space, costs, energy, say)
    out_dir = Path(config.out_dir) if config.out_dir else \
        store.path.parent / "models" / time.strftime("splitting-%Y%m%d-%H%M%S", time.gmtime())
    checkpoint_dir = Path(checkpoint_dir or out_dir / "checkpoints")
    with torch_threads(config.threads):
        return recorded(store, KIND, {**_plain(config, space), "checkpoint_dir": str(checkpoint_dir)},
                        lambda run_id: grow_and_record(
                            store, device_key, clients[0], config, space, loaders, costs, energy, run_id=run_id,
                            out_dir=out_dir, checkpoint_dir=checkpoint_dir, resume=config.resume_run is not None,
                            notes=notes, started=started, say=say),
                        parent_id=config.resume_run)


def grow_and_record(store: Store, device_key: str, client: AgentClient, config: SplittingRunConfig,
                    space: MobileNetSpace, loaders: Any, costs: Mapping[str, CostModel], energy: EnergyMode, *,
                    run_id: int, out_dir: Path, checkpoint_dir: Path, resume: bool, notes: list[str], started: float,
                    say: Callable[[str], None], name_prefix: str | None = None) -> SplittingRunReport:
    """Steps 4 and 5 for run ``run_id`` (``hilnas search splitting``'s own run, or a ``hilnas run``): grow or
    train the baselines, every checkpoint exported, measured and recorded as ``<name_prefix>-<checkpoint>``
    (default ``run<id>``); ``resume`` continues from the checkpoints in ``checkpoint_dir``."""
    recorded: dict[str, dict[str, Any]] = {}
    measure = _measure_fn(store, device_key, client, config, space, energy, run_id, out_dir, recorded, say,
                          name_prefix or f"run{run_id}")
    result = _grow(space, costs, config, loaders, measure, checkpoint_dir, resume, say)
    return _report(run_id, config, result, recorded, checkpoint_dir, out_dir, notes, started)


def _config_from_run(store: Store, config: SplittingRunConfig) -> tuple[SplittingRunConfig, Path]:
    """Run N's settings and checkpoint folder, for a resume."""
    from hilnas.searchers.data import DatasetConfig
    from hilnas.searchers.splitting import GrowConfig, IndexConfig

    run = store.get_run(config.resume_run)
    folder = (run.config or {}).get("checkpoint_dir")
    if run.kind != KIND or not folder:
        raise ValueError(f"run {run.id} is a {run.kind!r} run without splitting checkpoints; give the id of a "
                         "`hilnas search splitting` run (`hilnas runs --kind splitting` lists them)")
    if not Path(folder).is_dir():
        raise ValueError(f"run {run.id}'s checkpoint folder {folder} does not exist (moved or deleted); nothing "
                         "to resume")
    old = run.config
    data = dict(old["dataset"])
    if data.get("synthetic_shape") is not None:
        data["synthetic_shape"] = tuple(data["synthetic_shape"])
    g = dict(old["grow"])
    g["index"] = IndexConfig(**g["index"])
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in (old.get("space_overrides") or {}).items()}
    return dataclasses.replace(
        config, budget=Budget.parse(old["budget_text"]), method=old["method"], space_overrides=overrides,
        dataset=DatasetConfig(**data), grow=GrowConfig(**g), multipliers=tuple(old["multipliers"]),
        width_epochs=old.get("width_epochs"), energy_estimate_w=old.get("energy_estimate_w")), Path(folder)


@dataclass(frozen=True)
class EnergyMode:
    """How a run gets energy: measured by the device's meter, a stated estimate, or not at all."""
    meter: bool                      # the device has a usable meter: every checkpoint's energy is measured
    estimate_w: float | None = None  # no meter, energy budget, asked for: energy = W x latency


def energy_mode(client: AgentClient, device_key: str, config: SplittingRunConfig) -> EnergyMode:
    """Measure energy wherever the device has a meter; an energy budget without one is refused unless the
    user asked for the stated estimate."""
    info = client.describe()
    if any(m.available and m.kind != "none" for m in info.energy_meters):
        return EnergyMode(meter=True)
    if config.budget.metric != "energy_mj":
        return EnergyMode(meter=False)
    if config.energy_estimate_w is None:
        meters = "; ".join(f"{m.name} ({'available' if m.available else 'unavailable'}"
                           f"{': ' + m.note[:100] if m.note else ''})" for m in info.energy_meters) or "none"
        raise ValueError(f"device {device_key!r} has no energy meter (meters: {meters}), so an energy budget cannot "
                         f"be measured there: use a device with a meter and build its LUT with `hilnas lut build "
                         f"--device {device_key} --space mobilenet --energy`, or ask for the estimate energy = W x "
                         f"latency with --energy-estimate-w W")
    return EnergyMode(meter=False, estimate_w=config.energy_estimate_w)


def cost_models(store: Store, device_key: str, config: SplittingRunConfig, space: MobileNetSpace,
                energy: EnergyMode, *, lut_id: LutId | None = None) -> tuple[dict[str, CostModel], list[str]]:
    """The run's cost models by metric; the budget's metric must be there (refusals: see the module docstring).
    The grid LUT is ``lut_id`` when given (a ``hilnas run`` built it), else the device's (``config.runtime``)."""
    from hilnas.searchers.cost import FlopsCost, MissingOpsError, ParamsCost
    from hilnas.searchers.spaces.mobilenet.grid import GridEnergyCost, GridLatencyCost
    from hilnas.server.search.common import load_lut
    from hilnas.server.validation import lut_values

    def lut(metric: str) -> dict[str, float]:
        if lut_id is not None:
            return lut_values(store, lut_id, metric)
        return load_lut(store, device_key, metric, runtime=config.runtime)[0]

    metric = config.budget.metric
    costs: dict[str, CostModel] = {"mflops": FlopsCost(), "params_m": ParamsCost()}
    notes: list[str] = []
    estimate = energy.estimate_w
    needs_latency = metric == "latency_ms" or estimate is not None
    build = lut_command(device_key, config, space)
    try:
        latency = GridLatencyCost(lut("latency_ms"))
        latency.check(space)
        costs["latency_ms"] = latency
    except MissingOpsError as err:
        if needs_latency:
            raise _missing(err, device_key, space, build) from None
        notes.append(f"no LUT latency prediction: {len(err.keys)} grid key(s) missing (`{build}`)")
    except Exception as err:  # noqa: BLE001 - no LUT (a StoreError): a params / FLOPs budget goes on without it
        if needs_latency:
            raise ValueError(f"{err}; measure the grid with `{build}`") from None
        notes.append(f"no LUT latency prediction: {err}")
    if estimate is not None:
        costs["energy_mj"] = EstimatedEnergyCost(costs["latency_ms"], estimate)
        notes.append(f"energy is ESTIMATED as {estimate:g} W x latency (the device has no energy meter)")
    elif energy.meter:  # the LUT's energy, when it was built with --energy (required for an energy budget)
        build_energy = lut_command(device_key, config, space, energy=True)
        try:
            model = GridEnergyCost(lut("energy_mj"))
            model.check(space)
            costs["energy_mj"] = model
        except MissingOpsError as err:
            if metric == "energy_mj":
                raise _missing(err, device_key, space, build_energy, "energy ") from None
            notes.append(f"no LUT energy prediction: {len(err.keys)} grid key(s) without energy (`{build_energy}`)")
        except Exception as err:  # noqa: BLE001 - no LUT, or a LUT without energy: one line with the fix
            if metric == "energy_mj":
                raise ValueError(f"{err}; measure the grid with energy: `{build_energy}`") from None
            notes.append(f"no LUT energy prediction ({err})")
    return costs, notes


def _missing(err: Exception, device_key: str, space: MobileNetSpace, command: str, what: str = "") -> Exception:
    """The LUT's missing grid keys as one line: which keys, for which input shape, and the command."""
    from hilnas.searchers.cost import MissingOpsError

    keys = err.keys
    shown = ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
    out = MissingOpsError(keys)
    out.args = (f"the {what}LUT of device {device_key!r} has no rows for {len(keys)} grid key(s) of this backbone at "
                f"input {space.in_channels}x{space.input_size}x{space.input_size} ({shown}); measure them with "
                f"`{command}`",)
    return out


def _bench(client: AgentClient, config: SplittingRunConfig, onnx_bytes: bytes, energy: EnergyMode):
    """Measure one network: (result, latency ms or None, energy mJ or None)."""
    mc = dataclasses.replace(config.measure, energy=True) if energy.meter else config.measure
    bench = client.benchmark(onnx_bytes, config=mc, backend=config.backend)
    lat = measured_ms(bench)
    if energy.estimate_w is not None:
        mj = None if lat is None else energy.estimate_w * lat
    else:
        mj = measured_mj(bench)
    return bench, lat, mj


def check_seed(client: AgentClient, device_key: str, config: SplittingRunConfig, space: MobileNetSpace,
                costs: Mapping[str, CostModel], energy: EnergyMode, say: Callable[[str], None]) -> None:
    """Refuse a budget below the seed network's cost on the device (measured untrained: the weights do not
    change what it costs)."""
    from hilnas.searchers.splitting.grow import seed_widths
    from hilnas.server.model_meta import export_network

    metric, seed = config.budget.metric, seed_widths(space, config.grow)
    if metric in ("params_m", "mflops"):
        cost = costs[metric].genotype_cost(space, seed)
    else:
        bench, lat, mj = _bench(client, config, export_network(space, seed, seed=config.grow.seed), energy)
        cost = lat if metric == "latency_ms" else mj
        if cost is None:
            raise RuntimeError(f"measuring the seed network on {device_key!r} failed: {bench.status.name}: "
                               f"{bench.error or 'no energy reading'}")
    say(f"seed network {list(seed.widths)} (x{config.grow.seed_multiplier:g}) costs {cost:.4g} {config.budget.unit} "
        f"on {device_key}; budget {config.budget}")
    if cost > config.budget.value:
        raise InfeasibleBudgetError(
            f"the budget {config.budget} is below the seed network's measured cost on {device_key!r}: "
            f"{cost:.4g} {config.budget.unit} (widths {list(seed.widths)}, multiplier {config.grow.seed_multiplier:g}); "
            "raise --budget or lower --seed-multiplier", cheapest_cost=cost, cheapest_genotype=seed)


def _measure_fn(store: Store, device_key: str, client: AgentClient, config: SplittingRunConfig, space: MobileNetSpace,
                energy: EnergyMode, run_id: int, out_dir: Path, recorded: dict[str, dict[str, Any]],
                say: Callable[[str], None], name_prefix: str) -> Callable[[Checkpoint, Any], dict[str, float | None]]:
    """checkpoint, net -> measured {latency_ms, energy_mj}: export with metadata, record model and validation."""
    from hilnas.server.client import sha256_hex
    from hilnas.server.search.common import export_with_metadata

    def measure(ck: Checkpoint, net: Any) -> dict[str, float | None]:
        onnx_bytes = export_with_metadata(net.eval(), space, ck.widths)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{ck.folder_name}.onnx"
        path.write_bytes(onnx_bytes)
        pred_ms, pred_mj = ck.predicted.get("latency_ms"), ck.predicted.get("energy_mj")
        model_id = store.add_model(f"{name_prefix}-{ck.name}", ck.widths.to_dict(), run_id=run_id,
                                   onnx_sha256=sha256_hex(onnx_bytes), path=path, device_key=device_key,
                                   predicted_latency_ms=pred_ms, predicted_energy_mj=pred_mj)
        bench, lat, mj = _bench(client, config, onnx_bytes, energy)
        store.add_validation(model_id, device_key, fingerprint=bench.device_fingerprint or "unknown",
                             status=bench.status.name.lower(), predicted_ms=pred_ms, measured_ms=lat,
                             predicted_energy_mj=pred_mj, measured_energy_mj=mj,
                             stats={"latency": bench.latency, "simulated": bench.simulated, "backend": bench.backend,
                                    "energy_estimated_w": energy.estimate_w, "error": bench.error,
                                    "checkpoint": ck.name})
        if lat is None:
            say(f"{ck.name}: the device could not measure it: {bench.status.name}: {bench.error}")
        recorded[ck.name] = {"model_id": model_id, "onnx_path": str(path), "status": bench.status.name.lower()}
        return {"latency_ms": lat, "energy_mj": mj}
    return measure


def _grow(space: MobileNetSpace, costs: Mapping[str, CostModel], config: SplittingRunConfig, loaders: Any,
          measure: Any, checkpoint_dir: Path, resume: bool, say: Callable[[str], None]) -> GrowthResult:
    from hilnas.searchers.splitting import grow_by_splitting, width_multipliers

    if config.method == "width":
        return width_multipliers(space, costs, config.budget, config.multipliers, config.width_training_epochs,
                                 config.grow, loaders, measure=measure, checkpoint_dir=checkpoint_dir, resume=resume,
                                 progress=say)
    grow_config = dataclasses.replace(config.grow, selection="random" if config.method == "random" else "index")
    return grow_by_splitting(space, costs, config.budget, grow_config, loaders, measure=measure, checkpoint_dir=checkpoint_dir,
                resume=resume, progress=say)


def _report(run_id: int, config: SplittingRunConfig, result: GrowthResult, recorded: Mapping[str, dict[str, Any]],
            checkpoint_dir: Path, out_dir: Path, notes: list[str], started: float) -> SplittingRunReport:
    def earlier(ck: Checkpoint) -> dict[str, Any]:  # measured by an earlier process (a resume): its ONNX if here
        path = out_dir / f"{ck.folder_name}.onnx"
        return {"model_id": None, "onnx_path": str(path) if path.is_file() else None, "status": "earlier run"}

    rows = [{**ck.to_dict(), **(recorded.get(ck.name) or earlier(ck))} for ck in result.checkpoints]
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "curve.csv", out_dir / "curve.json"
    write_curve_csv(csv_path, rows)
    notes = notes + list(result.notes)
    json_path.write_text(json.dumps({"method": result.method, "budget": str(config.budget),
                                     "stop_reason": result.stop_reason, "checkpoints": rows}, indent=2, default=str)
                         + "\n")
    x = "energy_mj" if config.budget.metric == "energy_mj" else "latency_ms"
    plot = plot_curves(out_dir / "curve.png", {result.method: rows}, config.budget, notes, x=x)
    return SplittingRunReport(run_id=run_id, method=result.method, budget=config.budget, checkpoints=tuple(rows),
                              stop_reason=result.stop_reason, checkpoint_dir=str(checkpoint_dir),
                              csv_path=str(csv_path), json_path=str(json_path),
                              plot_path=str(plot) if plot else None, notes=tuple(notes),
                              wall_s=time.perf_counter() - started, resumed_run=config.resume_run)


# -- outputs ----------------------------------------------------------------------------------------
def write_curve_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    metrics = sorted({k for r in rows for k in r["predicted"]})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "step", "widths", "test_acc", "epochs", *[f"predicted_{m}" for m in metrics],
                    "measured_latency_ms", "measured_energy_mj", "splits", "model_id", "onnx_path"])
        for r in rows:
            w.writerow([r["name"], r["step"], " ".join(map(str, r["widths"])), r["test_acc"], r["epochs"],
                        *[r["predicted"].get(m) for m in metrics], r["measured"].get("latency_ms"),
                        r["measured"].get("energy_mj"), json.dumps(r["splits"]), r["model_id"], r["onnx_path"]])


def plot_curves(path: Path, curves: Mapping[str, Sequence[Mapping[str, Any]]], budget: Budget | None,
                notes: list[str], *, x: str = "latency_ms", title: str = "") -> Path | None:
    """Test accuracy against the measured ``x`` (latency_ms | energy_mj), one line per named curve; None
    (with a note) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        notes.append("no plot: matplotlib is not installed (pip install 'hilnas[search]')")
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, rows in curves.items():
        pts = sorted((r["measured"].get(x), 100 * r["test_acc"], r["name"]) for r in rows
                     if r["measured"].get(x) is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
            for px, py, n in pts:
                ax.annotate(n.split("-", 1)[-1], (px, py), fontsize=6, xytext=(2, 2), textcoords="offset points")
    if budget is not None and budget.metric == x:
        ax.axvline(budget.value, color="k", lw=0.6, ls=":", label=f"budget {budget}")
    ax.set_xlabel(f"measured {'latency (ms)' if x == 'latency_ms' else 'energy (mJ)'} on the device")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "accuracy vs measured cost")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plain(config: SplittingRunConfig, space: MobileNetSpace) -> dict[str, Any]:
    from hilnas.server.search.common import space_metadata
    d = dataclasses.asdict(config)
    d["budget_text"] = str(config.budget)
    d["space_config"] = space_metadata(space)
    return json.loads(json.dumps(d, default=str))


__all__ = ["KIND", "METHODS", "EnergyMode", "EstimatedEnergyCost", "SplittingRunConfig", "SplittingRunReport",
           "check_seed", "cost_models", "energy_mode", "grow_and_record", "lut_command", "plot_curves", "run_splitting",
           "write_curve_csv"]
