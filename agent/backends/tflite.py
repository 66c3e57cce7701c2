"""TFLite backend: the LiteRT interpreter from ``ai-edge-litert``, or ``tflite_runtime`` when that
is what is installed (older boards)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from hilnas.agent.backends import random_input
from hilnas.agent.results import ModelFormat

NAME = "tflite"
FORMAT = ModelFormat.TFLITE
# (import name, distribution name), in order of preference.
_RUNTIMES = (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"))


def _runtime() -> tuple[str, str] | None:
    # find_spec of a top-level name does not import it (ai_edge_litert's __init__ loads a .so).
    for module, dist in _RUNTIMES:
        if importlib.util.find_spec(module) is not None:
            return module, dist
    return None


def available() -> bool:
    return _runtime() is not None


def runtime_version() -> str:
    """E.g. ``"ai-edge-litert 2.3.0"``; empty when no TFLite runtime is installed."""
    found = _runtime()
    if found is None:
        return ""
    module, dist = found
    try:
        return f"{dist} {importlib.metadata.version(dist)}"
    except importlib.metadata.PackageNotFoundError:
        mod = importlib.import_module(module)
        return f"{dist} {getattr(mod, '__version__', 'unknown')}"


def _interpreter_class():
    found = _runtime()
    if found is None:
        raise ImportError("no TFLite runtime: install ai-edge-litert (or tflite-runtime)")
    return importlib.import_module(f"{found[0]}.interpreter").Interpreter


class TFLiteRunner:
    """An interpreter with its input tensors set once; ``run()`` is one ``invoke()``."""

    def __init__(self, interpreter):
        self._interpreter = interpreter
        self.input_shapes = {d["name"]: tuple(int(x) for x in d["shape"])
                             for d in interpreter.get_input_details()}

    def run(self) -> None:
        self._interpreter.invoke()


def load(path: Path, threads: int) -> TFLiteRunner:
    Interpreter = _interpreter_class()
    interpreter = Interpreter(model_path=str(path), num_threads=int(threads) if threads > 0 else None)
    details = interpreter.get_input_details()
    resized = False
    for d in details:
        signature = d.get("shape_signature", d["shape"])
        if any(int(x) < 0 for x in signature):  # dynamic dimensions are fed with 1
            interpreter.resize_tensor_input(d["index"], [max(int(x), 1) for x in signature])
            resized = True
    interpreter.allocate_tensors()
    if resized:
        details = interpreter.get_input_details()
    for d in details:
        interpreter.set_tensor(d["index"], random_input(tuple(int(x) for x in d["shape"]), d["dtype"]))
    return TFLiteRunner(interpreter)
