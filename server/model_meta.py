"""What a hilnas-exported ONNX model says about itself: its space and genotype.

Both travel as ONNX ``metadata_props`` (``hilnas.space``: the space's config as JSON,
``hilnas.genotype``: the genotype's JSON), so ``hilnas validate MODEL.onnx`` can list the model's op
instances and predict its cost from a LUT without any other file.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

SPACE_KEY = "hilnas.space"
GENOTYPE_KEY = "hilnas.genotype"


def space_to_dict(space) -> dict[str, Any]:
    data = {f.name: getattr(space, f.name) for f in dataclasses.fields(space) if f.name != "ops"}
    return {"name": space.name, **{k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}}


def space_from_dict(data: dict[str, Any]):
    from hilnas.searchers.spaces import create_space

    rest = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "name"}
    return create_space(data["name"], **rest)


def attach(onnx_bytes: bytes, space, genotype) -> bytes:
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    props = {p.key: p.value for p in model.metadata_props}
    props[SPACE_KEY] = json.dumps(space_to_dict(space), sort_keys=True)
    props[GENOTYPE_KEY] = genotype.to_json()
    del model.metadata_props[:]
    for key, value in sorted(props.items()):
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def read(onnx_bytes: bytes):
    """(space, genotype) of a hilnas-exported model, or None when it carries no such metadata."""
    import onnx

    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception as err:  # noqa: BLE001 - protobuf raises several types
        raise ValueError(f"not an ONNX model: {err}") from None
    props = {p.key: p.value for p in model.metadata_props}
    if SPACE_KEY not in props or GENOTYPE_KEY not in props:
        return None
    from hilnas.searchers.genotype import genotype_from_json

    try:
        return space_from_dict(json.loads(props[SPACE_KEY])), genotype_from_json(props[GENOTYPE_KEY])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"the model's hilnas metadata is malformed: {err}") from None


def op_keys(onnx_bytes: bytes) -> list[str] | None:
    """The op keys (a multiset) of a hilnas-exported model, or None."""
    meta = read(onnx_bytes)
    if meta is None:
        return None
    from hilnas.searchers.op_key import network_op_keys

    space, genotype = meta
    return [k.encode() for k in network_op_keys(space, genotype)]


def export_network(space, genotype, *, seed: int = 0) -> bytes:
    """Build the discrete network of ``genotype`` (random weights), export it with metadata."""
    import torch

    from hilnas.searchers.export import export_onnx
    from hilnas.searchers.model import build_network

    torch.manual_seed(seed)
    net = build_network(space, genotype).eval()
    return attach(export_onnx(net, space.input_shape), space, genotype)
