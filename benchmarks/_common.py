"""Shared helpers of the benchmarks: results as JSON with the machine they were measured on."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


# the search loop's measurements (a short window); a score afresh uses a longer one of its own
SEARCH_MEASURE = dict(warmup_runs=3, min_runs=15, min_seconds=0.05)
FRESH_MEASURE = dict(warmup_runs=5, min_runs=30, min_seconds=0.1)     # the score's: another, longer window


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg_1m_at_start": os.getloadavg()[0]}


def write(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), **data}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path


def median(xs):
    return statistics.median(xs)


def warm_torch() -> None:
    """Pay torch's one-time lazy imports before anything is timed.

    The first optimizer a process builds imports ``torch._dynamo`` (about 2 s here); without this
    the first method a benchmark times would carry that cost and the second would not.
    """
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def simulated_device(profile: str, full, space_name: str, tmp: Path, say) -> tuple[object, dict]:
    """A simulated agent on loopback with the LUT of ``full``'s op keys and its fidelity correction.

    Returns the server (stop it when done) and what a search needs: the address, the LUT (at the
    correction's statistic), the correction and the fidelity figures.
    """
    from hilnas.agent.config import MeasureConfig, ServeConfig
    from hilnas.agent.server import create_server
    from hilnas.server.client import AgentClient, ClientConfig
    from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
    from hilnas.server.lut.fidelity import FidelityConfig, run_fidelity
    from hilnas.server.lut.micromodels import MicroModels
    from hilnas.server.store import Store
    from hilnas.server.validation import lut_values

    server = create_server(ServeConfig(port=0, simulate=profile, cache_dir=str(tmp / f"cache-{profile}")))
    measure = MeasureConfig(**SEARCH_MEASURE)
    with AgentClient(ClientConfig(address=server.address)) as client, Store.open(tmp / f"ws-{profile}") as store:
        store.upsert_device(profile, fingerprint=client.describe().fingerprint)
        LutBuilder(store, profile, [client], LutBuildConfig(measure=measure)).build(
            MicroModels.keys_for_space(full), MicroModels(tmp / "micro").onnx)
        fid = run_fidelity(store, profile, [client], FidelityConfig(space=space_name, networks=30, measure=measure))
        lut = lut_values(store, store.find_lut(profile), statistic=fid.correction.statistic)
    say(f"{profile}: LUT of {len(lut)} keys; correction x{fid.correction.scale:.3f} {fid.correction.offset_ms:+.3f} ms "
        f"(cross-validated within 10 %: plain sum {fid.raw.within_10pct:.0%}, corrected {fid.corrected.within_10pct:.0%})")
    return server, {"address": server.address, "lut": lut, "correction": fid.correction.to_dict(),
                    "fidelity": {"plain_within_10pct": fid.raw.within_10pct,
                                 "corrected_within_10pct": fid.corrected.within_10pct,
                                 "corrected_rmspe": fid.corrected.rmspe}}


def corrected_cost(setup: dict, full):
    """The cost of ``full``'s network through a ``simulated_device`` setup's LUT, corrected by its fidelity fit
    where there is one (the cost the searches constrain)."""
    from hilnas.searchers.cost import CorrectedCost, FullSizeCost, LutLatencyCost

    base, c = LutLatencyCost(setup["lut"]), setup["correction"]
    return FullSizeCost(CorrectedCost(base, c["scale"], c["offset_ms"]) if c else base, full)


def agent_measure(client, full, config, *, seed: int = 0, exported: dict | None = None):
    """genotype -> its full-size network's median latency on the agent: one export per network (kept in
    ``exported``, which may be shared), a new call on the agent per use."""
    from hilnas.server.model_meta import export_network

    exported = {} if exported is None else exported

    def measure(genotype) -> float:
        key = json.dumps(genotype.to_dict(), sort_keys=True)
        if key not in exported:
            exported[key] = export_network(full, genotype, seed=seed)
        r = client.benchmark(exported[key], config=config)
        if not r.status.measured or r.latency is None:
            raise RuntimeError(f"the agent could not measure a network: {r.status.name}: {r.error}")
        return r.latency.median_ms
    return measure


def agent_measure_fresh(client, full, config, *, first_seed: int = 100):
    """genotype -> its full-size network's median latency on the agent, every call a new export (new weights,
    seeds ``first_seed``, ``first_seed`` + 1, ...: not the score's) and a new call: repeated measurements of a
    network see the spread between exports a fresh score sees, not only the one between calls."""
    seeds = iter(range(first_seed, 1 << 62))

    def measure(genotype) -> float:
        return agent_measure(client, full, config, seed=next(seeds))(genotype)   # a new cache: a new export
    return measure
