"""Measure a whole model on a device, set it beside the LUT's prediction, and check it against budgets.

Any ONNX model can be validated: it is always measured on the device, and predicted from the
device's LUT when its op keys are known (models hilnas exported carry their space and genotype;
others get a note instead of a prediction).

The budget rule (the CI gate, ``hilnas validate --budget``): a budget is **met** when the upper
end of the measurement's 95 % confidence interval is within it — the median latency's CI for
``latency_ms``, the net energy's CI for ``energy_mj``; parameters are counted exactly from the
file and FLOPs computed from the genotype, so their bound is the value itself. A model that
could not be measured meets no budget (``met`` is None, and the gate fails).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from hilnas.agent.config import MeasureConfig
from hilnas.agent.results import BenchmarkResult, ModelFormat
from hilnas.searchers.result import Budget
from hilnas.server import model_meta
from hilnas.server.lut.predict import Correction, MissingOps, lut_sum
from hilnas.server.lut.rounds import DEFAULT_STATISTIC, check_statistic, window_value
from hilnas.server.store import LutId, Store, UnknownDeviceError

UNITS = {"latency_ms": "ms", "energy_mj": "mJ", "params_m": "M params", "mflops": "MFLOPs"}


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
        field_ = "min_ms" if statistic == "min" else "median_ms"
        values = {k: getattr(r, field_) for k, r in rows.items() if getattr(r, field_) is not None}
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


@dataclass(frozen=True)
class BudgetCheck:
    """One budget against one measurement: the value, the upper end of its 95 % CI, the verdict."""
    budget: Budget
    measured: float | None       # median latency / net energy / exact parameters or FLOPs
    upper: float | None          # upper end of the 95 % CI (the value itself when exact)
    met: bool | None             # upper <= budget; None when there is nothing to compare
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"budget": str(self.budget), "metric": self.budget.metric, "value": self.budget.value,
                "unit": UNITS[self.budget.metric], "measured": self.measured, "upper": self.upper, "met": self.met,
                "note": self.note}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BudgetCheck":
        return cls(Budget(d["metric"], d["value"]), d.get("measured"), d.get("upper"), d.get("met"), d.get("note", ""))

    def summary(self) -> str:
        unit = UNITS[self.budget.metric]
        if self.met is None:
            return f"{self.budget.metric} <= {self.budget.value:g} {unit}: NOT CHECKED ({self.note})"
        verdict = "met" if self.met else "OVER BUDGET"
        bound = ("exact" if self.upper == self.measured else
                 f"upper 95% bound {self.upper:.4g} {unit}, measured {self.measured:.4g}")
        return f"{self.budget.metric} <= {self.budget.value:g} {unit}: {verdict} ({bound})"


def check_budget(budget: Budget, measured: float | None, upper: float | None, *, missing: str = "") -> BudgetCheck:
    if measured is None or upper is None or not math.isfinite(upper):
        return BudgetCheck(budget, measured, None, None, missing or "not measured")
    return BudgetCheck(budget, measured, upper, upper <= budget.value)


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
    measured_energy_mj: float | None = None
    energy_ci95_mj: tuple[float, float] | None = None
    predicted_energy_mj: float | None = None
    params_m: float | None = None          # counted from the file's initializers
    mflops: float | None = None            # from the genotype (hilnas models only)
    checks: tuple[BudgetCheck, ...] = ()
    conditions: dict = field(default_factory=dict)  # throttled, temperature, load, governor (during the run)
    model_id: int | None = None
    validation_id: int | None = None

    @property
    def error_pct(self) -> float | None:
        if self.predicted_ms is None or not self.measured_ms:
            return None
        return (self.predicted_ms - self.measured_ms) / self.measured_ms * 100.0

    @property
    def passed(self) -> bool:
        """Every budget met (the gate's verdict); False when one is over or could not be checked."""
        return all(c.met for c in self.checks)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["lut_id"] = self.lut_id.as_dict() if self.lut_id else None
        d["error_pct"] = self.error_pct
        d["checks"] = [c.to_dict() for c in self.checks]
        d["passed"] = self.passed
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ValidationReport":
        d = {k: v for k, v in d.items() if k not in ("error_pct", "passed")}
        d["lut_id"] = LutId(**d["lut_id"]) if d.get("lut_id") else None
        d["checks"] = tuple(BudgetCheck.from_dict(c) for c in d.get("checks", ()))
        for k in ("measured_ci95_ms", "energy_ci95_mj"):
            d[k] = tuple(d[k]) if d.get(k) else None
        return cls(**d)

    def summary(self) -> str:
        where = f"{self.device_key}{' (simulated)' if self.simulated else ''}"
        if self.measured_ms is None:
            text = f"{self.model} on {where}: {self.status}: {self.error}"
        else:
            lo, hi = self.measured_ci95_ms
            stat = self.correction.get("statistic", "median")
            text = (f"{self.model} on {where}: measured {self.measured_ms:.3f} ms "
                    + (f"(fastest run; the median's 95% CI {lo:.3f}-{hi:.3f})" if stat == "min"
                       else f"(median, 95% CI {lo:.3f}-{hi:.3f})"))
            if self.measured_energy_mj is not None:
                elo, ehi = self.energy_ci95_mj or (math.nan, math.nan)
                text += f", {self.measured_energy_mj:.4g} mJ per inference (95% CI {elo:.4g}-{ehi:.4g})"
        if self.predicted_ms is not None:
            how = (f"LUT sum {self.lut_sum_ms:.3f} ms, correction x{self.correction.get('scale', 1):.3f} "
                   f"{self.correction.get('offset_ms', 0):+.3f} ms" if self.correction.get("fitted_on")
                   else "plain LUT sum; `hilnas fidelity` learns a correction for fusion and per-op overhead")
            err = f": error {self.error_pct:+.1f}%" if self.error_pct is not None else ""
            text += f"\n  predicted {self.predicted_ms:.3f} ms ({how}){err}"
        if self.note:
            text += f"\n  note: {self.note}"
        if self.conditions.get("throttled"):
            text += "\n  note: the device reported thermal throttling during the measurement"
        for c in self.checks:
            text += f"\n  budget {c.summary()}"
        return text


def _params_m(data: bytes) -> float | None:
    """Parameters (millions) of an ONNX model: the elements of its initializers."""
    import onnx

    try:
        model = onnx.load_from_string(data)
    except Exception:  # noqa: BLE001 - the agent reports an invalid model properly
        return None
    return sum(math.prod(t.dims) for t in model.graph.initializer) / 1e6


def _conditions(result: BenchmarkResult) -> dict[str, Any]:
    """What the device said about itself around the measurement, in a few numbers."""
    seen = [c for c in (result.conditions_before, result.conditions_after) if c is not None]
    temps = [t for c in seen for t in c.temperatures_c.values() if isinstance(t, (int, float)) and math.isfinite(t)]
    return {"throttled": any(c.throttled for c in seen), "max_temperature_c": max(temps) if temps else None,
            "load_avg_1m": seen[-1].load_avg_1m if seen else None, "governor": seen[-1].governor if seen else "",
            "simulated": result.simulated}


def _recorded(store: Store, run_id: int | None, name: str) -> ValidationReport | None:
    """The report recorded by an earlier attempt of the same step (killed before it was marked done)."""
    if run_id is None:
        return None
    models = store.models_df(run_id)
    for model_id in models.loc[models["name"] == name, "id"] if len(models) else ():
        rows = store.validations_df(model_id=int(model_id))
        for validation_id, stats in zip(rows["id"], rows["stats"]):
            if isinstance(stats, dict) and "report" in stats:
                report = ValidationReport.from_dict(stats["report"])
                report.model_id, report.validation_id = int(model_id), int(validation_id)
                return report
    return None


def _lut_total(meta: Any, keys: list[str], values: dict[str, float]) -> float:
    """``lut_sum``; for a MobileNet (the splitting search's widths), widths between its LUT grid's are
    interpolated (``searchers.spaces.mobilenet.grid``), as the search priced them."""
    from hilnas.searchers.spaces.mobilenet import MobileNetSpace

    if meta is None or not isinstance(meta[0], MobileNetSpace):
        return lut_sum(keys, values)
    from hilnas.searchers.cost import MissingOpsError
    from hilnas.searchers.spaces.mobilenet.grid import GridLatencyCost

    try:
        return GridLatencyCost(values).genotype_cost(*meta)
    except MissingOpsError as err:
        raise MissingOps(err.keys) from None


def validate_model_bytes(store: Store, device_key: str, clients: Sequence, data: bytes, *, name: str,
                         measure: MeasureConfig = MeasureConfig(), runtime: str | None = None,
                         fmt: ModelFormat = ModelFormat.ONNX, budgets: Sequence[Budget] = (),
                         lut_id: LutId | None = None, run_id: int | None = None) -> ValidationReport:
    """Measure ``data`` on the device, predict it from the device's LUT when the model says its ops,
    check ``budgets``, and record the model and the validation (under ``run_id`` when given: a model
    already recorded under this run and name is not measured again)."""
    if not clients:
        raise ValueError(f"device {device_key!r} has no agents in the fleet")
    try:
        store.get_device(device_key)
    except UnknownDeviceError:  # in the fleet, not yet in the store (e.g. a CI job's fresh workspace)
        info = clients[0].describe()
        store.upsert_device(device_key, fingerprint=info.fingerprint, info=info)
    done = _recorded(store, run_id, name)
    if done is not None:
        return done
    if any(b.metric == "energy_mj" for b in budgets):
        measure = replace(measure, energy=True)
    note, keys, meta = "", None, None
    if fmt is ModelFormat.ONNX:
        meta = model_meta.read(data)
        keys = model_meta.op_keys(data) if meta is not None else None
        if meta is None:
            note = "no prediction: the model carries no hilnas space/genotype metadata"
    total = predicted = predicted_mj = None
    correction = Correction()
    if keys is not None:
        try:
            lut_id = lut_id or store.find_lut(device_key, runtime=runtime)
            correction = latest_correction(store, lut_id)
            total = _lut_total(meta, keys, lut_values(store, lut_id, statistic=correction.statistic))
            predicted = correction.apply(total)
            try:
                predicted_mj = _lut_total(meta, keys, lut_values(store, lut_id, "energy_mj"))
            except (ValueError, MissingOps):  # the LUT has no energy: no energy prediction
                pass
        except MissingOps as err:
            note = f"no prediction: {err}"
        except Exception as err:  # LutNotFound / Ambiguous: still measure, say why
            note = f"no prediction: {err}"
    result: BenchmarkResult = clients[0].benchmark(data, format=fmt, config=measure)
    lat, energy = result.latency, result.energy
    measured = window_value(lat, correction.statistic) if lat and result.status.measured else None
    mj = energy.net_mj if energy is not None and math.isfinite(energy.net_mj) and measured is not None else None
    params = _params_m(data) if fmt is ModelFormat.ONNX else None
    mflops = None
    if meta is not None:
        from hilnas.searchers.cost import FlopsCost

        mflops = FlopsCost().genotype_cost(*meta)
    checks = []
    for b in budgets:
        if b.metric == "latency_ms":
            checks.append(check_budget(b, measured, lat.ci95_high_ms if measured is not None else None,
                                       missing=f"{result.status.name}: {result.error}"))
        elif b.metric == "energy_mj":
            why = energy.note if energy is not None and energy.note else "the device has no energy meter"
            checks.append(check_budget(b, mj, energy.net_ci95_high_mj if mj is not None else None, missing=why))
        elif b.metric == "params_m":
            checks.append(check_budget(b, params, params, missing="not an ONNX model"))
        else:
            checks.append(check_budget(b, mflops, mflops, missing="FLOPs are known for hilnas-exported models only"))
    report = ValidationReport(
        model=name, device_key=device_key, measured_ms=measured,
        measured_ci95_ms=(lat.ci95_low_ms, lat.ci95_high_ms) if lat else None, status=result.status.name,
        error=result.error, lut_id=lut_id if total is not None else None, lut_sum_ms=total, predicted_ms=predicted,
        correction=correction.to_dict(), note=note, simulated=result.simulated, measured_energy_mj=mj,
        energy_ci95_mj=(energy.net_ci95_low_mj, energy.net_ci95_high_mj) if mj is not None else None,
        predicted_energy_mj=predicted_mj, params_m=params, mflops=mflops, checks=tuple(checks),
        conditions=_conditions(result))
    if report.measured_ms is not None and result.device_fingerprint:
        model_id = store.add_model(name, meta[1].to_dict() if meta else {}, run_id=run_id,
                                   onnx_sha256=hashlib.sha256(data).hexdigest(), device_key=device_key,
                                   lut_id=report.lut_id, predicted_latency_ms=predicted,
                                   predicted_energy_mj=predicted_mj)
        report.model_id = model_id
        report.validation_id = store.add_validation(
            model_id, device_key, fingerprint=result.device_fingerprint, status=result.status.name.lower(),
            predicted_ms=predicted, measured_ms=report.measured_ms, predicted_energy_mj=predicted_mj,
            measured_energy_mj=mj, stats={"latency": lat, "lut_sum_ms": total, "report": report.to_dict()})
    return report


def validate_model_file(store: Store, device_key: str, clients: Sequence, path: Path, *,
                        measure: MeasureConfig = MeasureConfig(), runtime: str | None = None,
                        budgets: Sequence[Budget] = ()) -> ValidationReport:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read model {path}: {err.strerror or err}") from None
    fmt = ModelFormat.TFLITE if str(path).endswith(".tflite") else ModelFormat.ONNX
    return validate_model_bytes(store, device_key, clients, data, name=Path(path).name, measure=measure,
                                runtime=runtime, fmt=fmt, budgets=budgets)
