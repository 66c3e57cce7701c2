"""Splitting benchmark: energy-aware splitting (seed 003) vs width multipliers at matched *measured* latency.

    nice .venv/bin/python benchmarks/bench_splitting.py [--train-size 10000] [--steps 5] [--quick]

Real Fashion-MNIST (a stratified training subset of ``--train-size`` images, the full 10,000 test
images), the MobileNet backbone in a 6-layer layout for 28x28 (``--base-widths``, strides 2,1,2,1,2,1),
two agents started in-process: a simulated Raspberry Pi 4 (``raspi4``) and the local host
(ONNX Runtime). Everything goes through ``hilnas search splitting``'s runner (``run_splitting``):

1. the grid LUT of each device (the Pi's with energy, so one LUT serves both budgets);
2. the width-multiplier baseline (0.25, 0.5, 0.75, 1.0), trained once for E = seed_epochs +
   steps x step_epochs epochs each, measured on both devices;
3. a splitting run per device, its latency budget the device's measured latency of the 1.0x
   network; on the Pi also random splitting of equal cost, and the energy-budget variant;
4. every checkpoint of the latency runs (splitting per device, random) fine-tuned to the same total
   of E epochs (a checkpoint k has seen seed_epochs + k x step_epochs), so every compared network
   had the same budget of epochs (the energy variant is compared as grown); with ``--scratch`` the
   Pi's checkpoint widths are also trained from scratch for E epochs (the architecture alone);
5. all networks re-measured on each device in 3 interleaved rounds (median), then compared at
   matched latency: each width network against the splitting curve interpolated at its latency,
   and the reverse. Target (seed 003): the splitting curve above the width curve at every matched
   cost.

Writes benchmarks/results/splitting.json and splitting.png.
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
from _common import RESULTS, warm_torch, write  # noqa: E402


def interp(points, x):
    """Linear interpolation of sorted (x, y) points at x; None outside their range."""
    pts = sorted(points)
    if not pts or x < pts[0][0] or x > pts[-1][0]:
        return None
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


def matched(curve, baseline, metric):
    """Both directions: baseline points against the curve interpolated at their cost, and the reverse."""
    c = [(r[metric], r["acc"]) for r in curve if r.get(metric) is not None]
    b = [(r[metric], r["acc"]) for r in baseline if r.get(metric) is not None]
    out = []
    for r in baseline:
        y = interp(c, r[metric])
        out.append({"at": r["name"], "cost": r[metric], "baseline_acc": r["acc"], "splitting_acc": y,
                    "diff_points": None if y is None else 100 * (y - r["acc"])})
    for r in curve:
        y = interp(b, r[metric])
        out.append({"at": r["name"], "cost": r[metric], "splitting_acc": r["acc"], "baseline_acc": y,
                    "diff_points": None if y is None else 100 * (r["acc"] - y)})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-size", type=int, default=10000, help="training images (stratified subset)")
    p.add_argument("--test-size", type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument("--base-widths", default="32,64,128,128,256,256", help="widths at multiplier 1.0")
    p.add_argument("--strides", default="2,1,2,1,2,1")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seed-epochs", type=int, default=3)
    p.add_argument("--step-epochs", type=int, default=2)
    p.add_argument("--growth", type=float, default=0.5)
    p.add_argument("--devices", default="raspi4,host", help="which agents: raspi4 (simulated), host")
    p.add_argument("--scratch", action="store_true",
                   help="also train the Pi's splitting widths from scratch for E epochs (the architecture alone)")
    p.add_argument("--host-width-multiple", type=int, default=8,
                   help="the host run keeps widths multiples of this (ONNX Runtime's blocked x86 kernels; default 8)")
    p.add_argument("--no-random", action="store_true", help="skip random splitting")
    p.add_argument("--no-energy", action="store_true", help="skip the energy-budget variant")
    p.add_argument("--rounds", type=int, default=3, help="interleaved re-measurement rounds per device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="a smoke run: 600 images, 2 steps, 1 epoch each, capped batches")
    p.add_argument("--out", default="splitting", help="result name under benchmarks/results/")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from hilnas.agent.config import MeasureConfig, ServeConfig
    from hilnas.agent.server import create_server
    from hilnas.searchers.data import DatasetConfig, loaders_for
    from hilnas.searchers.result import Budget
    from hilnas.searchers.spaces import create_space
    from hilnas.searchers.splitting import Checkpoint, GrowConfig
    from hilnas.searchers.splitting.checkpoint import load_weights
    from hilnas.searchers.splitting.grow import train_phase
    from hilnas.server.client import AgentClient, ClientConfig
    from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
    from hilnas.server.lut.micromodels import MicroModels
    from hilnas.server.search.splitting import SplittingRunConfig, plot_curves, run_splitting
    from hilnas.server.store import Store

    torch.set_num_threads(args.threads)
    warm_torch()
    started = time.perf_counter()
    if args.quick:
        args.train_size, args.test_size, args.steps, args.seed_epochs, args.step_epochs = 600, 500, 2, 1, 1
    overrides = {"base_widths": tuple(int(x) for x in args.base_widths.split(",")),
                 "strides": tuple(int(x) for x in args.strides.split(","))}
    data = DatasetConfig(name="fashion-mnist", train_size=args.train_size, test_size=args.test_size, batch_size=64,
                         seed=args.seed)
    datasets, loaders = loaders_for(data)
    c, h, _ = datasets.input_shape
    space = create_space("mobilenet", in_channels=c, input_size=h, num_classes=datasets.num_classes, **overrides)
    grow = GrowConfig(steps=args.steps, seed_epochs=args.seed_epochs, step_epochs=args.step_epochs, growth=args.growth,
                      seed=args.seed, max_batches_per_epoch=8 if args.quick else None)
    total_epochs = grow.seed_epochs + grow.steps * grow.step_epochs
    # One ONNX Runtime thread on the host: steadier on a shared 2-core machine (the simulated Pi models its 4 cores)
    lut_measure = {"raspi4": MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.1, energy=True),
                   "host": MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.1, threads=1)}
    measures = {"raspi4": MeasureConfig(warmup_runs=10, min_runs=30, min_seconds=0.3),
                "host": MeasureConfig(warmup_runs=10, min_runs=30, min_seconds=0.3, threads=1)}
    devices = args.devices.split(",")
    log = []

    def say(msg: str) -> None:
        line = f"[{time.perf_counter() - started:7.0f} s] {msg}"
        log.append(line)
        print(line, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        agents = {"raspi4": create_server(ServeConfig(port=0, simulate="raspi4", seed=args.seed,
                                                      cache_dir=str(tmp / "cache-pi"))),
                  "host": create_server(ServeConfig(port=0, cache_dir=str(tmp / "cache-host")))}
        clients = {k: AgentClient(ClientConfig(address=f"127.0.0.1:{a.port}")) for k, a in agents.items()}
        out: dict = {"config": {**vars(args), "grid": {i: space.grid(i) for i in range(space.num_layers)},
                                "total_epochs": total_epochs, "space": {**overrides, "input": [c, h, h]},
                                "data": dataclasses.asdict(data)}, "devices": {}}
        try:
            store = Store.open(tmp / "ws")
            micro = MicroModels(tmp / "micro")
            keys = MicroModels.keys_for_space(space)
            for dev in devices:  # 1. the grid LUTs (the Pi's with energy: one LUT for both budgets)
                t0 = time.perf_counter()
                rep = LutBuilder(store, dev, [clients[dev]], LutBuildConfig(measure=lut_measure[dev])).build(
                    keys, micro.onnx)
                say(f"{dev}: LUT of {len(keys)} grid keys in {time.perf_counter() - t0:.1f} s "
                    f"({rep.measured} measured, {len(rep.failed)} failed)")

            def run(dev, method, budget, **kw):
                g = dataclasses.replace(grow, width_multiple=args.host_width_multiple) if dev == "host" else grow
                cfg = SplittingRunConfig(budget=budget, method=method, space_overrides=overrides, dataset=data,
                                         grow=g, measure=measures[dev], threads=args.threads,
                                         out_dir=str(tmp / f"{dev}-{method}-{budget.metric}"), **kw)
                t0 = time.perf_counter()
                report = run_splitting(store, dev, [clients[dev]], cfg, progress=lambda m: say(f"{dev} {method}: {m}"))
                say(f"{dev} {method} ({budget}): {len(report.checkpoints)} checkpoints in {time.perf_counter() - t0:.0f} s;"
                    f" stopped: {report.stop_reason}")
                return report

            # 2. the width baseline, trained once (on the Pi's run), measured on every device below
            first = devices[0]
            width = run(first, "width", Budget("latency_ms", 1e6), width_epochs=total_epochs)
            networks = {c["name"]: {"acc": c["test_acc"], "epochs": c["epochs"], "widths": c["widths"],
                                    "onnx": c["onnx_path"], "kind": "width"} for c in width.checkpoints}
            reports = {"width": width}

            def measure_all(dev, names, energy=False, rounds=args.rounds):
                """Median over interleaved rounds of each network's median latency (and energy)."""
                mc = dataclasses.replace(measures[dev], energy=energy)
                lat = {n: [] for n in names}
                mj = {n: [] for n in names}
                for _ in range(rounds):
                    for n in names:
                        r = clients[dev].benchmark(Path(networks[n]["onnx"]).read_bytes(), config=mc)
                        if r.status.measured and r.latency:
                            lat[n].append(r.latency.median_ms)
                        if energy and r.energy is not None and r.energy.net_mj == r.energy.net_mj:
                            mj[n].append(r.energy.net_mj)
                return ({n: statistics.median(v) if v else None for n, v in lat.items()},
                        {n: statistics.median(v) if v else None for n, v in mj.items()})

            w1 = width.checkpoints[-1]["name"]
            budgets = {}
            for dev in devices:
                lat, _ = measure_all(dev, [w1], rounds=1)
                budgets[dev] = Budget("latency_ms", round(lat[w1], 4))
                say(f"{dev}: {w1} measures {lat[w1]:.4g} ms -> the splitting budget {budgets[dev]}")

            # 3. splitting per device; on the Pi also random splitting and the energy variant
            for dev in devices:
                reports[f"splitting@{dev}"] = run(dev, "splitting", budgets[dev])
            if "raspi4" in devices and not args.no_random:
                reports["random@raspi4"] = run("raspi4", "random", budgets["raspi4"])
            if "raspi4" in devices and not args.no_energy:
                _, mj = measure_all("raspi4", [w1], energy=True, rounds=1)
                reports["splitting-energy@raspi4"] = run("raspi4", "splitting", Budget("energy_mj", round(mj[w1], 4)))

            # 4. fine-tune every growth checkpoint to E epochs in total; on the Pi, widths from scratch too
            for key, rep in reports.items():
                if key == "width":
                    continue
                fine_tune = key.startswith(("splitting@", "random@"))
                for ck_dict in rep.checkpoints:
                    ck = Checkpoint.from_dict(ck_dict)
                    name = f"{key}:{ck.name}"
                    networks[name] = {"acc_raw": ck.test_acc, "epochs_raw": ck.epochs, "widths": list(ck.widths.widths),
                                      "onnx": ck_dict["onnx_path"], "kind": key}
                    extra = total_epochs - ck.epochs if fine_tune else 0
                    if extra > 0:
                        net = load_weights(Path(rep.checkpoint_dir) / ck.folder_name, space, ck)
                        acc, _ = train_phase(net, loaders, extra, grow, args.seed + 100 + ck.step)
                    else:
                        acc = ck.test_acc
                    networks[name].update(acc=acc, epochs=ck.epochs + extra)
                    if extra:
                        say(f"{name}: {100 * ck.test_acc:.2f}% after {ck.epochs} epochs -> {100 * acc:.2f}% after "
                            f"{total_epochs}")
                    if key == "splitting@raspi4" and args.scratch:
                        torch.manual_seed(args.seed)
                        net = space.build_network(ck.widths)
                        acc_s, _ = train_phase(net, loaders, total_epochs, grow, args.seed)
                        networks[name]["acc_scratch"] = acc_s
                        say(f"{name}: widths trained from scratch for {total_epochs} epochs: {100 * acc_s:.2f}%")

            # 5. interleaved re-measurement on each device, then the matched comparisons
            for dev in devices:
                names = [n for n, v in networks.items() if v["kind"] == "width" or v["kind"].endswith(f"@{dev}")]
                lat, mj = measure_all(dev, names, energy=(dev == "raspi4" and not args.no_energy))
                for n in names:
                    networks[n].setdefault("measured", {})[dev] = {"latency_ms": lat[n], "energy_mj": mj.get(n)}
                say(f"{dev}: re-measured {len(names)} networks in {args.rounds} interleaved rounds")

            def rows(kind, dev, acc_key="acc", metric="latency_ms"):
                return [{"name": n, "acc": v[acc_key], metric: v["measured"][dev][metric]}
                        for n, v in networks.items() if v["kind"] == kind and acc_key in v
                        and v.get("measured", {}).get(dev, {}).get(metric) is not None]

            comparisons = {}
            for dev in devices:
                base = rows("width", dev)
                comparisons[f"splitting@{dev} vs width"] = matched(rows(f"splitting@{dev}", dev), base, "latency_ms")
                comparisons[f"splitting@{dev} (raw checkpoints) vs width"] = matched(
                    rows(f"splitting@{dev}", dev, "acc_raw"), base, "latency_ms")
                if dev == "raspi4":
                    if args.scratch:
                        comparisons["splitting@raspi4 widths from scratch vs width"] = matched(
                            rows("splitting@raspi4", dev, "acc_scratch"), base, "latency_ms")
                    if not args.no_random:
                        comparisons["splitting@raspi4 vs random@raspi4"] = matched(
                            rows("splitting@raspi4", dev), rows("random@raspi4", dev), "latency_ms")
                    if not args.no_energy:
                        comparisons["splitting-energy@raspi4 (as grown) vs width (energy)"] = matched(
                            rows("splitting-energy@raspi4", dev, metric="energy_mj"),
                            rows("width", dev, metric="energy_mj"), "energy_mj")
            summary = {}
            for k, v in comparisons.items():
                d = [x["diff_points"] for x in v if x["diff_points"] is not None]
                summary[k] = {"matched_pairs": len(d), "min_diff_points": min(d) if d else None,
                              "median_diff_points": statistics.median(d) if d else None,
                              "splitting_above_at_every_matched_cost": bool(d) and min(d) > 0}
                say(f"{k}: {summary[k]}")

            # the plot: accuracy vs measured latency, per device, both curves (and the variants)
            notes: list[str] = []
            RESULTS.mkdir(parents=True, exist_ok=True)
            for dev in devices:
                curves = {"width multipliers": [], f"splitting ({total_epochs} epochs each)": [],
                          "splitting checkpoints as grown": []}
                if dev == "raspi4" and not args.no_random:
                    curves[f"random splitting ({total_epochs} epochs each)"] = []
                for n, v in networks.items():
                    m = v.get("measured", {}).get(dev)
                    if not m:
                        continue
                    label = n.split(":")[-1]
                    if v["kind"] == "width":
                        curves["width multipliers"].append({"name": label, "test_acc": v["acc"], "measured": m})
                    elif v["kind"] == f"splitting@{dev}":
                        curves[f"splitting ({total_epochs} epochs each)"].append(
                            {"name": label, "test_acc": v["acc"], "measured": m})
                        curves["splitting checkpoints as grown"].append(
                            {"name": label, "test_acc": v["acc_raw"], "measured": m})
                    elif v["kind"] == "random@raspi4" and dev == "raspi4":
                        curves[f"random splitting ({total_epochs} epochs each)"].append(
                            {"name": label, "test_acc": v["acc"], "measured": m})
                plot_curves(RESULTS / f"{args.out}_{dev}.png", curves, budgets[dev], notes,
                            title=f"Fashion-MNIST, {dev}{' (simulated)' if dev == 'raspi4' else ''}")
            if "raspi4" in devices and not args.no_energy:
                curves = {"width multipliers": [], "splitting under an energy budget": []}
                for n, v in networks.items():
                    m = v.get("measured", {}).get("raspi4")
                    if m and v["kind"] in ("width", "splitting-energy@raspi4"):
                        key = "width multipliers" if v["kind"] == "width" else "splitting under an energy budget"
                        curves[key].append({"name": n.split(":")[-1], "test_acc": v["acc"], "measured": m})
                plot_curves(RESULTS / f"{args.out}_raspi4_energy.png", curves,
                            reports["splitting-energy@raspi4"].budget, notes, x="energy_mj",
                            title="Fashion-MNIST, raspi4 (simulated), energy budget")
            out.update(budgets={k: str(v) for k, v in budgets.items()}, networks=networks, comparisons=comparisons,
                       summary=summary, runs={k: {"run_id": r.run_id, "stop_reason": r.stop_reason,
                                                  "notes": list(r.notes), "wall_s": r.wall_s,
                                                  "checkpoints": [{kk: c[kk] for kk in ("name", "widths", "test_acc",
                                                                                         "epochs", "predicted", "measured",
                                                                                         "splits", "gain", "step_budget",
                                                                                         "split_cost", "wall_s")}
                                                                  for c in r.checkpoints]}
                                              for k, r in reports.items()},
                       log=log, notes=notes, wall_s=time.perf_counter() - started)
            store.close()
        finally:
            for cl in clients.values():
                cl.close()
            for a in agents.values():
                a.stop(0)
    write(args.out, out)


if __name__ == "__main__":
    main()
