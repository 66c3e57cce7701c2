"""Hypernetwork benchmark: K architectures from one hypernetwork run vs K separate DCA-NAS runs.

    /work/venv/bin/python benchmarks/bench_hypernet.py [--space nb201] [--k 5] [--epochs 3] [--train-epochs 3]

Same data (the shipped Fashion-MNIST demo subset, half of the training pool for the weights and
half for the architecture), same search epochs and batch size for both methods, one simulated
Raspberry Pi 4 agent started in-process whose LUT is built first (``server/lut/builder.py``).

1. One hypernetwork run (``searchers.hypernet.search``), then K latency budgets spread evenly over
   the family's reachable LUT-latency range, one member each (``for_budget``).
2. K DCA-NAS runs (``searchers.dca.search``), one per budget.
3. Every network (both methods, and the hypernetwork's lambda grid) is measured whole on the agent;
   every final network is trained from scratch the same way (``--final-seeds`` trainings, mean
   accuracy) on the real Fashion-MNIST when it is installed (10,000 test images), else on the demo
   subset (500 test images).

Reported: total search time of the hypernetwork (training + deriving all K) over one DCA-NAS run
(target <= 1.5) and over all K; accuracy at matched latency, pair by pair (target: within 1 point):
each DCA network against the family's member for a budget equal to the DCA network's own LUT
latency, since a DCA run may land well under its budget (the same-budget pairs are reported too);
monotonicity violations of the family's curve (predicted before isotonic selection, after it, and
measured on the device; target 0).
Writes benchmarks/results/hypernet.json (NB201) or hypernet_darts.json (``--space darts --C 4 --cells 3``).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import warm_torch, write  # noqa: E402

from hilnas.server.cli.search.hypernet import DERIVATIONS, WEIGHT_LAMBDAS, lambda_arg  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="nb201", choices=["nb201", "darts"])
    p.add_argument("--C", type=int, default=8, help="channels of the first cells")
    p.add_argument("--cells", type=int, default=1, help="NB201: cells per stage (N); DARTS: cells (layers)")
    p.add_argument("--k", type=int, default=5, help="architectures / DCA-NAS runs compared (>= 5)")
    p.add_argument("--epochs", type=int, default=3, help="search epochs of every run")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-epochs", type=int, default=3, help="final training of each network")
    p.add_argument("--final-data", default="auto", choices=["auto", "fashion-mnist", "demo"],
                   help="data of the final training and test (auto: the real Fashion-MNIST when installed, "
                        "its 10,000 test images put the binomial error near 0.4 points; else the demo subset)")
    p.add_argument("--final-train-size", type=int, default=10000, help="final training images (fashion-mnist)")
    p.add_argument("--final-seeds", type=int, default=2, help="final trainings per network, accuracies averaged")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    p.add_argument("--family", action="store_true",
                   help="only the family of one run: distinct members of a --grid-point grid and the share of the "
                        "space's reachable latency range they span (issue 12), no DCA-NAS runs")
    p.add_argument("--dataset", default="demo", choices=["demo", "cifar10"],
                   help="--family: search data (cifar10 = the CIFAR-10 subset in shared/data)")
    p.add_argument("--train-size", type=int, default=None,
                   help="--family: images of the search's training pool, half for the weights and half for the "
                        "architecture (a stratified subset; default: all, e.g. 10,000 of the CIFAR-10 subset)")
    p.add_argument("--grid", type=int, default=12, help="--family: grid points (default 12)")
    p.add_argument("--sampling", default="gumbel", choices=["gumbel", "dirichlet"], help="--family: lambda's draws")
    p.add_argument("--kappa", type=float, default=0.1, help="--family: the latency term's weight (default 0.1)")
    p.add_argument("--kappa-scaling", default="scale", choices=["scale", "Lambda"],
                   help="--family: what kappa multiplies: the drawn scale (default) or Lambda at every scale (before "
                        "issue 12's fix)")
    p.add_argument("--hypernet-lr", type=float, default=None,
                   help="--family: the hypernetwork's Adam learning rate (default: HypernetConfig's, 0.001; 0.01 "
                        "before issue 12's fix)")
    p.add_argument("--derivation", default=None, choices=DERIVATIONS,
                   help="--family: the headline derivation (default: HypernetConfig's auto: argmax on every space; "
                        "median: NB201 only, per edge the op at the median of the op weights ordered by cost; "
                        "conv-median: NB201 only, the median kept to convolutions while the argmax is one); argmax's "
                        "(or, when it is "
                        "the headline, expected-cost's) grid is reported too, from the same trained run; with "
                        "--from-saved it replaces the saved run's derivation (a derivation needs no training)")
    p.add_argument("--sweep-rule", default=None, choices=["descent", "reach"],
                   help="--family: which scale of the sweep's walk is Lambda (default: HypernetConfig's, descent = "
                        "where the walk has made half its descent; reach = the walk's end, before issue 12's "
                        "continuation)")
    p.add_argument("--sweep-descent", type=float, default=None,
                   help="--family, --sweep-rule descent: the share of the walk's descent left at Lambda (default: "
                        "HypernetConfig's, 0.5)")
    p.add_argument("--complexity", default="params", choices=["params", "latency"],
                   help="--family: Reg, what lambda weighs: params (default; kappa x the LUT latency apart) or "
                        "latency (the LUT latency, one term: lambda's walk and the target in one unit, seed 004's "
                        "lambda T^T gamma)")
    p.add_argument("--warmup-fraction", type=float, default=None,
                   help="--family: share of the weight steps before the sweep and the first hypernetwork step "
                        "(default: HypernetConfig's, 0.25)")
    p.add_argument("--zero-fraction", type=float, default=None,
                   help="--family: share of lambda draws at 0, anchoring the accuracy-first end (default: "
                        "HypernetConfig's, 0)")
    p.add_argument("--weight-lambda", default=None, choices=WEIGHT_LAMBDAS,
                   help="--family: the weight step's architecture: a drawn lambda's, lambda = 0's, a uniformly drawn "
                        "valid cell's, the dearest cell's and a uniform one's in turn (sandwich), or the dearest "
                        "cell's, a child's of it (k edges redrawn, k in 1..E) and a uniform one's in turn "
                        "(sandwich-children), the warm-up included (default: HypernetConfig's, auto: per space, "
                        "DARTS sandwich, NB201 sandwich-children)")
    p.add_argument("--Lambda", default=None, type=lambda_arg,
                   help="--family: the scale's upper end: sweep (measured by the sweep's walk), auto (Theorem 1) or a "
                        "number in nats per full cost span (default: HypernetConfig's, sweep)")
    p.add_argument("--front-samples", type=int, default=40,
                   help="--family: random valid networks whose shared-weight loss locates the supernet's own "
                        "accuracy/latency front (default 40)")
    p.add_argument("--save", default=None, metavar="DIR",
                   help="--family: also save the trained hypernetwork there (``hypernet.io.save_trained``), so its "
                        "family can be derived again without training (default: not saved)")
    p.add_argument("--from-saved", default=None, metavar="DIR",
                   help="--family: derive from the hypernetwork a --save run left in DIR instead of training (give "
                        "the same space, data and seed; the search settings are the saved run's)")
    p.add_argument("--arch-step", default=None, choices=["relaxed", "straight-through"],
                   help="--family: the architecture step's forward: the relaxed mixture, or a cell drawn from the op "
                        "weights, one-hot everywhere, the gradient straight through (default: HypernetConfig's, auto: "
                        "relaxed on DARTS and NB201)")
    p.add_argument("--phase1", default=None, choices=["none", "dearest"],
                   help="--family: seed 004's phase 1 before the trade-off: none, or dearest (fit the hypernetwork's "
                        "output at and near lambda = 0 to the dearest valid cell) (default: HypernetConfig's, auto: "
                        "dearest on DARTS and NB201)")
    p.add_argument("--anchor", default=None, choices=["none", "pinned"],
                   help="--family: after phase 1, none, or pinned (lambda = 0's architecture held at phase 1's fit, the "
                        "other lambdas learning offsets from it; needs --phase1 dearest) (default: HypernetConfig's, "
                        "auto: pinned on DARTS and NB201)")
    p.add_argument("--knee", default=None, choices=["none", "family"],
                   help="--family: after each trade-off epoch but the last, none, or family (Lambda set to 1.5 x the "
                        "scale where the family reached the cheap end, at most the estimate, so the draws go where it "
                        "changes) (default: HypernetConfig's, auto: DARTS none, NB201 family)")
    p.add_argument("--scale-sampling", default=None, choices=["log", "uniform"],
                   help="--family: the scale's draws and the hypernetwork's input: log (fine near 0) or uniform on "
                        "[0, Lambda] (seed 004) (default: HypernetConfig's, auto: DARTS log, NB201 uniform)")
    p.add_argument("--epoch-val-batches", type=int, default=8,
                   help="--family: val batches (drawn once) the supernet's accuracy at lambda = 0 is measured on after "
                        "every epoch (default 8; 0 = not measured)")
    p.add_argument("--tag", default="", help="--family: suffix of the result file name")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.family:
        family_benchmark(args)
        return

    import torch

    from hilnas.agent.config import MeasureConfig, ServeConfig
    from hilnas.agent.server import create_server
    from hilnas.searchers import dca, hypernet
    from hilnas.searchers.cost import LutLatencyCost
    from hilnas.searchers.data import DatasetConfig, loaders_for
    from hilnas.searchers.hypernet.bound import is_valid
    from hilnas.searchers.model import build_network
    from hilnas.searchers.result import Budget
    from hilnas.searchers.spaces import create_space
    from hilnas.searchers.train import TrainConfig, evaluate, train
    from hilnas.server.client import AgentClient, ClientConfig
    from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
    from hilnas.server.lut.micromodels import MicroModels
    from hilnas.server.model_meta import export_network
    from hilnas.server.store import Store
    from hilnas.server.validation import lut_values

    torch.set_num_threads(args.threads)
    warm_torch()
    search_data = DatasetConfig(name="demo", val_fraction=0.5, batch_size=args.batch_size, seed=args.seed)
    final_name = args.final_data
    if final_name == "auto":
        from hilnas.searchers.data import DatasetError
        from hilnas.searchers.data.datasets import find_data_dir
        try:
            find_data_dir("fashion-mnist")
            final_name = "fashion-mnist"
        except (DatasetError, FileNotFoundError):
            final_name = "demo"
    final_data = DatasetConfig(name=final_name, val_fraction=0.0, batch_size=64, seed=args.seed,
                               train_size=args.final_train_size if final_name == "fashion-mnist" else None)
    datasets, loaders = loaders_for(search_data)
    final_sets, final_loaders = loaders_for(final_data)
    test_images = len(final_sets.test)
    c, h, _ = datasets.input_shape
    size = {"N": args.cells} if args.space == "nb201" else {"layers": args.cells}
    space = create_space(args.space, in_channels=c, input_size=h, num_classes=datasets.num_classes, C=args.C, **size)
    lut_measure = MeasureConfig(warmup_runs=3, min_runs=10, min_seconds=0.02)
    net_measure = MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.1)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        running = create_server(ServeConfig(port=0, simulate="raspi4", seed=args.seed, cache_dir=str(tmp / "cache")))
        try:
            address = f"127.0.0.1:{running.port}"
            with Store.open(tmp / "ws") as store, AgentClient(ClientConfig(address=address)) as agent:
                micro = MicroModels(tmp / "micro")
                LutBuilder(store, "raspi4-sim", [agent], LutBuildConfig(measure=lut_measure)).build(
                    MicroModels.keys_for_space(space), micro.onnx)
                cost = LutLatencyCost(lut_values(store, store.find_lut("raspi4-sim")))

                # 1. one hypernetwork run, K members
                t0, c0 = time.perf_counter(), time.process_time()
                hcfg = hypernet.HypernetConfig(epochs=args.epochs)
                hres = hypernet.search(space, cost, hcfg, seed=args.seed, data=loaders)
                lo, hi = hres.reachable()
                budgets = [lo + (hi - lo) * i / (args.k - 1) for i in range(args.k)]
                members = [hres.for_budget(Budget("latency_ms", b)) for b in budgets]
                hyper_s, hyper_cpu = time.perf_counter() - t0, time.process_time() - c0
                grid = hres.curve()
                dense = hres.curve(hres.grid(hcfg.curve_points))
                print(f"hypernetwork: {hyper_s:.1f} s (training {hres.wall_s:.1f} s), Lambda {hres.Lambda:.4g} "
                      f"({hres.bound.source if hres.bound else 'given'}), reachable [{lo:.4g}, {hi:.4g}] ms",
                      flush=True)

                # 2. K DCA-NAS runs
                dca_runs, dca_cpu = [], []
                for b in budgets:
                    t, c_ = time.perf_counter(), time.process_time()
                    r = dca.search(space, cost, dca.DcaConfig(epochs=args.epochs, budget=Budget("latency_ms", b)),
                                   seed=args.seed, data=loaders)
                    dca_runs.append((r, time.perf_counter() - t))
                    dca_cpu.append(time.process_time() - c_)
                    print(f"DCA-NAS at {b:.4g} ms: {dca_runs[-1][1]:.1f} s, cost {r.cost:.4g} ms", flush=True)

                # 3. measure and train every distinct network
                measured: dict = {}
                accuracy: dict = {}

                def measure(g) -> float | None:
                    if g not in measured:
                        res = agent.benchmark(export_network(space, g, seed=args.seed), config=net_measure)
                        measured[g] = res.latency.median_ms if res.status.measured and res.latency else None
                    return measured[g]

                def test_acc(g) -> float:
                    if g not in accuracy:  # the same trainings for every network: mean over --final-seeds
                        accs = []
                        for s in range(args.final_seeds):
                            net = build_network(space, g)
                            train(net, final_loaders, TrainConfig(epochs=args.train_epochs, lr=0.05, seed=args.seed + s,
                                                                  device="cpu", log_every=0, eval_split="none"))
                            accs.append(evaluate(net, final_loaders.test)[1])  # the test set once, at the end
                        accuracy[g] = statistics.mean(accs)
                    return accuracy[g]

                def matched_member(cost_ms: float):
                    """The family's member at the DCA network's own LUT latency (clamped into the range)."""
                    if cost_ms < lo:
                        return hres.curve(hres.grid(hcfg.curve_points)).points[-1], "below the family's range"
                    if cost_ms > hi:
                        return hres.architecture(0.0), "above the family's range"
                    return hres.for_budget(Budget("latency_ms", cost_ms)), ""

                pairs = []
                for b, m, (d, d_s) in zip(budgets, members, dca_runs):
                    pairs.append({
                        "budget_ms": b,
                        "hypernet": {"scale": m.tradeoff.scale, "genotype": m.genotype.to_dict(),
                                     "predicted_ms": m.costs["latency_ms"], "measured_ms": measure(m.genotype),
                                     "test_acc": test_acc(m.genotype), "valid": is_valid(space, m.genotype)},
                        "dca": {"genotype": d.genotype.to_dict(), "predicted_ms": d.cost,
                                "measured_ms": measure(d.genotype),
                                "test_acc": test_acc(d.genotype), "search_s": d_s, "repaired": d.repaired,
                                "valid": is_valid(space, d.genotype)},
                    })
                    pr = pairs[-1]
                    pr["acc_diff_points"] = 100 * (pr["hypernet"]["test_acc"] - pr["dca"]["test_acc"])
                    pr["measured_latency_diff_ms"] = ((pr["hypernet"]["measured_ms"] or 0)
                                                      - (pr["dca"]["measured_ms"] or 0))
                    print(f"  budget {b:.4g} ms: hypernet {pr['hypernet']['measured_ms']:.4g} ms "
                          f"{100 * pr['hypernet']['test_acc']:.1f}% | DCA {pr['dca']['measured_ms']:.4g} ms "
                          f"{100 * pr['dca']['test_acc']:.1f}% | diff {pr['acc_diff_points']:+.1f} points", flush=True)
                # Accuracy at matched latency: each DCA network against the family's member at its own cost.
                matched = []
                for p_, (d, _) in zip(pairs, dca_runs):
                    m, note = matched_member(d.cost)
                    matched.append({"dca_predicted_ms": d.cost, "dca_measured_ms": p_["dca"]["measured_ms"],
                                    "dca_test_acc": p_["dca"]["test_acc"], "dca_valid": p_["dca"]["valid"],
                                    "hypernet_genotype": m.genotype.to_dict(),
                                    "hypernet_predicted_ms": m.costs["latency_ms"],
                                    "hypernet_measured_ms": measure(m.genotype), "hypernet_test_acc": test_acc(m.genotype),
                                    "same_network": m.genotype == d.genotype, "note": note})
                    mt = matched[-1]
                    mt["acc_diff_points"] = 100 * (mt["hypernet_test_acc"] - mt["dca_test_acc"])
                    print(f"  matched at {d.cost:.4g} ms: hypernet {mt['hypernet_measured_ms']:.4g} ms "
                          f"{100 * mt['hypernet_test_acc']:.1f}% | DCA {mt['dca_measured_ms']:.4g} ms "
                          f"{100 * mt['dca_test_acc']:.1f}% | diff {mt['acc_diff_points']:+.1f} points {note}", flush=True)
                grid_measured = [measure(a.genotype) for a in grid.points]
        finally:
            running.stop(0)

    dca_times = [s for _, s in dca_runs]
    valid_times = [s for (r, s) in dca_runs if is_valid(space, r.genotype)]
    diffs = [p["acc_diff_points"] for p in pairs]
    valid_diffs = [p["acc_diff_points"] for p in pairs if p["hypernet"]["valid"] and p["dca"]["valid"]]
    measured_by_scale = [x for x in grid_measured if x is not None]
    data = {
        "space": {"name": space.name, "C": args.C, **size, "input": list(space.input_shape)},
        "setup": {"k": args.k, "search_epochs": args.epochs, "batch_size": args.batch_size,
                  "train_epochs": args.train_epochs, "seed": args.seed, "threads": args.threads,
                  "dataset": "search: demo Fashion-MNIST subset (1000 weight / 1000 architecture images)",
                  "final_training": {"data": final_name, "train_images": len(final_sets.train),
                                     "test_images": test_images, "seeds": args.final_seeds,
                                     "epochs": args.train_epochs},
                  "device": "simulated raspi4 (in-process agent), LUT built first"},
        "hypernet": {"search_s": hyper_s, "search_cpu_s": hyper_cpu, "train_s": hres.wall_s, "Lambda": hres.Lambda,
                     "Lambda_history": hres.Lambda_history, "bound": hres.bound.to_dict() if hres.bound else None,
                     "reachable_ms": [lo, hi], "distinct_members": len({m.genotype for m in members}),
                     "config": {"scale_sampling": hres.config.scale_sampling, "log_floor": hcfg.log_floor,
                                "center_fraction": hcfg.center_fraction, "warmup_fraction": hcfg.warmup_fraction}},
        "dca": {"search_s": dca_times, "mean_s": statistics.mean(dca_times), "search_cpu_s": dca_cpu,
                "mean_cpu_s": statistics.mean(dca_cpu), "valid_graph_runs_s": valid_times},
        "time_ratio_vs_one_dca": hyper_s / statistics.mean(dca_times),
        "cpu_time_ratio_vs_one_dca": hyper_cpu / statistics.mean(dca_cpu),
        "time_ratio_vs_one_valid_dca": hyper_s / statistics.mean(valid_times) if valid_times else None,
        "time_ratio_vs_k_dca": hyper_s / sum(dca_times),
        "target_time_ratio_vs_one_dca": 1.5,
        "pairs": pairs,
        "acc_diff_points": {"per_pair": diffs, "mean": statistics.mean(diffs),
                            "mean_abs": statistics.mean(abs(x) for x in diffs),
                            "within_1_point": sum(abs(x) <= 1.0 for x in diffs), "target": "each |diff| <= 1",
                            "pairs_both_valid": valid_diffs,
                            "dca_invalid_graphs": sum(not p["dca"]["valid"] for p in pairs),
                            "test_images": test_images,
                            "binomial_se_points_at_80pct": 100 * (0.8 * 0.2 / test_images) ** 0.5},
        "matched_latency": {
            "pairs": matched, "acc_diff_points": [m["acc_diff_points"] for m in matched],
            "within_1_point": sum(abs(m["acc_diff_points"]) <= 1.0 for m in matched),
            "hypernet_not_worse_by_more_than_1": sum(m["acc_diff_points"] >= -1.0 for m in matched),
            "rule": "each DCA network vs the family's member for a budget equal to the DCA network's LUT latency "
                    "(for_budget; clamped to the family's range)"},
        "monotonicity": {
            "grid_points": len(grid.points), "dense_points": len(dense.points),
            "raw_violations_predicted_grid": grid.raw_violations,
            "raw_violations_predicted_dense": dense.raw_violations,
            "violations_after_isotonic": dense.violations,
            "violations_measured_grid": sum(1 for a, b in zip(measured_by_scale, measured_by_scale[1:]) if b > a),
            "grid_predicted_ms": [a.costs["latency_ms"] for a in grid.points],
            "grid_measured_ms": grid_measured, "grid_scales": [a.tradeoff.scale for a in grid.points],
            "target": 0},
    }
    write("hypernet" if args.space == "nb201" else f"hypernet_{args.space}", data)
    print(f"time: hypernet {hyper_s:.1f} s = {data['time_ratio_vs_one_dca']:.2f}x one DCA-NAS run "
          f"({statistics.mean(dca_times):.1f} s), {data['time_ratio_vs_k_dca']:.2f}x all {args.k}; CPU time "
          f"{data['cpu_time_ratio_vs_one_dca']:.2f}x; vs DCA runs with a valid graph "
          f"{data['time_ratio_vs_one_valid_dca'] or float('nan'):.2f}x")
    print(f"accuracy diff (points, hypernet - DCA): {', '.join(f'{x:+.1f}' for x in diffs)}; "
          f"{data['acc_diff_points']['within_1_point']}/{args.k} within 1 point; "
          f"{data['acc_diff_points']['dca_invalid_graphs']} DCA network(s) with a broken graph")
    shown = ", ".join(f"{m['acc_diff_points']:+.1f}" for m in matched)
    print(f"matched latency (points, hypernet - DCA): {shown}; "
          f"{data['matched_latency']['within_1_point']}/{len(matched)} within 1 point")
    m = data["monotonicity"]
    print(f"monotonicity violations: predicted raw {m['raw_violations_predicted_dense']} (dense), after isotonic "
          f"{m['violations_after_isotonic']}, measured {m['violations_measured_grid']} (grid)")


_CONFIG_FLAGS = ("derivation", "sweep_rule", "sweep_descent", "warmup_fraction", "zero_fraction", "weight_lambda",
                 "Lambda", "arch_step", "phase1", "anchor", "knee", "scale_sampling")



def family_benchmark(args) -> None:
    """One hypernetwork run; its family on a grid: distinct members, span of the reachable range, measured."""
    import torch

    from hilnas.agent.config import MeasureConfig, ServeConfig
    from hilnas.agent.server import create_server
    from hilnas.searchers import hypernet
    from hilnas.searchers.cost import LutLatencyCost, ParamsCost
    from hilnas.searchers.data import DatasetConfig, loaders_for
    from hilnas.searchers.hypernet.bound import cost_span, is_valid
    from hilnas.searchers.spaces import create_space
    from hilnas.server.client import AgentClient, ClientConfig
    from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
    from hilnas.server.lut.micromodels import MicroModels
    from hilnas.server.model_meta import export_network
    from hilnas.server.store import Store
    from hilnas.server.validation import lut_values

    torch.set_num_threads(args.threads)
    warm_torch()
    if args.dataset == "cifar10":
        shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-subset"
        data = DatasetConfig(name="cifar10", data_dir=str(shared), val_fraction=0.5, batch_size=args.batch_size,
                             seed=args.seed, train_size=args.train_size)
    else:
        data = DatasetConfig(name="demo", val_fraction=0.5, batch_size=args.batch_size, seed=args.seed,
                             train_size=args.train_size)
    datasets, loaders = loaders_for(data)
    c, h, _ = datasets.input_shape
    size = {"N": args.cells} if args.space == "nb201" else {"layers": args.cells}
    space = create_space(args.space, in_channels=c, input_size=h, num_classes=datasets.num_classes, C=args.C, **size)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        running = create_server(ServeConfig(port=0, simulate="raspi4", seed=args.seed, cache_dir=str(tmp / "cache")))
        try:
            with Store.open(tmp / "ws") as store, AgentClient(ClientConfig(address=f"127.0.0.1:{running.port}")) as agent:
                LutBuilder(store, "pi", [agent], LutBuildConfig(measure=MeasureConfig(warmup_runs=3, min_runs=10,
                                                                                      min_seconds=0.02))).build(
                    MicroModels.keys_for_space(space), MicroModels(tmp / "micro").onnx)
                latency = LutLatencyCost(lut_values(store, store.find_lut("pi")))
                # the HypernetConfig settings given on the command line (None = the config's default)
                extra = {f: getattr(args, f) for f in _CONFIG_FLAGS if getattr(args, f) is not None}
                if args.hypernet_lr is not None:
                    extra["arch"] = dataclasses.replace(hypernet.HypernetConfig().arch, lr=args.hypernet_lr)
                if args.warmup_fraction is not None:
                    extra["max_warmup_fraction"] = max(args.warmup_fraction, hypernet.HypernetConfig.max_warmup_fraction)
                cfg = hypernet.HypernetConfig(epochs=args.epochs, sampling=args.sampling, kappa=args.kappa,
                                              kappa_scaling=args.kappa_scaling, epoch_val_batches=args.epoch_val_batches,
                                              **extra)
                t0, c0 = time.perf_counter(), time.process_time()
                if args.from_saved:   # the family of a saved run, derived again (no training; times are loading's)
                    from hilnas.searchers.hypernet.io import load_trained
                    res = load_trained(args.from_saved, space, latency,
                                       complexity=ParamsCost() if args.complexity == "params" else None)
                    if args.derivation is not None:   # derivation is read at derive time: no retraining
                        res.config = dataclasses.replace(res.config, derivation=args.derivation)
                    cfg = res.config
                    res.val_acc = res.accuracy(0.0, loaders.val, max_batches=cfg.eval_batches)
                else:
                    res = hypernet.search(space, latency, cfg, seed=args.seed, data=loaders,
                                          complexity=ParamsCost() if args.complexity == "params" else None)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                cfg = res.config   # what ran: "auto" resolved for the space (``HypernetConfig.resolved``)
                if args.save:
                    from hilnas.searchers.hypernet.io import save_trained
                    save_trained(res, args.save)
                grid = res.curve(res.grid(args.grid), metric="latency_ms")
                dense = res.curve(res.grid(cfg.curve_points), metric="latency_ms")   # what for_budget searches
                fine = res.fine_curve(metric="latency_ms")   # the dense family with its changes located
                changes = res.curve(res.breakpoints(args.grid, metric="latency_ms"), metric="latency_ms")
                spread = res.spread(args.grid, metric="latency_ms")   # the same run, grid even in latency
                other_name = "expected-cost" if cfg.derivation == "argmax" else "argmax"
                other = dataclasses.replace(res, config=dataclasses.replace(cfg, derivation=other_name), _curves={})
                other_grid = other.curve(other.grid(args.grid), metric="latency_ms")
                span = cost_span(space, latency)
                front = shared_weight_front(res, space, latency, span, loaders.val, [*grid.raw, *spread, *changes.points],
                                            samples=args.front_samples, seed=args.seed, members=changes.points)
                measured = {}
                for a in [*grid.raw, *spread, *changes.points]:
                    if a.genotype not in measured:
                        r = agent.benchmark(export_network(space, a.genotype, seed=args.seed),
                                            config=MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.1))
                        measured[a.genotype] = r.latency.median_ms if r.status.measured and r.latency else None
        finally:
            running.stop(0)
    raw = [a.costs["latency_ms"] for a in grid.raw]
    reach = (span.cheapest_cost, span.dearest_cost)
    share = (max(raw) - min(raw)) / (reach[1] - reach[0])
    distinct = len({a.genotype for a in grid.raw})
    other_raw = [a.costs["latency_ms"] for a in other_grid.raw]
    mono = [a.costs["latency_ms"] for a in grid.points]   # after isotonic selection: what the CLI produces
    mono_distinct, mono_share = len({a.genotype for a in grid.points}), (max(mono) - min(mono)) / (reach[1] - reach[0])
    spread_ms = [a.costs["latency_ms"] for a in spread]
    spread_share = (max(spread_ms) - min(spread_ms)) / (reach[1] - reach[0])
    spread_distinct = len({a.genotype for a in spread})
    curves = {"dense": dense, "fine": fine, "changes": changes}
    summary = {k: {"points": len(c.points), "distinct_raw": len({a.genotype for a in c.raw}),
                   "distinct_members": len({a.genotype for a in c.points}),
                   "family_ms": list(c.range), "span_share": (c.range[1] - c.range[0]) / (reach[1] - reach[0])}
               for k, c in curves.items()}
    name = f"hypernet_family_{args.space}_C{args.C}_{args.cells}_{args.dataset}" + \
        ("" if args.sampling == "gumbel" else f"_{args.sampling}") + ("" if args.kappa == 0.1 else f"_kappa{args.kappa:g}") \
        + ("" if args.complexity == "params" else f"_{args.complexity}") + (f"_{args.tag}" if args.tag else "")
    write(name, {
        "space": {"name": space.name, "C": args.C, **size, "input": list(space.input_shape)},
        "setup": {"dataset": args.dataset, "train_size": args.train_size, "search_epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                  "grid": args.grid, "sampling": args.sampling, "complexity": args.complexity, "kappa": cfg.kappa,
                  "warmup_fraction": cfg.warmup_fraction, "zero_fraction": cfg.zero_fraction,
                  # the settings that ran: "auto" resolved for the space (``HypernetConfig.resolved``)
                  "weight_lambda": res.config.weight_lambda, "arch_step": res.config.arch_step,
                  "phase1": res.config.phase1, "anchor": res.config.anchor, "knee": res.config.knee,
                  "knee_margin": cfg.knee_margin, "scale_sampling": res.config.scale_sampling,
                  "kappa_scaling": cfg.kappa_scaling, "hypernet_lr": cfg.arch.lr, "derivation": cfg.derivation,
                  "sweep_rule": cfg.sweep_rule,
                  "sweep_descent": cfg.sweep_descent, "device": "simulated raspi4 (in-process agent)"},
        "from_saved": bool(args.from_saved), "search_s": wall, "search_cpu_s": cpu, "Lambda": res.Lambda, "sweep": res.sweep.to_dict() if res.sweep else None,
        "bound": res.bound.to_dict() if res.bound else None, "val_acc_at_0": res.val_acc,
        "reachable_ms": list(reach), "family_ms": [min(raw), max(raw)], "span_share": share,
        "distinct_members": distinct, "raw_violations": grid.raw_violations,
        "all_valid": all(is_valid(space, a.genotype) for a in grid.raw),
        "grid": [{"scale": a.tradeoff.scale, "lut_ms": a.costs["latency_ms"], "expected_ms": a.expected["latency_ms"],
                  "measured_ms": measured[a.genotype], "genotype": a.genotype.to_dict()} for a in grid.raw],
        "isotonic": {"distinct_members": mono_distinct, "span_share": mono_share, "family_ms": [min(mono), max(mono)],
                     "note": "the grid after isotonic selection (a member dearer than a smaller scale's is replaced by "
                             "it), as the CLI produces it; the headline counts the raw grid"},
        "spread": {"rule": "Family.spread: for_budget at grid-many latencies evenly spaced over the dense family's "
                           "range, dearest first", "distinct_members": spread_distinct,
                   "family_ms": [min(spread_ms), max(spread_ms)], "span_share": spread_share,
                   "members": [{"scale": a.tradeoff.scale, "lut_ms": a.costs["latency_ms"],
                                "measured_ms": measured[a.genotype], "genotype": a.genotype.to_dict()}
                               for a in spread]},
        "dense": {**summary["dense"], "rule": f"the dense family for_budget searches: {cfg.curve_points} scales even "
                  "in the hypernetwork's input, after isotonic selection (distinct_raw: before it)"},
        "fine": {**summary["fine"], "rule": "Family.fine_curve: the dense family plus the scales bisection finds "
                 "between neighbouring dense scales whose genotypes differ (bisect_steps deep), after isotonic "
                 "selection: the family's own distinct members"},
        "changes": {**summary["changes"], "rule": "Family.breakpoints: grid-many scales where the dense family "
                    "changes (each distinct member's first scale; the widest gaps filled), after isotonic selection",
                    "members": [{"scale": a.tradeoff.scale, "lut_ms": a.costs["latency_ms"],
                                 "measured_ms": measured[a.genotype], "genotype": a.genotype.to_dict()}
                                for a in changes.points]},
        "epoch_costs": res.epoch_costs, "knees": res.knees, "Lambda_history": [list(x) for x in res.Lambda_history], "epoch_val_acc": res.epoch_val_acc, "eval_bn": cfg.eval_bn,
        "shared_weight_front": front,
        "other_derivation": {"derivation": other_name, "distinct_members": len({a.genotype for a in other_grid.raw}),
                             "family_ms": [min(other_raw), max(other_raw)],
                             "span_share": (max(other_raw) - min(other_raw)) / (reach[1] - reach[0]),
                             "grid_lut_ms": other_raw},
        "targets": {"distinct_members": ">= 8 of 12", "span_share": ">= 0.8"}})
    print(f"{space.name}: {distinct}/{args.grid} distinct, span {share:.2f} of [{reach[0]:.3f}, {reach[1]:.3f}] ms "
          f"(family {min(raw):.3f}-{max(raw):.3f}); Lambda {res.Lambda:.4g} (sweep, rule {cfg.sweep_rule}; the walk's "
          f"end {res.sweep.Lambda_reach if res.sweep else float('nan'):.4g}; Theorem 1 "
          f"{res.bound.theorem if res.bound else float('nan'):.3g}); {wall:.0f} s, raw violations {grid.raw_violations}")
    pb = res.sweep.path_bound if res.sweep else None
    if pb is not None:
        print(f"  Theorem 1: constant predictor {pb.constant_loss:.3f} nats; worst random probe "
              f"{res.bound.worst_valid_loss:.3f} (bound {res.bound.theorem:.3g}); worst network of the sweep's path "
              f"{pb.worst_valid_loss:.3f} (bound {pb.theorem:.3g})")
    print(f"  the grid after isotonic selection (as the CLI produces it): {mono_distinct}/{args.grid} distinct, span "
          f"{mono_share:.2f}")
    for k, v in summary.items():
        print(f"  {k} ({v['points']} points): {v['distinct_members']} distinct after isotonic selection "
              f"({v['distinct_raw']} raw), span {v['span_share']:.2f} ({v['family_ms'][0]:.3f}-{v['family_ms'][1]:.3f} ms)")
    print(f"  val accuracy at lambda = 0 (relaxed supernet): {res.val_acc:.3f}")
    print(f"  grid even in latency (Family.spread) of the same run: {spread_distinct}/{args.grid} distinct, span "
          f"{spread_share:.2f} ({min(spread_ms):.3f}-{max(spread_ms):.3f} ms)")
    print(f"  shared weights ({front['networks']} networks, {front['images']} val images): the lowest-loss network "
          f"costs {front['best_ms']:.3f} ms (loss {front['best_loss']:.3f}; the dearest cell {front['dearest_loss']:.3f}, "
          f"the lambda = 0 member {front['lambda0_loss']:.3f}); a family of networks on the accuracy/latency front "
          f"spans at most {front['front_share']:.2f}")
    print(f"  accuracy gradient: the family's distinct members' loss vs latency, rank correlation "
          f"{front['members_rank_corr']} (negative: dearer fits better); children of the dearest cell, mean loss by "
          f"edges redrawn: " + ", ".join(f"{k}: {v:.3f}" for k, v in front["children_mean_loss"].items()))
    print(f"  {other_name} derivation of the same run: {len({a.genotype for a in other_grid.raw})}/{args.grid} distinct, "
          f"span {(max(other_raw) - min(other_raw)) / (reach[1] - reach[0]):.2f}")


def shared_weight_front(res, space, latency, span, val, family, *, samples: int, seed: int, members=()) -> dict:
    """Where the trained supernet's own accuracy/latency front lies: the loss with the shared weights (as the search
    and Theorem 1 judge networks) of the cheapest and dearest valid cells, ``samples`` random valid ones and the
    family's members. A family of networks that trade accuracy for latency can span at most from the lowest-loss
    network's latency down to the cheapest: a dearer network with a higher loss is dominated.

    The accuracy gradient along the span: the distinct ``members`` (the family at its changes) with their losses and
    the rank correlation of loss with latency among them (negative: the dearer members fit better), and the mean
    loss of 3 children of the dearest cell at each distance k = 1..E (``children.child``): whether the loss falls
    gradually toward the dear end or the dearest cell is an isolated optimum."""
    import itertools
    import random

    from hilnas.searchers.hypernet.bound import genotype_loss, probe_genotypes
    from hilnas.searchers.hypernet.children import child, edge_ops

    batches = list(itertools.islice(val, 8))
    rng = random.Random(seed + 200)
    E = len(edge_ops(space, span.dearest))
    kids = {k: [child(space, span.dearest, k, rng) for _ in range(3)] for k in range(1, E + 1)}
    nets = list(dict.fromkeys([*probe_genotypes(space, span, samples, seed=seed + 100), *(a.genotype for a in family),
                               *(g for gs in kids.values() for g in gs)]))
    rows = [(latency.genotype_cost(space, g), genotype_loss(res.supernet, g, batches)) for g in nets]
    best_ms, best_loss = min(rows, key=lambda r: r[1])
    lo, hi = span.cheapest_cost, span.dearest_cost
    loss_of = dict(zip(nets, (r[1] for r in rows)))
    first = {}   # each distinct member at its smallest scale
    for a in members:
        first.setdefault(a.genotype, a)
    member_rows = [{"scale": a.tradeoff.scale, "lut_ms": a.costs["latency_ms"], "loss": loss_of[a.genotype]}
                   for a in first.values()]
    return {"networks": len(nets), "images": sum(len(y) for _, y in batches), "best_ms": best_ms, "best_loss": best_loss,
            "cheapest_loss": loss_of[span.cheapest], "dearest_loss": loss_of[span.dearest],
            "lambda0_loss": loss_of[family[0].genotype], "lambda0_ms": family[0].costs["latency_ms"],
            "front_share": (best_ms - lo) / (hi - lo),
            "rows": [{"lut_ms": ms, "loss": loss} for ms, loss in rows],
            "members": member_rows, "members_rank_corr": rank_corr([r["lut_ms"] for r in member_rows],
                                                                   [r["loss"] for r in member_rows]),
            "children_mean_loss": {k: statistics.fmean(loss_of[g] for g in gs) for k, gs in kids.items()},
            "children_mean_ms": {k: statistics.fmean(latency.genotype_cost(space, g) for g in gs)
                                 for k, gs in kids.items()}}


def rank_corr(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (ties by their order; None below 3 points or with a constant side)."""
    if len(x) < 3:
        return None

    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0] * len(v)
        for i, j in enumerate(order):
            r[j] = i
        return r

    rx, ry = ranks(x), ranks(y)
    if len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return statistics.correlation(rx, ry)


if __name__ == "__main__":
    main()
