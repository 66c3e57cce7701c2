"""LUT benchmark on the local host agent: build efficiency and LUT fidelity.

    .venv/bin/python benchmarks/bench_lut.py [--networks 30] [--space darts]

(a) LUT-build efficiency = the measured models' own run time (warm-up + timed runs, as the agent
    reports it) / the build's wall time (target >= 0.8). Micro-models are exported first (their
    export time is reported apart: it is paid once per space, not per device).
(b) LUT fidelity for random networks of the space, measured whole on the same agent: the share
    predicted within +-10% and the RMSPE (nn-Meter's metrics; target >= 95% within +-10%), for the
    plain LUT sum and for the sum with a correction fitted by 5-fold cross-validation.
Writes benchmarks/results/lut.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402


def other_statistic(store, fid, statistic: str, space) -> dict:
    import json

    from hilnas.searchers.genotype import genotype_from_json
    from hilnas.searchers.op_key import network_op_keys
    from hilnas.server.lut.predict import cross_validated_predictions, fidelity, lut_sum
    from hilnas.server.lut.rounds import combine_rounds
    from hilnas.server.validation import lut_values

    lut = lut_values(store, fid.lut_id, statistic=statistic)
    sums = [lut_sum([k.encode() for k in network_op_keys(space, genotype_from_json(json.dumps(n["genotype"])))], lut)
            for n in fid.networks]
    measured = [combine_rounds(n[f"rounds_{statistic}_ms"], statistic) for n in fid.networks]
    return {"statistic": statistic, **fidelity(cross_validated_predictions(sums, measured), measured).to_dict()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="darts", choices=["darts", "nb201"])
    p.add_argument("--networks", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="runtime threads (1: steadier on a shared machine)")
    p.add_argument("--repeats", type=int, default=3,
                   help="interleaved LUT passes and whole-network rounds (default 3)")
    p.add_argument("--statistic", default="min", choices=["min", "median"],
                   help="latency statistic (default min: the fastest run, for this shared host; see server/lut/rounds.py)")
    args = p.parse_args()

    from hilnas.agent.config import MeasureConfig, ServeConfig
    from hilnas.agent.server import create_server
    from hilnas.searchers.spaces import create_space
    from hilnas.server.client import AgentClient, ClientConfig
    from hilnas.server.lut.fidelity import FidelityConfig, run_fidelity
    from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
    from hilnas.server.lut.micromodels import MicroModels
    from hilnas.server.store import Store

    measure = MeasureConfig(warmup_runs=10, min_runs=30, min_seconds=0.3, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        running = create_server(ServeConfig(port=0, cache_dir=str(tmp / "cache")))
        try:
            space = create_space(args.space)
            micro = MicroModels(tmp / "micro")
            keys = MicroModels.keys_for_space(space)
            t = time.perf_counter()
            for k in keys:
                micro.onnx(k)
            export_s = time.perf_counter() - t
            with Store.open(tmp / "ws") as store, AgentClient(ClientConfig(address=f"127.0.0.1:{running.port}")) as c:
                t = time.perf_counter()
                report = LutBuilder(store, "local", [c], LutBuildConfig(measure=measure, repeats=args.repeats,
                                                                        statistic=args.statistic)).build(
                    keys, micro.onnx)
                build_wall = time.perf_counter() - t
                fid = run_fidelity(store, "local", [c], FidelityConfig(
                    space=args.space, networks=args.networks, measure=measure, repeats=args.repeats,
                    statistic=args.statistic))
                # The same LUT and rounds under the other statistic: how much the choice matters here.
                alt = other_statistic(store, fid, "median" if args.statistic == "min" else "min", space)
        finally:
            running.stop(0)
    data = {
        "space": args.space, "keys": len(keys), "measure": measure.__dict__,
        "build": {"export_s": export_s, "build_wall_s": build_wall, "measuring_wall_s": report.wall_s,
                  "model_run_s": report.model_run_s, "efficiency": report.model_run_s / build_wall,
                  "remeasured": report.remeasured, "repeats": args.repeats, "statistic": args.statistic,
                  "failed": len(report.failed),
                  "target": 0.8},
        "fidelity": {"networks": fid.raw.n, "raw": fid.raw.to_dict(), "corrected_cv": fid.corrected.to_dict(),
                     "correction": fid.correction.to_dict(), "target_within_10pct": 0.95,
                     "other_statistic_same_rounds": alt, "per_network": fid.networks},
    }
    write(f"lut_{args.space}", data)
    b = data["build"]
    print(f"build: {len(keys)} keys, wall {build_wall:.1f} s, model run {report.model_run_s:.1f} s, efficiency "
          f"{b['efficiency']:.3f} (export {export_s:.1f} s apart)")
    print(fid.summary())
    print(f"  the same LUT and rounds under the {alt['statistic']} statistic: "
          f"{alt['within_10pct'] * 100:.1f}% within +-10%, RMSPE {alt['rmspe']:.1f}%")


if __name__ == "__main__":
    main()
