"""What every search runner shares: budgets from text, the device's LUT as a cost model, the space as
metadata, and ONNX export with the hilnas metadata that ``hilnas validate`` reads."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from hilnas.searchers.result import Budget
from hilnas.server import model_meta
from hilnas.server.store import LutId, Store

if TYPE_CHECKING:
    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.spaces import SearchSpace


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


def export_with_metadata(model: Any, space: SearchSpace, genotype: Any) -> bytes:
    """ONNX bytes of the trained network, checked against torch, with the space and genotype in
    ``metadata_props`` (``model_meta.attach``), so ``hilnas validate`` can predict it."""
    from hilnas.searchers.export import export_onnx, verify_onnx
    data = export_onnx(model, space.input_shape)
    verify_onnx(model, data, space.input_shape, atol=1e-3)
    return model_meta.attach(data, space, genotype)
