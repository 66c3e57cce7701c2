#!/usr/bin/env python3
"""Make the Fashion-MNIST demo subset that ships in searchers/data_files/fashion_mnist_demo/.

Picks a class-stratified random subset (default 2,000 training and 500 test images: 200 and 50
per class) from the full Fashion-MNIST IDX files with a fixed seed and writes it as gzipped IDX
(reproducible bytes: gzip level 9, no file name, mtime 0), together with the indices of the
picked images in the original files (`*-indices-idx1-int.gz`, int32) so anyone can check the
subset against the source. Re-running with the same inputs gives byte-identical files.

    python scripts/make_demo_subset.py                      # from /usr/share/datasets/fashion-mnist
    python scripts/make_demo_subset.py --data-dir DIR --out OUT --train 2000 --test 500 --seed 0
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from hilnas.searchers.data import DEMO_DIR, find_data_dir, read_idx, stratified_indices, write_idx


def _source(folder: Path, name: str) -> Path:
    return folder / name if (folder / name).is_file() else folder / (name + ".gz")


def make_subset(data_dir: str | None, out: Path, n_train: int, n_test: int, seed: int) -> None:
    folder = find_data_dir("fashion-mnist", data_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images_src = _source(folder, f"{split}-images-idx3-ubyte")
        labels_src = _source(folder, f"{split}-labels-idx1-ubyte")
        images, labels = read_idx(images_src), read_idx(labels_src)
        keep = stratified_indices(labels, n, seed)
        write_idx(out / f"{split}-images-idx3-ubyte.gz", images[keep])
        write_idx(out / f"{split}-labels-idx1-ubyte.gz", labels[keep])
        write_idx(out / f"{split}-indices-idx1-int.gz", keep.astype(np.int32))
        for src in (images_src, labels_src):
            print(f"source {src} sha256 {hashlib.sha256(src.read_bytes()).hexdigest()}")
        print(f"{split}: {len(keep)} of {len(labels)} images, per class "
              f"{np.bincount(labels[keep], minlength=10).tolist()}")
    for path in sorted(out.glob("*.gz")):
        print(f"wrote {path.name} {path.stat().st_size} bytes "
              f"sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}")
    total = sum(p.stat().st_size for p in out.glob("*.gz"))
    print(f"total {total} bytes")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the full Fashion-MNIST IDX files "
                        "(default: search the standard places)")
    parser.add_argument("--out", type=Path, default=DEMO_DIR, help="output folder")
    parser.add_argument("--train", type=int, default=2000, help="training images to keep")
    parser.add_argument("--test", type=int, default=500, help="test images to keep")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified pick")
    args = parser.parse_args(argv)
    make_subset(args.data_dir, args.out, args.train, args.test, args.seed)


if __name__ == "__main__":
    main()
