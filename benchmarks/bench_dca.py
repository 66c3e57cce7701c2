"""DCA-NAS benchmark: search cost against DARTS, and budgets met on a (simulated) device.

    /work/venv/bin/python benchmarks/bench_dca.py                      # default: ~6 min (idle 2-core host)
    /work/venv/bin/python benchmarks/bench_dca.py --train-size 2000 --search-epochs 3 --budgets 0.1,0.2,0.3

Part 1, in one run on the same data (the shipped Fashion-MNIST demo subset, stratified) and the
same epochs: DCA-NAS (weight sharing + channel bottleneck + derived cells + the constraint) and
first-order DARTS (no speed-ups, no constraint), each in its own subprocess so that its peak RSS
(``ru_maxrss``) is its own. Reported: search wall time and peak memory as ratios DCA / DARTS
(target: time <= 0.4, seed 001 section 5), and the test accuracy of each derived network after the
same final training.

Part 2: a simulated Raspberry Pi 4 agent (``hilnas.agent.server.create_server(ServeConfig(
simulate="raspi4"))``) on loopback, a latency LUT built for the space with ``LutBuilder``, then
seed 001's lookup graph (searches at several search-time budgets, each derived network measured
whole on the device), and for each device budget the search the graph points to, refined with
more searches while the device disagrees (``lug.search_for_budget``). Reported: for every budget
the *measured* latency of the chosen network over the budget (target: within [0.9, 1.0]), with
the same hyper-parameters for all budgets. Budgets are placed between the latency of the cheapest
derivable network and that of the network the same search picks when no budget binds (one
extra search): above the latter a budget does not bind, and the search rightly returns a network
below it (e.g. x0.85 at a budget 30 % up the full latency range in an earlier run).

Writes benchmarks/results/dca.json. Runs torch on one thread (faster than two on this shared
2-core machine, where OpenMP workers contend).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402


def space_and_data(args):
    from hilnas.searchers.data import DatasetConfig, loaders_for
    from hilnas.searchers.spaces import create_space

    data = DatasetConfig(name="demo", train_size=args.train_size, val_fraction=0.5, batch_size=args.batch_size,
                         seed=args.seed)
    datasets, loaders = loaders_for(data)
    c, h, _ = datasets.input_shape
    space = create_space("darts", in_channels=c, input_size=h, num_classes=datasets.num_classes, C=args.C,
                         layers=args.layers)
    return space, data, loaders


def search_config(method: str, args, budget):
    from hilnas.searchers.dca.architect import ArchConfig
    from hilnas.searchers.dca.baselines import DartsConfig
    from hilnas.searchers.dca import DcaConfig

    common = dict(epochs=args.search_epochs, arch=ArchConfig(lr=args.arch_lr))
    if method == "dca":
        return DcaConfig(budget=budget, multiplier_lr=args.multiplier_lr, **common)
    return DartsConfig(budget=budget, **common)


# -- part 1: one method in a fresh process ------------------------------------------------------------
def worker(args) -> None:
    """Search with one method, then train the derived network; print one JSON line."""
    import dataclasses

    import torch

    from hilnas.searchers import dca
    from hilnas.searchers.dca.baselines import search_darts
    from hilnas.searchers.cost import LutLatencyCost
    from hilnas.searchers.data import loaders_for
    from hilnas.searchers.model import build_network
    from hilnas.searchers.result import Budget
    from hilnas.searchers.train import TrainConfig, train

    torch.set_num_threads(1)
    space, data, loaders = space_and_data(args)
    lut = json.loads(Path(args.lut).read_text())
    cost = LutLatencyCost(lut)
    cost.tables(space)  # price tables and imports before the baseline memory reading
    budget = Budget("latency_ms", args.part1_budget)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fn = dca.search if args.worker == "dca" else search_darts
    result = fn(space, cost, search_config(args.worker, args, budget), seed=args.seed, data=loaders)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    full = dataclasses.replace(data, val_fraction=0.0, train_size=args.final_train_size)
    _, final = loaders_for(full)
    trained = train(build_network(space, result.genotype), final,
                    TrainConfig(epochs=args.train_epochs, lr=0.05, seed=args.seed, device="cpu", log_every=0))
    print(json.dumps({
        "method": args.worker, "search_wall_s": result.wall_s, "steps": result.steps,
        "peak_rss_mb": rss_after, "rss_before_search_mb": rss_before, "peak_rise_mb": rss_after - rss_before,
        "sampled_peak_rise_mb": result.peak_mem_mb, "predicted_latency_ms": result.cost,
        "within_budget": result.within_budget, "genotype": result.genotype.to_dict(),
        "supernet_val_acc": result.val_acc, "final_test_acc": trained.final_acc,
        "final_train_s": trained.wall_s}))


def run_worker(method: str, args, lut_path: str, budget: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--lut", lut_path, "--part1-budget", str(budget)]
    for k in ("train_size", "final_train_size", "batch_size", "search_epochs", "train_epochs", "C", "layers",
              "seed", "arch_lr", "multiplier_lr"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{method} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the device -------------------------------------------------------------------------------------
def device_and_lut(space, tmp: Path):
    from hilnas.agent.config import MeasureConfig, ServeConfig
    from hilnas.agent.server import create_server
    from hilnas.searchers.op_key import decode, enumerate_op_keys, export_op_onnx
    from hilnas.server.client import AgentClient, ClientConfig
    from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
    from hilnas.server.store import Store

    server = create_server(ServeConfig(port=0, simulate="raspi4", cache_dir=str(tmp / "cache")))
    client = AgentClient(ClientConfig(address=server.address))
    store = Store.open(tmp / "ws")
    measure = MeasureConfig(warmup_runs=3, min_runs=15, min_seconds=0.05)
    keys = [k.encode() for k in enumerate_op_keys(space)]
    t0 = time.perf_counter()
    report = LutBuilder(store, "raspi4-sim", [client], LutBuildConfig(measure=measure)).build(
        keys, lambda k: export_op_onnx(decode(k)))
    lut_id = store.find_lut("raspi4-sim")
    lut = {k: r.median_ms for k, r in store.lut_dict(lut_id, measured_only=True).items()}
    return server, client, store, lut, {"keys": len(keys), "measured": report.measured,
                                         "build_s": time.perf_counter() - t0}


def measure_fn(client, space):
    from hilnas.agent.config import MeasureConfig
    from hilnas.searchers.export import export_onnx
    from hilnas.searchers.model import build_network

    config = MeasureConfig(warmup_runs=3, min_runs=15, min_seconds=0.05)

    def measure(genotype) -> float:
        r = client.benchmark(export_onnx(build_network(space, genotype).eval(), space.input_shape), config=config)
        if not r.status.measured:
            raise RuntimeError(f"device measurement failed: {r.status.name} {r.error}")
        return r.latency.median_ms
    return measure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-size", type=int, default=800, help="demo images used by the searches (half for val)")
    p.add_argument("--final-train-size", type=int, default=1000, help="images the derived networks train on")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--search-epochs", type=int, default=2)
    p.add_argument("--train-epochs", type=int, default=2, help="final training of each derived network")
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arch-lr", type=float, default=0.03)
    p.add_argument("--multiplier-lr", type=float, default=0.5)
    p.add_argument("--budgets", default="0.3,0.55,0.8",
                   help="device budgets, as positions between the cheapest network's latency (0) and the latency "
                        "of what the same search picks without a binding budget (1)")
    p.add_argument("--lug-fractions", default="0.05,0.12,0.19,0.26,0.33",
                   help="LUG search budgets, fractions of the LUT-predicted range")
    p.add_argument("--lug-rounds", type=int, default=2, help="new searches per budget at most (refinement)")
    p.add_argument("--lug-axis", default="predicted", choices=["predicted", "search_budget"],
                   help="x axis of the lookup graph (search_budget = seed 001's graph)")
    p.add_argument("--lug-target", type=float, default=0.95)
    p.add_argument("--workers", type=int, default=1, help="threads for the LUG searches")
    p.add_argument("--skip-part1", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--lut", help=argparse.SUPPRESS)
    p.add_argument("--part1-budget", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    import torch

    from hilnas.searchers.cost import LutLatencyCost, extremes
    from hilnas.searchers.dca import search
    from hilnas.searchers.dca.lug import LugPoint, build_lug, search_for_budget
    from hilnas.searchers.result import Budget

    torch.set_num_threads(1)
    started = time.perf_counter()
    space, data, loaders = space_and_data(args)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dca-"))
    server, client, store, lut, lut_info = device_and_lut(space, tmp)
    measure = measure_fn(client, space)
    cost = LutLatencyCost(lut)
    ex = extremes(space, cost)
    lo_dev, hi_dev = measure(ex.cheapest), measure(ex.dearest)
    print(f"LUT: {lut_info}; predicted range {ex.cheapest_cost:.3f}..{ex.dearest_cost:.3f} ms, "
          f"measured {lo_dev:.3f}..{hi_dev:.3f} ms", flush=True)
    out: dict = {"config": {k: v for k, v in vars(args).items() if not k.startswith(("worker", "lut", "part1"))},
                 "space": {"name": "darts", "C": args.C, "layers": args.layers, "input": list(space.input_shape)},
                 "data": {"name": "demo (Fashion-MNIST subset)", "search_images": args.train_size,
                          "final_train_images": args.final_train_size},
                 "device": {"profile": "raspi4 (simulated)", "lut": lut_info,
                            "predicted_range_ms": [ex.cheapest_cost, ex.dearest_cost],
                            "measured_range_ms": [lo_dev, hi_dev]}}

    if not args.skip_part1:
        lut_path = tmp / "lut.json"
        lut_path.write_text(json.dumps(lut))
        b1 = ex.cheapest_cost + 0.25 * (ex.dearest_cost - ex.cheapest_cost)
        runs = {}
        for method in ("dca", "darts"):
            print(f"part 1: {method} ...", flush=True)
            runs[method] = run_worker(method, args, str(lut_path), b1)
            print(f"  {json.dumps({k: v for k, v in runs[method].items() if k != 'genotype'})}", flush=True)
        d, a = runs["dca"], runs["darts"]
        out["part1"] = {
            "dca_budget_predicted_ms": b1, "runs": runs,
            "search_time_ratio": d["search_wall_s"] / a["search_wall_s"],
            "peak_rss_ratio": d["peak_rss_mb"] / a["peak_rss_mb"],
            "peak_rise_ratio": d["peak_rise_mb"] / a["peak_rise_mb"] if a["peak_rise_mb"] > 0 else None,
            "final_test_acc": {"dca": d["final_test_acc"], "darts": a["final_test_acc"]},
            "target_time_ratio": 0.4}
        print(f"part 1: time ratio {out['part1']['search_time_ratio']:.3f}, peak RSS ratio "
              f"{out['part1']['peak_rss_ratio']:.3f}, acc dca {d['final_test_acc']:.3f} "
              f"darts {a['final_test_acc']:.3f}",
              flush=True)

    # part 2: LUG, then one search (plus refinements) per device budget
    def search_at(b: float):
        return search(space, cost, search_config("dca", args, Budget("latency_ms", b)), seed=args.seed, data=loaders)

    lug_budgets = [ex.cheapest_cost + f * (ex.dearest_cost - ex.cheapest_cost)
                   for f in map(float, args.lug_fractions.split(","))]
    t0 = time.perf_counter()
    free = search_at(ex.dearest_cost)  # nothing derivable exceeds this budget: the multiplier stays 0
    free_ms = measure(free.genotype)
    print(f"part 2: without a binding budget the search picks {free.cost:.3f} ms predicted, {free_ms:.3f} ms "
          f"measured ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.workers > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(args.workers) as pool:
            graph, known = build_lug(search_at, lug_budgets, measure, metric="latency_ms", axis=args.lug_axis,
                                     map_fn=pool.map)
    else:
        graph, known = build_lug(search_at, lug_budgets, measure, metric="latency_ms", axis=args.lug_axis)
    graph = graph.with_point(LugPoint(ex.dearest_cost, free.cost, free_ms, free.genotype))
    known[ex.dearest_cost] = free
    lug_s = time.perf_counter() - t0
    print(f"part 2: LUG of {len(graph.points)} searches in {lug_s:.0f} s: "
          + ", ".join(f"{p.search_budget:.2f}->{p.measured:.2f}" for p in graph.points), flush=True)
    rows = []
    for f in map(float, args.budgets.split(",")):
        device_budget = lo_dev + f * (free_ms - lo_dev)
        t1 = time.perf_counter()
        pick = search_for_budget(graph, search_at, measure, device_budget, target=args.lug_target,
                                 rounds=args.lug_rounds, known=known)
        graph = pick.graph  # later budgets use every point measured so far
        known.update(pick.searched)
        ratio = pick.measured / device_budget
        rows.append({"fraction": f, "device_budget_ms": device_budget, "search_budget_ms": pick.search_budget,
                     "predicted_ms": pick.result.cost, "measured_ms": pick.measured, "ratio": ratio,
                     "in_window": 0.9 <= ratio <= 1.0, "searches": pick.rounds,
                     "candidates": [{"search_budget_ms": b, "measured_ms": m} for b, m in pick.tried],
                     "final_multiplier": pick.result.multiplier_history[-1] if pick.result.multiplier_history else 0.0,
                     "repaired": pick.result.repaired, "seconds": time.perf_counter() - t1})
        print(f"  budget {device_budget:.3f} ms: measured {pick.measured:.3f} ms (x{ratio:.3f}), "
              f"search budget {pick.search_budget:.3f}, {pick.rounds} more search(es)", flush=True)
    out["part2"] = {"lug_initial_s": lug_s, "lug": graph.to_dict(), "budgets": rows,
                    "unconstrained": {"predicted_ms": free.cost, "measured_ms": free_ms},
                    "all_in_window": all(r["in_window"] for r in rows), "target_window": [0.9, 1.0]}
    out["total_wall_s"] = time.perf_counter() - started
    server.stop()
    store.close()
    write("dca", out)


if __name__ == "__main__":
    main()
