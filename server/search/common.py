"""What every search runner shares: budgets from text, the device's LUT as a cost model, the space as
metadata, ONNX export with the hilnas metadata that ``hilnas validate`` reads, the exact
``hilnas lut build`` command a search needs when the device's LUT is missing or incomplete, a
search recorded as a run (``recorded``) and torch's thread count for its duration."""
from __future__ import annotations

import contextlib
import dataclasses
import math
import shlex
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar

from hilnas.searchers.result import Budget
from hilnas.server import model_meta
from hilnas.server.store import LutId, Store

if TYPE_CHECKING:
    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.spaces import SearchSpace

R = TypeVar("R")


def measured_ms(bench: Any) -> float | None:
    """A benchmark reply's median latency (ms), or None when the agent did not measure (refused, failed)."""
    return bench.latency.median_ms if bench.status.measured and bench.latency else None


def measured_mj(bench: Any) -> float | None:
    """A benchmark reply's net energy per inference (mJ), or None when the device could not tell."""
    return bench.energy.net_mj if bench.energy is not None and math.isfinite(bench.energy.net_mj) else None


def recorded(store: Store, kind: str, config: Mapping[str, Any], body: Callable[[int], R], *,
             parent_id: int | None = None) -> R:
    """Start a run of ``kind``, call ``body(run_id)``, and finish the run with its report (``to_dict()``);
    a failing body marks the run failed (with the error) and re-raises."""
    run_id = store.start_run(kind, dict(config), parent_id=parent_id)
    try:
        report = body(run_id)
    except BaseException as err:
        store.finish_run(run_id, status="failed", result={"error": f"{type(err).__name__}: {err}"})
        raise
    store.finish_run(run_id, status="done", result=report.to_dict())  # type: ignore[attr-defined]
    return report


def latest_run_with_fingerprint(store: Store, kind: str, fingerprint: str) -> int | None:
    """The id of the latest run of ``kind`` whose recorded config carries ``fingerprint`` (a run file's or a
    sweep file's, for resuming); None if there is none."""
    runs = store.runs_df(kind)
    ids = [int(r["id"]) for _, r in runs.iterrows()
           if isinstance(r["config"], dict) and r["config"].get("fingerprint") == fingerprint]
    return ids[-1] if ids else None


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block, restored after; None or 0 leaves them (and
    torch unimported)."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def parse_budget(text: str) -> Budget:
    """``"latency_ms=15"`` (also ``energy_mj=``, ``params_m=``, ``mflops=``) -> Budget; ValueError otherwise."""
    return Budget.parse(text)


def space_metadata(space: SearchSpace) -> dict[str, Any]:
    """The space as JSON-able data (``model_meta.space_to_dict``)."""
    return model_meta.space_to_dict(space)


def space_from_metadata(d: Mapping[str, Any]) -> SearchSpace:
    return model_meta.space_from_dict(dict(d))


def load_lut(store: Store, device_key: str, metric: str, *,
             runtime: str | None = None) -> tuple[dict[str, float], LutId]:
    """The device's LUT as op key -> value of ``metric`` (measured rows only)."""
    from hilnas.server.validation import lut_values

    lut_id = store.find_lut(device_key, runtime=runtime)
    values = lut_values(store, lut_id, metric)
    return values, lut_id


def cost_model_for(store: Store, device_key: str, metric: str, *, runtime: str | None = None
                   ) -> tuple[CostModel, LutId | None]:
    """The cost model a budget metric needs (and the LUT it came from, for LUT metrics)."""
    from hilnas.searchers.cost import FlopsCost, LutEnergyCost, LutLatencyCost, ParamsCost
    if metric == "params_m":
        return ParamsCost(), None
    if metric == "mflops":
        return FlopsCost(), None
    values, lut_id = load_lut(store, device_key, metric, runtime=runtime)
    model = LutLatencyCost(values) if metric == "latency_ms" else LutEnergyCost(values)
    return model, lut_id


def device_cost_model(store: Store, device_key: str, metric: str, *, runtime: str | None = None,
                      use_correction: bool = True) -> tuple[CostModel, LutId | None, dict[str, Any]]:
    """The cost model a budget constrains, the LUT it came from, and what it is (for the run's record).

    Latency is the device's LUT sum through the correction the latest ``hilnas fidelity`` run fitted
    for that LUT (``measured ~= scale * sum + offset``, with the LUT values of the statistic it was
    fitted with), when there is one and ``use_correction``; otherwise the plain LUT sum. The
    correction is affine, so the search's relaxed cost stays differentiable (``CorrectedCost``).
    """
    from hilnas.searchers.cost import CorrectedCost, LutLatencyCost

    if metric != "latency_ms":
        model, lut_id = cost_model_for(store, device_key, metric, runtime=runtime)
        return model, lut_id, {"kind": "lut_sum" if lut_id else "exact", "metric": metric}
    from hilnas.server.validation import latest_correction, lut_values

    lut_id = store.find_lut(device_key, runtime=runtime)
    correction = latest_correction(store, lut_id) if use_correction else None
    if correction is None or not correction.fitted_on:
        basis = {"kind": "lut_sum", "metric": metric,
                 "why": "correction off" if not use_correction else "no fidelity run has fitted a correction for "
                        "this LUT (hilnas fidelity --device ...)"}
        return LutLatencyCost(lut_values(store, lut_id, metric)), lut_id, basis
    base = LutLatencyCost(lut_values(store, lut_id, metric, statistic=correction.statistic))
    return (CorrectedCost(base, correction.scale, correction.offset_ms), lut_id,
            {"kind": "corrected", "metric": metric, **correction.to_dict()})


def describe_basis(basis: Mapping[str, Any]) -> str:
    """One line: which cost the search constrained."""
    if basis.get("kind") == "corrected":
        return (f"LUT sum through the device's correction (x{basis['scale']:.3f} {basis['offset_ms']:+.3f} ms, fitted "
                f"on {basis['fitted_on']} networks, statistic {basis['statistic']})")
    if basis.get("kind") == "lut_sum":
        return "plain LUT sum" + (f" ({basis['why']})" if basis.get("why") else "")
    return f"exact {basis.get('metric', '')}"


def export_with_metadata(model: Any, space: SearchSpace, genotype: Any) -> bytes:
    """ONNX bytes of the trained network, checked against torch, with the space and genotype in
    ``metadata_props`` (``model_meta.attach``), so ``hilnas validate`` can predict it."""
    from hilnas.searchers.export import export_onnx, verify_onnx
    data = export_onnx(model, space.input_shape)
    verify_onnx(model, data, space.input_shape, atol=1e-3)
    return model_meta.attach(data, space, genotype)


# Datasets whose name ``hilnas lut build --dataset`` turns into the input shape (cli.common.DATASET_SHAPES).
_NAMED_DATASETS = ("demo", "fashion-mnist", "cifar10")
_SHAPE_FIELDS = ("in_channels", "input_size", "num_classes")


def lut_build_command(device_key: str, space: SearchSpace, dataset: str | None, *, energy: bool = False) -> str:
    """The ``hilnas lut build`` that measures every op of ``space`` on the device: the space's fields
    that differ from its defaults as ``--space-opt``, and the dataset (or, for data without a name,
    its input shape)."""
    from hilnas.searchers.spaces import create_space

    default = create_space(space.name)
    named = dataset in _NAMED_DATASETS
    args = ["hilnas", "lut", "build", "--device", device_key, "--space", space.name]
    for f in dataclasses.fields(space):
        value = getattr(space, f.name)
        if f.name == "ops" or (named and f.name in _SHAPE_FIELDS) or value == getattr(default, f.name):
            continue
        args += ["--space-opt", f"{f.name}={value}"]
    if named:
        args += ["--dataset", str(dataset)]
    if energy:
        args.append("--energy")
    return shlex.join(args)


@contextlib.contextmanager
def lut_needed(device_key: str, space: SearchSpace, dataset: str | None, *, energy: bool = False) -> Iterator[None]:
    """A missing LUT, LUT keys or device in the block are re-raised (same type) naming the exact command."""
    from hilnas.searchers.cost import MissingOpsError
    from hilnas.server.store import LutNotFoundError, UnknownDeviceError

    command = f"`{lut_build_command(device_key, space, dataset, energy=energy)}`"
    try:
        yield
    except MissingOpsError as err:
        raise MissingOpsError(err.keys, fix=command) from None
    except (LutNotFoundError, UnknownDeviceError) as err:
        raise type(err)(f"{err}\nbuild the LUT this search needs with {command}") from None
    except ValueError as err:
        if "no energy measurements" not in str(err):
            raise
        raise ValueError(f"{str(err).split(';')[0]}; rebuild it with energy on a device with a meter: "
                         f"{command}") from None
