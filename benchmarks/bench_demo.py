"""The demo's wall time: ``hilnas demo`` at its default scale, as a new user runs it.

    .venv/bin/python benchmarks/bench_demo.py [--repeats 3] [--scale default|quick]

Target (issue 14): ``hilnas demo`` (default scale) within 5 minutes on this 2-core machine. Each
repeat runs the real command in a fresh workspace (``--new``; the agents, LUTs, searches,
trainings, validations and the report all included) and records its wall time, its CPU time
(user + system of the process), the machine's load average before and after, and the time of
each kind of step from the run's store. The machine is shared, so the CPU time is quoted beside
the wall time: the wall time of an idle machine is close to the CPU time. Medians over the
repeats. Writes benchmarks/results/demo.json.
"""
from __future__ import annotations

import argparse
import collections
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, write  # noqa: E402


def step_seconds(workspace: Path) -> dict[str, float]:
    """Seconds per kind of step (lut, search, hypernetwork, grow, pretrain, train, validate, ...) over the
    demo's runs (NB201 on three devices, then one run per space of its own: splitting, pruning)."""
    from hilnas.server.store import Store

    out: dict[str, float] = collections.defaultdict(float)
    with Store.open(workspace, create=False) as store:
        for run_id in store.runs_df("run")["id"]:
            for step in store.steps(int(run_id)):
                parts = step.key.split("/")
                kind = parts[-1] if parts[-1] in ("lut", "budgets", "search", "hypernetwork", "derive", "train",
                                                  "validate", "grow", "pretrain", "export") else parts[-2]
                method = parts[1] if len(parts) > 2 else "device"
                out[f"{method}/{kind}"] += step.seconds or 0.0
    return dict(out)


def one(scale: str, tmp: Path, i: int) -> dict:
    ws = tmp / f"demo-{i}"
    exe = Path(sys.executable).parent / "hilnas"
    args = [str(exe), "demo", "--workspace", str(ws), "--quiet"] + (["--quick"] if scale == "quick" else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"hilnas demo failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row = {"wall_s": wall, "cpu_s": cpu, "load_avg_1m_before": load0, "load_avg_1m_after": os.getloadavg()[0],
           "steps_s": step_seconds(ws)}
    print(f"run {i}: wall {wall:.0f} s, CPU {cpu:.0f} s, load {load0:.1f} -> {row['load_avg_1m_after']:.1f}",
          flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scale", choices=["default", "quick"], default="default")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [one(args.scale, Path(tmp), i) for i in range(args.repeats)]
    data = {"command": f"hilnas demo{' --quick' if args.scale == 'quick' else ''}", "scale": args.scale,
            "runs": rows, "wall_median_s": median([r["wall_s"] for r in rows]),
            "cpu_median_s": median([r["cpu_s"] for r in rows]), "target_wall_s": 300}
    write(f"demo{'_quick' if args.scale == 'quick' else ''}", data)
    print(f"hilnas demo ({args.scale}): wall median {data['wall_median_s']:.0f} s, CPU median "
          f"{data['cpu_median_s']:.0f} s (target: wall <= 300 s)")


if __name__ == "__main__":
    main()
