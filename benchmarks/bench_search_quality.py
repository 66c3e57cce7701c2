"""NAS-Bench-201 search quality: the cells each method finds, scored on the true accuracy table.

    .venv/bin/python benchmarks/bench_search_quality.py                  # the full run (hours, see docs/performance.md)
    .venv/bin/python benchmarks/bench_search_quality.py --devices raspi4 --seeds 1 --methods dca,random   # a part

What is compared, for every simulated device (``raspi4``, ``pixel3``), every latency budget and
every seed (the same data, epochs and proxy supernet for every supernet method):

- ``dca``: DCA-NAS as hilnas runs it (``searchers.dca.search``): the band constraint, the
  augmented Lagrangian, the NB201 edges decided one at a time (``searchers/dca/progressive.py``),
  the device in the loop (its derived networks measured on the agent, the last decisions on
  measured cells, confirmed by repeated measurements near the band, an earlier decision reopened when
  the measured cells have none in the band, the choice among them by one-shot accuracy; the ``--device-*`` and
  ``--ratio-tolerance`` flags default to ``DcaConfig``'s fields). ``--select`` (default ``auto``, as
  ``DcaConfig``: ``perturbation`` on NB201): the decisions on the prediction choose each edge's op by the
  supernet's validation log-likelihood with the edge fixed to it (DARTS-PT), or by the alphas (``alpha``); the
  row records the rule that ran (``select``, ``select_requested``) and the evaluations' wall time (``select_s``,
  within ``wall_s``).
- ``pcdarts``: the same supernet (PC-DARTS-style partial channels) without any constraint: one
  search per seed serves every budget; over budget, it is repaired to the budget afterwards.
- ``penalty``: a fixed-weight latency penalty (ProxylessNAS style, weight 1 per budget).
- ``random``: random cells within the budget, each trained briefly, the best on validation kept,
  for as long as DCA-NAS searched at the same device, budget and seed (equal wall time).
- ``hypernet``: the hypernetwork (``searchers.hypernet``, called as main has it): one run per
  device and seed; the member ``for_budget`` gives for each budget, and its whole family.

The searches train a proxy supernet (NB201 C=8, N=1: 3 cells; ``--C``/``--N``) on the CIFAR-10
subset (``/work/shared/data/cifar10-subset``, 10,000 training images: half for the weights, half
for the architecture). Every cell found is priced, deployed and looked up at the table's size
(C=16, N=5): the constraint is the full-size network's LUT latency on the device (the LUT of the
full-size op keys, through the correction ``hilnas fidelity`` fits on 30 networks measured whole),
``searchers.cost.FullSizeCost``.

Scored for every cell: its CIFAR-10 accuracy in the NATS-Bench table (``nb201_oracle.read_accuracy``),
its simulated latency (noise-free, ``nb201_oracle.simulated_latencies``), its **regret** = the best
table accuracy among all cells whose simulated latency is within the budget minus its own, and the
budget hit = a fresh measurement on the agent (not one any search selected with) / budget, before
and after repair. Budgets: ``--budgets`` per device, spread between 3x the cheapest cell and the
latency of the table's most accurate cell (above it the best cell fits and a band below the
budget costs accuracy), each moved to the nearest budget (0.1 ms grid) whose band holds at least
100 cells: the simulated devices' latencies come in clusters, and a budget between two clusters
has no network in its band at all. ``--budget-rule interior`` (the default) counts only the band's
interior, the band shrunk on each side by 1.5 sd of one fresh measurement (the margin DCA-NAS keeps;
the sd from the simulated device's noise model, ~1.2 % raspi4, ~2.3 % pixel3); ``edge`` counts the
whole band, the budgets of the runs up to 2026-12-05's fourth session, which put a cluster at an
edge of the band where the hit is a coin flip on noise. The result records per budget the cells in
band / interior and the achievable ceiling: the chance that the best-placed cell in the band lands
in it on one fresh measurement.

Writes benchmarks/results/search_quality.json and search_quality.png (accuracy vs latency: all
cells, the oracle Pareto front, each method's cells, the budgets). Inputs that are missing stop
the run with one line naming the file and the flag that points to it (exit code 2).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (FRESH_MEASURE, RESULTS, SEARCH_MEASURE, agent_measure, agent_measure_fresh,  # noqa: E402
                     corrected_cost, simulated_device, warm_torch, write)
from nb201_oracle import (ACCURACY_CSV, CIFAR_SUBSET, InputError, Oracle, check_data_dir,  # noqa: E402
                          read_accuracy)

from hilnas.server.cli.search.dca import DEVICE_OPTIONS, SELECT_CHOICES, add_device_options  # noqa: E402  (no torch)
from hilnas.server.cli.search.hypernet import hypernet_options  # noqa: E402  (torch only when called)

METHODS = ("dca", "pcdarts", "penalty", "random", "hypernet")
BAND = (0.9, 1.0)


# -- the worker side: one search per job ------------------------------------------------------------
_W: dict = {}


def _init_worker(args: dict, devices: dict) -> None:
    """Per process: torch on one thread, the data, the proxy space, a cost model and agent client per device."""
    import torch

    from hilnas.searchers.data import DatasetConfig, loaders_for
    from hilnas.searchers.spaces import create_space
    from hilnas.server.client import AgentClient, ClientConfig

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    warm_torch()
    full = create_space("nb201")
    data = DatasetConfig(name="cifar10", data_dir=args["data_dir"], val_fraction=0.5, batch_size=args["batch_size"],
                         train_size=args["train_size"], seed=0)
    _, loaders = loaders_for(data)
    _W.update(args=args, full=full, proxy=full.replace(C=args["C"], N=args["N"]), loaders=loaders, costs={},
              clients={})
    for name, d in devices.items():
        _W["costs"][name] = corrected_cost(d, full)
        _W["clients"][name] = AgentClient(ClientConfig(address=d["address"]))


def _measure(device: str):
    from hilnas.agent.config import MeasureConfig

    # a cell's first measurement: its model exported once per worker; every later one (a confirmation): a new export
    # (new weights, seeds 100, 101, ..., never the score's) and a new call, so the confirmations see the spread
    # between exports that the fresh score sees, not only the one between calls on one export
    config = MeasureConfig(**SEARCH_MEASURE)
    first = agent_measure(_W["clients"][device], _W["full"], config, exported=_W.setdefault("exported", {}))
    again = agent_measure_fresh(_W["clients"][device], _W["full"], config)
    seen: set[str] = set()

    def measure(genotype) -> float:
        key = genotype.arch_str
        if key in seen:
            return again(genotype)
        seen.add(key)
        return first(genotype)
    return measure


def _supernet_settings(args: dict) -> dict:
    from hilnas.searchers.dca.architect import ArchConfig
    from hilnas.searchers.supernet import SupernetOptions

    return dict(epochs=args["epochs"], options=SupernetOptions(bottleneck=args["K"]),
                arch=ArchConfig(lr=args["arch_lr"], warmup_epochs=args["warmup"]), eval_batches=args["eval_batches"])


def run_job(job: dict) -> dict:
    """One search; returns plain data (genotypes as arch_str)."""
    from hilnas.searchers.result import Budget

    args, method, device, seed = _W["args"], job["method"], job.get("device"), job["seed"]
    started = time.perf_counter()
    out = {**job}
    if method == "hypernet":
        out.update(_hypernet_job(job))
    else:
        from hilnas.searchers import dca
        from hilnas.searchers.dca.baselines import (DartsConfig, PenaltyConfig, RandomConfig, search_darts,
                                                    search_penalty, search_random)

        proxy, loaders = _W["proxy"], _W["loaders"]
        cost = _W["costs"][device or next(iter(_W["costs"]))]
        budget = Budget("latency_ms", job["budget"]) if job.get("budget") else None
        common = _supernet_settings(args)
        if method == "dca":
            cfg = dca.DcaConfig(budget=budget, band=tuple(args["band"]), multiplier_lr=args["multiplier_lr"],
                                rho=args["rho"], select=args["select"], **{k: args[k] for k in DEVICE_OPTIONS},
                                **common)
            r = dca.search(proxy, cost, cfg, seed=seed, data=loaders,
                           measure=_measure(device) if args["feedback"] else None)
        elif method == "pcdarts":  # the same supernet and settings, no cost term
            r = search_darts(proxy, cost, DartsConfig(**common), seed=seed, data=loaders)
        elif method == "penalty":
            r = search_penalty(proxy, cost, PenaltyConfig(budget=budget, penalty_weight=args["penalty_weight"],
                                                          **common), seed=seed, data=loaders)
        elif method == "random":
            r = search_random(proxy, cost, RandomConfig(budget=budget, samples=10_000, epochs=1,
                                                        time_budget_s=job["time_budget_s"],
                                                        eval_batches=args["eval_batches"]), seed=seed, data=loaders)
        else:
            raise ValueError(f"unknown method {method!r}")
        out.update(derived=r.derived_genotype.arch_str, final=r.genotype.arch_str, repaired=r.repaired,
                   edges_changed=r.edges_changed, predicted_ms=r.cost, derived_predicted_ms=r.derived_cost,
                   val_acc=r.val_acc, wall_s=r.wall_s, epochs=r.extra.get("epochs", []),
                   samples=len(r.extra.get("samples", [])), device_log=r.extra.get("device", {}).get("log", []),
                   decisions=r.extra.get("decisions", []), decisions_restricted=r.extra.get("decisions_restricted"),
                   decisions_fallback=r.extra.get("decisions_fallback"),
                   decided_on_device=r.extra.get("decided_on_device"),
                   cells_measured_on_device=r.extra.get("cells_measured_on_device"),
                   cell_remeasurements=r.extra.get("cell_remeasurements"), reopened=r.extra.get("reopened", []),
                   reopen_measurements=r.extra.get("reopen_measurements"),
                   measurement_spread=r.extra.get("measurement_spread"), device_fits=r.extra.get("device_fits", []),
                   fit_sampled=r.extra.get("fit_sampled", []), select=r.extra.get("select"),
                   select_requested=r.extra.get("select_requested"), select_s=r.extra.get("select_s"), select_evals=r.extra.get("select_evals"))
    out["job_s"] = time.perf_counter() - started
    return out


def _hypernet_job(job: dict) -> dict:
    from hilnas.searchers import hypernet
    from hilnas.searchers.hypernet import BudgetRangeError
    from hilnas.searchers.hypernet.defaults import FALLBACK   # the per-space settings ("auto")
    from hilnas.searchers.result import Budget

    args = _W["args"]
    common = _supernet_settings(args)
    cfg = hypernet.HypernetConfig(**{"epochs": common["epochs"], "options": common["options"],
                                     "eval_batches": common["eval_batches"], **args["hypernet_opt"]})
    res = hypernet.search(_W["proxy"], _W["costs"][job["device"]], cfg, seed=job["seed"], data=_W["loaders"])
    members = {}
    for b in job["budgets"]:
        try:
            members[str(b)] = res.for_budget(Budget("latency_ms", b)).genotype.arch_str
        except BudgetRangeError as err:
            members[str(b)] = None
            members[f"{b}_error"] = str(err)
    curve = res.curve(res.grid(cfg.curve_points))
    return {"members": members, "family": [a.genotype.arch_str for a in curve.points],
            "family_predicted_ms": [a.costs["latency_ms"] for a in curve.points], "reachable_predicted_ms":
            list(curve.range), "Lambda": res.Lambda, "val_acc": res.val_acc, "wall_s": res.wall_s,
            "hypernet_options": args["hypernet_opt"],
            # what ran: the "auto" settings resolved for the space (``hypernet.defaults``), the options' included
            "hypernet_settings": {f: getattr(res.config, f) for f in FALLBACK}}


# -- the main side ----------------------------------------------------------------------------------
BUDGET_RULES = ("edge", "interior")
MARGIN_SIGMAS = 1.5   # the margin DCA-NAS itself keeps inside the band (DcaConfig.device_inside_sigmas)


def choose_budgets(oracle: Oracle, n: int, *, rule: str = "interior", spread: float = 0.0,
                   min_cells: int = 100) -> list[float]:
    """``n`` budgets from 3x the cheapest cell to the most accurate cell's latency, each moved to the
    nearest budget (0.1 ms grid) whose band holds >= ``min_cells`` cells.

    ``rule="edge"`` counts the band [0.9, 1.0] x budget (the budgets of the runs up to 2026-12-05's
    fourth session). The simulated latencies come in clusters, so the nearest such budget is where a
    cluster has just entered the band at one edge, where one fresh measurement lands outside about as
    often as inside. ``rule="interior"`` counts only the band's interior (``interior``): shrunk on
    each side by ``MARGIN_SIGMAS`` standard deviations of one fresh measurement (``spread``, relative)."""
    import numpy as np

    if rule not in BUDGET_RULES:
        raise ValueError(f"budget rule {rule!r}: use one of {', '.join(BUDGET_RULES)}")
    lat = np.array(sorted(oracle.latency.values()))
    best = oracle.front[-1][0]
    lo = 3 * lat[0]
    margin = 0.0 if rule == "edge" else MARGIN_SIGMAS * spread

    def held(b: float) -> int:
        lo_b, hi_b = interior(b, margin)
        return int(np.searchsorted(lat, hi_b, "right") - np.searchsorted(lat, lo_b, "left"))
    out = []
    for target in np.geomspace(lo, best, n):
        grid = sorted(np.arange(0.5 * target, 1.5 * target, 0.1), key=lambda b: abs(b - target))
        # the grid starts at 0.5 x target, off the 0.1 ms one, and the budget is recorded rounded: the interior rule
        # counts at the recorded budget; the edge rule counted before rounding, and keeps that to stay reproducible
        out.append(next(round(float(b), 1) for b in grid
                        if held(round(float(b), 1) if rule == "interior" else b) >= min_cells and b <= best))
    return out


def interior(budget: float, margin: float) -> tuple[float, float]:
    """The latencies (ms) whose measurement lands in [0.9, 1.0] x budget unless off by more than ``margin``
    (relative: a cell at L measures L x (1 + e)); margin 0 is the band itself."""
    return BAND[0] * budget / (1 - margin), BAND[1] * budget / (1 + margin)


def landing_probability(latency: float, budget: float, spread: float) -> float:
    """The chance that one fresh measurement of a cell at ``latency`` (noise-free) lands in [0.9, 1.0] x budget,
    the measurement lognormal around it with relative sd ``spread``."""
    if spread <= 0:
        return float(BAND[0] * budget <= latency <= BAND[1] * budget)
    phi = statistics.NormalDist(0.0, spread).cdf
    return phi(math.log(BAND[1] * budget / latency)) - phi(math.log(BAND[0] * budget / latency))


def budget_report(oracle: Oracle, budgets: list[float], spread: float) -> list[dict]:
    """Per budget: the cells in its band and in its interior, and its achievable ceiling: the landing
    probability of the best-placed cell in the band, the most any method can hit there (a ceiling
    well below 1 marks a budget that tests the device's noise, not the method)."""
    out = []
    for b in budgets:
        lo_i, hi_i = interior(b, MARGIN_SIGMAS * spread)
        band = [a for a, x in oracle.latency.items() if BAND[0] * b <= x <= BAND[1] * b]
        ceiling, cell = max(((landing_probability(oracle.latency[a], b, spread), a) for a in band), default=(0.0, None))
        out.append({"budget": b, "band_cells": len(band),
                    "interior_cells": sum(lo_i <= oracle.latency[a] <= hi_i for a in band),
                    "interior_ms": [lo_i, hi_i], "ceiling": ceiling, "best_placed_cell": cell,
                    "best_placed_ratio": oracle.latency[cell] / b if cell else None})
    return out


def fresh_spread(profile: str, runs: int = FRESH_MEASURE["min_runs"]) -> float:
    """The relative sd of one fresh measurement on a simulated device, from its noise model: the offset
    between calls (``run_cv``) and the median of ``runs`` samples of CV ``cv`` (sd ~ sqrt(pi/2) cv / sqrt(runs)).
    Outliers are left out (the median ignores a few)."""
    from hilnas.agent.sim.profile import load_profile

    noise = load_profile(profile).noise
    return math.hypot(noise.run_cv, math.sqrt(math.pi / 2) * noise.cv / math.sqrt(runs))


def fresh_measure(address: str, arch_strs, seed: int = 1) -> dict[str, float]:
    """Each cell's network at full size, measured once more on the agent (new weights, new samples)."""
    from hilnas.agent.config import MeasureConfig
    from hilnas.searchers.genotype import NB201Genotype
    from hilnas.searchers.spaces import create_space
    from hilnas.server.client import AgentClient, ClientConfig
    from hilnas.server.model_meta import export_network

    full, out = create_space("nb201"), {}
    config = MeasureConfig(**FRESH_MEASURE)
    with AgentClient(ClientConfig(address=address)) as client:
        for a in sorted(set(arch_strs)):
            r = client.benchmark(export_network(full, NB201Genotype.from_arch_str(a), seed=seed), config=config)
            out[a] = r.latency.median_ms if r.status.measured and r.latency else math.nan
    return out


def repaired_to(arch: str, budget: float, cost) -> tuple[str, int]:
    """An unconstrained search's cell moved within the budget by ``dca.repair`` (uniform alphas: fewest moves)."""
    import torch

    from hilnas.searchers.dca.repair import edges_changed, repair
    from hilnas.searchers.genotype import NB201Genotype
    from hilnas.searchers.spaces import create_space

    full = create_space("nb201")
    g = NB201Genotype.from_arch_str(arch)
    if cost.genotype_cost(full, g) <= budget:
        return arch, 0
    fix = repair(full, cost, g, budget, {"cell": torch.full((6, 5), 0.2)})
    return fix.genotype.arch_str, edges_changed(g, fix.genotype)


def score(rows: list[dict], oracles: dict, fresh: dict) -> None:
    """Add table accuracy, simulated latency, regret and budget hits to every (method, device, budget, seed) row."""
    for r in rows:
        o, b = oracles[r["device"]], r["budget"]
        best = o.best_within(b)
        for key in ("derived", "final"):
            a = r[key]
            r[f"{key}_acc"] = o.accuracy[a]
            r[f"{key}_sim_ms"] = o.latency.get(a, math.nan)
            r[f"{key}_measured_ms"] = fresh[r["device"]].get(a, math.nan)
            r[f"{key}_hit"] = r[f"{key}_measured_ms"] / b
            # over budget (simulated) the cell is no answer: its regret counts as infinite
            r[f"{key}_regret"] = best[0] - o.accuracy[a] if o.latency.get(a, math.inf) <= b else math.inf
        r["oracle_acc"], r["oracle_cell"] = best
        r["in_band_without_repair"] = BAND[0] <= r["derived_hit"] <= BAND[1]


def summarise(rows: list[dict]) -> dict:
    out = {}
    for m in sorted({r["method"] for r in rows}):
        rs = [r for r in rows if r["method"] == m]
        regrets = [r["final_regret"] for r in rs]
        within = [x for x in regrets if math.isfinite(x)]
        out[m] = {"runs": len(rs),
                  "in_band_without_repair": sum(r["in_band_without_repair"] for r in rs) / len(rs),
                  "within_budget_without_repair": sum(r["derived_hit"] <= 1.0 for r in rs) / len(rs),
                  "repaired": sum(bool(r.get("repaired")) for r in rs),
                  "median_hit_before_repair": statistics.median(r["derived_hit"] for r in rs),
                  "median_hit_after_repair": statistics.median(r["final_hit"] for r in rs),
                  "median_regret": statistics.median(regrets) if regrets else None,   # over budget = inf
                  "median_regret_within_budget": statistics.median(within) if within else None,
                  "over_budget_simulated": len(regrets) - len(within),
                  "over_budget_after_repair": sum(r["final_hit"] > 1.0 for r in rs)}
    return out


def plot(path: Path, oracles: dict, rows: list[dict], budgets: dict, families: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    marks = {"dca": ("o", "tab:red"), "pcdarts": ("s", "tab:blue"), "penalty": ("^", "tab:green"),
             "random": ("x", "tab:gray"), "hypernet": ("D", "tab:purple")}
    fig, axes = plt.subplots(1, len(oracles), figsize=(7 * len(oracles), 5.5), squeeze=False)
    for ax, (dev, o) in zip(axes[0], oracles.items()):
        xs = list(o.latency.values())
        ax.scatter(xs, [o.accuracy[a] for a in o.latency], s=2, c="0.85", label="all cells", rasterized=True)
        fx, fy = [f[0] for f in o.front], [f[1] for f in o.front]
        ax.step(fx, fy, where="post", c="k", lw=1.2, label="oracle Pareto front")
        for b in budgets[dev]:
            ax.axvline(b, c="0.6", ls=":", lw=0.8)
        for m, (marker, color) in marks.items():
            pts = [(r["final_sim_ms"], r["final_acc"]) for r in rows if r["device"] == dev and r["method"] == m]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, c=color, s=28, label=m, alpha=0.8)
        for fam in families.get(dev, []):
            ax.plot([o.latency.get(a, math.nan) for a in fam], [o.accuracy[a] for a in fam], c="tab:purple",
                    lw=0.6, alpha=0.5)
        ax.set(xlabel=f"simulated latency on {dev} (ms, NB201 C=16 N=5)", ylabel="CIFAR-10 accuracy (%, NATS-Bench)",
               ylim=(80, 95), title=f"{dev}: budgets dotted")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _dca_defaults() -> dict:
    """The --device-* flags' defaults: ``DcaConfig``'s own."""
    import dataclasses

    from hilnas.searchers.dca.search import DcaConfig
    return {f.name: f.default for f in dataclasses.fields(DcaConfig) if f.name in DEVICE_OPTIONS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accuracy-table", type=Path, default=ACCURACY_CSV,
                   help=f"NATS-Bench CIFAR-10 accuracy of all 15,625 cells (default: {ACCURACY_CSV})")
    p.add_argument("--data-dir", type=Path, default=CIFAR_SUBSET, help=f"CIFAR-10 folder (default: {CIFAR_SUBSET})")
    p.add_argument("--devices", default="raspi4,pixel3", help="simulated profiles (default: raspi4,pixel3)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"default: {','.join(METHODS)}")
    p.add_argument("--budgets", type=int, default=5, help="latency budgets per device (default: 5)")
    p.add_argument("--budget-rule", default="interior", metavar="edge|interior",
                   help="move each budget to the nearest one whose band [0.9, 1.0] x budget (edge: the budgets up to "
                        "2026-12-05's fourth session) or whose band shrunk by 1.5 sd of one fresh measurement on "
                        "each side (interior) holds >= 100 cells (default: interior)")
    p.add_argument("--seeds", type=int, default=3, help="search seeds OFFSET..OFFSET+N-1 (default: 3)")
    p.add_argument("--seed-offset", type=int, default=0, metavar="OFFSET",
                   help="the first search seed (default: 0; e.g. --seeds 1 --seed-offset 3: seed 3 alone, held out)")
    p.add_argument("--only-budgets", type=lambda v: {int(i) for i in v.split(",")}, default=None, metavar="I,J",
                   help="run only the I-th, J-th, ... of the --budgets budgets (1 = the smallest; default: all)")
    p.add_argument("--workers", type=int, default=2, help="searches run in this many processes (default: 2)")
    p.add_argument("--C", type=int, default=8, help="proxy supernet: channels of the first stage (default: 8)")
    p.add_argument("--N", type=int, default=1, help="proxy supernet: cells per stage (default: 1)")
    p.add_argument("--K", type=int, default=2, help="channel bottleneck: 1/K of the channels searched (default: 2)")
    p.add_argument("--train-size", type=int, default=10000, help="CIFAR images for the search, half val (default: all)")
    p.add_argument("--batch-size", type=int, default=64, help="default: 64")
    p.add_argument("--epochs", type=int, default=8, help="search epochs of every supernet method (default: 8)")
    p.add_argument("--warmup", type=int, default=2, help="weight-only epochs before the first architecture step "
                                                          "(default: 2)")
    p.add_argument("--arch-lr", type=float, default=6e-3, help="architecture Adam lr (default: 6e-3)")
    p.add_argument("--eval-batches", type=int, default=10, help="validation batches per evaluation (default: 10)")
    p.add_argument("--band", default="0.91,0.99", help="dca: the band its dual ascent aims at (default: 0.91,0.99)")
    p.add_argument("--multiplier-lr", type=float, default=0.05, help="dca: the multiplier's dual step (default: 0.05)")
    p.add_argument("--rho", type=float, default=100.0, help="dca: the augmented Lagrangian's weight (default: 100)")
    p.add_argument("--penalty-seeds", type=int, default=None, help="penalty: seeds (default: --seeds)")
    p.add_argument("--no-feedback", dest="feedback", action="store_false",
                   help="dca: do not measure its networks on the device during the search (default: measure)")
    add_device_options(p, "dca: ", _dca_defaults())
    p.add_argument("--select", default="auto", metavar="auto|alpha|perturbation",
                   help="dca: how the edges decided on the prediction choose their op: by the alphas (the "
                        "Lagrangian) or by the supernet's validation log-likelihood with the edge fixed to each "
                        "feasible op (perturbation, DARTS-PT); auto (default, as DcaConfig): perturbation on NB201. "
                        "Each row records the rule that ran")
    p.add_argument("--penalty-weight", type=float, default=1.0, help="penalty: the fixed weight (default: 1)")
    p.add_argument("--out", default="search_quality", help="results name under benchmarks/results (default: "
                                                            "search_quality)")
    p.add_argument("--hypernet-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="hypernet: a HypernetConfig setting, repeatable (e.g. --hypernet-opt phase1=dearest "
                        "--hypernet-opt anchor=pinned; default: the config's defaults, whose 'auto' settings "
                        "resolve per space: NB201 sandwich-children, relaxed, phase 1 dearest, anchor pinned, "
                        "uniform scale draws, knee family, derivation argmax)")
    args = p.parse_args()
    try:   # checked before anything runs, as the other inputs
        args.hypernet_opt = hypernet_options(args.hypernet_opt)
    except ValueError as err:
        print(f"bench_search_quality: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        read_accuracy(args.accuracy_table)   # bad inputs first, before any search or agent starts
        check_data_dir(args.data_dir)
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = sorted(set(methods) - set(METHODS))
        if args.budget_rule not in BUDGET_RULES:
            raise InputError(f"--budget-rule {args.budget_rule}: use --budget-rule interior (the default) or edge "
                             "(the budgets up to 2026-12-05's fourth session)")
        if args.select not in SELECT_CHOICES:
            raise InputError(f"--select {args.select}: use --select auto (the default), alpha or perturbation")
        if args.seed_offset < 0:
            raise InputError(f"--seed-offset {args.seed_offset}: the first seed must be >= 0, e.g. --seed-offset 3")
        if args.only_budgets and not args.only_budgets <= set(range(1, args.budgets + 1)):
            raise InputError(f"--only-budgets {','.join(map(str, sorted(args.only_budgets)))}: the budgets are "
                             f"numbered 1..{args.budgets} (--budgets), e.g. --only-budgets 1")
        if (unknown or args.seeds < 1 or args.budgets < 1 or args.workers < 1 or args.device_decisions < 0
                or args.device_repeats < 1 or not 0 <= args.ratio_tolerance < 1 or args.device_reopen < 0
                or args.device_reopen_measurements < 0 or args.device_margin_sigmas < 0
                or args.device_oneshot_batches < 0 or args.device_fit_sample < 0 or args.device_reopen_sigmas < 0
                or args.device_inside_sigmas < 0 or args.lookahead_middle not in (0, 1)
                or not 0 <= args.lookahead_widen <= 6):
            raise InputError(f"--methods takes {', '.join(METHODS)} (got {unknown or methods}); --seeds, --budgets, "
                             "--workers and --device-repeats must be >= 1, --device-decisions >= 0, "
                             "--ratio-tolerance in [0, 1), --device-reopen*, --device-margin-sigmas and "
                             "--device-oneshot-batches, --device-fit-sample, --device-reopen-sigmas, "
                             "--device-inside-sigmas >= 0, --lookahead-middle 0 or 1, --lookahead-widen 0-6")
    except InputError as err:
        print(f"bench_search_quality: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    run(args, methods)


def run(args, methods: list[str]) -> None:
    from concurrent.futures import ProcessPoolExecutor

    from nb201_oracle import simulated_latencies

    from hilnas.searchers.spaces import create_space

    started = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f} s] {msg}", flush=True)
    accuracy = read_accuracy(args.accuracy_table)
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    latency = simulated_latencies(tuple(devices), progress=say)
    oracles = {d: Oracle(accuracy, latency[d]) for d in devices}
    spreads = {d: fresh_spread(d) for d in devices}
    budgets = {d: choose_budgets(oracles[d], args.budgets, rule=args.budget_rule, spread=spreads[d]) for d in devices}
    if args.only_budgets:   # a part of the grid (a smoke run): the same budgets the full run has at those places
        budgets = {d: [b for i, b in enumerate(bs, 1) if i in args.only_budgets] for d, bs in budgets.items()}
    reports = {d: budget_report(oracles[d], budgets[d], spreads[d]) for d in devices}
    for d in devices:
        counts = ", ".join(f"{r['band_cells']}/{r['interior_cells']}" for r in reports[d])
        ceilings = ", ".join(f"{r['ceiling']:.2f}" for r in reports[d])
        say(f"{d}: cells {oracles[d].range()[0]:.2f}-{oracles[d].range()[1]:.2f} ms; {args.budget_rule} budgets "
            f"{budgets[d]} ms; one fresh measurement's sd {spreads[d]:.2%}; cells in band / interior {counts}; "
            f"achievable ceiling {ceilings}")
    seeds = search_seeds(args.seeds, args.seed_offset)
    worker_args = {k: getattr(args, k) for k in ("C", "N", "K", "train_size", "batch_size", "epochs", "warmup",
                                                 "arch_lr", "eval_batches", "multiplier_lr", "rho", "feedback",
                                                  *DEVICE_OPTIONS, "penalty_weight", "hypernet_opt", "select")}
    worker_args.update(data_dir=str(args.data_dir), band=[float(x) for x in args.band.split(",")])
    servers, rows, families = [], [], {}

    def partial(raw: list[dict]) -> None:  # the searches so far, in case a long run is stopped
        (RESULTS / f"{args.out}.partial.json").write_text(json.dumps(raw, default=str))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            setups = {}
            for d in devices:
                server, setups[d] = simulated_device(d, create_space("nb201"), "nb201", Path(tmp), say)
                servers.append(server)
            with ProcessPoolExecutor(args.workers, initializer=_init_worker, initargs=(worker_args, setups)) as pool:
                def batch(jobs: list[dict], what: str) -> list[dict]:
                    done = []
                    for r in pool.map(run_job, jobs):
                        done.append(r)
                        say(f"{what} {len(done)}/{len(jobs)}: {r['method']} {r.get('device', '')} "
                            f"{r.get('budget', '')} seed {r['seed']} ({r['job_s']:.0f} s)")
                    return done
                per_budget = [{"device": d, "budget": b, "seed": s} for d in devices for b in budgets[d] for s in seeds]
                dca_runs = batch([{"method": "dca", **j} for j in per_budget], "dca") if "dca" in methods else []
                partial(dca_runs)
                jobs = []
                if "random" in methods:
                    wall = {(r["device"], r["budget"], r["seed"]): r["wall_s"] for r in dca_runs}
                    default = statistics.median(wall.values()) if wall else 60.0
                    jobs += [{"method": "random", "time_budget_s": wall.get((j["device"], j["budget"], j["seed"]),
                                                                             default), **j} for j in per_budget]
                if "pcdarts" in methods:
                    jobs += [{"method": "pcdarts", "seed": s} for s in seeds]
                if "hypernet" in methods:
                    jobs += [{"method": "hypernet", "device": d, "seed": s, "budgets": budgets[d]}
                             for d in devices for s in seeds]
                others = batch(jobs, "baselines")
                partial(dca_runs + others)
                if "penalty" in methods:
                    n = args.penalty_seeds or args.seeds
                    others += batch([{"method": "penalty", **j} for j in per_budget if j["seed"] < args.seed_offset + n],
                                    "penalty")
            raw = dca_runs + others
            rows = expand(raw, devices, budgets, setups)
            fresh = {d: fresh_measure(setups[d]["address"], [r[k] for r in rows if r["device"] == d
                                                             for k in ("derived", "final")]) for d in devices}
        finally:
            for s in servers:
                s.stop(0)
    score(rows, oracles, fresh)
    families = {d: [r["family"] for r in raw if r["method"] == "hypernet" and r["device"] == d] for d in devices}
    family_stats = hypernet_family(raw, oracles)
    summary = summarise(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(RESULTS / f"{args.out}.png", oracles, rows, budgets, families)
    write(args.out, {"setup": vars(args) | {"accuracy_table": str(args.accuracy_table), "data_dir": str(args.data_dir)},
                     "devices": {d: {k: v for k, v in setups[d].items() if k not in ("lut", "address")}
                                 for d in devices},
                     "oracle": {d: {"range_ms": oracles[d].range(), "front": oracles[d].front} for d in devices},
                     "budgets": budgets, "budget_rule": args.budget_rule,
                     "budget_report": {d: {"fresh_spread": spreads[d], "margin_sigmas": MARGIN_SIGMAS,
                                           "spread_source": "the simulated device's noise model (fresh_spread)",
                                           "budgets": reports[d]} for d in devices},
                     "summary": summary, "hypernet_family": family_stats, "rows": rows,
                     "searches": [{k: v for k, v in r.items() if k != "family"} for r in raw],
                     "wall_s": time.perf_counter() - started})
    print_summary(summary, family_stats)


def search_seeds(n: int, offset: int = 0) -> list[int]:
    """The seeds ``--seeds n --seed-offset offset`` runs: offset, ..., offset + n - 1 (a held-out seed: n=1)."""
    return list(range(offset, offset + n))


def expand(raw: list[dict], devices: list[str], budgets: dict, setups: dict) -> list[dict]:
    """One row per (method, device, budget, seed): budget-free searches are scored against every budget."""
    from hilnas.searchers.cost import CorrectedCost, FullSizeCost, LutLatencyCost
    from hilnas.searchers.spaces import create_space

    full = create_space("nb201")
    costs = {}
    for d in devices:
        base = LutLatencyCost(setups[d]["lut"])
        c = setups[d]["correction"]
        costs[d] = FullSizeCost(CorrectedCost(base, c["scale"], c["offset_ms"]) if c else base, full)
    rows = []
    for r in raw:
        if r["method"] == "pcdarts":
            for d in devices:
                for b in budgets[d]:
                    final, changed = repaired_to(r["derived"], b, costs[d])
                    rows.append({**r, "device": d, "budget": b, "final": final, "repaired": changed > 0,
                                 "edges_changed": changed, "epochs": None})
        elif r["method"] == "hypernet":
            for b in budgets[r["device"]]:
                a = r["members"].get(str(b))
                if a is not None:
                    rows.append({"method": "hypernet", "device": r["device"], "budget": b, "seed": r["seed"],
                                 "derived": a, "final": a, "repaired": False, "edges_changed": 0})
        else:
            rows.append({k: v for k, v in r.items() if k not in ("epochs", "device_log")})
    return rows


def hypernet_family(raw: list[dict], oracles: dict) -> list[dict]:
    """Per hypernetwork run: regret of each member at its own simulated latency, and the share of the
    reachable latency range (cheapest to dearest cell on the device) its members span."""
    out = []
    for r in raw:
        if r["method"] != "hypernet":
            continue
        o = oracles[r["device"]]
        lats = [o.latency[a] for a in r["family"] if a in o.latency]
        lo, hi = o.range()
        out.append({"device": r["device"], "seed": r["seed"], "members": len(set(r["family"])),
                    "span_ms": [min(lats), max(lats)] if lats else None,
                    "span_share": (max(lats) - min(lats)) / (hi - lo) if lats else 0.0,
                    "member_regret": [o.best_within(o.latency[a])[0] - o.accuracy[a] for a in dict.fromkeys(r["family"])
                                      if a in o.latency],
                    "outside_range": [b for b, a in r["members"].items() if a is None]})
    return out


def print_summary(summary: dict, family: list[dict]) -> None:
    print(f"{'method':<9} {'runs':>4} {'in band w/o repair':>18} {'median hit':>10} {'repaired':>8} "
          f"{'median regret':>13}")
    for m, s in summary.items():
        reg = "n/a" if s["median_regret"] is None else f"{s['median_regret']:.2f}"
        print(f"{m:<9} {s['runs']:>4} {s['in_band_without_repair']:>17.0%} {s['median_hit_before_repair']:>10.3f} "
              f"{s['repaired']:>8} {reg:>13}")
    for f in family:
        print(f"hypernet {f['device']} seed {f['seed']}: {f['members']} members span {f['span_share']:.0%} of the "
              f"reachable latency range; median member regret "
              f"{statistics.median(f['member_regret']) if f['member_regret'] else float('nan'):.2f}")


if __name__ == "__main__":
    main()
