"""Runtime backends that run a model in the worker process.

Each backend module exposes ``NAME``, ``FORMAT`` (the model format it reads), ``available()``,
``runtime_version()`` and ``load(path, threads) -> Runner``. Importing this package or a backend
module imports no runtime: the heavy import happens inside ``load`` (and only in the worker).
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Protocol

from hilnas.agent.results import ModelFormat, Status

_MODULES = {
    "onnxruntime": "hilnas.agent.backends.onnxrt",
    "tflite": "hilnas.agent.backends.tflite",
}
BACKEND_NAMES: tuple[str, ...] = tuple(_MODULES)


class Runner(Protocol):
    """A loaded model with preallocated inputs; ``run()`` is one timed inference."""

    def run(self) -> None: ...


class Backend(Protocol):
    NAME: str
    FORMAT: ModelFormat

    def available(self) -> bool: ...

    def runtime_version(self) -> str: ...

    def load(self, path: Path, threads: int) -> Runner: ...


class LoadError(Exception):
    """A model the backend refused to load, with the status the client should see."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status = status


def get_backend(name: str) -> Backend:
    """The backend module called ``name``; KeyError for an unknown name."""
    if name not in _MODULES:
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(BACKEND_NAMES)}")
    module: ModuleType = importlib.import_module(_MODULES[name])
    return module  # type: ignore[return-value]  # a module satisfying the Backend protocol


def available_backends() -> tuple[str, ...]:
    """Names of the backends whose runtime is installed (checked without importing it)."""
    return tuple(name for name in BACKEND_NAMES if get_backend(name).available())


# Messages in which ONNX Runtime / TFLite say they lack an operator or kernel.
_UNSUPPORTED_RE = re.compile(
    r"not implemented|not (?:a )?registered|no op registered|could not find an implementation"
    r"|unresolved custom op|didn'?t find op for builtin|unsupported (?:op|operator|builtin)"
    r"|op(?:erator)? type .* not supported|op builtin_code out of range",
    re.IGNORECASE)
_MEMORY_RE = re.compile(
    r"bad_alloc|bad allocation|failed to allocate|out of memory|cannot allocate memory",
    re.IGNORECASE)


def classify_error(exc: BaseException, *, loading: bool) -> Status:
    """Map a runtime exception to a status: out of memory -> CRASHED; while loading, a missing
    operator/kernel -> UNSUPPORTED_OP and anything else -> INVALID_MODEL; while running, any
    other failure -> INVALID_MODEL (the graph is inconsistent for the inputs it declares)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or _MEMORY_RE.search(text):
        return Status.CRASHED
    if loading and _UNSUPPORTED_RE.search(text):
        return Status.UNSUPPORTED_OP
    return Status.INVALID_MODEL


def random_input(shape: tuple[int, ...], dtype) -> "numpy.ndarray":  # noqa: F821
    """A fixed pseudo-random input: floats ~ N(0, 1); integers and booleans zero (valid as
    indices, counts and masks), so latency does not depend on a lucky draw."""
    import numpy as np

    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return np.random.default_rng(0).standard_normal(shape).astype(dtype)
    return np.zeros(shape, dtype=dtype)
