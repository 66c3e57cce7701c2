"""How well a device's LUT predicts whole networks: nn-Meter's metrics over random networks.

Random genotypes of a space are exported, measured whole on the device, and predicted from the
LUT two ways: the plain sum of op latencies, and the sum with a learned correction (per-model
overhead, fusion) evaluated by k-fold cross-validation, so the reported figure is never a fit to
its own data. The correction fitted on all networks is stored with the run for ``hilnas validate``.

Each network is measured in interleaved rounds (every network once, then again). The latency
statistic (``rounds.py``: median, or the fastest run) picks the LUT values and each network's
number alike, and is stored with the correction. A network whose two lowest rounds still
disagree gets more rounds, up to ``max_repeats``.
"""
from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from hilnas.agent.config import MeasureConfig
from hilnas.agent.results import BenchmarkRequest, LatencyStats, ModelFormat
from hilnas.server import model_meta
from hilnas.server.client import sha256_hex
from hilnas.server.lut.predict import (Correction, Fidelity, cross_validated_predictions, fidelity, fit_correction,
                                   lut_sum)
from hilnas.server.lut.rounds import DEFAULT_STATISTIC, check_statistic, combine_rounds, window_value, windows_agree
from hilnas.server.store import LutId, Store
from hilnas.server.validation import lut_values


@dataclass(frozen=True)
class FidelityConfig:
    space: str = "darts"                 # search space whose random networks are measured
    space_overrides: dict = field(default_factory=dict)
    networks: int = 30                   # how many random networks
    seed: int = 0
    measure: MeasureConfig = MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.1)
    runtime: str | None = None           # LUT runtime, when the device has several
    folds: int = 5                       # cross-validation folds for the correction
    repeats: int = 3                     # interleaved rounds per network, so a passing disturbance (a noisy
                                         # neighbour) costs no data point
    statistic: str = DEFAULT_STATISTIC   # "median" or "min" (rounds.py), for the LUT values and the rounds alike
    agreement: float = 0.05              # after `repeats` rounds, a network whose two lowest rounds differ by
    max_repeats: int = 6                 # more than this (relative) gets more rounds, up to max_repeats

    def __post_init__(self) -> None:
        if self.networks < 1 or self.repeats < 1 or self.folds < 2:
            raise ValueError("networks and repeats must be >= 1, folds >= 2")
        if self.max_repeats < self.repeats or not self.agreement >= 0:
            raise ValueError("max_repeats must be >= repeats and agreement >= 0")
        check_statistic(self.statistic)


@dataclass
class FidelityReport:
    device_key: str
    lut_id: LutId
    space: str
    networks: list[dict]
    raw: Fidelity                        # plain LUT sum
    corrected: Fidelity                  # sum with a cross-validated correction
    correction: Correction               # fitted on all networks (stored for validate)
    failed: list[str]
    wall_s: float

    def to_dict(self) -> dict:
        return {"device_key": self.device_key, "lut_id": self.lut_id.as_dict(), "space": self.space,
                "networks": self.networks, "raw": self.raw.to_dict(), "corrected": self.corrected.to_dict(),
                "correction": self.correction.to_dict(), "failed": self.failed, "wall_s": self.wall_s}

    def summary(self) -> str:
        def line(name, f: Fidelity):
            return (f"  {name:<28} within +-10%: {f.within_10pct * 100:5.1f}%   RMSPE {f.rmspe:5.1f}%   "
                    f"MAPE {f.mape:5.1f}%   worst {f.max_ape:5.1f}%")
        return "\n".join([
            f"LUT fidelity on {self.device_key} ({self.space}, {self.raw.n} networks, latency statistic "
            f"{self.correction.statistic}, {self.wall_s:.0f} s)",
            f"  LUT {self.lut_id}",
            line("LUT sum", self.raw),
            line("LUT sum + correction (CV)", self.corrected),
            f"  correction stored: measured ~= {self.correction.scale:.3f} x sum {self.correction.offset_ms:+.3f} ms"
            + (f"\n  failed: {len(self.failed)}" if self.failed else "")])


def run_fidelity(store: Store, device_key: str, clients: Sequence, config: FidelityConfig, *,
                 progress: Callable[[int, int, str], None] | None = None) -> FidelityReport:
    from hilnas.searchers.spaces import create_space

    start = time.monotonic()
    store.get_device(device_key)
    space = create_space(config.space, **config.space_overrides)
    lut_id = store.find_lut(device_key, runtime=config.runtime)
    lut = lut_values(store, lut_id, statistic=config.statistic)
    rng = random.Random(config.seed)
    genotypes = [space.sample(rng) for _ in range(config.networks)]
    from hilnas.searchers.op_key import network_op_keys

    sums = [lut_sum([k.encode() for k in network_op_keys(space, g)], lut) for g in genotypes]  # MissingOps early
    # Export everything before measuring: export work would disturb a measurement on this host.
    models = []
    for i, g in enumerate(genotypes):
        models.append(model_meta.export_network(space, g, seed=config.seed + i))
        if progress:
            progress(i + 1, len(genotypes) * (1 + config.repeats), "export")
    reqs = [BenchmarkRequest(sha256=sha256_hex(m), model=m, format=ModelFormat.ONNX,
                             backend=lut_id.runtime, config=config.measure, request_id=str(i))
            for i, m in enumerate(models)]
    windows: dict[int, list[LatencyStats]] = {i: [] for i in range(len(models))}  # one per round

    def rounds(i: int) -> list[float]:
        return [window_value(w, config.statistic) for w in windows[i]]

    failed: list[str] = []
    todo = list(range(len(reqs)))
    done, total = len(genotypes), len(genotypes) * (1 + config.repeats)
    for r in range(config.max_repeats):
        if r >= config.repeats:  # extra rounds only for networks whose lowest rounds still disagree
            todo = [i for i in todo if windows[i] and not windows_agree(rounds(i), config.agreement)]
            if not todo:
                break
            total += len(todo)
        # Round 1 uploads; later rounds send hashes only (the agent caches models by sha256).
        batch = [reqs[i] if r == 0 else dataclasses.replace(reqs[i], model=b"") for i in todo]
        for result in clients[0].benchmark_stream(batch):
            i = int(result.request_id)
            if result.status.measured and result.latency:
                if result.device_fingerprint != lut_id.fingerprint:
                    raise ValueError(f"the agent reports fingerprint {result.device_fingerprint}, the LUT was made "
                                     f"on {lut_id.fingerprint}: rebuild the LUT for this device")
                windows[i].append(result.latency)
            elif r == 0:
                failed.append(f"network {i}: {result.status.name}: {result.error}")
            done += 1
            if progress:
                progress(done, total, "measure")
    measured = {i: combine_rounds(rounds(i), config.statistic) for i, w in windows.items() if w}
    idx = sorted(measured)
    if len(idx) < 4:
        raise RuntimeError(f"only {len(idx)} networks could be measured: " + "; ".join(failed[:3]))
    s = [sums[i] for i in idx]
    m = [measured[i] for i in idx]
    raw = fidelity(s, m)
    cv = cross_validated_predictions(s, m, folds=config.folds, seed=config.seed)
    corrected = fidelity(cv, m)
    correction = dataclasses.replace(fit_correction(s, m), statistic=config.statistic)
    nets = [{"genotype": genotypes[i].to_dict(), "lut_sum_ms": sums[i], "measured_ms": measured[i],
             "rounds_ms": rounds(i), "predicted_cv_ms": p,
             "rounds_median_ms": [w.median_ms for w in windows[i]], "rounds_min_ms": [w.min_ms for w in windows[i]]}
            for i, p in zip(idx, cv)]
    report = FidelityReport(device_key, lut_id, config.space, nets, raw, corrected, correction, failed,
                            time.monotonic() - start)
    run_id = store.start_run("fidelity", {"device_key": device_key, "space": config.space,
                                          "networks": config.networks, "seed": config.seed,
                                          "repeats": config.repeats, "statistic": config.statistic,
                                          "agreement": config.agreement, "max_repeats": config.max_repeats})
    store.finish_run(run_id, result=report.to_dict())
    return report
