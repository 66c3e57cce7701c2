"""ONNX Runtime backend: CPU execution provider, sequential execution, all graph optimisations."""
from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from hilnas.agent.backends import LoadError, random_input
from hilnas.agent.results import ModelFormat, Status

NAME = "onnxruntime"
FORMAT = ModelFormat.ONNX
# ONNX Runtime ships under several distribution names; all import as ``onnxruntime``.
_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
# The input types the agent can feed: ONNX TensorProto element type -> (ORT's name, numpy dtype).
# The simulated device refuses the others as the host does (UNSUPPORTED_OP).
FEEDABLE_ELEM_TYPES = {
    1: ("tensor(float)", "float32"), 10: ("tensor(float16)", "float16"), 11: ("tensor(double)", "float64"),
    3: ("tensor(int8)", "int8"), 2: ("tensor(uint8)", "uint8"), 5: ("tensor(int16)", "int16"),
    4: ("tensor(uint16)", "uint16"), 6: ("tensor(int32)", "int32"), 12: ("tensor(uint32)", "uint32"),
    7: ("tensor(int64)", "int64"), 13: ("tensor(uint64)", "uint64"), 9: ("tensor(bool)", "bool"),
}
_DTYPES = dict(FEEDABLE_ELEM_TYPES.values())


def available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def runtime_version() -> str:
    """E.g. ``"onnxruntime 1.31.1"``, read from package metadata without importing the runtime."""
    for dist in _DISTRIBUTIONS:
        try:
            return f"onnxruntime {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    import onnxruntime  # metadata missing (e.g. a vendored build): ask the module

    return f"onnxruntime {onnxruntime.__version__}"


class OrtRunner:
    """An inference session with its inputs preallocated."""

    def __init__(self, session, feeds: dict):
        self._session = session
        self._feeds = feeds
        self._outputs = [o.name for o in session.get_outputs()]
        self.input_shapes = {name: tuple(a.shape) for name, a in feeds.items()}

    def run(self) -> None:
        self._session.run(self._outputs, self._feeds)


def load(path: Path, threads: int) -> OrtRunner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(int(threads), 0)  # 0 = ORT's default (physical cores)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; warnings would flood the worker's stderr
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    feeds = {}
    for arg in session.get_inputs():
        dtype = _DTYPES.get(arg.type)
        if dtype is None:
            raise LoadError(Status.UNSUPPORTED_OP,
                            f"input {arg.name!r} has type {arg.type}, which the agent cannot feed")
        # Symbolic or unknown dimensions (strings / None) are fed with 1.
        shape = tuple(d if isinstance(d, int) and d >= 0 else 1 for d in arg.shape)
        feeds[arg.name] = random_input(shape, dtype)
    return OrtRunner(session, feeds)
