"""Glue for ``hilnas search dca``: a device's LUT -> cost model -> search -> train -> ONNX -> device -> store.

``run_dca(store, device_key, clients, config)`` runs one hardware-validated search:

1. loads the dataset (a val split for the bi-level search) and builds the space to fit it, and
   with ``proxy_overrides`` a smaller proxy of it for the supernet (the found cell is built,
   priced and measured at full size: ``FullSizeCost``);
2. builds the cost model of the budget's metric (``common.device_cost_model``): latency from the
   device's LUT through the correction ``hilnas fidelity`` fitted for it, when there is one
   (else the plain LUT sum; the run records which), energy from the LUT, parameters / FLOPs
   computed; a LUT missing ops of the space is refused, naming them;
3. with ``with_lug``, builds seed 001's lookup graph (searches at several search-time budgets,
   each derived network measured on the device) and reads the search-time budget off it;
4. searches (``dca``, or a baseline: ``darts``, ``penalty``, ``random``), ``seeds`` times with
   different seeds when asked (in ``workers`` threads), keeping the best by validation accuracy;
   DCA-NAS measures its derived networks on the device as it goes (``feedback``), and on NB201
   the cells its last decisions choose between (``device_decisions``: the searcher gets the
   ``measure`` callable below, so it never imports grpc; each call is a new measurement, which is
   how the decisions confirm a cell measured near the band, ``device_repeats``);
5. trains the final network with the shared loop, exports ONNX carrying the space and genotype
   as ``metadata_props`` (``hilnas.space``, ``hilnas.genotype``), checks it against torch;
6. measures it on the device (``clients[0].benchmark``), a fresh measurement of the trained
   network (never one the search or the lookup graph selected with), and records the run, the
   model and the validation in the store. A failure marks the run failed and re-raises.
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
from hilnas.server.search.common import (describe_basis, device_cost_model, export_with_metadata, lut_needed,
                                         measured_mj, measured_ms, recorded, space_metadata, torch_threads)
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
    seeds: int = 1                                   # searches with seeds seed, seed+1, ...; the best by val acc wins
    workers: int = 1                                 # searches (seeds, LUG) run in this many threads
    proxy_overrides: Mapping[str, Any] = field(default_factory=dict)  # a smaller supernet, e.g. {"C": 8, "N": 1}
    use_correction: bool = True                      # constrain the LUT sum through the device's fitted correction
    feedback: bool = True                            # DCA-NAS: measure the derived networks on the device as it goes
    with_lug: bool = False                           # map the device budget through a lookup graph
    # LUG search budgets, as positions in [cheapest, dearest] derivable cost of the cost model
    lug_fractions: tuple[float, ...] = (0.05, 0.12, 0.19, 0.26, 0.33)
    lug_target: float = 0.95                         # aim the LUG at this share of the device budget
    lug_rounds: int = 2                              # new searches per device budget at most (refinement)
    lug_axis: str = "predicted"                      # LUG x axis: "predicted" cost or "search_budget" (seed's)
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
        if self.seeds < 1 or self.workers < 1:
            raise ValueError(f"seeds and workers must be >= 1, got seeds={self.seeds}, workers={self.workers}")
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
    measured: float | None              # the same metric measured afresh: device latency / energy, or exact params / FLOPs
    within_budget: bool | None          # measured <= device budget
    budget_hit: float | None            # measured / device budget (the target band is [0.9, 1.0])
    repaired: bool                      # the derived network was over budget and repaired (the last resort)
    edges_changed: int                  # cell edges the repair changed
    cost_basis: dict[str, Any]          # what the search constrained: corrected LUT sum, plain LUT sum, exact
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
    from hilnas.searchers.cost import FullSizeCost
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
        cost_model, lut_id, basis = device_cost_model(store, device_key, config.budget.metric,
                                                      runtime=config.runtime, use_correction=config.use_correction)
        cost_model.check(space)  # MissingOpsError naming the keys the LUT lacks, and the command
    proxy = space
    if config.proxy_overrides:  # the supernet is small; the cell is priced and deployed at full size
        proxy = space.replace(**dict(config.proxy_overrides))
        cost_model = FullSizeCost(cost_model, space)
        cost_model.check(proxy)  # SpaceError when the proxy's cells differ
    measure = _measure_fn(clients[0], config, config.budget.metric, space)
    with torch_threads(config.threads):
        return recorded(store, f"search-{config.method}", _plain_config(config, space), lambda run_id: _finish(
            store, device_key, clients, config, space,
            _search(config, space, proxy, cost_model, loaders, measure, methods()[config.method][0], say),
            basis, lut_id, run_id, say, started))


@dataclass(frozen=True)
class _Found:
    result: SearchResult
    search_budget: Budget
    lug: dict[str, Any] | None
    notes: tuple[str, ...]


def _search(config: DcaRunConfig, space: SearchSpace, proxy: SearchSpace, cost_model: CostModel, loaders: Any,
            measure: Callable[[Any], float], search_fn: Callable[..., SearchResult],
            say: Callable[[str], None]) -> _Found:
    """Steps 3 and 4: the search (through the lookup graph, or over several seeds, when asked)."""
    from hilnas.searchers.dca.seeds import best_of_seeds

    metric = config.budget.metric
    device_metric = metric in ("latency_ms", "energy_mj")
    in_loop = {"measure": measure} if config.method == "dca" and config.feedback and device_metric else {}

    def search_at(budget: Budget, seed: int) -> SearchResult:
        return search_fn(proxy, cost_model, method_config(config, budget), seed=seed, data=loaders, **in_loop)

    pool = ThreadPoolExecutor(config.workers) if config.workers > 1 else None
    try:
        map_fn = pool.map if pool is not None else map
        if config.with_lug and device_metric:
            return _search_with_lug(config, space, proxy, cost_model, measure, search_at, map_fn, say)
        notes = [f"{metric} is computed exactly, so the search budget is the device budget (no LUG)"] \
            if config.with_lug else []
        seeds = [config.seed + i for i in range(config.seeds)]
        say(f"search ({config.method}) under {config.budget}" + (f", {len(seeds)} seeds" if len(seeds) > 1 else "")
            + (", measuring its networks on the device" if in_loop else ""))
        result = best_of_seeds(lambda seed: search_at(config.budget, seed), seeds, map_fn=map_fn)
        if len(seeds) > 1:
            runs = result.extra["seeds"]
            say(f"kept seed {result.seed} (val acc {result.val_acc:.3f}; the others "
                + ", ".join(f"{r['val_acc']:.3f}" for r in runs if r["seed"] != result.seed) + ")")
        return _Found(result, config.budget, None, tuple(notes))
    finally:
        if pool is not None:
            pool.shutdown()


def _search_with_lug(config: DcaRunConfig, space: SearchSpace, proxy: SearchSpace, cost_model: CostModel,
                     measure: Callable[[Any], float], search_at: Callable[[Budget, int], SearchResult],
                     map_fn: Callable[..., Any], say: Callable[[str], None]) -> _Found:
    """Seed 001's lookup graph: searches at several budgets, their networks measured, the budget read off."""
    from hilnas.searchers.cost import extremes
    from hilnas.searchers.dca.bilevel import BudgetAboveRangeError
    from hilnas.searchers.dca.lug import build_lug, search_for_budget
    from hilnas.searchers.result import InfeasibleBudgetError

    ex = extremes(proxy, cost_model)
    floor, ceiling = measure(ex.cheapest), measure(ex.dearest)
    where = f"the networks the search can derive measure {floor:.4g} to {ceiling:.4g} {cost_model.unit} on the device"
    if floor > config.budget.value:
        raise InfeasibleBudgetError(f"budget {config.budget} is below the cheapest network on the device: {where}; "
                                    "raise the budget or shrink the space", cheapest_cost=floor,
                                    cheapest_genotype=ex.cheapest)
    if config.budget.value > ceiling:
        raise BudgetAboveRangeError(f"budget {config.budget} is above the dearest network on the device: {where}, so "
                                    "every network fits; give a budget within that range, or search without one "
                                    "(--method darts)", range=(floor, ceiling))
    span = ex.dearest_cost - ex.cheapest_cost
    budgets = [ex.cheapest_cost + f * span for f in config.lug_fractions]
    say(f"lookup graph: {len(budgets)} searches at {', '.join(f'{b:.4g}' for b in budgets)} {cost_model.unit}")

    def at(b: float) -> SearchResult:  # within the derivable range
        return search_at(config.budget.scaled(min(max(b, ex.cheapest_cost), ex.dearest_cost)), config.seed)
    graph, found = build_lug(at, budgets, measure, metric=config.budget.metric, axis=config.lug_axis, map_fn=map_fn)
    say(f"lookup graph: device budget {config.budget} -> search budget "
        f"{graph.search_budget(config.budget.value, target=config.lug_target):.4g}; refining")
    pick = search_for_budget(graph, at, measure, config.budget.value, target=config.lug_target,
                             rounds=config.lug_rounds, known=found)
    say(f"lookup graph: chose the search at {pick.search_budget:.4g} (it measured {pick.measured:.4g} "
        f"{cost_model.unit} when selected; the final network is measured again)")
    lug = {**pick.graph.to_dict(), "selected_measured": pick.measured, "tried": [list(t) for t in pick.tried]}
    return _Found(pick.result, config.budget.scaled(pick.search_budget), lug, ())


def _finish(store: Store, device_key: str, clients: Sequence[AgentClient], config: DcaRunConfig, space: SearchSpace,
            found: _Found, basis: dict[str, Any], lut_id: LutId | None, run_id: int, say: Callable[[str], None],
            started: float) -> DcaRunReport:
    """Steps 5 and 6: train the found network, export it, measure it afresh, record everything."""
    from hilnas.searchers.cost import FlopsCost, ParamsCost
    from hilnas.searchers.data import loaders_for
    from hilnas.searchers.model import build_network
    from hilnas.searchers.train import TrainConfig, train
    from hilnas.server.client import sha256_hex

    metric, result = config.budget.metric, found.result
    notes = list(found.notes) + list(result.notes)
    genotype = result.genotype
    say(f"searched in {result.wall_s:.1f} s: {result.cost:.4g} {config.budget.unit} predicted "
        f"({describe_basis(basis)}); training")
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
    predicted_ms = result.cost if metric == "latency_ms" else None
    predicted_mj = result.cost if metric == "energy_mj" else None
    model_id = store.add_model(f"run{run_id}-{config.method}", genotype.to_dict(), run_id=run_id,
                               onnx_sha256=sha256_hex(onnx_bytes), path=onnx_path, device_key=device_key,
                               lut_id=lut_id, predicted_latency_ms=predicted_ms, predicted_energy_mj=predicted_mj)
    say("measuring the trained network on the device")
    mc = dataclasses.replace(config.measure, energy=True) if metric == "energy_mj" else config.measure
    bench = clients[0].benchmark(onnx_bytes, config=mc, backend=config.backend)
    lat = measured_ms(bench)
    energy = measured_mj(bench)
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
    else:  # parameters and FLOPs are exact, at the deployed size
        measured = (ParamsCost() if metric == "params_m" else FlopsCost()).genotype_cost(space, genotype)
    within = None if measured is None else measured <= config.budget.value
    if within is False:
        notes.append(f"measured {measured:.4g} {config.budget.unit} exceeds the device budget {config.budget}")
    return DcaRunReport(
        run_id=run_id, model_id=model_id, validation_id=validation_id, method=config.method, genotype=genotype,
        device_budget=config.budget, search_budget=found.search_budget, predicted=result.cost, measured=measured,
        within_budget=within, budget_hit=None if measured is None else measured / config.budget.value,
        repaired=result.repaired, edges_changed=result.edges_changed, cost_basis=dict(basis),
        measured_latency_ms=lat, measured_energy_mj=energy, test_acc=trained.final_acc, onnx_path=str(onnx_path),
        search=result.to_dict(), lug=found.lug, notes=tuple(notes), wall_s=time.perf_counter() - started)


def _plain_config(config: DcaRunConfig, space: SearchSpace) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["space_config"] = space_metadata(space)
    d["seeds"] = [config.seed + i for i in range(config.seeds)]  # the seeds searched, as run files list them
    return json.loads(json.dumps(d, default=str))
