"""The options every ``hilnas search METHOD`` shares (device, space, data, epochs, seed)."""
from __future__ import annotations

import argparse


def search_args(p: argparse.ArgumentParser, *, spaces: tuple[str, ...] = ("darts", "nb201"),
                space_flags: tuple[str, ...] = ("--space",), epochs: bool = True) -> None:
    """``spaces``: the method's search spaces (the first is the default), given with ``space_flags`` (prune
    also takes --model); ``epochs``: add --search-epochs and --train-epochs (a method with its own training
    phases leaves them out)."""
    p.add_argument("--device", required=True, help="device key from the fleet (its LUT is the cost model)")
    p.add_argument(*space_flags, dest="space", default=spaces[0], choices=list(spaces),
                   help=f"search space (default {spaces[0]})")
    p.add_argument("--space-opt", action="append", metavar="KEY=VALUE",
                   help="override a space field, e.g. --space-opt C=8 --space-opt layers=5")
    p.add_argument("--dataset", default="demo", choices=["demo", "fashion-mnist", "cifar10", "synthetic"],
                   help="demo = the Fashion-MNIST subset shipped with hilnas (default)")
    p.add_argument("--data-dir", help="dataset folder (default: standard places, e.g. /usr/share/datasets/...)")
    p.add_argument("--train-size", type=int, help="use a stratified subset of this many training images (default: "
                   "all of them, e.g. 60,000 for fashion-mnist: hours on a 2-core CPU; 5000 for a first look)")
    p.add_argument("--test-size", type=int, help="use a stratified subset of this many test images (default: all)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch")
    if epochs:
        p.add_argument("--search-epochs", type=int, default=2, help="epochs of the search")
        p.add_argument("--train-epochs", type=int, default=3, help="final training epochs of the found network")
    p.add_argument("--max-batches", type=int, help="cap batches per epoch, for smoke runs (default: whole epochs)")
    p.add_argument("--torch-threads", type=int, help="torch threads (default: torch's; 1 is often fastest for "
                   "small networks on a busy 2-core host)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, the search and the training")
    p.add_argument("--runtime", help="which of the device's LUTs, when it has several")
