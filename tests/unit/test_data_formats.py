"""IDX and CIFAR-10 binary readers: round trips and malformed files."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from hilnas.searchers.data import (DatasetError, encode_idx, parse_idx, read_cifar_bin, read_idx,
                                   write_cifar_bin, write_idx)


@pytest.mark.parametrize("array", [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([-5, 0, 70000], dtype=np.int32),
    np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
    np.array([[1, -2]], dtype=np.int16),
    np.array([1.5, -2.25], dtype=np.float64),
    np.array([-1, 1], dtype=np.int8),
])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_data_idx_round_trip(tmp_path, array, suffix):
    path = tmp_path / f"a-idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_data_idx_header_is_the_documented_layout():
    data = encode_idx(np.zeros((2, 28, 28), np.uint8))
    assert data[:4] == bytes([0, 0, 0x08, 3])
    assert data[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert len(data) == 16 + 2 * 28 * 28


def test_data_idx_gzip_output_is_reproducible(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_data_idx_bad_magic_names_file(tmp_path):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x00\x01\x08\x01" + b"\x00" * 8)
    with pytest.raises(DatasetError, match="bad-idx3-ubyte.*magic"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + b"\x00" * 8)  # unknown type code 0x07
    with pytest.raises(DatasetError, match="magic"):
        read_idx(path)


@pytest.mark.parametrize("keep", [10, 16 + 74, 16])  # inside the header; 1 byte short; no data
def test_data_idx_truncated(tmp_path, keep):
    data = encode_idx(np.zeros((3, 5, 5), np.uint8))  # 16-byte header + 75 bytes
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(data[:keep])
    with pytest.raises(DatasetError, match="short-idx3-ubyte.*truncated"):
        read_idx(path)


def test_data_idx_trailing_bytes_and_empty():
    data = encode_idx(np.zeros(4, np.uint8))
    with pytest.raises(DatasetError, match="trailing"):
        parse_idx(data + b"\x00", source="x")
    with pytest.raises(DatasetError, match="no header"):
        parse_idx(b"", source="x")


def test_data_idx_truncated_gzip(tmp_path):
    path = tmp_path / "t-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(encode_idx(np.arange(5000, dtype=np.int32)))[:-50])
    with pytest.raises(DatasetError, match="t-idx1-ubyte.gz.*gzip"):
        read_idx(path)


def test_data_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="nothere.*not found"):
        read_idx(tmp_path / "nothere")


def test_data_cifar_binary_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    path = tmp_path / "data_batch_1.bin"
    write_cifar_bin(path, images, labels)
    raw = path.read_bytes()
    assert len(raw) == 7 * 3073
    # The documented layout: label byte, then 1024 red, 1024 green, 1024 blue bytes.
    assert raw[0] == labels[0] and raw[1:1025] == images[0, 0].tobytes()
    assert raw[3073] == labels[1] and raw[3073 + 2049:3073 + 3073] == images[1, 2].tobytes()
    back_images, back_labels = read_cifar_bin(path)
    np.testing.assert_array_equal(back_images, images)
    np.testing.assert_array_equal(back_labels, labels)


def test_data_cifar_binary_malformed(tmp_path):
    path = tmp_path / "test_batch.bin"
    path.write_bytes(b"\x01" * (3073 * 2 - 1))
    with pytest.raises(DatasetError, match="test_batch.bin.*whole number of CIFAR-10 records"):
        read_cifar_bin(path)
    path.write_bytes(b"\x0c" + b"\x00" * 3072)
    with pytest.raises(DatasetError, match="label 12 out of range"):
        read_cifar_bin(path)
