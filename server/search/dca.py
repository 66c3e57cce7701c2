"""Glue for ``hilnas search dca``: a device's LUT -> cost model -> search -> train -> ONNX -> device -> store.

``run_dca(store, device_key, clients, config)`` runs one hardware-validated search:

1. loads the dataset (a val split for the bi-level search) and builds the space to fit it;
2. builds the cost model of the budget's metric: latency / energy from the device's LUT in the
   store (``find_lut``, measured rows only: ``median_ms`` -> latency, ``energy_net_mj`` ->
   energy), parameters / FLOPs computed; a LUT missing ops of the space is refused, naming them;
3. with ``with_lug``, builds seed 001's lookup graph (searches at several search-time budgets,
   each derived network measured on the device) and reads the search-time budget off it;
4. searches (``dca``, or a baseline: ``darts``, ``penalty``, ``random``);
5. trains the final network with the shared loop, exports ONNX carrying the space and genotype
   as ``metadata_props`` (``hilnas.space``, ``hilnas.genotype``), checks it against torch;
6. measures it on the device (``clients[0].benchmark``) and records the run, the model and
   the validation in the store. A failure marks the run failed and re-raises.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from hilnas.agent.config import MeasureConfig
from hilnas.searchers.result import Budget
from hilnas.server import model_meta
from hilnas.server.search.common import cost_model_for, export_with_metadata, lut_needed, space_metadata
from hilnas.server.store import LutId, Store

if TYPE_CHECKING:
    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.data import DatasetConfig
    from hilnas.searchers.result import SearchResult
    from hilnas.searchers.spaces import SearchSpace
    from hilnas.server.client import AgentClient

log = logging.getLogger("hilnas.search")

METHODS = ("dca", "darts", "penalty", "random")
META_SPACE, META_GENOTYPE = model_meta.SPACE_KEY, model_meta.GENOTYPE_KEY


def _default_dataset() -> DatasetConfig:
    from hilnas.searchers.data import DatasetConfig
    return DatasetConfig(name="demo", val_fraction=0.5, batch_size=64)


@dataclass(frozen=True)
class DcaRunConfig:
    """One hardware-validated search: what to search, on which data, under which device budget."""
    budget: Budget                                   # the device budget the final network must meet
    space: str = "darts"                             # "darts" | "nb201"
    space_overrides: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"C": 8, "layers": 5}
    dataset: DatasetConfig = field(default_factory=_default_dataset)  # val_fraction 0 -> 0.5 for search
    method: str = "dca"                              # "dca" | "darts" | "penalty" | "random"
    search_epochs: int = 2
    train_epochs: int = 3                            # final training of the derived network
    train_lr: float = 0.05
    seed: int = 0
    search_options: Mapping[str, Any] = field(default_factory=dict)  # fields of the method's config
    with_lug: bool = False                           # map the device budget through a lookup graph
    # LUG search budgets, as positions in [cheapest, dearest] derivable cost of the cost model
    lug_fractions: tuple[float, ...] = (0.05, 0.12, 0.19, 0.26, 0.33)
    lug_target: float = 0.95                         # aim the LUG at this share of the device budget
    lug_rounds: int = 2                              # new searches per device budget at most (refinement)
    lug_axis: str = "predicted"                      # LUG x axis: "predicted" cost or "search_budget" (seed's)
    lug_workers: int = 1                             # LUG searches run in this many threads
    measure: MeasureConfig = MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.2)
    backend: str = ""                                # agent backend; "" = the device's default
    runtime: str | None = None                       # which of the device's LUTs (when it has several)
    out_dir: str | None = None                       # ONNX folder; None = <workspace>/models
    max_batches_per_epoch: int | None = None         # cap for smoke runs (search and final training)
    threads: int | None = None                       # torch threads during the run (1 is fastest on a busy
                                                     # 2-core host); None = leave torch's setting

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown search method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.space not in ("darts", "nb201"):
            raise ValueError(f"unknown search space {self.space!r}; use darts or nb201")
        if self.search_epochs < 1 or self.train_epochs < 1:
            raise ValueError("search_epochs and train_epochs must be >= 1")
        if self.with_lug and not self.lug_fractions:
            raise ValueError("with_lug needs at least one lug_fraction")
        if any(not 0 <= f <= 1 for f in self.lug_fractions):
            raise ValueError(f"lug_fractions are positions in [cheapest, dearest], in [0, 1]; got {self.lug_fractions}")


@dataclass(frozen=True)
class DcaRunReport:
    """What a run produced (also stored as the run's result)."""
    run_id: int
    model_id: int
    validation_id: int | None
    method: str
    genotype: Any
    device_budget: Budget
    search_budget: Budget
    predicted: float                    # cost model's exact cost of the genotype (search metric)
    measured: float | None              # the same metric measured: device latency / energy, or exact params / FLOPs
    within_budget: bool | None          # measured <= device budget
    measured_latency_ms: float | None
    measured_energy_mj: float | None
    test_acc: float
    onnx_path: str
    search: dict[str, Any]              # SearchResult.to_dict()
    lug: dict[str, Any] | None
    notes: tuple[str, ...]
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["genotype"] = self.genotype.to_dict()
        d["device_budget"] = {"metric": self.device_budget.metric, "value": self.device_budget.value}
        d["search_budget"] = {"metric": self.search_budget.metric, "value": self.search_budget.value}
        d["notes"] = list(self.notes)
        return d


# -- pieces -------------------------------------------------------------------------------------
def _measure_fn(client: AgentClient, config: DcaRunConfig, metric: str, space: SearchSpace
                ) -> Callable[[Any], float]:
    """genotype -> its ``metric`` measured on the device (latency / energy), or computed (params / FLOPs)."""
    from hilnas.searchers.export import export_onnx
    from hilnas.searchers.model import build_network

    def measure(genotype: Any) -> float:
        if metric in ("params_m", "mflops"):
            from hilnas.searchers.cost import FlopsCost, ParamsCost
            return (ParamsCost() if metric == "params_m" else FlopsCost()).genotype_cost(space, genotype)
        onnx_bytes = export_onnx(build_network(space, genotype).eval(), space.input_shape)
        mc = dataclasses.replace(config.measure, energy=True) if metric == "energy_mj" else config.measure
        r = client.benchmark(onnx_bytes, config=mc, backend=config.backend)
        if not r.status.measured or r.latency is None:
            raise RuntimeError(f"measuring a network on the device failed: {r.status.name}: {r.error}")
        if metric == "energy_mj":
            if r.energy is None or not math.isfinite(r.energy.net_mj):
                raise RuntimeError(f"the device returned no energy for the network: "
                                   f"{r.energy.note if r.energy else 'no meter'}")
            return r.energy.net_mj
        return r.latency.median_ms
    return measure


def method_config(config: DcaRunConfig, budget: Budget) -> Any:
    """The chosen method's config for one search at ``budget`` (search_options applied)."""
    from hilnas.searchers.dca.baselines import methods
    _, cls = methods()[config.method]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config.search_options) - fields)
    if unknown:
        raise ValueError(f"search option(s) {unknown} do not exist for method {config.method!r}; "
                         f"it has: {', '.join(sorted(fields))}")
    kw: dict[str, Any] = {"budget": budget, "epochs": config.search_epochs,
                          "max_batches_per_epoch": config.max_batches_per_epoch}
    kw.update(config.search_options)
    return cls(**kw)


# -- the run ----------------------------------------------------------------------------------------
def run_dca(store: Store, device_key: str, clients: Sequence[AgentClient], config: DcaRunConfig, *,
            progress: Callable[[str], None] | None = None) -> DcaRunReport:
    """Search, train, export and measure one network under ``config.budget``; see the module docstring."""
    from hilnas.searchers.dca.baselines import methods
    from hilnas.searchers.data import loaders_for
    from hilnas.searchers.spaces import create_space

    say = progress or (lambda msg: log.info("%s", msg))
    if not clients:
        raise ValueError(f"device {device_key!r} has no agents to measure on")
    started = time.perf_counter()
    search_data = dataclasses.replace(config.dataset, val_fraction=config.dataset.val_fraction or 0.5)
    datasets, loaders = loaders_for(search_data)  # DatasetError for a missing or malformed folder
    c, h, _ = datasets.input_shape
    space = create_space(config.space, in_channels=c, input_size=h, num_classes=datasets.num_classes,
                         **dict(config.space_overrides))
    with lut_needed(device_key, space, config.dataset.name, energy=config.budget.metric == "energy_mj"):
        store.get_device(device_key)  # UnknownDeviceError with the known keys, and the command that adds it
        cost_model, lut_id = cost_model_for(store, device_key, config.budget.metric, runtime=config.runtime)
        cost_model.check(space)  # MissingOpsError naming the keys the LUT lacks, and the command
    run_id = store.start_run(f"search-{config.method}", _plain_config(config, space))
    import torch
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        report = _run(store, device_key, clients, config, space, cost_model, lut_id, loaders, run_id, say,
                      methods()[config.method][0], started)
    except BaseException as err:
        store.finish_run(run_id, status="failed", result={"error": f"{type(err).__name__}: {err}"})
        raise
    finally:
        torch.set_num_threads(threads)
    store.finish_run(run_id, status="done", result=report.to_dict())
    return report


def _run(store: Store, device_key: str, clients: Sequence[AgentClient], config: DcaRunConfig, space: SearchSpace,
         cost_model: CostModel, lut_id: LutId | None, loaders: Any, run_id: int, say: Callable[[str], None],
         search_fn: Callable[..., SearchResult], started: float) -> DcaRunReport:
    from hilnas.searchers.cost import extremes
    from hilnas.searchers.data import loaders_for
    from hilnas.searchers.dca.lug import build_lug, search_for_budget
    from hilnas.searchers.result import InfeasibleBudgetError
    from hilnas.searchers.model import build_network
    from hilnas.searchers.train import TrainConfig, train
    from hilnas.server.client import sha256_hex

    metric = config.budget.metric
    measure = _measure_fn(clients[0], config, metric, space)
    notes: list[str] = []
    search_budget, lug_dict, result = config.budget, None, None
    if config.with_lug:
        if metric in ("params_m", "mflops"):
            notes.append(f"{metric} is computed exactly, so the search budget is the device budget (no LUG)")
        else:
            ex = extremes(space, cost_model)
            floor = measure(ex.cheapest)
            if floor > config.budget.value:
                raise InfeasibleBudgetError(
                    f"no architecture of this {space.name} space meets {config.budget} on device {device_key!r}: "
                    f"the cheapest one the search can derive measures {floor:.4g} {cost_model.unit} there",
                    cheapest_cost=floor, cheapest_genotype=ex.cheapest)
            span = ex.dearest_cost - ex.cheapest_cost
            budgets = [ex.cheapest_cost + f * span for f in config.lug_fractions]
            say(f"lookup graph: {len(budgets)} searches at {', '.join(f'{b:.4g}' for b in budgets)} {cost_model.unit}")

            def search_at(b: float) -> SearchResult:  # never below the cheapest derivable cost
                b = max(b, ex.cheapest_cost)
                return search_fn(space, cost_model, method_config(config, config.budget.scaled(b)),
                                 seed=config.seed, data=loaders)
            if config.lug_workers > 1:
                with ThreadPoolExecutor(config.lug_workers) as pool:
                    graph, found = build_lug(search_at, budgets, measure, metric=metric, axis=config.lug_axis,
                                             map_fn=pool.map)
            else:
                graph, found = build_lug(search_at, budgets, measure, metric=metric, axis=config.lug_axis)
            say(f"lookup graph: device budget {config.budget} -> search budget "
                f"{graph.search_budget(config.budget.value, target=config.lug_target):.4g}; refining")
            pick = search_for_budget(graph, search_at, measure, config.budget.value, target=config.lug_target,
                                     rounds=config.lug_rounds, known=found)
            search_budget, result = config.budget.scaled(pick.search_budget), pick.result
            lug_dict = pick.graph.to_dict()
            say(f"lookup graph: chose the search at {search_budget} (device {pick.measured:.4g} {cost_model.unit})")
    if result is None:
        say(f"search ({config.method}) under {search_budget}")
        result = search_fn(space, cost_model, method_config(config, search_budget), seed=config.seed, data=loaders)
    notes += result.notes
    genotype = result.genotype
    say(f"searched in {result.wall_s:.1f} s: {cost_model.name} {result.cost:.4g} {cost_model.unit}; training")
    final_data = dataclasses.replace(config.dataset, val_fraction=0.0)
    _, final_loaders = loaders_for(final_data)
    net = build_network(space, genotype)
    trained = train(net, final_loaders, TrainConfig(epochs=config.train_epochs, lr=config.train_lr, seed=config.seed,
                                                    device="cpu", log_every=0,
                                                    max_batches_per_epoch=config.max_batches_per_epoch))
    net.eval()
    onnx_bytes = export_with_metadata(net, space, genotype)
    out_dir = Path(config.out_dir) if config.out_dir else store.path.parent / "models"
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"run{run_id}-{config.method}.onnx"
    onnx_path.write_bytes(onnx_bytes)
    predicted_ms = cost_model.genotype_cost(space, genotype) if metric == "latency_ms" else None
    predicted_mj = cost_model.genotype_cost(space, genotype) if metric == "energy_mj" else None
    model_id = store.add_model(f"run{run_id}-{config.method}", genotype.to_dict(), run_id=run_id,
                               onnx_sha256=sha256_hex(onnx_bytes), path=onnx_path, device_key=device_key,
                               lut_id=lut_id, predicted_latency_ms=predicted_ms, predicted_energy_mj=predicted_mj)
    say("measuring the trained network on the device")
    mc = dataclasses.replace(config.measure, energy=True) if metric == "energy_mj" else config.measure
    bench = clients[0].benchmark(onnx_bytes, config=mc, backend=config.backend)
    lat = bench.latency.median_ms if bench.status.measured and bench.latency else None
    energy = bench.energy.net_mj if bench.energy is not None and math.isfinite(bench.energy.net_mj) else None
    if not bench.status.measured:
        notes.append(f"the device could not measure the network: {bench.status.name}: {bench.error}")
    validation_id = store.add_validation(
        model_id, device_key, fingerprint=bench.device_fingerprint or "unknown", status=bench.status.name.lower(),
        predicted_ms=predicted_ms, measured_ms=lat, predicted_energy_mj=predicted_mj, measured_energy_mj=energy,
        stats={"latency": bench.latency, "simulated": bench.simulated, "backend": bench.backend,
               "runtime_version": bench.runtime_version})
    if metric == "latency_ms":
        measured = lat
    elif metric == "energy_mj":
        measured = energy
    else:
        measured = result.cost  # parameters and FLOPs are exact
    within = None if measured is None else measured <= config.budget.value
    if within is False:
        notes.append(f"measured {measured:.4g} {cost_model.unit} exceeds the device budget {config.budget}")
    return DcaRunReport(
        run_id=run_id, model_id=model_id, validation_id=validation_id, method=config.method, genotype=genotype,
        device_budget=config.budget, search_budget=search_budget, predicted=result.cost, measured=measured,
        within_budget=within, measured_latency_ms=lat, measured_energy_mj=energy, test_acc=trained.final_acc,
        onnx_path=str(onnx_path), search=result.to_dict(), lug=lug_dict, notes=tuple(notes),
        wall_s=time.perf_counter() - started)


def _plain_config(config: DcaRunConfig, space: SearchSpace) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["space_config"] = space_metadata(space)
    return json.loads(json.dumps(d, default=str))
