"""Glue for ``hilnas search hypernet``: one training run -> a family of networks, each measured on the device.

``run_hypernet(store, device_key, clients, config)``:

1. loads the dataset (with a val split) and builds the space to fit it;
2. builds the cost models from the device's LUT in the store (``search.common.cost_model_for``):
   latency always; energy too when the LUT rows carry ``energy_net_mj``; the complexity the
   coefficients weigh (seed 002's lambda Reg) is the parameter count by default, with kappa times
   the LUT latency as a second term (FLOPs instead with ``complexity="flops"``; ``"latency"`` or
   ``"energy"`` fold the two into one);
3. trains the supernet and the hypernetwork once (``searchers.hypernet.search``);
4. derives the architectures: for a grid of lambda scales (monotone family, see
   ``TradeOffCurve``), or for each device budget the least-penalised member within it
   (``for_budget``; a latency budget goes through the LUT's fitted correction, if any, so the
   LUT sum it bounds stands for the measured latency). A budget outside the family's reachable
   range is reported with that range and skipped, the others go on;
5. exports each distinct network to ONNX with the hilnas metadata (trained first when
   ``train_epochs`` > 0, else with random weights: latency does not depend on them), measures
   it on the device (``clients[0].benchmark``) and records model and validation in the store;
6. writes the trade-off curve as CSV, JSON and a PNG plot, and the run's result. A failure marks
   the run failed and re-raises.
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
from hilnas.server.search.family import dataset_of, family_members, plain_config, prepared, recorded, saved_run
from hilnas.server.store import LutId, Store

if TYPE_CHECKING:
    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.data import DatasetConfig
    from hilnas.searchers.hypernet import Architecture, HypernetConfig, HypernetResult
    from hilnas.searchers.spaces import SearchSpace
    from hilnas.server.client import AgentClient

log = logging.getLogger("hilnas.search")

COMPLEXITIES = ("latency", "energy", "params", "flops")
_METRIC = {"latency": "latency_ms", "energy": "energy_mj", "params": "params_m", "flops": "mflops"}
_PROXY_BATCHES = 5  # validation batches of each member's supernet accuracy (a proxy, so kept cheap)


def _default_dataset() -> DatasetConfig:
    from hilnas.searchers.data import DatasetConfig
    return DatasetConfig(name="demo", val_fraction=0.5, batch_size=32)


def _default_search() -> HypernetConfig:
    from hilnas.searchers.hypernet import HypernetConfig
    return HypernetConfig(epochs=3)


@dataclass(frozen=True)
class HypernetRunConfig:
    """One hypernetwork run on a device: space, data, search settings, and which members to produce."""
    space: str = "nb201"                             # "nb201" | "darts"
    space_overrides: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"C": 8, "N": 1}
    dataset: DatasetConfig = field(default_factory=_default_dataset)  # val_fraction 0 -> 0.5 for the search
    search: HypernetConfig = field(default_factory=_default_search)
    complexity: str = "params"                       # Reg, what lambda weighs: params | flops (kappa weighs the LUT
                                                     # latency apart), or latency | energy (one term)
    lambdas: tuple[float, ...] = ()                  # scales along the direction; () = search.grid_points up to Lambda
    grid_at: str = "changes"                         # with neither lambdas nor budgets: "changes" (the scales where
                                                     # the family changes, ``Family.breakpoints``) | "lambda" (even in
                                                     # the hypernetwork's input, ``Family.grid``)
    direction: tuple[float, ...] | None = None       # simplex point over the op types; None = the centre
    budgets: tuple[Budget, ...] = ()                 # device budgets: one member each (instead of the grid)
    use_correction: bool = True                      # map latency budgets through the LUT's fitted correction
    train_epochs: int = 0                            # final training of each member; 0 = export untrained
    train_lr: float = 0.05
    seed: int = 0
    measure: MeasureConfig = MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.2)
    backend: str = ""                                # agent backend; "" = the device's default
    runtime: str | None = None                       # which of the device's LUTs (when it has several)
    out_dir: str | None = None                       # ONNX, CSV, JSON, PNG; None = <workspace>/models/hypernet-<run>
    max_batches_per_epoch: int | None = None         # cap for smoke runs (final training; the search has its own)
    from_run: int | None = None                      # derive from the hypernetwork run N trained and saved (no
                                                     # training; space, data, search settings and seed are run N's)

    def __post_init__(self) -> None:
        if self.space not in ("darts", "nb201"):
            raise ValueError(f"unknown search space {self.space!r}; use darts or nb201")
        if self.complexity not in COMPLEXITIES:
            raise ValueError(f"complexity must be one of {', '.join(COMPLEXITIES)}, got {self.complexity!r}")
        if self.train_epochs < 0:
            raise ValueError("train_epochs must be >= 0")
        if self.budgets and self.lambdas:
            raise ValueError("give lambdas or budgets, not both")
        if self.grid_at not in ("changes", "lambda"):
            raise ValueError(f"grid_at must be 'changes' or 'lambda', got {self.grid_at!r}")
        for b in self.budgets:
            if not isinstance(b, Budget):
                raise ValueError(f"budgets must be Budget objects (Budget.parse('latency_ms=5')), got {b!r}")
        for s in self.lambdas:
            if not (isinstance(s, (int, float)) and math.isfinite(s) and s >= 0):
                raise ValueError(f"lambda scales must be finite numbers >= 0, got {s!r}")


@dataclass(frozen=True)
class MemberReport:
    """One produced network: where it sits on the trade-off, what it costs, predicted and measured."""
    name: str
    scale: float                        # lambda scale it was derived at
    weights: tuple[float, ...]          # lambda direction (simplex point over ``HypernetRunReport.ops``)
    genotype: Any
    costs: Mapping[str, float]          # exact cost per metric (LUT sums for latency / energy)
    predicted_ms: float | None          # LUT latency with the correction applied
    measured_ms: float | None           # median latency measured on the device
    measured_energy_mj: float | None
    status: str                         # the device's status for the measurement
    supernet_acc: float                 # supernet accuracy on the val split at this lambda (a proxy)
    test_acc: float | None              # after final training (train_epochs > 0)
    budget: Budget | None = None        # the device budget it was chosen for
    within_budget: bool | None = None   # measured (latency / energy) or exact (params / FLOPs) <= budget
    model_id: int | None = None
    onnx_path: str | None = None
    kept_from: float | None = None      # isotonic selection kept the genotype of this smaller scale

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["genotype"] = self.genotype.to_dict()
        d["budget"] = {"metric": self.budget.metric, "value": self.budget.value} if self.budget else None
        d["costs"] = dict(self.costs)
        d["weights"] = list(self.weights)
        return d


@dataclass(frozen=True)
class HypernetRunReport:
    """What a run produced (also the run's stored result)."""
    run_id: int
    Lambda: float
    ops: tuple[str, ...]
    members: tuple[MemberReport, ...]
    failed_budgets: tuple[tuple[Budget, str], ...]   # budgets no member could serve, with the reason
    curve: dict[str, Any]                            # TradeOffCurve.to_dict() of the produced grid / dense family
    search: dict[str, Any]                           # HypernetResult.to_dict()
    monotone_violations_predicted: int               # raw derivation, before isotonic selection
    monotone_violations_measured: int                # measured latency along the members, scale ascending
    csv_path: str
    json_path: str
    plot_path: str | None
    notes: tuple[str, ...]
    wall_s: float
    trained_dir: str | None = None                   # the saved hypernetwork (``searchers.hypernet.io``)
    from_run: int | None = None                      # the run whose saved hypernetwork this one derived from

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "Lambda": self.Lambda, "ops": list(self.ops),
                "members": [m.to_dict() for m in self.members],
                "failed_budgets": [{"budget": str(b), "error": e} for b, e in self.failed_budgets],
                "curve": self.curve, "search": self.search,
                "monotone_violations_predicted": self.monotone_violations_predicted,
                "monotone_violations_measured": self.monotone_violations_measured,
                "csv_path": self.csv_path, "json_path": self.json_path, "plot_path": self.plot_path,
                "notes": list(self.notes), "wall_s": self.wall_s, "trained_dir": self.trained_dir,
                "from_run": self.from_run}


# -- the run ----------------------------------------------------------------------------------------
def run_hypernet(store: Store, device_key: str, clients: Sequence[AgentClient], config: HypernetRunConfig, *,
                 progress: Callable[[str], None] | None = None) -> HypernetRunReport:
    """Train once, derive the family, export, measure and record each member; see the module docstring."""
    from hilnas.server.search.common import cost_model_for, lut_needed

    say = progress or (lambda msg: log.info("%s", msg))
    started = time.perf_counter()
    trained_dir = None
    if config.from_run is not None:
        config, trained_dir = _config_from_run(store, config)
    loaders, space = prepared(store, device_key, clients, config.dataset, 0.5, config.space, config.space_overrides)
    # "auto" settings -> the space's measured ones (``hypernet.defaults``), so the run's record holds what ran
    config = dataclasses.replace(config, search=config.search.resolved(space))
    with lut_needed(device_key, space, config.dataset.name, energy=config.complexity == "energy"):
        latency, lut_id = cost_model_for(store, device_key, "latency_ms", runtime=config.runtime)
        latency.check(space)  # MissingOpsError naming the keys the LUT lacks, and the command
    energy = _energy_model(store, device_key, config.runtime, space)
    if config.complexity == "energy" and energy is None:
        raise ValueError(f"complexity=energy, but the LUT of device {device_key!r} has no energy for this space's ops")
    complexity = {"latency": latency, "energy": energy}.get(config.complexity) or \
        cost_model_for(store, device_key, _METRIC[config.complexity])[0]
    if config.direction is not None:  # TradeOffError now, not after the training
        from hilnas.searchers.hypernet import check_simplex
        check_simplex(config.direction, tuple(op for op in space.ops if op != "none"))
    for b in config.budgets:
        if b.metric not in {latency.metric, complexity.metric} | ({energy.metric} if energy else set()):
            raise ValueError(f"budget {b}: no cost model of this run measures {b.metric} "
                             f"(latency_ms{', energy_mj' if energy else ''}, {complexity.metric})")
    return recorded(store, "hypernet", plain_config(config, space), lambda run_id: _run(
        store, device_key, clients, config, space, loaders, latency, complexity, energy, lut_id, run_id, say, started,
        trained_dir))


def _config_from_run(store: Store, config: HypernetRunConfig) -> tuple[HypernetRunConfig, Path]:
    """``config`` with the space, data, search settings and seed of run ``config.from_run``, and its saved folder."""
    from hilnas.searchers.hypernet.io import config_from_dict, read_meta

    run, trained = saved_run(store, config.from_run, "hypernet", "hypernetwork")
    meta = read_meta(trained)  # TrainedFileError when the folder was moved or damaged
    old = run.config
    return dataclasses.replace(
        config, space=old["space"], space_overrides=dict(old.get("space_overrides") or {}),
        dataset=dataset_of(old["dataset"]), search=config_from_dict(meta["config"]), complexity=old["complexity"],
        seed=int(old.get("seed", 0))), Path(trained)


def _energy_model(store: Store, device_key: str, runtime: str | None, space: SearchSpace) -> CostModel | None:
    """The LUT's energy as a cost model when every op of the space has a finite ``energy_net_mj``; else None."""
    from hilnas.searchers.cost import LutEnergyCost, MissingOpsError
    from hilnas.server.search.common import load_lut

    try:
        values, _ = load_lut(store, device_key, "energy_mj", runtime=runtime)
        model = LutEnergyCost(values)
        model.check(space)
        return model
    except (ValueError, MissingOpsError):  # no energy column, or not for every op of the space
        return None


def _run(store: Store, device_key: str, clients: Sequence[AgentClient], config: HypernetRunConfig,
         space: SearchSpace, loaders: Any, latency: CostModel, complexity: CostModel, energy: CostModel | None,
         lut_id: LutId | None, run_id: int, say: Callable[[str], None], started: float,
         trained_dir: Path | None = None) -> HypernetRunReport:
    from hilnas.searchers.hypernet import count_violations, search
    from hilnas.searchers.hypernet.io import load_trained, save_trained
    from hilnas.server.validation import latest_correction

    out_dir = Path(config.out_dir) if config.out_dir else store.path.parent / "models" / f"hypernet-{run_id}"
    out_dir.mkdir(parents=True, exist_ok=True)
    if trained_dir is not None:
        result = load_trained(trained_dir, space, latency, complexity=complexity if complexity is not latency else None,
                              energy=energy)
        say(f"loaded the hypernetwork of run {config.from_run} from {trained_dir} (no training); "
            f"Lambda = {result.Lambda:.4g}")
    else:
        say(f"training the supernet and the hypernetwork ({config.search.epochs} epochs, complexity "
            f"{complexity.name})")
        result = search(space, latency, config.search, seed=config.seed, data=loaders,
                        complexity=complexity if complexity is not latency else None, energy=energy)
        trained_dir = save_trained(result, out_dir / "trained")
        say(f"trained in {result.wall_s:.1f} s; Lambda = {result.Lambda:.4g}"
            + (f" ({result.bound.source})" if result.bound else " (given)") + f"; saved to {trained_dir}")
    correction = latest_correction(store, lut_id) if (lut_id and config.use_correction) else None
    lambdas = config.lambdas
    if not lambdas and not config.budgets and config.grid_at == "changes":
        lambdas = tuple(result.breakpoints(config.search.grid_points, weights=config.direction))
    chosen, failed, notes, curve = family_members(result, config.budgets, lambdas,
                                                  config.search.curve_points, correction, say,
                                                  weights=config.direction)
    reports = _measure_members(store, device_key, clients, config, space, loaders, result, chosen, latency,
                               energy, lut_id, correction, run_id, say)
    ordered = sorted(reports, key=lambda m: m.scale)
    measured = [m.measured_ms for m in ordered if m.measured_ms is not None]
    csv_path, json_path = out_dir / "curve.csv", out_dir / "curve.json"
    _write_csv(csv_path, ordered, result.ops)
    json_path.write_text(json.dumps({"Lambda": result.Lambda, "ops": list(result.ops),
                                     "members": [m.to_dict() for m in ordered], "curve": curve.to_dict()},
                                    indent=2, default=str) + "\n")
    plot_path = _plot(out_dir / "tradeoff.png", ordered, result, curve, notes)
    return HypernetRunReport(
        run_id=run_id, Lambda=result.Lambda, ops=result.ops, members=tuple(reports), failed_budgets=tuple(failed),
        curve=curve.to_dict(), search=result.to_dict(), monotone_violations_predicted=curve.raw_violations,
        monotone_violations_measured=count_violations(measured), csv_path=str(csv_path), json_path=str(json_path),
        plot_path=str(plot_path) if plot_path else None, notes=tuple(notes), wall_s=time.perf_counter() - started,
        trained_dir=str(trained_dir), from_run=config.from_run)


def _measure_members(store: Store, device_key: str, clients: Sequence[AgentClient], config: HypernetRunConfig,
                     space: SearchSpace, loaders: Any, result: HypernetResult,
                     chosen: Sequence[tuple[Architecture, Budget | None]], latency: CostModel,
                     energy: CostModel | None, lut_id: LutId | None, correction: Any, run_id: int,
                     say: Callable[[str], None]) -> list[MemberReport]:
    """Export, measure and record each distinct genotype once; every chosen point gets a MemberReport."""
    from hilnas.server.client import sha256_hex
    from hilnas.server.search.common import measured_mj, measured_ms

    out_dir = Path(config.out_dir) if config.out_dir else store.path.parent / "models" / f"hypernet-{run_id}"
    out_dir.mkdir(parents=True, exist_ok=True)
    done: dict[Any, dict[str, Any]] = {}
    members = []
    for i, (arch, budget) in enumerate(chosen):
        g = arch.genotype
        if g not in done:
            name = f"run{run_id}-hypernet-{len(done)}"
            test_acc, onnx_bytes = _export(config, space, g)
            path = out_dir / f"{name}.onnx"
            path.write_bytes(onnx_bytes)
            lut_sum = latency.genotype_cost(space, g)
            predicted = correction.apply(lut_sum) if correction is not None else lut_sum
            predicted_mj = energy.genotype_cost(space, g) if energy is not None else None
            model_id = store.add_model(name, g.to_dict(), run_id=run_id, onnx_sha256=sha256_hex(onnx_bytes), path=path,
                                       device_key=device_key, lut_id=lut_id, predicted_latency_ms=predicted,
                                       predicted_energy_mj=predicted_mj)
            say(f"measuring {name} (lambda scale {arch.tradeoff.scale:.4g}, predicted {predicted:.4g} ms)")
            mc = dataclasses.replace(config.measure, energy=True) if energy is not None else config.measure
            bench = clients[0].benchmark(onnx_bytes, config=mc, backend=config.backend)
            lat = measured_ms(bench)
            mj = measured_mj(bench)
            store.add_validation(model_id, device_key, fingerprint=bench.device_fingerprint or "unknown",
                                 status=bench.status.name.lower(), predicted_ms=predicted, measured_ms=lat,
                                 predicted_energy_mj=predicted_mj, measured_energy_mj=mj,
                                 stats={"latency": bench.latency, "simulated": bench.simulated,
                                        "backend": bench.backend, "lut_sum_ms": lut_sum, "error": bench.error})
            done[g] = {"name": name, "model_id": model_id, "path": str(path), "predicted": predicted, "lat": lat,
                       "mj": mj, "status": bench.status.name.lower(), "test_acc": test_acc}
        d = done[g]
        within = None
        if budget is not None:
            value = {"latency_ms": d["lat"], "energy_mj": d["mj"]}.get(budget.metric, arch.costs.get(budget.metric))
            within = None if value is None else value <= budget.value
        members.append(MemberReport(
            name=d["name"], scale=arch.tradeoff.scale, weights=arch.tradeoff.weights, genotype=g,
            costs=dict(arch.costs), predicted_ms=d["predicted"], measured_ms=d["lat"], measured_energy_mj=d["mj"],
            status=d["status"], supernet_acc=result.accuracy(arch.tradeoff, loaders.val, max_batches=_PROXY_BATCHES),
            test_acc=d["test_acc"], budget=budget, within_budget=within, model_id=d["model_id"],
            onnx_path=d["path"], kept_from=arch.kept_from))
    return members


def _export(config: HypernetRunConfig, space: SearchSpace, genotype: Any) -> tuple[float | None, bytes]:
    """(test accuracy or None, ONNX bytes with metadata): trained when ``train_epochs`` > 0, else random weights."""
    if config.train_epochs == 0:
        from hilnas.server.model_meta import export_network
        return None, export_network(space, genotype, seed=config.seed)
    from hilnas.searchers.data import loaders_for
    from hilnas.searchers.model import build_network
    from hilnas.searchers.train import TrainConfig, train
    from hilnas.server.search.common import export_with_metadata

    _, final_loaders = loaders_for(dataclasses.replace(config.dataset, val_fraction=0.0))
    net = build_network(space, genotype)
    trained = train(net, final_loaders, TrainConfig(epochs=config.train_epochs, lr=config.train_lr, seed=config.seed,
                                                    device="cpu", log_every=0,
                                                    max_batches_per_epoch=config.max_batches_per_epoch))
    return trained.final_acc, export_with_metadata(net.eval(), space, genotype)


# -- outputs ----------------------------------------------------------------------------------------
def _write_csv(path: Path, members: Sequence[MemberReport], ops: Sequence[str]) -> None:
    metrics = sorted({k for m in members for k in m.costs})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "scale", *[f"w_{o}" for o in ops], *metrics, "predicted_ms", "measured_ms",
                    "measured_energy_mj", "supernet_acc", "test_acc", "budget", "within_budget", "kept_from",
                    "status", "genotype"])
        for m in members:
            w.writerow([m.name, m.scale, *m.weights, *[m.costs.get(k) for k in metrics], m.predicted_ms,
                        m.measured_ms, m.measured_energy_mj, m.supernet_acc, m.test_acc,
                        str(m.budget) if m.budget else "", m.within_budget, m.kept_from, m.status,
                        m.genotype.to_json()])


def _plot(path: Path, members: Sequence[MemberReport], result: HypernetResult, curve: Any,
          notes: list[str]) -> Path | None:
    """Latency along lambda (the LUT's prediction for the whole family, the members measured) and
    accuracy against measured latency; None (with a note) when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        notes.append("no plot: matplotlib is not installed (pip install 'hilnas[search]')")
        return None
    metric = curve.metric
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [p.tradeoff.scale for p in curve.points]
    ax1.step(xs, [p.costs[metric] for p in curve.points], where="post", label=f"family ({metric}, LUT)")
    ax1.plot(xs, [p.costs[metric] for p in curve.raw], ".", color="grey", label="as derived (before isotonic)")
    if metric == "latency_ms":
        pts = [(m.scale, m.measured_ms) for m in members if m.measured_ms is not None]
        if pts:
            ax1.plot(*zip(*pts), "o", color="C3", label="measured on the device")
    ax1.axvline(result.Lambda, color="k", lw=0.5, ls=":")
    if result.config.scale_sampling == "log":  # the grid is spread logarithmically above log_floor * Lambda
        ax1.set_xscale("symlog", linthresh=result.config.log_floor * result.Lambda)
    ax1.set_xlim(0, result.Lambda * 1.05)
    ax1.set_xlabel(f"lambda scale (Lambda = {result.Lambda:.3g})")
    ax1.set_ylabel(metric)
    ax1.set_title("cost along the trade-off")
    ax1.legend(fontsize=7)
    acc_of = [(m.measured_ms, m.test_acc if m.test_acc is not None else m.supernet_acc) for m in members
              if m.measured_ms is not None]
    if acc_of:
        ax2.plot(*zip(*sorted(acc_of)), "o-")
    trained = any(m.test_acc is not None for m in members)
    ax2.set_xlabel("measured latency (ms)")
    ax2.set_ylabel("test accuracy" if trained else "supernet accuracy at lambda (val, proxy)")
    ax2.set_title("accuracy vs measured latency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["COMPLEXITIES", "HypernetRunConfig", "HypernetRunReport", "MemberReport", "run_hypernet"]
