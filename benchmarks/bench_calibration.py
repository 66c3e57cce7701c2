"""Calibration benchmark of the simulated devices: how well the calibrated profiles reproduce
real device latencies, out of fold.

    /work/venv/bin/python benchmarks/bench_calibration.py [--folds 5] [--no-gpu] [--no-docs]

Runs the same function as ``python -m hilnas.agent.sim.calibrate --report``: per profile
(raspi4, pixel3 on NAS-Bench-201 networks; pixel4-gpu on per-op GPU-delegate kernels), Kendall
tau and median APE of simulated vs measured latencies by k-fold cross-validation, the noise
ceiling of the data, and the run time. Writes benchmarks/results/calibration.json and the
"Simulated-device calibration" section of docs/performance.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-gpu", action="store_true", help="skip the phone-GPU profile")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/performance.md")
    p.add_argument("--cache", type=Path, help="cache of the costed networks (default: the user cache)")
    args = p.parse_args()

    from hilnas.agent.sim.calibrate import ReportConfig, calibration_report, markdown

    result = calibration_report(ReportConfig(folds=args.folds, seed=args.seed, cache=args.cache,
                                             gpu=not args.no_gpu,
                                             docs=None if args.no_docs else ROOT / "docs" / "performance.md"))
    write("calibration", result)
    print(markdown(result))
    print(f"(JSON in {RESULTS / 'calibration.json'})")


if __name__ == "__main__":
    main()
