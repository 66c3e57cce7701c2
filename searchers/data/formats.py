"""Readers and writers for the two on-disk dataset formats we accept: IDX and CIFAR-10 binary.

Both are plain byte layouts, so nothing here ever unpickles. Files may be gzipped; we detect
that from the gzip magic bytes, not from the file name. Every malformed file raises
``DatasetError`` naming the file and what was wrong with it.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

# IDX type code -> big-endian numpy dtype ("THE IDX FILE FORMAT", yann.lecun.com/exdb/mnist/).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

CIFAR_IMAGE_SHAPE = (3, 32, 32)  # each record: 1 label byte, then R, G, B planes of 32x32
CIFAR_RECORD_BYTES = 1 + math.prod(CIFAR_IMAGE_SHAPE)  # 3073


class DatasetError(Exception):
    """A dataset folder or file is missing or malformed; the message names the path."""


def read_bytes(path: str | os.PathLike) -> bytes:
    """Return the file's bytes, gunzipped when the file starts with the gzip magic."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: file not found") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:  # truncated or corrupt gzip stream
        raise DatasetError(f"{path}: corrupt or truncated gzip data ({exc})") from exc


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a native-endian array of the stored dtype and shape."""
    if len(data) < 4:
        raise DatasetError(f"{source}: not an IDX file (only {len(data)} bytes, no header)")
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise DatasetError(
            f"{source}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000TTNN with type "
            f"TT in {{08,09,0B,0C,0D,0E}} and NN >= 1 dimensions)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{source}: truncated IDX header ({len(data)} of {header} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        kind = "truncated" if found < expected else "has trailing bytes"
        raise DatasetError(f"{source}: IDX data {kind}: shape {shape} needs {expected} bytes "
                           f"after the header, found {found}")
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header)
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzipped)."""
    return parse_idx(read_bytes(path), source=str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (dtype must be one of the IDX types)."""
    array = np.asarray(array)
    for code, dtype in IDX_DTYPES.items():
        if array.dtype.newbyteorder("=") == dtype.newbyteorder("="):
            break
    else:
        raise ValueError(f"dtype {array.dtype} has no IDX type code")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1..255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write an IDX file; gzipped (reproducibly: no name, mtime 0) when the name ends in .gz."""
    path = Path(path)
    data = encode_idx(array)
    if path.suffix == ".gz":
        with open(path, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as gz:
            gz.write(data)
    else:
        path.write_bytes(data)


def read_cifar_bin(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch -> (images uint8 (N, 3, 32, 32), labels uint8 (N,))."""
    data = read_bytes(path)
    if len(data) == 0 or len(data) % CIFAR_RECORD_BYTES:
        raise DatasetError(f"{path}: {len(data)} bytes is not a whole number of CIFAR-10 records "
                           f"({CIFAR_RECORD_BYTES} bytes each: 1 label + 3072 pixels)")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD_BYTES)
    labels = records[:, 0].copy()
    if labels.max() > 9:
        raise DatasetError(f"{path}: label {int(labels.max())} out of range 0..9 "
                           "(not a CIFAR-10 binary batch?)")
    return records[:, 1:].reshape(-1, *CIFAR_IMAGE_SHAPE).copy(), labels


def write_cifar_bin(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images (N, 3, 32, 32) uint8 and labels (N,) as one CIFAR-10 binary batch."""
    images = np.asarray(images, dtype=np.uint8).reshape(len(labels), -1)
    records = np.concatenate([np.asarray(labels, dtype=np.uint8)[:, None], images], axis=1)
    Path(path).write_bytes(records.tobytes())
