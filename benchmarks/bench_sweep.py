"""Sweep benchmark: is a Ray sweep over K cells as fast as (K / workers) x one cell's time?

    nice .venv/bin/python benchmarks/bench_sweep.py [--workers 2] [--seeds 2] [--measure-seconds 8]

The same K cells run twice as Ray tasks on a local Ray (127.0.0.1): once one at a time
(``workers = 1``: each cell's own time, with nothing beside it), once ``--workers`` at a time.
Target: the parallel sweep's wall time <= 1.2 x (K / workers) x the mean time of one cell alone.

Each cell is a small DCA-NAS search on the shipped Fashion-MNIST subset, trained briefly, then
validated on a board. The boards are ``--workers`` realtime simulated Raspberry Pi 4 agents
(``hilnas-agent serve --simulate raspi4 --realtime``, real processes on loopback), one device key
each, reached by address, so ``per_device = 1`` keeps one cell per board, as with real boards.
A validation asks for ``--measure-seconds`` on its board, but the agent's ``max_runs`` (10,000)
caps it: about 2.7 s for these 0.27 ms networks. The cells are device keys x 2 budgets x
``--seeds`` seeds. Besides the target, the result splits the wall time into the cells' own time
side by side (``together.mean_cell_s`` against ``alone.mean_cell_s``: contention on this host)
and what the sweep adds (``scheduling_overhead``: wall / (sum of the cells' times / workers)).
Writes benchmarks/results/sweep.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import write  # noqa: E402
from bench_fleet import start_agents, stop  # noqa: E402

SWEEP = """\
name = "bench-sweep"
[space]
name = "nb201"
options = {{ C = 4, N = 1 }}
[data]
dataset = "demo"
[search]
methods = ["dca"]
seeds = {seeds}
search_epochs = 1
train_epochs = 1
max_batches = 8
[lut]
warmup = 1
min_runs = 5
min_seconds = 0.02
[measure]
warmup = 10
min_runs = 30
min_seconds = {measure_seconds}
{devices}
[sweep]
on = "ray"
per_device = 1
cpus_per_cell = 1
memory_mb_per_cell = 1024
"""
DEVICE = """
[[devices]]
key = "pi-{i}"
address = "{address}"
budgets = ["latency_ms=40%", "latency_ms=70%"]
"""


def one_sweep(text: str, folder: Path, workers: int) -> dict:
    from hilnas.server.progress import Progress
    from hilnas.server.store import Store
    from hilnas.server.sweep import parse_sweep_file, run_sweep, with_options
    from hilnas.server.sweep.engines import make_engine

    config = with_options(parse_sweep_file(text, source=str(folder / "sweep.toml")), workers=workers)
    t = time.perf_counter()
    engine = make_engine(config.options)
    start_s = time.perf_counter() - t
    try:
        with Store.open(folder) as store:
            outcome = run_sweep(config, store, workspace=folder, engine=engine, progress=Progress("lines"),
                                report=False)
    finally:
        engine.close()
    cells = [r["wall_s"] for r in outcome.cells]
    if outcome.status != "done" or any(w is None for w in cells):
        raise RuntimeError(f"sweep did not finish: {outcome.status}: {[r for r in outcome.cells if r['status'] != 'done']}")
    return {"workers": workers, "engine": outcome.engine, "engine_start_s": start_s, "wall_s": outcome.wall_s,
            "cells": len(cells), "cell_wall_s": cells, "mean_cell_s": statistics.mean(cells),
            "median_cell_s": statistics.median(cells)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="cells at once, and boards (default 2)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per device and budget (default 2)")
    p.add_argument("--measure-seconds", type=float, default=8.0,
                   help="timed seconds of each validation on its realtime board (default 8)")
    p.add_argument("--out", default="sweep", help="results name under benchmarks/results (default sweep)")
    args = p.parse_args()
    load_before = os.getloadavg()[0]   # _common records the load as the results are written, i.e. after the run

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        agents = start_agents(tmp / "agents", "raspi4", args.workers)
        try:
            devices = "".join(DEVICE.format(i=i + 1, address=a.address) for i, a in enumerate(agents))
            text = SWEEP.format(seeds=list(range(args.seeds)), measure_seconds=args.measure_seconds, devices=devices)
            alone = one_sweep(text, tmp / "ws-alone", workers=1)
            print(f"one at a time: {alone['cells']} cells in {alone['wall_s']:.1f} s, a cell {alone['mean_cell_s']:.1f} s "
                  "(mean)", flush=True)
            together = one_sweep(text, tmp / "ws-together", workers=args.workers)
        finally:
            stop(agents)
    k, w = together["cells"], args.workers
    ideal = k / w * alone["mean_cell_s"]
    ratio = together["wall_s"] / ideal
    print(f"{w} at a time: {k} cells in {together['wall_s']:.1f} s; (K / workers) x one cell = {ideal:.1f} s; "
          f"ratio {ratio:.3f} (target <= 1.2); Ray start {together['engine_start_s']:.1f} s apart", flush=True)
    overhead = together["wall_s"] / (sum(together["cell_wall_s"]) / w)
    slowdown = together["mean_cell_s"] / alone["mean_cell_s"]
    print(f"  a cell side by side takes {slowdown:.2f}x its time alone; the sweep adds {100 * (overhead - 1):.1f}% "
          "to the cells' own time", flush=True)
    write(args.out, {"load_avg_1m_before": load_before, "cells": k, "workers": w,
                     "measure_seconds": args.measure_seconds, "alone": alone,
                     "together": together, "ideal_s": ideal, "ratio": ratio, "target": 1.2, "met": ratio <= 1.2,
                     "ratio_with_ray_start": (together["wall_s"] + together["engine_start_s"]) / ideal,
                     "cell_slowdown_side_by_side": slowdown, "scheduling_overhead": overhead})


if __name__ == "__main__":
    main()
