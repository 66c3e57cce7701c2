"""Finding and loading datasets: standard places, clear errors, demo subset, real files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hilnas.searchers.data import (DEMO_DIR, DatasetConfig, DatasetError, find_data_dir,
                                   load_dataset, make_loaders, read_idx, stratified_indices,
                                   write_cifar_bin, write_idx)
from hilnas.searchers.data import datasets as datasets_module

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _write_fashion(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)


@pytest.fixture
def no_standard_places(tmp_path, monkeypatch):
    """Point every standard place into an empty temp folder."""
    monkeypatch.delenv("HILNAS_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(datasets_module, "SYSTEM_DATA_ROOT", tmp_path / "system")
    return tmp_path


def test_data_missing_folder_names_path_and_files(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DatasetError) as err:
        load_dataset(DatasetConfig("fashion-mnist", data_dir=str(missing)))
    msg = str(err.value)
    assert str(missing) in msg and "does not exist" in msg
    assert all(f in msg for f in FASHION_FILES)
    with pytest.raises(DatasetError, match="data_batch_1.bin.*test_batch.bin"):
        load_dataset(DatasetConfig("cifar10", data_dir=str(missing)))


def test_data_incomplete_folder_names_missing_files(tmp_path):
    _write_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset(DatasetConfig("fashion-mnist", data_dir=str(tmp_path)))
    assert f"{tmp_path} lacks t10k-labels-idx1-ubyte;" in str(err.value)


def test_data_malformed_file_in_folder(tmp_path):
    _write_fashion(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(39, np.uint8))  # 40 images
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz: expected 40 uint8 labels"):
        load_dataset(DatasetConfig("fashion-mnist", data_dir=str(tmp_path)))
    _write_fashion(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x08\x03junk")
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz: bad IDX magic"):
        load_dataset(DatasetConfig("fashion-mnist", data_dir=str(tmp_path)))


def test_data_nothing_found_lists_searched_places(no_standard_places):
    with pytest.raises(DatasetError) as err:
        find_data_dir("fashion-mnist")
    msg = str(err.value)
    assert str(no_standard_places / "system" / "fashion-mnist") in msg
    assert str(no_standard_places / "home" / ".cache" / "hilnas" / "data" / "fashion-mnist") in msg
    assert "dataset-fashion-mnist" in msg and "HILNAS_DATA" in msg


def test_data_found_via_env_and_cache(no_standard_places, monkeypatch):
    cache = no_standard_places / "home" / ".cache" / "hilnas" / "data" / "fashion-mnist"
    _write_fashion(cache, gz=False)  # raw (not gzipped) files work too
    assert find_data_dir("fashion-mnist") == cache
    env_root = no_standard_places / "env"
    _write_fashion(env_root / "fashion-mnist")
    monkeypatch.setenv("HILNAS_DATA", str(env_root))
    assert find_data_dir("fashion-mnist") == env_root / "fashion-mnist"  # env comes first
    ds = load_dataset(DatasetConfig("fashion-mnist", val_fraction=0.5))
    assert ds.source == str(env_root / "fashion-mnist")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (20, 20, 20)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10


def test_data_cifar10_from_binary_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"  # the layout the official tarball unpacks to
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        images = rng.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8)
        labels = np.arange(10, dtype=np.uint8)
        write_cifar_bin(folder / name, images, labels)
        written.append(images)
    ds = load_dataset(DatasetConfig("cifar10", data_dir=str(tmp_path)))  # finds the sub-folder
    assert ds.source == str(folder)
    assert (len(ds.train), len(ds.test), ds.num_classes) == (50, 10, 10)
    assert ds.input_shape == (3, 32, 32)
    x, y = ds.train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    # The first training image is data_batch_1's first record, normalised per channel.
    mean = np.array([0.4914, 0.4822, 0.4465], np.float32)[:, None, None]
    std = np.array([0.2470, 0.2435, 0.2616], np.float32)[:, None, None]
    expected = (written[0][0].astype(np.float32) / 255 - mean) / std
    np.testing.assert_allclose(x[0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert ds.class_names[0] == "airplane"


def test_data_stratified_indices_keep_proportions():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    picked = stratified_indices(labels, 10, seed=3)
    assert np.bincount(labels[picked]).tolist() == [6, 3, 1]
    assert np.all(np.diff(picked) > 0)
    assert not np.array_equal(picked, stratified_indices(labels, 10, seed=4))
    np.testing.assert_array_equal(picked, stratified_indices(labels, 10, seed=3))
    assert len(stratified_indices(labels, 500, seed=0)) == 100


def test_data_demo_subset_ships_and_is_stratified():
    files = sorted(p.name for p in DEMO_DIR.glob("*.gz"))
    assert all(f + ".gz" in files for f in FASHION_FILES)
    assert sum(p.stat().st_size for p in DEMO_DIR.glob("*.gz")) < 1_500_000
    assert (DEMO_DIR / "README.md").is_file()
    ds = load_dataset(DatasetConfig("demo"))
    assert (len(ds.train), len(ds.test), ds.val) == (2000, 500, None)
    assert ds.input_shape == (1, 28, 28)
    assert torch.bincount(ds.train.tensors[1]).tolist() == [200] * 10
    assert torch.bincount(ds.test.tensors[1]).tolist() == [50] * 10
    split = load_dataset(DatasetConfig("demo", val_fraction=0.5, seed=1))
    assert torch.bincount(split.train.tensors[1]).tolist() == [100] * 10
    assert torch.bincount(split.val.tensors[1]).tolist() == [100] * 10
    x = ds.train.tensors[0]
    assert abs(float(x.mean())) < 0.2 and 0.8 < float(x.std()) < 1.2  # normalised


@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(),
                    reason=f"{SYSTEM_FASHION} missing (apt-get install dataset-fashion-mnist)")
def test_data_real_fashion_mnist_and_demo_provenance():
    ds = load_dataset(DatasetConfig("fashion-mnist", test_size=1000))
    assert ds.source == str(SYSTEM_FASHION)
    assert (len(ds.train), len(ds.test), ds.input_shape) == (60000, 1000, (1, 28, 28))
    assert torch.bincount(ds.train.tensors[1]).tolist() == [6000] * 10
    assert abs(float(ds.train.tensors[0].mean())) < 0.01  # mean/std constants fit the data
    # The demo subset is exactly the real images at the indices shipped with it.
    full_images = read_idx(SYSTEM_FASHION / "t10k-images-idx3-ubyte.gz")
    full_labels = read_idx(SYSTEM_FASHION / "t10k-labels-idx1-ubyte.gz")
    idx = read_idx(DEMO_DIR / "t10k-indices-idx1-int.gz")
    demo = {kind: read_idx(DEMO_DIR / f"t10k-{kind}-idx{d}-ubyte.gz")
            for kind, d in (("images", 3), ("labels", 1))}
    np.testing.assert_array_equal(full_images[idx], demo["images"])
    np.testing.assert_array_equal(full_labels[idx], demo["labels"])
    np.testing.assert_array_equal(idx, stratified_indices(full_labels, 500, seed=0))


def test_data_synthetic_is_seeded_and_balanced():
    cfg = DatasetConfig("synthetic", train_size=64, test_size=32, synthetic_shape=(3, 8, 8),
                        synthetic_classes=4)
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert a.input_shape == (3, 8, 8) and a.num_classes == 4 and a.source == "synthetic"
    assert torch.bincount(a.train.tensors[1]).tolist() == [16] * 4
    c = load_dataset(DatasetConfig("synthetic", train_size=64, seed=5, synthetic_shape=(3, 8, 8)))
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])


def test_data_loaders_are_seeded():
    ds = load_dataset(DatasetConfig("synthetic", train_size=100, val_fraction=0.3))
    first = [next(iter(make_loaders(ds, 16, seed=s).train))[1] for s in (0, 0, 1)]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])
    loaders = make_loaders(ds, 16, seed=0)
    assert len(loaders.train) == 70 // 16 and len(loaders.val) == 30 // 16  # drop partial batch
    assert sum(len(y) for _, y in loaders.test) == 128  # test keeps everything, in order
    assert torch.equal(torch.cat([y for _, y in loaders.test]), ds.test.tensors[1])


def test_data_config_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown dataset"):
        DatasetConfig("mnist")
    with pytest.raises(ValueError, match="val_fraction"):
        DatasetConfig("demo", val_fraction=1.0)
    with pytest.raises(ValueError, match="no data_dir"):
        DatasetConfig("demo", data_dir="/tmp")
