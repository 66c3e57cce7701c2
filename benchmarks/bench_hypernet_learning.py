"""Why the hypernetwork's supernet learns so little (issue 11 item 4, issue 12 item 5): cheap diagnostics.

    .venv/bin/python benchmarks/bench_hypernet_learning.py [--steps 250] [--variants standalone,relaxed,...]

Each variant trains weights only, with the search's weight optimiser (SGD, lr ``--lr``, momentum 0.9, weight
decay 3e-4, grad clip 5, batch 32, constant lr: the first steps of the search's cosine) for ``--steps`` steps on
the weight half of the CIFAR-10 subset (NB201 at full size, C=16, N=5, by default), then reports the accuracy on
``--eval-batches`` batches of the architecture half, twice: eval-mode BatchNorm (running statistics, as
``evaluate`` and the search's recorded ``val_acc``) and with the batch's own statistics.

Variants (the architecture the weight step runs):
- ``standalone``: the discrete network of one fixed good cell (every edge ``nor_conv_3x3``), ``build_network``.
- ``standalone-cheap``: the same for a cheap cell (skip / avg-pool only).
- ``path``: the supernet (DCA options: partial channels K=4, derived cells) run with that good cell one-hot.
- ``path-k1``: the same without the channel bottleneck (K=1).
- ``relaxed``: the supernet with the initial near-uniform architecture (the hypernetwork's warm-up: the first cell
  mixes all ops, the 14 others run the argmax of the initial alphas).
- ``spos``: a uniformly drawn valid cell per step (``weight_lambda="uniform"``); evaluated on the good cell.
Writes benchmarks/results/hypernet_learning<_tag>.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import warm_torch, write  # noqa: E402

GOOD = ("nor_conv_3x3",) * 6
CHEAP = ("skip_connect", "avg_pool_3x3", "skip_connect", "avg_pool_3x3", "skip_connect", "avg_pool_3x3")
VARIANTS = ("standalone", "standalone-cheap", "path", "path-k1", "relaxed", "spos")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--lr", type=float, default=0.05, help="SGD lr of the weights (BilevelConfig.w_lr: 0.05)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-batches", type=int, default=16)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    variants = args.variants.split(",")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variants {bad}; choose from {','.join(VARIANTS)}")

    import torch

    from hilnas.searchers.data import DatasetConfig, loaders_for
    from hilnas.searchers.genotype import NB201Genotype
    from hilnas.searchers.hypernet.bound import is_valid, one_hot_arch
    from hilnas.searchers.hypernet.search import ValidSupernet
    from hilnas.searchers.model import build_network
    from hilnas.searchers.spaces import create_space
    from hilnas.searchers.supernet import DCA_OPTIONS, SupernetOptions

    torch.set_num_threads(1)
    warm_torch()
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-subset"
    datasets, loaders = loaders_for(DatasetConfig(name="cifar10", data_dir=str(shared), val_fraction=0.5,
                                                  batch_size=args.batch_size, seed=args.seed))
    c, h, _ = datasets.input_shape
    space = create_space("nb201", in_channels=c, input_size=h, num_classes=datasets.num_classes, C=args.C,
                         N=args.cells)
    good, cheap = NB201Genotype(GOOD), NB201Genotype(CHEAP)
    results = {}
    for name in variants:
        torch.manual_seed(args.seed)
        rng = __import__("random").Random(args.seed)
        arch_of_step = None
        eval_arch = None
        if name.startswith("standalone"):
            model = build_network(space, good if name == "standalone" else cheap)
        else:
            options = DCA_OPTIONS if name != "path-k1" else SupernetOptions(bottleneck=1)
            sn = ValidSupernet(space, options)
            init = {n: p.detach().clone() for n, p in sn.named_parameters() if n.startswith("alphas.")}
            if name in ("path", "path-k1"):
                eval_arch = one_hot_arch(sn, good)
                arch_of_step = lambda: eval_arch  # noqa: E731
            elif name == "relaxed":
                eval_arch = init
                arch_of_step = lambda: init  # noqa: E731
            else:   # spos
                eval_arch = one_hot_arch(sn, good)

                def arch_of_step():
                    while True:
                        g = space.sample(rng)
                        if is_valid(space, g):
                            return one_hot_arch(sn, g)

            class Run(torch.nn.Module):
                def __init__(self, sn):
                    super().__init__()
                    self.sn, self.arch = sn, None

                def forward(self, x):
                    with self.sn.using(self.arch):
                        return self.sn(x)
            model = Run(sn)
        weights = [q for n, q in model.named_parameters() if ".alphas." not in f".{n}" and "betas" not in n]
        opt = torch.optim.SGD(weights, lr=args.lr, momentum=0.9, weight_decay=3e-4)
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        losses, step = [], 0
        while step < args.steps:
            for x, y in loaders.train:
                if step >= args.steps:
                    break
                if arch_of_step is not None:
                    model.arch = arch_of_step()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(weights, 5.0)
                opt.step()
                losses.append(loss.item())
                step += 1
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if eval_arch is not None:
            model.arch = eval_arch
        out = {"train_loss_last50": sum(losses[-50:]) / len(losses[-50:]), "wall_s": wall, "cpu_s": cpu}
        for mode in ("eval", "batch"):
            model.train(mode == "batch")
            correct = count = 0
            loss_sum = 0.0
            with torch.no_grad():
                for i, (x, y) in enumerate(loaders.val):
                    if i >= args.eval_batches:
                        break
                    logits = model(x)
                    loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
                    correct += int((logits.argmax(1) == y).sum())
                    count += len(y)
            out[f"val_acc_{mode}_bn"], out[f"val_loss_{mode}_bn"] = correct / count, loss_sum / count
        results[name] = out
        print(name, {k: round(v, 3) for k, v in out.items()}, flush=True)
    write("hypernet_learning" + (f"_{args.tag}" if args.tag else ""),
          {"setup": vars(args), "good_cell": list(GOOD), "cheap_cell": list(CHEAP), "results": results,
           "note": "batch-mode evaluation runs BatchNorm on the batch's own statistics (no running stats); the "
                   "running statistics were updated during it, so it is done after the eval-mode pass"})


if __name__ == "__main__":
    main()
