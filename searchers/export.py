"""Torch module -> ONNX (checked, and compared with torch under ONNX Runtime) or TFLite.

ONNX export uses torch's TorchScript exporter (``dynamo=False``): about 10 ms for an op
micro-model against about 0.9 s with the dynamo exporter on this machine, and the graphs agree.
Models are exported in eval mode, so BatchNorm is folded into the preceding conv as on a device.
"""
from __future__ import annotations

import io
import os
import tempfile
import threading
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "output"
# torch's exporter keeps global state (GLOBALS.in_onnx_export): two threads exporting at once fail
# (searches run in threads measure their networks as they go), so exports take turns.
_EXPORT_LOCK = threading.Lock()


class ExportError(RuntimeError):
    """An export failed, or its output does not match torch."""


class MissingExtraError(ImportError):
    """An optional package needed for this export is not installed."""


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | os.PathLike[str] | None = None, *,
                opset: int = DEFAULT_OPSET) -> bytes:
    """Export at a fixed input shape (B, C, H, W); returns the model bytes and writes them to ``path`` if given.

    The graph passes ``onnx.checker``. The model's train/eval mode is restored afterwards.
    """
    import onnx
    import torch

    was_training = model.training
    model.eval()
    buf = io.BytesIO()
    try:
        with _EXPORT_LOCK, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation on every call
            torch.onnx.export(model, (torch.zeros(input_shape),), buf, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True)
    except Exception as e:  # the exporter raises many types; callers need one
        raise ExportError(f"ONNX export of {type(model).__name__} at {input_shape} failed: {e}") from e
    finally:
        model.train(was_training)
    data = buf.getvalue()
    try:
        onnx.checker.check_model(onnx.load_from_string(data))
    except onnx.checker.ValidationError as e:
        raise ExportError(f"exported ONNX graph of {type(model).__name__} is invalid: {e}") from e
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data


def verify_onnx(model: nn.Module, onnx_bytes: bytes, input_shape: tuple[int, ...], atol: float = 1e-4, *,
                rtol: float = 1e-5, seed: int = 0) -> float:
    """Run the ONNX model under ONNX Runtime and torch (eval mode) on one seeded random input.

    Returns the largest absolute difference; raises ExportError if it exceeds
    ``atol + rtol * max|torch output|``. The relative part matters for untrained networks, whose
    outputs can reach 1e3 (BatchNorm has not normalised anything yet) while float32 keeps ~7 digits.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    onnx.checker.check_model(onnx.load_from_string(onnx_bytes))
    x = np.random.default_rng(seed).standard_normal(input_shape).astype(np.float32)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
    finally:
        model.train(was_training)
    if got.shape != want.shape:
        raise ExportError(f"ONNX output shape {got.shape} != torch output shape {want.shape}")
    diff = float(np.max(np.abs(got - want))) if want.size else 0.0
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    if not diff <= atol + rtol * scale:  # also catches NaN
        raise ExportError(f"ONNX Runtime and torch differ by {diff:.3g} (atol {atol:g}, rtol {rtol:g}, "
                          f"max |output| {scale:.3g})")
    return diff


def export_tflite(model: nn.Module, input_shape: tuple[int, ...], path: str | os.PathLike[str] | None = None
                  ) -> bytes:
    """Export to TFLite with the optional ``litert_torch`` converter; returns the bytes, writes ``path`` if given."""
    try:
        import litert_torch  # type: ignore[import-not-found]
    except ImportError:
        raise MissingExtraError(
            "TFLite export needs the optional converter package litert-torch (import name litert_torch), "
            "which is not installed: pip install litert-torch. ONNX export works without it, and the "
            "hilnas[tflite] extra (ai-edge-litert) only runs TFLite models, it does not convert them.") from None
    import torch

    was_training = model.training
    model.eval()
    try:
        edge_model = litert_torch.convert(model, (torch.zeros(input_shape),))
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "model.tflite")
            edge_model.export(out)
            with open(out, "rb") as f:
                data = f.read()
    except Exception as e:
        raise ExportError(f"TFLite export of {type(model).__name__} at {input_shape} failed: {e}") from e
    finally:
        model.train(was_training)
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data
