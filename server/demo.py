"""``hilnas demo``: the pipeline end to end on this machine, no hardware needed.

Starts two agents on loopback — this host (ONNX Runtime) and a simulated Raspberry Pi 4 — registers
them in a fleet, measures a NAS-Bench-201 network on each, builds each device's LUT for the
NB201 space, and compares the LUT's prediction with the measured network.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoConfig:
    workspace: Path | None = None   # None = a temporary folder, removed afterwards
    quick: bool = False             # smallest settings (CI)
    json: bool = False


def _say(cfg: DemoConfig, text: str) -> None:
    if not cfg.json:
        print(text, flush=True)


def run_demo(cfg: DemoConfig) -> int:
    from hilnas.agent.config import AgentLimits, MeasureConfig, ServeConfig
    from hilnas.agent.server import create_server
    from hilnas.searchers.genotype import NB201Genotype
    from hilnas.searchers.spaces import create_space
    from hilnas.server import model_meta
    from hilnas.server.client import client_for_endpoint
    from hilnas.server.fleet import AgentEndpoint, DeviceEntry, Fleet, default_fleet_path
    from hilnas.server.lut.builder import LutBuildConfig, LutBuilder
    from hilnas.server.lut.micromodels import MicroModels
    from hilnas.server.store import Store
    from hilnas.server.validation import validate_model_bytes

    tmp = Path(tempfile.mkdtemp(prefix="hilnas-demo-"))
    workspace = cfg.workspace or tmp / "workspace"
    out: dict = {"devices": {}}
    agents = []
    try:
        _say(cfg, "1. starting two agents on loopback: this host and a simulated Raspberry Pi 4")
        limits = AgentLimits(worker_timeout_s=60)
        for key, simulate in (("local", None), ("raspi4-sim", "raspi4")):
            running = create_server(ServeConfig(host="127.0.0.1", port=0, simulate=simulate,
                                                cache_dir=str(tmp / f"cache-{key}"), limits=limits))
            agents.append((key, running))
            _say(cfg, f"   {key:<11} listening on {running.address}")
        fleet = Fleet([DeviceEntry(key=k, agents=(AgentEndpoint(address=r.address),)) for k, r in agents],
                      path=default_fleet_path(workspace))
        workspace.mkdir(parents=True, exist_ok=True)
        fleet.save()

        space = create_space("nb201")  # the benchmark's definition: C=16, N=5, 32x32, 10 classes
        genotype = NB201Genotype.from_arch_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+"
                                               "|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
        network = model_meta.export_network(space, genotype)
        _say(cfg, f"2. exported a NAS-Bench-201 network (index {genotype.index}, {len(network) / 1e6:.2f} MB ONNX)")

        measure = (MeasureConfig(warmup_runs=3, min_runs=10, min_seconds=0.05) if cfg.quick
                   else MeasureConfig(warmup_runs=10, min_runs=30, min_seconds=0.5))
        lut_measure = (MeasureConfig(warmup_runs=3, min_runs=10, min_seconds=0.02) if cfg.quick
                       else MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.1))
        micro = MicroModels(workspace / "micromodels")
        keys = MicroModels.keys_for_space(space)
        with Store.open(workspace) as store:
            for key, running in agents:
                client = client_for_endpoint(fleet.get(key).agents[0], retries=1)
                with client:
                    info = client.describe()
                    store.upsert_device(key, fingerprint=info.fingerprint, info=info)
                    _say(cfg, f"3. [{key}] {('simulated ' + info.profile) if info.simulated else info.cpu_model}, "
                              f"fingerprint {info.fingerprint}")
                    t0 = time.monotonic()
                    report = LutBuilder(store, key, [client], LutBuildConfig(measure=lut_measure)).build(
                        keys, micro.onnx)
                    _say(cfg, f"   LUT: {report.measured} of {report.requested} op instances measured in "
                              f"{time.monotonic() - t0:.1f} s ({len(report.failed)} failed)")
                    v = validate_model_bytes(store, key, [client], network, name="nb201-demo", measure=measure)
                    _say(cfg, "   " + v.summary().replace("\n", "\n   "))
                    out["devices"][key] = {"info": {"fingerprint": info.fingerprint, "simulated": info.simulated,
                                                    "cpu_model": info.cpu_model},
                                           "lut": report.to_dict(), "validation": v.to_dict()}
        _say(cfg, f"done. Workspace: {workspace}" + (" (temporary, removed)" if cfg.workspace is None else ""))
        if cfg.json:
            from hilnas.agent.convert import to_jsonable

            print(json.dumps(to_jsonable(out), indent=2, default=str))
        ok = all(d["validation"]["measured_ms"] for d in out["devices"].values())
        return 0 if ok else 1
    finally:
        for _, running in agents:
            running.stop(0)
        shutil.rmtree(tmp, ignore_errors=True)
