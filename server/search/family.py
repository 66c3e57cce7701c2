"""What the runners of the methods that train a whole family at once share (``hypernet``, ``prune``).

- ``prepared``: the device checked, the data loaded with a validation split, the space shaped to it;
- ``recorded``: a run in the store, marked failed (and re-raised) when its body fails;
- ``saved_run``: the stored run ``--from-run N`` points at, checked to be a finished run of the kind
  that saved a trained family, with its settings;
- ``dataset_of``: a dataset config back from a run's stored JSON;
- ``family_members``: the members a run produces, for device budgets (``budget_members``: a
  latency budget through the LUT's fitted correction, the budgets outside the family's range
  reported with the range) or for a lambda grid;
- ``plain_config``: a run's config as JSON for the store.
"""
from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from hilnas.server.search.common import recorded  # noqa: F401  (the family runners import it from here)

if TYPE_CHECKING:
    from hilnas.searchers.data import DatasetConfig
    from hilnas.searchers.hypernet import Architecture
    from hilnas.searchers.hypernet.family import Family
    from hilnas.searchers.result import Budget
    from hilnas.searchers.spaces import SearchSpace
    from hilnas.server.store import Store
    from hilnas.server.store.records import RunRecord

def saved_run(store: Store, run_id: int, kind: str, what: str) -> tuple[RunRecord, str]:
    """The finished run ``run_id`` of ``kind`` and the folder its trained ``what`` was saved in."""
    run = store.get_run(run_id)
    trained = (run.result or {}).get("trained_dir") if isinstance(run.result, dict) else None
    if run.kind != kind or run.status != "done" or not trained:
        raise ValueError(f"run {run.id} is a {run.status} {run.kind!r} run without a saved {what}; give the id of a "
                         f"finished `hilnas search {kind}` run (`hilnas runs --kind {kind}` lists them)")
    return run, trained


def prepared(store: Store, device_key: str, clients: Sequence[Any], dataset: DatasetConfig, val_fraction: float,
             space: str, overrides: Mapping[str, Any]) -> tuple[Any, SearchSpace]:
    """(loaders, space): the device is known and has agents, the data has a validation split (``val_fraction``
    when it has none), the space is shaped to the data's images."""
    from hilnas.searchers.data import loaders_for
    from hilnas.searchers.spaces import create_space

    if not clients:
        raise ValueError(f"device {device_key!r} has no agents to measure on")
    store.get_device(device_key)
    datasets, loaders = loaders_for(dataclasses.replace(dataset, val_fraction=dataset.val_fraction or val_fraction))
    c, h, _ = datasets.input_shape
    return loaders, create_space(space, in_channels=c, input_size=h, num_classes=datasets.num_classes, **overrides)


def dataset_of(stored: Mapping[str, Any]) -> DatasetConfig:
    from hilnas.searchers.data import DatasetConfig
    data = dict(stored)
    if data.get("synthetic_shape") is not None:  # JSON gave a list
        data["synthetic_shape"] = tuple(data["synthetic_shape"])
    return DatasetConfig(**data)


def lut_value(metric: str, value: float, correction: Any) -> float:
    """A device-side latency value as the LUT sum the family is searched in: through the fitted correction's
    inverse (kept positive); other metrics, or no fitted correction, as they are."""
    if metric == "latency_ms" and correction is not None and correction.fitted_on:
        return max(correction.invert(value), 1e-12)
    return value


def budget_members(result: Family, budgets: Sequence[Budget], correction: Any, say: Callable[[str], None], *,
                   weights: Sequence[float] | None = None
                   ) -> tuple[list[tuple[Architecture, Budget]], list[tuple[Budget, str]], list[str]]:
    """(member and budget for each budget the family meets, budgets it cannot with the reason, notes)."""
    from hilnas.searchers.hypernet import BudgetRangeError

    chosen, failed, notes = [], [], []
    for b in budgets:
        search_b = b
        if b.metric == "latency_ms" and correction is not None and correction.fitted_on:
            search_b = b.scaled(lut_value(b.metric, b.value, correction))
            notes.append(f"{b}: LUT-sum budget {search_b.value:.4g} ms through the fitted correction "
                         f"(x{correction.scale:.3f} {correction.offset_ms:+.3f} ms)")
        try:
            chosen.append((result.for_budget(search_b, weights=weights), b))
        except BudgetRangeError as err:
            text = str(err)
            if search_b is not b:
                lo, hi = (correction.apply(v) for v in err.range)
                text += f" (LUT sums; about [{lo:.4g}, {hi:.4g}] ms measured, through the correction)"
            failed.append((b, text))
            say(f"budget {b}: {text}")
    return chosen, failed, notes


def family_members(result: Family, budgets: Sequence[Budget], lambdas: Sequence[float], curve_points: int,
                   correction: Any, say: Callable[[str], None], *, weights: Sequence[float] | None = None
                   ) -> tuple[list[tuple[Architecture, Budget | None]], list[tuple[Budget, str]], list[str], Any]:
    """The members a run produces: one per budget (``budget_members``, against the dense curve), or the
    curve at ``lambdas`` (default: the grid) with the lambdas above the trained range skipped and said so.
    Returns (member and budget pairs, failed budgets, notes, the curve)."""
    if budgets:
        chosen, failed, notes = budget_members(result, budgets, correction, say, weights=weights)
        return chosen, failed, notes, result.curve(result.grid(curve_points), weights=weights)
    notes = []
    inside = [s for s in lambdas if s <= result.Lambda]
    if len(inside) < len(lambdas):
        notes.append(f"skipped lambda scale(s) {[s for s in lambdas if s > result.Lambda]} above the trained range "
                     f"[0, {result.Lambda:.4g}]")
        say(notes[-1])
        if not inside:
            raise ValueError(notes[-1])
    curve = result.curve(inside or None, weights=weights)
    return [(a, None) for a in curve.points], [], notes, curve


def plain_config(config: Any, space: SearchSpace) -> dict[str, Any]:
    """A run config (a dataclass with ``budgets``) as JSON, with the space it was run on."""
    from hilnas.server.search.common import space_metadata
    d = dataclasses.asdict(config)
    d["budgets"] = [str(b) for b in config.budgets]
    d["space_config"] = space_metadata(space)
    return json.loads(json.dumps(d, default=str))
