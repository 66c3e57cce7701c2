"""Agent benchmark: idle RSS, ``hilnas-agent --help`` start-up time, measurement overhead.

    .venv/bin/python benchmarks/bench_agent.py [--repeats 7]

Targets (issue 2): idle RSS <= 120 MB; ``hilnas-agent --help`` <= 1 s; the median latency the agent
reports for a model over gRPC divided by the median of the same measurement done in-process with
onnxruntime, in one run, <= 1.05. The ratio is measured with the two ways interleaved, several
rounds, and the median of the per-round ratios is quoted (the machine is shared and noisy).
Writes benchmarks/results/agent.json.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import median, write  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def idle_rss(tmp: Path) -> dict:
    exe = Path(sys.executable).parent / "hilnas-agent"
    proc = subprocess.Popen([str(exe), "serve", "--port", "0", "--cache-dir", str(tmp / "cache")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert "serving on" in line, line
        time.sleep(2.0)
        return {"idle_rss_mb": rss_mb(proc.pid), "target_mb": 120}
    finally:
        proc.terminate()
        proc.wait(10)


def help_time(repeats: int) -> dict:
    exe = Path(sys.executable).parent / "hilnas-agent"
    times, bare = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([str(exe), "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, capture_output=True)
        bare.append(time.perf_counter() - t)
    return {"help_median_s": median(times), "python_startup_median_s": median(bare), "runs": repeats,
            "target_s": 1.0}


def in_process_median(model: bytes, cfg) -> float:
    """The same protocol (warm-up, >= min_runs and >= min_seconds) timed in this process."""
    import numpy as np
    import onnxruntime as ort

    from hilnas.agent.protocol import TimingPlan, time_runs

    so = ort.SessionOptions()
    so.intra_op_num_threads = cfg.threads or 0
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = {inp.name: np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in inp.shape]).astype(np.float32)}
    timing = time_runs(lambda: sess.run(None, x), TimingPlan(warmup_runs=cfg.warmup_runs, min_runs=cfg.min_runs,
                                                              min_seconds=cfg.min_seconds, max_runs=cfg.max_runs))
    return float(np.median(timing.samples_ms))


def overhead(tmp: Path, rounds: int) -> dict:
    from testmodels import conv_net

    from hilnas.agent.config import MeasureConfig, ServeConfig
    from hilnas.agent.server import create_server
    from hilnas.server.client import AgentClient, ClientConfig

    model = conv_net(channels=32, size=32)
    cfg = MeasureConfig(warmup_runs=20, min_runs=100, min_seconds=1.0, threads=1)
    running = create_server(ServeConfig(port=0, cache_dir=str(tmp / "cache2")))
    rows = []
    try:
        with AgentClient(ClientConfig(address=f"127.0.0.1:{running.port}")) as c:
            c.benchmark(model, config=cfg)  # upload + worker start
            for _ in range(rounds):
                local = in_process_median(model, cfg)
                remote = c.benchmark(model, config=cfg, upload=False).latency.median_ms
                rows.append({"in_process_ms": local, "agent_ms": remote, "ratio": remote / local})
    finally:
        running.stop(0)
    return {"model": "Conv3x3(32->32)+BN+ReLU+GAP on 1x32x32x32, 1 thread", "rounds": rows,
            "ratio_median": median([r["ratio"] for r in rows]), "target_ratio": 1.05}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = {"idle_rss": idle_rss(Path(tmp)), "help": help_time(args.repeats),
                "overhead": overhead(Path(tmp), args.repeats)}
    write("agent", data)
    print(f"idle RSS {data['idle_rss']['idle_rss_mb']:.1f} MB; --help {data['help']['help_median_s']:.3f} s "
          f"(bare python {data['help']['python_startup_median_s']:.3f} s); overhead ratio "
          f"{data['overhead']['ratio_median']:.3f}")


if __name__ == "__main__":
    main()
