"""Micro-models of op instances, exported once and kept in the workspace.

Exporting costs CPU (torch), and a measurement on this same host must not share the CPU with it,
so the LUT builder asks for every model before it starts measuring; keeping them on disk makes a
resumed or a second device's build free of export work.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class MicroModels:
    """op key -> ONNX micro-model bytes, cached as files under ``folder``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @staticmethod
    def keys_for_space(space) -> list[str]:
        from hilnas.searchers.op_key import enumerate_op_keys

        return [k.encode() for k in enumerate_op_keys(space)]

    def path_for(self, key: str, suffix: str = ".onnx") -> Path:
        return self.folder / (hashlib.sha256(key.encode()).hexdigest()[:32] + suffix)

    def onnx(self, key: str) -> bytes:
        from hilnas.searchers.op_key import decode, export_op_onnx

        return self._cached(key, ".onnx", lambda: export_op_onnx(decode(key)))

    def tflite(self, key: str) -> bytes:
        """TFLite micro-model; needs the optional converter (``pip install litert-torch``)."""
        from hilnas.searchers.op_key import decode, export_op_tflite

        return self._cached(key, ".tflite", lambda: export_op_tflite(decode(key)))

    def _cached(self, key: str, suffix: str, export) -> bytes:
        path = self.path_for(key, suffix)
        if path.is_file():
            return path.read_bytes()
        data = export()
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return data
