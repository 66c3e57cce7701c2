"""Datasets for the searchers: Fashion-MNIST (IDX), CIFAR-10 (binary batches), the shipped demo
subset and synthetic data, as in-memory torch datasets and seeded loaders.

Public API: ``DatasetConfig``, ``load_dataset``, ``Datasets``, ``make_loaders``, ``Loaders``,
``loaders_for``, ``find_data_dir``, ``candidate_dirs``, ``stratified_indices``,
``synthetic_images``, the file formats (``read_idx``, ``write_idx``, ``parse_idx``,
``encode_idx``, ``read_cifar_bin``, ``write_cifar_bin``) and ``DatasetError``.
"""
from hilnas.searchers.data.datasets import (DATASET_NAMES, DEMO_DIR, DatasetConfig, Datasets,
                                            Loaders, candidate_dirs, find_data_dir, load_dataset,
                                            loaders_for, make_loaders, stratified_indices)
from hilnas.searchers.data.formats import (DatasetError, encode_idx, parse_idx, read_cifar_bin,
                                           read_idx, write_cifar_bin, write_idx)
from hilnas.searchers.data.synthetic import synthetic_images

__all__ = [
    "DATASET_NAMES", "DEMO_DIR", "DatasetConfig", "DatasetError", "Datasets", "Loaders",
    "candidate_dirs", "encode_idx", "find_data_dir", "load_dataset", "loaders_for",
    "make_loaders", "parse_idx", "read_cifar_bin", "read_idx", "stratified_indices",
    "synthetic_images", "write_cifar_bin", "write_idx",
]
