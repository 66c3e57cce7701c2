"""Fleet benchmark: does a LUT build get N times faster with N boards of one kind?

    nice .venv/bin/python benchmarks/bench_fleet.py [--agents 1,2,4,8] [--repeats 3] [--min-seconds 0.5]

Every agent is a real ``hilnas-agent serve --simulate PROFILE --realtime`` process on loopback:
each measurement takes the time it reports (warm-up + runs) while the agent holds its
measurement slot, as on a real board, so the build's wall time is set by scheduling — batching,
stream depth, how work is spread over the agents, the store's writes — and not by this host's CPU.

(a) One device key (the DARTS space's op keys, 3x32x32, C=16) served by N agents, for each N:
    wall time of the measuring phase, speed-up T(1) / T(N) (target >= 0.9 N), and the agents'
    busy share = the models' own run time / (N x wall).
(b) Several device keys built at once from one process into one store (``--profiles``, each
    with ``--agents-per-key`` agents): each key's wall time when built alone, and all together.

Micro-models are exported once before anything is timed. Each N gets a fresh store and fresh
agents (nothing cached). Writes benchmarks/results/fleet.json (``--out`` to change the name).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "reliability"))   # AgentProcess: a real agent process
from _common import write  # noqa: E402


def start_agents(folder: Path, profile: str, n: int, seed0: int = 0) -> list:
    """``n`` realtime simulated agents of ``profile`` (one kind of board, each its own noise seed),
    started and warmed up side by side."""
    from agent_process import AgentProcess

    agents = [AgentProcess(folder / f"{profile}-{i}", "--simulate", profile, "--realtime", "--seed", str(seed0 + i))
              for i in range(n)]
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda a: a.start(), agents))
        list(pool.map(warm_up, agents))
    return agents


def warm_up(agent) -> float:
    """One small model that is not a LUT key. An agent's first request imports onnx (~2.3 s of
    CPU here); on real boards each pays that on its own CPU, but 8 simulated boards on this
    2-core host would pay it one after another inside the timed build."""
    from hilnas.agent.backends.onnx_builder import build_mlp_model
    from hilnas.agent.config import MeasureConfig
    from hilnas.server.client import AgentClient, ClientConfig

    t = time.perf_counter()
    with AgentClient(ClientConfig(address=agent.address)) as c:
        result = c.benchmark(build_mlp_model(), config=MeasureConfig(warmup_runs=1, min_runs=1, min_seconds=0))
    if not result.status.measured:
        raise RuntimeError(f"warm-up of {agent.address} failed: {result.status.name} {result.error}")
    return time.perf_counter() - t


def build(store, device_key: str, agents: list, keys, models: dict, config) -> dict:
    """One LUT build of ``keys`` on ``agents``; its report as numbers."""
    from hilnas.server.client import AgentClient, ClientConfig
    from hilnas.server.lut.builder import LutBuilder

    clients = [AgentClient(ClientConfig(address=a.address, retries=2, backoff_s=0.2)) for a in agents]
    try:
        t = time.perf_counter()
        report = LutBuilder(store, device_key, clients, config).build(keys, models.__getitem__)
        wall = time.perf_counter() - t
    finally:
        for c in clients:
            c.close()
    if report.failed:
        raise RuntimeError(f"{device_key}: {len(report.failed)} keys failed: {list(report.failed.items())[:3]}")
    return {"agents": len(agents), "wall_s": wall, "measuring_wall_s": report.wall_s,
            "model_run_s": report.model_run_s, "measurements": report.measured + report.repeated + report.remeasured,
            "remeasured": report.remeasured,
            "busy_share": report.model_run_s / (len(agents) * report.wall_s) if report.wall_s else 0.0}


def stop(agents: list) -> None:
    for a in agents:
        a.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", default="1,2,4,8", help="agent counts N of one device key (default 1,2,4,8)")
    p.add_argument("--profile", default="raspi4", help="simulated profile of the one-key series (default raspi4)")
    p.add_argument("--profiles", default="raspi4,pixel3,jetson-nano",
                   help="device keys built at once, one per profile (default raspi4,pixel3,jetson-nano; '' skips)")
    p.add_argument("--agents-per-key", type=int, default=2, help="agents of each key built at once (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved passes per key (default 3)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up runs per measurement (default 5)")
    p.add_argument("--min-runs", type=int, default=20, help="timed runs per measurement, at least (default 20)")
    p.add_argument("--min-seconds", type=float, default=0.5, help="timed seconds per measurement, at least (default 0.5)")
    p.add_argument("--batch", type=int, default=None, help="LutBuildConfig.batch_size (default: the builder's)")
    p.add_argument("--out", default="fleet", help="results name under benchmarks/results (default fleet)")
    args = p.parse_args()

    from hilnas.agent.config import MeasureConfig
    from hilnas.searchers.spaces import create_space
    from hilnas.server.lut.builder import LutBuildConfig
    from hilnas.server.lut.micromodels import MicroModels
    from hilnas.server.store import Store

    measure = MeasureConfig(warmup_runs=args.warmup, min_runs=args.min_runs, min_seconds=args.min_seconds)
    extra = {"batch_size": args.batch} if args.batch else {}
    config = LutBuildConfig(measure=measure, repeats=args.repeats, **extra)
    counts = [int(n) for n in args.agents.split(",") if n]
    profiles = [x for x in args.profiles.split(",") if x]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        micro = MicroModels(tmp / "micro")
        keys = MicroModels.keys_for_space(create_space("darts"))
        t = time.perf_counter()
        models = {k: micro.onnx(k) for k in keys}
        export_s = time.perf_counter() - t
        print(f"{len(keys)} DARTS op keys exported in {export_s:.1f} s; {args.repeats} pass(es) each", flush=True)

        series = []
        for n in counts:
            agents = start_agents(tmp / f"one-{n}", args.profile, n)
            try:
                with Store.open(tmp / f"ws-one-{n}") as store:
                    r = build(store, args.profile, agents, keys, models, config)
            finally:
                stop(agents)
            series.append(r)
            base = series[0]["measuring_wall_s"] * series[0]["agents"]
            r["speedup"] = base / r["measuring_wall_s"]
            r["target"] = 0.9 * n
            r["met"] = r["speedup"] >= r["target"]
            print(f"N={n}: wall {r['measuring_wall_s']:.1f} s, speed-up {r['speedup']:.2f} (target >= {r['target']:.1f}), "
                  f"busy share {r['busy_share']:.3f}", flush=True)

        together = {}
        if profiles:
            solo = {}
            for prof in profiles:
                agents = start_agents(tmp / f"solo-{prof}", prof, args.agents_per_key)
                try:
                    with Store.open(tmp / f"ws-solo-{prof}") as store:
                        solo[prof] = build(store, prof, agents, keys, models, config)
                finally:
                    stop(agents)
                print(f"{prof} alone ({args.agents_per_key} agents): {solo[prof]['measuring_wall_s']:.1f} s", flush=True)
            fleets = {prof: start_agents(tmp / f"all-{prof}", prof, args.agents_per_key, seed0=100) for prof in profiles}
            results: dict[str, dict] = {}
            try:
                with Store.open(tmp / "ws-all") as store:
                    t = time.perf_counter()

                    def one(prof: str) -> None:
                        results[prof] = build(store, prof, fleets[prof], keys, models, config)
                    threads = [threading.Thread(target=one, args=(prof,)) for prof in profiles]
                    for th in threads:
                        th.start()
                    for th in threads:
                        th.join()
                    all_wall = time.perf_counter() - t
            finally:
                for agents in fleets.values():
                    stop(agents)
            missing = [prof for prof in profiles if prof not in results]
            if missing:
                raise RuntimeError(f"builds of {missing} did not finish")
            together = {"agents_per_key": args.agents_per_key, "wall_s": all_wall,
                        "slowest_alone_s": max(s["measuring_wall_s"] for s in solo.values()),
                        "per_key": {prof: {"alone": solo[prof], "together": results[prof],
                                           "ratio": results[prof]["measuring_wall_s"] / solo[prof]["measuring_wall_s"]}
                                    for prof in profiles}}
            together["ratio_all_vs_slowest_alone"] = all_wall / together["slowest_alone_s"]
            print(f"{len(profiles)} keys at once: {all_wall:.1f} s vs the slowest alone "
                  f"{together['slowest_alone_s']:.1f} s (ratio {together['ratio_all_vs_slowest_alone']:.3f})", flush=True)

    write(args.out, {"space": "darts", "keys": len(keys), "profile": args.profile, "export_s": export_s,
                     "measure": measure.__dict__, "build": {k: v for k, v in config.__dict__.items() if k != "measure"},
                     "one_key": series, "several_keys": together})


if __name__ == "__main__":
    main()
