"""Load Fashion-MNIST, CIFAR-10, the shipped demo subset or synthetic data as torch datasets.

One job: turn a ``DatasetConfig`` into train / val / test ``TensorDataset``s (float32, NCHW,
normalised) and, with ``make_loaders``, into seeded ``DataLoader``s. Files are found in
``DatasetConfig.data_dir`` when given, otherwise in the standard places listed by
``candidate_dirs``. torch is imported inside the functions that need it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hilnas.searchers.data.formats import DatasetError, read_cifar_bin, read_idx
from hilnas.searchers.data.synthetic import synthetic_images

if TYPE_CHECKING:
    from torch.utils.data import DataLoader, TensorDataset

DATASET_NAMES = ("fashion-mnist", "cifar10", "demo", "synthetic")
DEMO_DIR = Path(__file__).resolve().parent.parent / "data_files" / "fashion_mnist_demo"
SYSTEM_DATA_ROOT = Path("/usr/share/datasets")  # Debian's dataset-* packages install here


@dataclass(frozen=True)
class _Spec:
    """What one on-disk dataset looks like: its files, folder names and statistics."""

    folder_names: tuple[str, ...]  # first is the canonical name; the rest are common aliases
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of the training images scaled to [0, 1]
    std: tuple[float, ...]
    class_names: tuple[str, ...]

    @property
    def files(self) -> tuple[str, ...]:
        return self.train_files + self.test_files


_FASHION = _Spec(
    folder_names=("fashion-mnist", "fashion_mnist", "FashionMNIST"),
    # (images, labels) pairs; each may also be present gzipped (name + ".gz").
    train_files=("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    test_files=("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    mean=(0.2860,), std=(0.3530,),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"))
_CIFAR10 = _Spec(
    folder_names=("cifar10", "cifar-10", "cifar-10-batches-bin"),  # the last: the tarball's
    train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    test_files=("test_batch.bin",),
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"))
_SPECS = {"fashion-mnist": _FASHION, "cifar10": _CIFAR10}


@dataclass(frozen=True)
class DatasetConfig:
    """Which dataset to load, from where, how much of it, and how to batch it."""

    name: str = "demo"  # "fashion-mnist" | "cifar10" | "demo" (shipped subset) | "synthetic"
    data_dir: str | None = None  # folder with the files; None searches the standard places
    train_size: int | None = None  # stratified subset of the training pool; None = all
    test_size: int | None = None  # stratified subset of the test set; None = all
    # Part of the training pool held out as `val` (stratified). DARTS-style bi-level search
    # uses 0.5: weights learn on one half, architecture parameters on the other.
    val_fraction: float = 0.0
    batch_size: int = 64
    num_workers: int = 0  # 0 = load in the main process: the tensors are already in memory
    seed: int = 0  # picks the subsets and the val split, and seeds the loaders' shuffling
    synthetic_shape: tuple[int, int, int] = (1, 16, 16)  # (C, H, W), "synthetic" only
    synthetic_classes: int = 4  # "synthetic" only
    # Sizes used by "synthetic" when train_size / test_size are None.
    synthetic_train: int = 512
    synthetic_test: int = 128

    def __post_init__(self) -> None:
        if self.name not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {self.name!r}; choose from {DATASET_NAMES}")
        if self.data_dir is not None and self.name in ("demo", "synthetic"):
            raise ValueError(f"dataset {self.name!r} takes no data_dir")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for field_name in ("train_size", "test_size"):
            size = getattr(self, field_name)
            if size is not None and size < 1:
                raise ValueError(f"{field_name} must be >= 1 or None, got {size}")
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError("batch_size must be >= 1 and num_workers >= 0")


@dataclass(frozen=True)
class Datasets:
    """The splits of one dataset as in-memory tensors: images float32 (N, C, H, W), labels int64."""

    train: TensorDataset
    val: TensorDataset | None  # None when val_fraction == 0
    test: TensorDataset
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    name: str
    source: str  # the folder the files were read from, or "synthetic"
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class Loaders:
    """Seeded batch iterators over ``Datasets``; ``train`` and ``val`` reshuffle every epoch."""

    train: DataLoader
    val: DataLoader | None
    test: DataLoader | None


def candidate_dirs(name: str) -> list[Path]:
    """The standard places searched, in order, for dataset ``name`` when no data_dir is given."""
    spec = _SPECS[name]
    roots: list[Path] = []
    if os.environ.get("HILNAS_DATA"):
        roots.append(Path(os.environ["HILNAS_DATA"]).expanduser())
    roots += [Path("~/.cache/hilnas/data").expanduser(), SYSTEM_DATA_ROOT]
    return [root / folder for root in roots for folder in spec.folder_names]


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _missing(folder: Path, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if _find_file(folder, n) is None]


def find_data_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Return the folder holding all files of dataset ``name``, or raise ``DatasetError``.

    With ``data_dir`` only that folder (or a sub-folder named like the dataset, e.g. the
    ``cifar-10-batches-bin`` a CIFAR tarball unpacks to) is accepted.
    """
    spec = _SPECS[name]
    expected = ", ".join(spec.files) + " (each raw or .gz)"
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        if not base.is_dir():
            raise DatasetError(f"{name}: data folder {base} does not exist; expected a folder "
                               f"with {expected}")
        for folder in [base] + [base / f for f in spec.folder_names]:
            if folder.is_dir() and not _missing(folder, spec.files):
                return folder
        missing = ", ".join(_missing(base, spec.files))
        raise DatasetError(f"{name}: data folder {base} lacks {missing}; expected {expected}")
    searched = candidate_dirs(name)
    partial = []
    for folder in searched:
        if folder.is_dir():
            missing = _missing(folder, spec.files)
            if not missing:
                return folder
            partial.append(f"{folder} (lacks {', '.join(missing)})")
    hint = {"fashion-mnist": " Install Debian's dataset-fashion-mnist package,",
            "cifar10": " Unpack the CIFAR-10 binary version (cifar-10-binary.tar.gz) there,"}[name]
    raise DatasetError(
        f"{name}: no complete data folder found. Expected {expected}. Searched: "
        f"{', '.join(str(f) for f in searched)}."
        + (f" Incomplete: {'; '.join(partial)}." if partial else "")
        + f"{hint} Pass data_dir (--data-dir) or set $HILNAS_DATA.")


def _read_idx_pair(folder: Path, images_name: str, labels_name: str,
                   shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = _find_file(folder, images_name), _find_file(folder, labels_name)
    assert images_path is not None and labels_path is not None  # checked by find_data_dir
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != shape:
        raise DatasetError(f"{images_path}: expected uint8 images of shape (N, {shape[0]}, "
                           f"{shape[1]}), found {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(f"{labels_path}: expected {len(images)} uint8 labels to match "
                           f"{images_path.name}, found {labels.dtype} {labels.shape}")
    if len(labels) and labels.max() > 9:
        raise DatasetError(f"{labels_path}: label {int(labels.max())} out of range 0..9")
    return images[:, None], labels  # add the channel axis: (N, 1, H, W)


def _read_raw(name: str, folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels), images uint8 NCHW."""
    if name == "cifar10":
        paths = [_find_file(folder, f) for f in _CIFAR10.files]  # all present: find_data_dir
        *train, test = [read_cifar_bin(p) for p in paths if p is not None]
        return (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]),
                test[0], test[1])
    train_x, train_y = _read_idx_pair(folder, *_FASHION.train_files, shape=(28, 28))
    test_x, test_y = _read_idx_pair(folder, *_FASHION.test_files, shape=(28, 28))
    return train_x, train_y, test_x, test_y


def stratified_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of an ``n``-element subset whose class proportions match ``labels``.

    Each class gets floor(n * share) items; the left-over go to the classes with the largest
    fractional parts (ties: lower class first). Items within a class are picked at random.
    """
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / len(labels)
    take = np.floor(exact).astype(int)
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - take[i]), i))
    for i in order[: n - take.sum()]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


def _normalise(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    shape = (1, len(mean), 1, 1)
    m = np.array(mean, np.float32).reshape(shape)
    s = np.array(std, np.float32).reshape(shape)
    return (images.astype(np.float32) / 255.0 - m) / s


def load_dataset(cfg: DatasetConfig) -> Datasets:
    """Read (or generate) the dataset ``cfg`` names and split it into train / val / test."""
    import torch
    from torch.utils.data import TensorDataset

    if cfg.name == "synthetic":
        n_train = cfg.train_size or cfg.synthetic_train
        n_test = cfg.test_size or cfg.synthetic_test
        k = cfg.synthetic_classes
        train_x, train_y = synthetic_images(n_train, cfg.synthetic_shape, k, seed=cfg.seed)
        test_x, test_y = synthetic_images(n_test, cfg.synthetic_shape, k, seed=cfg.seed + 1)
        source, class_names = "synthetic", tuple(f"class{i}" for i in range(k))
    else:
        spec_name = "fashion-mnist" if cfg.name == "demo" else cfg.name
        spec = _SPECS[spec_name]
        if cfg.name == "demo":
            folder = DEMO_DIR
            if _missing(folder, spec.files):
                raise DatasetError(f"demo: shipped subset folder {folder} lacks "
                                   f"{', '.join(_missing(folder, spec.files))} (broken install?)")
        else:
            folder = find_data_dir(spec_name, cfg.data_dir)
        raw_train_x, train_y, raw_test_x, test_y = _read_raw(spec_name, folder)
        if cfg.train_size is not None:
            keep = stratified_indices(train_y, cfg.train_size, cfg.seed)
            raw_train_x, train_y = raw_train_x[keep], train_y[keep]
        if cfg.test_size is not None:
            keep = stratified_indices(test_y, cfg.test_size, cfg.seed)
            raw_test_x, test_y = raw_test_x[keep], test_y[keep]
        train_x = _normalise(raw_train_x, spec.mean, spec.std)
        test_x = _normalise(raw_test_x, spec.mean, spec.std)
        source, class_names = str(folder), spec.class_names

    val = None
    if cfg.val_fraction > 0:
        n_val = max(1, round(cfg.val_fraction * len(train_y)))
        val_idx = stratified_indices(train_y, n_val, cfg.seed + 7)
        mask = np.zeros(len(train_y), dtype=bool)
        mask[val_idx] = True
        val = TensorDataset(torch.from_numpy(np.ascontiguousarray(train_x[mask])),
                            torch.from_numpy(train_y[mask].astype(np.int64)))
        train_x, train_y = train_x[~mask], train_y[~mask]

    def as_dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(np.ascontiguousarray(x)),
                             torch.from_numpy(np.asarray(y, dtype=np.int64)))

    return Datasets(train=as_dataset(train_x, train_y), val=val,
                    test=as_dataset(test_x, test_y), num_classes=len(class_names),
                    input_shape=tuple(int(d) for d in train_x.shape[1:]),  # type: ignore[arg-type]
                    name=cfg.name, source=source, class_names=class_names)


def make_loaders(datasets: Datasets, batch_size: int, seed: int, *,
                 num_workers: int = 0) -> Loaders:
    """Batch ``datasets``; train and val shuffle with their own seeded generators.

    Train and val drop a last partial batch when they hold at least one full batch (they are
    reshuffled each epoch, so nothing is lost for long, and BatchNorm never sees a batch of 1);
    test keeps every sample in a fixed order.
    """
    import torch
    from torch.utils.data import DataLoader

    def shuffled(ds: TensorDataset, offset: int) -> DataLoader:
        gen = torch.Generator().manual_seed(seed * 1000 + offset)
        return DataLoader(ds, batch_size=batch_size, shuffle=True, generator=gen,
                          drop_last=len(ds) >= batch_size, num_workers=num_workers)

    return Loaders(
        train=shuffled(datasets.train, 0),
        val=shuffled(datasets.val, 1) if datasets.val is not None else None,
        test=DataLoader(datasets.test, batch_size=batch_size, shuffle=False,
                        num_workers=num_workers))


def loaders_for(cfg: DatasetConfig) -> tuple[Datasets, Loaders]:
    """``load_dataset`` then ``make_loaders`` with the config's batch size, seed and workers."""
    datasets = load_dataset(cfg)
    return datasets, make_loaders(datasets, cfg.batch_size, cfg.seed, num_workers=cfg.num_workers)
