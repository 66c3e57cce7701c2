"""Measure a whole model on a device and set it beside the LUT's prediction."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from hilnas.agent.config import MeasureConfig
from hilnas.agent.results import BenchmarkResult, ModelFormat
from hilnas.server import model_meta
from hilnas.server.lut.predict import Correction, MissingOps, lut_sum
from hilnas.server.lut.rounds import DEFAULT_STATISTIC, check_statistic, window_value
from hilnas.server.store import LutId, Store


def latest_correction(store: Store, lut_id: LutId) -> Correction:
    """The correction fitted by the latest fidelity run on this LUT (identity if none)."""
    runs = store.runs_df("fidelity")
    for _, run in runs.iloc[::-1].iterrows():
        result = run["result"] or {}
        if run["status"] == "done" and result.get("lut_id") == lut_id.as_dict() and "correction" in result:
            return Correction.from_dict(result["correction"])
    return Correction()


def lut_values(store: Store, lut_id: LutId, metric: str = "latency_ms", *,
               statistic: str = DEFAULT_STATISTIC) -> dict[str, float]:
    """One LUT as op key -> value of ``metric`` (``latency_ms``: each row's median, or its fastest run
    with ``statistic="min"``; ``energy_mj``: net energy), measured rows only."""
    check_statistic(statistic)
    rows = store.lut_dict(lut_id, measured_only=True)
    if metric == "latency_ms":
        field = "min_ms" if statistic == "min" else "median_ms"
        values = {k: getattr(r, field) for k, r in rows.items() if getattr(r, field) is not None}
        if rows and len(values) < len(rows) and statistic == "min":
            raise ValueError(f"the LUT {lut_id} has {len(rows) - len(values)} row(s) without a fastest run "
                             "(measured before schema 2, or imported without min_ms): delete the LUT and build it "
                             "again, or use --statistic median")
        return values
    if metric == "energy_mj":
        values = {k: r.energy_net_mj for k, r in rows.items()
                  if r.energy_net_mj is not None and math.isfinite(r.energy_net_mj)}
        if rows and not values:
            raise ValueError(f"the LUT {lut_id} has no energy measurements; rebuild it with energy on "
                             "(hilnas lut build --energy) on a device with a meter")
        return values
    raise ValueError(f"metric {metric!r} does not come from a LUT")


@dataclass
class ValidationReport:
    model: str
    device_key: str
    measured_ms: float | None
    measured_ci95_ms: tuple[float, float] | None
    status: str
    error: str = ""
    lut_id: LutId | None = None
    lut_sum_ms: float | None = None
    predicted_ms: float | None = None
    correction: dict = field(default_factory=dict)
    note: str = ""
    simulated: bool = False

    @property
    def error_pct(self) -> float | None:
        if self.predicted_ms is None or not self.measured_ms:
            return None
        return (self.predicted_ms - self.measured_ms) / self.measured_ms * 100.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["lut_id"] = self.lut_id.as_dict() if self.lut_id else None
        d["error_pct"] = self.error_pct
        return d

    def summary(self) -> str:
        where = f"{self.device_key}{' (simulated)' if self.simulated else ''}"
        if self.measured_ms is None:
            return f"{self.model} on {where}: {self.status}: {self.error}"
        lo, hi = self.measured_ci95_ms
        stat = self.correction.get("statistic", "median")
        text = (f"{self.model} on {where}: measured {self.measured_ms:.3f} ms "
                + (f"(fastest run; the median's 95% CI {lo:.3f}-{hi:.3f})" if stat == "min"
                   else f"(median, 95% CI {lo:.3f}-{hi:.3f})"))
        if self.predicted_ms is not None:
            how = (f"LUT sum {self.lut_sum_ms:.3f} ms, correction x{self.correction.get('scale', 1):.3f} "
                   f"{self.correction.get('offset_ms', 0):+.3f} ms" if self.correction.get("fitted_on")
                   else "plain LUT sum; `hilnas fidelity` learns a correction for fusion and per-op overhead")
            text += f"\n  predicted {self.predicted_ms:.3f} ms ({how}): error {self.error_pct:+.1f}%"
        if self.note:
            text += f"\n  note: {self.note}"
        return text


def validate_model_bytes(store: Store, device_key: str, clients: Sequence, data: bytes, *, name: str,
                         measure: MeasureConfig = MeasureConfig(), runtime: str | None = None,
                         fmt: ModelFormat = ModelFormat.ONNX) -> ValidationReport:
    """Measure ``data`` on the device; predict it from the device's LUT when the model says its ops."""
    store.get_device(device_key)  # unknown device: a clear error before any work
    if not clients:
        raise ValueError(f"device {device_key!r} has no agents in the fleet")
    note, keys = "", None
    if fmt is ModelFormat.ONNX:
        keys = model_meta.op_keys(data)
        if keys is None:
            note = "no prediction: the model carries no hilnas space/genotype metadata"
    lut_id = total = predicted = None
    correction = Correction()
    if keys is not None:
        try:
            lut_id = store.find_lut(device_key, runtime=runtime)
            correction = latest_correction(store, lut_id)
            total = lut_sum(keys, lut_values(store, lut_id, statistic=correction.statistic))
            predicted = correction.apply(total)
        except MissingOps as err:
            note = f"no prediction: {err}"
        except Exception as err:  # LutNotFound / Ambiguous: still measure, say why
            note = f"no prediction: {err}"
    result: BenchmarkResult = clients[0].benchmark(data, format=fmt, config=measure)
    lat = result.latency
    report = ValidationReport(
        model=name, device_key=device_key,
        measured_ms=window_value(lat, correction.statistic) if lat and result.status.measured else None,
        measured_ci95_ms=(lat.ci95_low_ms, lat.ci95_high_ms) if lat else None, status=result.status.name,
        error=result.error, lut_id=lut_id, lut_sum_ms=total, predicted_ms=predicted,
        correction=correction.to_dict(), note=note, simulated=result.simulated)
    if report.measured_ms is not None and result.device_fingerprint:
        meta = model_meta.read(data) if fmt is ModelFormat.ONNX else None
        model_id = store.add_model(name, meta[1].to_dict() if meta else {}, onnx_sha256=hashlib.sha256(data).hexdigest(),
                                   device_key=device_key, lut_id=lut_id, predicted_latency_ms=predicted)
        store.add_validation(model_id, device_key, fingerprint=result.device_fingerprint, status=result.status.name.lower(),
                             predicted_ms=predicted, measured_ms=report.measured_ms,
                             stats={"latency": lat, "lut_sum_ms": total})
    return report


def validate_model_file(store: Store, device_key: str, clients: Sequence, path: Path, *,
                        measure: MeasureConfig = MeasureConfig(), runtime: str | None = None) -> ValidationReport:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read model {path}: {err.strerror or err}") from None
    fmt = ModelFormat.TFLITE if str(path).endswith(".tflite") else ModelFormat.ONNX
    return validate_model_bytes(store, device_key, clients, data, name=Path(path).name, measure=measure,
                                runtime=runtime, fmt=fmt)
