"""What a report shows, gathered from the store: the runs, every found network as one flat record,
the budgets, the hypernetwork's trade-off curves, and the failures.

Three kinds of run hold found networks: ``run`` (``hilnas run`` / ``hilnas demo``: each validate
step's result), ``search-<method>`` (``hilnas search dca``: one network) and ``hypernet``
(``hilnas search hypernet``: its members). Each becomes the same ``network`` record, so a report
over several runs (``--all``) compares them on one footing. A budget is **met** by the rule of
``server.validation``: the upper end of the measurement's 95 % CI within the budget.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from hilnas.server.store import Store, StoreError

REPORTED_KINDS = ("run", "hypernet")  # and every "search-<method>"


class ReportError(ValueError):
    """Nothing to report: unknown run ids, or runs without networks."""


@dataclass
class ReportData:
    title: str
    generated_at: float
    runs: list[dict[str, Any]]                 # id, kind, name, status, started, wall, config summary
    networks: list[dict[str, Any]]             # one record per validated network (see ``_network``)
    budgets: list[dict[str, Any]] = field(default_factory=list)    # device, written, metric, value, unit, ...
    curves: list[dict[str, Any]] = field(default_factory=list)     # device, seed, run_id, Lambda, points
    failures: list[dict[str, Any]] = field(default_factory=list)   # run_id, step, error
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> what the device is

    @property
    def device_keys(self) -> list[str]:
        return sorted({n["device"] for n in self.networks} | {b["device"] for b in self.budgets})

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def reportable_runs(store: Store) -> list[int]:
    """Ids of every run that holds found networks (``--all``)."""
    runs = store.runs_df()
    return [int(r["id"]) for _, r in runs.iterrows() if r["kind"] in REPORTED_KINDS or str(r["kind"]).startswith("search-")]


def collect(store: Store, run_ids: list[int], *, title: str | None = None) -> ReportData:
    """The report's data for ``run_ids``; ``ReportError`` naming ``hilnas runs`` for unknown ids."""
    records = []
    for run_id in run_ids:
        try:
            records.append(store.get_run(run_id))
        except StoreError:
            known = reportable_runs(store)
            raise ReportError(f"there is no run {run_id} in {store.path.parent}; runs with networks: "
                              f"{', '.join(map(str, known)) or 'none yet'} (`hilnas runs` lists every run)") from None
    data = ReportData(title=title or _title(records), generated_at=time.time(), runs=[], networks=[])
    for run in records:
        data.runs.append(_run_summary(run))
        if run.kind == "run":
            _from_steps(store, run, data)
        elif run.kind == "hypernet":
            _from_hypernet(store, run, data)
        elif run.kind.startswith("search-"):
            _from_search(store, run, data)
        else:
            raise ReportError(f"run {run.id} is a {run.kind!r} run, which holds no searched networks; report a "
                              "`hilnas run`, `hilnas demo` or `hilnas search` run (`hilnas runs` lists them)")
    for device in data.device_keys:
        try:
            rec = store.get_device(device)
        except StoreError:
            continue
        info = rec.info or {}
        data.devices[device] = {"fingerprint": rec.fingerprint, "simulated": bool(info.get("simulated")),
                                "profile": info.get("profile", ""), "cpu_model": info.get("cpu_model", ""),
                                "cores": info.get("cpu_cores"), "os": info.get("os", "")}
    return data


def _title(records) -> str:
    if len(records) == 1:
        r = records[0]
        return f"hilnas run {r.id}" + (f": {r.config.get('name')}" if isinstance(r.config, dict) and r.config.get("name") else "")
    return f"hilnas: {len(records)} runs"


def _run_summary(run) -> dict[str, Any]:
    cfg = run.config if isinstance(run.config, dict) else {}
    wall = (run.finished_at - run.started_at) if run.finished_at else None
    space = cfg.get("space") if isinstance(cfg.get("space"), str) else cfg.get("space", {})
    return {"id": run.id, "kind": run.kind, "status": run.status, "name": cfg.get("name", ""),
            "started_at": run.started_at, "wall_s": wall, "space": space,
            "space_options": cfg.get("space_options") or cfg.get("space_overrides") or {},
            "dataset": cfg.get("dataset", {}).get("name") if isinstance(cfg.get("dataset"), dict) else cfg.get("dataset"),
            "methods": cfg.get("methods") or [cfg.get("method") or run.kind.removeprefix("search-")],
            "search_epochs": cfg.get("search_epochs") or (cfg.get("search") or {}).get("epochs"),
            "train_epochs": cfg.get("train_epochs"), "seeds": cfg.get("seeds") or [cfg.get("seed", 0)],
            "host": run.host}


def _from_steps(store: Store, run, data: ReportData) -> None:
    from hilnas.server.run.methods import METHODS

    for step in store.steps(run.id):
        parts = step.key.split("/")
        if step.status == "failed":
            data.failures.append({"run_id": run.id, "step": step.key, "error": step.result.get("error", "")})
        if step.status != "done":
            continue
        if "/validate" in step.key:
            n = dict(step.result)
            n.update(run_id=run.id, baseline=METHODS[n["method"]].baseline if n["method"] in METHODS else False,
                     bound_rule="upper 95% CI")
            data.networks.append(n)
        elif parts[-1] == "budgets":
            for written, entry in step.result["budgets"].items():
                data.budgets.append({"device": parts[0], "run_id": run.id, **entry, "written": written})
        elif parts[-1] == "hypernetwork":
            data.curves.append({"device": parts[0], "seed": int(parts[2].removeprefix("seed")), "run_id": run.id,
                                "Lambda": step.result["Lambda"], "points": step.result["curve"],
                                "raw_violations": step.result.get("raw_violations")})


def _validation(store: Store, model_id: int | None) -> dict[str, Any]:
    if model_id is None:
        return {}
    rows = store.validations_df(model_id=int(model_id))
    return rows.iloc[-1].to_dict() if len(rows) else {}


def _latency_ci(validation: dict[str, Any]) -> list[float]:
    lat = (validation.get("stats") or {}).get("latency") or {}
    return [lat["ci95_low_ms"], lat["ci95_high_ms"]] if "ci95_low_ms" in lat else []


def _met(metric: str, value: float, measured: float | None, ci: list[float]) -> tuple[bool | None, float | None]:
    bound = ci[1] if metric == "latency_ms" and ci else measured
    return (None, None) if bound is None or not math.isfinite(bound) else (bound <= value, bound)


def _from_search(store: Store, run, data: ReportData) -> None:
    r = run.result if isinstance(run.result, dict) else {}
    if run.status != "done" or "genotype" not in r:
        if "error" in r:
            data.failures.append({"run_id": run.id, "step": run.kind, "error": r["error"]})
        return
    model = store.get_model(r["model_id"])
    v = _validation(store, r["model_id"])
    ci = _latency_ci(v)
    budget = r["device_budget"]
    met, bound = _met(budget["metric"], budget["value"], r.get("measured"), ci)
    data.networks.append(_network(
        run.id, model.device_key, r["method"], run.config.get("seed", 0), str_budget(budget), budget, r["genotype"],
        test_acc=r.get("test_acc"), predicted_ms=model.predicted_latency_ms, measured_ms=r.get("measured_latency_ms"),
        ci=ci, energy=r.get("measured_energy_mj"), predicted_mj=model.predicted_energy_mj, met=met, bound=bound,
        onnx=r.get("onnx_path"), model_id=model.id, validation=v, notes=r.get("notes", []),
        space_cfg=run.config.get("space_config")))


def _from_hypernet(store: Store, run, data: ReportData) -> None:
    r = run.result if isinstance(run.result, dict) else {}
    if run.status != "done" or "members" not in r:
        if "error" in r:
            data.failures.append({"run_id": run.id, "step": "hypernet", "error": r["error"]})
        return
    device = None
    for m in r["members"]:
        model = store.get_model(m["model_id"]) if m.get("model_id") else None
        device = model.device_key if model else device
        v = _validation(store, m.get("model_id"))
        ci = _latency_ci(v)
        budget = m.get("budget")
        met, bound = _met(budget["metric"], budget["value"], m.get("measured_ms") if budget["metric"] == "latency_ms"
                          else m.get("measured_energy_mj"), ci) if budget else (None, None)
        acc = m.get("test_acc") if m.get("test_acc") is not None else m.get("supernet_acc")
        data.networks.append(_network(
            run.id, device, "hypernet", run.config.get("seed", 0), str_budget(budget) if budget else f"lambda {m['scale']:.3g}",
            budget, m["genotype"], test_acc=acc, predicted_ms=m.get("predicted_ms"), measured_ms=m.get("measured_ms"),
            ci=ci, energy=m.get("measured_energy_mj"), predicted_mj=None, met=met, bound=bound, onnx=m.get("onnx_path"),
            model_id=m.get("model_id"), validation=v,
            notes=[] if m.get("test_acc") is not None else ["accuracy is the supernet's (a proxy): not trained"],
            space_cfg=run.config.get("space_config")))
    curve = r.get("curve") or {}
    points = [{"scale": p["tradeoff"]["scale"], **p["costs"]} for p in curve.get("points", [])]
    if points and device:
        data.curves.append({"device": device, "seed": run.config.get("seed", 0), "run_id": run.id,
                            "Lambda": r.get("Lambda"), "points": points, "raw_violations": curve.get("raw_violations")})


def str_budget(budget: dict[str, Any] | None) -> str:
    return f"{budget['metric']}={budget['value']:g}" if budget else ""


def _network(run_id: int, device: str | None, method: str, seed: int, written: str, budget: dict | None,
             genotype: dict, *, test_acc, predicted_ms, measured_ms, ci, energy, predicted_mj, met, bound, onnx,
             model_id, validation, notes, space_cfg) -> dict[str, Any]:
    """A network from a ``hilnas search`` run, in the record a ``hilnas run`` validate step writes."""
    from hilnas.searchers.cost import FlopsCost, ParamsCost
    from hilnas.server.run.methods import METHODS
    from hilnas.server.run.network_steps import genotype_of, genotype_text

    g = genotype_of({"genotype": genotype})
    stats = validation.get("stats") or {}
    report = stats.get("report") or {}
    space = None
    if space_cfg:
        from hilnas.server.model_meta import space_from_dict

        try:
            space = space_from_dict(space_cfg)
        except (ValueError, TypeError, KeyError):  # a space this version does not know: no params/FLOPs
            space = None
    return {"run_id": run_id, "device": device or "?", "method": method, "seed": seed, "budget": written,
            "budget_metric": budget["metric"] if budget else "latency_ms", "budget_value": budget["value"] if budget else None,
            "genotype": genotype, "genotype_text": genotype_text(g),
            "test_acc": test_acc if test_acc is not None else math.nan,
            "params_m": ParamsCost().genotype_cost(space, g) if space else report.get("params_m"),
            "mflops": FlopsCost().genotype_cost(space, g) if space else report.get("mflops"),
            "predicted_ms": predicted_ms, "lut_sum_ms": stats.get("lut_sum_ms"), "measured_ms": measured_ms,
            "ci95_ms": ci, "predicted_energy_mj": predicted_mj, "measured_energy_mj": energy, "energy_ci95_mj": [],
            "status": validation.get("status", ""), "met": met, "bound": bound, "measured_for_budget": None,
            "conditions": report.get("conditions") or {"simulated": bool(stats.get("simulated"))},
            "simulated": bool(stats.get("simulated") or (report.get("simulated"))), "onnx_path": onnx,
            "model_id": model_id, "validation_id": validation.get("id"), "notes": list(notes),
            "baseline": METHODS[method].baseline if method in METHODS else False, "bound_rule": "upper 95% CI"}
