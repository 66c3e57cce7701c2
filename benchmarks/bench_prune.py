"""Pruning benchmark (seed 004): one hypernetwork run -> K pruned networks, against K fixed-lambda prunings.

    .venv/bin/python benchmarks/bench_prune.py [--dataset cifar10|fashion-mnist] [--agents sim,host] [--C 16]
                                               [--k 8] [--fixed 8] [--steps 600] [--pretrain-epochs 15]
                                               [--checkpoint PATH] [--tries 4] [--held-out 8]
                                               [--recentre 4] [--phase2-pass one|split] [--suffix _s3]
                                               [--anchor pinned|learned] [--gap 0] [--screen 0 --finalists 8]
                                               [--pretrain-only] [--finetune-epochs 0] [--match-floor 0.95]
                                               [--confirm-k 2] [--spread S] [--tune 12] [--tune-at ends]
                                               [--chain 2] [--trim]
    .venv/bin/python benchmarks/bench_prune.py --dataset D --loop-candidates benchmarks/results/prune_<...>.json
    .venv/bin/python benchmarks/bench_prune.py --dataset D --sweep-only [--sweep-min 0.1 --sweep-points 6]
    .venv/bin/python benchmarks/bench_prune.py --dataset D --screen-agreement [--screen 2 --finalists 4]
    .venv/bin/python benchmarks/bench_prune.py --tune-probe benchmarks/results/prune_cifar10_sim_s7.json
                                               [--tune-variants 12:ends:all,24:ends:all]

The model is the narrow ResNet-18 (``resnet18-narrow``, C=16 unless ``--C``), pre-trained once
(``--pretrain-epochs``, cached under ``~/.cache/hilnas/bench`` so a second run reuses it) on the
CIFAR-10 subset (``shared/data/cifar10-subset``: 8,000 images to train, 2,000 for the gates, 2,000
test images) or on 10,000 Fashion-MNIST training images (the 10,000 test images). For each agent
(``sim``: a simulated Raspberry Pi 4, ``host``: the local host agent with ONNX Runtime, 1 thread),
all in-process on loopback:

1. the LUT of the model's module keys and a fidelity run on random pruned networks (the correction
   that maps a LUT sum to the device's whole-network latency, fitted on those networks);
2. one pruning-hypernetwork run (Algorithm 1: phase 1, the lambda sweep and Theorem 1, phase 2)
   with the device's LUT as T(e); the family's cheapest and dearest networks measured (interleaved
   windows combined by the statistic, as in step 4; one window each before the ninth session) and K device budgets spread evenly over that measured range, each at measured / aim;
   one member each, chosen with the device in the loop (``prune.confirm``): of the hypernetwork's
   patterns whose corrected prediction lies within [0.88, 1.04] x budget, the ``--tries`` with
   the least held-out loss (``--held-out`` validation batches) are measured in turn, and the first
   whose window and a second, new window both lie in [0.92, 0.98] x budget, their mean ``--confirm-k`` (2)
   predictive spreads of a fresh window inside [0.9, 1.0] x budget (the spread: the larger of ``--spread``,
   default the simulated Pi's 1.31 % from its profile, and the run's robust estimate from its pairs), is the member; when none
   is (with ``--screen S``: the candidates ranked on S held-out batches first and only the
   ``--finalists`` best on all of them), up to ``--recentre`` more whose prediction, corrected by those first windows, lies in
   [0.92, 0.98] x budget are tried the same way ("recentred"); then the least-loss candidate whose
   loop windows all lay in [0.90, 0.99] x budget ("loop"), else
   the LUT-only band member (``prune.band``: [floor, 0.98] x budget by prediction). With ``--tune N`` (default
   0 since the ninth session; 12 in the eighth) the candidates also include the modes of gate logits tuned N steps at
   the lambdas that bracket each budget, from the hypernetwork's output, on the gates' split less the held-out
   batches (every budget's lambdas tuned up front, 4 a pass, each on a quarter of the batch:
   ``prune.refine.tuned_together``; their CPU is part of the member choice's and reported, ``member_choice_tune``).
   With ``--chain N`` (default 2, ninth session) they also include a chain from the mode at the dearer bracketing
   lambda, one channel group dropped at a time, the least rise in cross-entropy per cost saved first, measured on N
   batches of the gates' split less the held-out ones once per start (``--chain-refresh``; ``prune.chain``; its
   CPU reported in ``member_choice_tune.chain_cpu_s``). The held-out
   losses are computed on the pruned networks with shared prefixes (``prune.score``). For the
   comparison (outside the run's time) the LUT-only band members and the bisection members (aim x
   budget) are derived and measured too;
3. fixed-lambda prunings (free gate logits, the same steps and settings as phase 2), one at each
   member's lambda (``--fixed`` of the K members, evenly spread, when CPU time is short);
4. every network measured afresh on the device (new interleaved windows, not the loop's; the
   statistic ``min`` on the host, ``median`` on the simulated Pi) and its test accuracy
   (pre-trained weights, BatchNorm statistics re-estimated on 20 training batches, no fine-tuning,
   for members and fixed prunings alike); the members are also measured so right after the run, before step 3
   (``right_after_run``, ninth session: the shared host's speed moved between the two; the target is step 4's);
5. with ``--finetune-epochs E``, both networks of every matched pair (step 3's member and the fixed
   network) also fine-tuned alike, as a user would deploy them (``prune.finetune``, the CLI's
   ``--finetune-epochs``: E epochs of SGD on all weights from the re-calibrated network, lr
   ``--finetune-lr``, the same seed and batch order), and their test accuracies after reported beside
   the ones before (``matched[].finetuned``, with the paired SE). Outside the run's time; its CPU reported.

6. with ``--match-floor F`` (< 0.95), each fixed network also matched with the member the device confirms
   within [F, 1.0] x its measured latency (at 0.9 the target's own window, the fixed network's latency as the
   budget), its accuracy reported beside the [0.95, 1.0] match's (``matched[].target_band_member``).

``--loop-candidates RESULT`` runs nothing: for every matched pair of an earlier result file it scores each
candidate the device loop tried on the test split (what the match passed over, and why; sixth session).
``--sweep-only`` runs phase 1, the sweep and Theorem 1 alone (phase 2 one step) with PruneConfig's sweep and with
``--sweep-min`` / ``--sweep-points``, on the same batches: Lambda and the sweep's CPU side by side.
``--tune-probe RESULT`` runs one hypernetwork on the simulated Pi's LUT and, for RESULT's matched pairs, the least
held-out loss within [0.95, 1.0] x each fixed network's LUT sum with and without tuning (no test data; eighth session).
``--screen-agreement`` runs one hypernetwork and the member choice under the given screen and cheaper ones, with a
device that measures each network at its LUT sum: which members each picks and its CPU (seventh session).

Targets (issue 12): the members' measured latencies monotone in the budget (0 violations); each
member's measured / budget in [0.9, 1.0]; the hypernetwork run (phase 1 + sweep + Theorem 1 +
phase 2 + deriving the K members) <= 1.5x the median fixed-lambda pruning (wall and CPU time); at
matched measured latency each member within 1 point of a fixed-lambda pruning or better, judged
without fine-tuning and, with ``--finetune-epochs``, after the same fine-tune on both sides (each
fixed network against the family's member for the fixed network's measured latency, confirmed on
the device within [0.95, 1.0] x it, or measured there in the loop; also, as before, the LUT-only band member at the fixed
network's LUT sum, scored on 4 held-out batches; and, outside the run's time, the local search
``prune.refine`` from each matched member, its CPU reported). The run's time includes the device loop's
windows (the agent runs in this process); the CPU ratio without them is reported beside it.
Phase 2 runs its four lambdas per step in one forward pass (``prune.segments``; ``--phase2-pass split``:
a pass each, as before the third session). The load averages before the run, after it and after the
fixed prunings are recorded beside the times (``load_avg``).
Writes benchmarks/results/prune_<dataset>_<agents><suffix>.json and the sweep / trade-off plots beside it.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import dataclasses
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, warm_torch, write  # noqa: E402
from _prune_scores import PrunedScores  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# the member choice's tuned candidates (eighth session, default 12 then; 0 since the ninth, when the chain replaced
# them: both chosen on the gates' split by --tune-probe, before scoring)
TUNE, TUNE_AT, TUNE_BATCH = 0, "ends", None
# the chain (ninth session; decided by --tune-probe on the gates' split before scoring, docs/performance.md): its drops
# measured on prune.band.DEFAULT_CHAIN_BATCHES (2) batches once per start (99 >= any chain's drops); the tuning off (the
# chain gave the same or better least held-out loss in every band with and without it)
CHAIN_REFRESH = 99


def dataset(name: str, seed: int):
    from hilnas.searchers.data import DatasetConfig, loaders_for
    if name == "cifar10":
        cfg = DatasetConfig(name="cifar10", data_dir=str(SHARED / "data" / "cifar10-subset"), val_fraction=0.2,
                            batch_size=64, seed=seed)
    else:
        cfg = DatasetConfig(name="fashion-mnist", train_size=10000, val_fraction=0.2, batch_size=64, seed=seed)
    return loaders_for(cfg)


def recorded_network(result: dict):
    """(loaders, space, pre-trained network) a ``bench_prune.py`` result was run on, to judge its recorded patterns
    again; exits when the checkpoint is not on this machine or is another pre-training (its test accuracy differs)."""
    from hilnas.searchers.prune.pretrain import load_pretrained
    from hilnas.searchers.spaces import create_space
    from hilnas.searchers.train import evaluate

    setup, model = result["setup"], result["model"]
    datasets, loaders = dataset(setup["dataset"], setup["seed"])
    c, h, _ = datasets.input_shape
    space = create_space("resnet18-narrow", in_channels=c, input_size=h, num_classes=datasets.num_classes,
                         C=model["C"])
    ck = Path(model["checkpoint"])
    if not ck.is_file():
        sys.exit(f"the result's pre-trained network {ck} is not on this machine; its members are judged on the network "
                 f"they were chosen on (bench_prune.py --pretrain-only makes a new one, for a new run)")
    net, _ = load_pretrained(ck, space)
    full_acc = evaluate(net, loaders.test)[1]
    if abs(full_acc - model["test_acc"]) > 1e-6:
        sys.exit(f"{ck} scores {full_acc:.4f} on the test split, the result's network {model['test_acc']:.4f}: another "
                 f"pre-training; the result's members cannot be judged on it")
    return loaders, space, net


def measure_rounds(client, models: dict, measure, rounds: int, statistic: str) -> dict:
    """name -> latency of each ONNX model: ``rounds`` interleaved windows, combined by ``statistic``."""
    from hilnas.agent.results import BenchmarkRequest, ModelFormat
    from hilnas.server.client import sha256_hex
    from hilnas.server.lut.rounds import combine_rounds, window_value

    names = list(models)
    values: dict = {n: [] for n in names}
    for r in range(rounds):
        reqs = [BenchmarkRequest(sha256=sha256_hex(models[n]), model=models[n] if r == 0 else b"",
                                 format=ModelFormat.ONNX, backend="", config=measure, request_id=str(i))
                for i, n in enumerate(names)]
        for res in client.benchmark_stream(reqs):
            if res.status.measured and res.latency:
                values[names[int(res.request_id)]].append(window_value(res.latency, statistic))
    return {n: combine_rounds(v, statistic) if v else None for n, v in values.items()}


def main() -> None:
    from hilnas.searchers.prune.band import DEFAULT_CHAIN_BATCHES as CHAIN   # the CLI's default too

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "fashion-mnist"])
    p.add_argument("--agents", default="sim,host", help="comma-separated: sim (simulated Raspberry Pi 4), host")
    p.add_argument("--C", type=int, default=16, help="channels of the first stage (resnet18-narrow: 16)")
    p.add_argument("--k", type=int, default=8, help="budgets / members / fixed-lambda prunings per agent")
    p.add_argument("--fixed", type=int, help="fixed-lambda prunings, at this many of the K members evenly spread "
                   "(default: all K)")
    p.add_argument("--steps", type=int, default=600, help="phase-2 steps = steps of each fixed-lambda pruning")
    p.add_argument("--pretrain-epochs", type=int, default=15)
    p.add_argument("--checkpoint", help="a pre-trained network hilnas saved (default: cached, or pre-train now)")
    p.add_argument("--aim", type=float, default=0.95, help="members are chosen for aim x budget (default 0.95)")
    p.add_argument("--floor", type=float, default=0.92,
                   help="the LUT-only band, [floor x budget, 0.98 x budget] by prediction (prune.band): the member "
                        "where the device confirms none, and the comparison (default 0.92)")
    p.add_argument("--tries", type=int, default=4,
                   help="candidates measured on the device per budget, least held-out loss first (prune.confirm)")
    p.add_argument("--near-lo", type=float, default=0.88, help="candidates: corrected prediction >= this x budget")
    p.add_argument("--near-hi", type=float, default=1.04, help="candidates: corrected prediction <= this x budget")
    p.add_argument("--held-out", type=int, default=8,
                   help="held-out validation batches the member choice scores candidates on (default 8)")
    p.add_argument("--screen", type=int, default=0,
                   help="member choice: score the candidates on this many held-out batches first, and only the "
                        "--finalists best of them on all --held-out (prune.confirm; default 0: all on all)")
    p.add_argument("--finalists", type=int, default=8, help="candidates per budget scored on every held-out batch "
                   "after the screen (default 8: --tries + --recentre)")
    p.add_argument("--confirm-k", type=float, default=2.0,
                   help="member choice: confirmed only if the loop windows' mean lies this many predictive spreads of a "
                        "fresh window inside [0.9, 1.0] x budget (prune.confirm; 0: the inner band alone, as before the "
                        "seventh session; the fixed networks' matches always use 0, as before)")
    p.add_argument("--spread", type=float,
                   help="prior relative spread of one window, the floor of the run's estimate from its pairs (default: "
                        "the simulated Pi's from its profile's noise, 1.31 %%; the host 1 %%)")
    p.add_argument("--sweep-only", action="store_true",
                   help="no run: the simulated Pi's LUT, then phase 1 and the lambda sweep alone (PruneConfig's "
                        "defaults, and with --sweep-min M --sweep-points N), their Lambda and patterns side by side")
    p.add_argument("--screen-agreement", action="store_true",
                   help="no run: one hypernetwork run on the simulated Pi's LUT, then the member choice under --screen / "
                        "--finalists and cheaper screens, with a device measuring each network at its LUT sum: which "
                        "members each picks and what it costs")
    p.add_argument("--sweep-min", type=float, help="the sweep's smallest lambda (default: PruneConfig's)")
    p.add_argument("--sweep-points", type=int, help="the sweep's lambdas (default: PruneConfig's)")
    p.add_argument("--tune-probe", metavar="RESULT",
                   help="no device run: one hypernetwork on the simulated Pi's LUT, and for RESULT's matched pairs the "
                        "least held-out loss within [0.95, 1.0] x the fixed network's LUT sum without and with "
                        "--tune-variants' tuned logits (eighth session)")
    p.add_argument("--tune-variants", type=lambda v: v.split(","), default=["8:ends:all", "16:ends:all", "32:ends:all"],
                   help="--tune-probe's settings, STEPS:ends|dearer|cheaper|aimed:IMAGES|all each")
    p.add_argument("--chain-variants", type=lambda v: [tuple(map(int, x.split(":"))) for x in v.split(",") if x],
                   default=[(2, 1), (2, 99)], help="--tune-probe: also the chain (prune.chain), BATCHES:REFRESH each: its "
                   "drops measured on this many batches of the gates' split, again every REFRESH drops (ninth session)")
    p.add_argument("--chain", type=int, default=CHAIN, help="the member choice's candidates also include a chain from "
                   "the dearer bracketing member dropping one channel group at a time, its drops estimated on this many "
                   f"batches of the gates' split less the held-out ones (prune.chain; 0: off; default {CHAIN})")
    p.add_argument("--chain-refresh", type=int, default=CHAIN_REFRESH, help="the chain's drops measured again every "
                   f"this many drops (default {CHAIN_REFRESH})")
    p.add_argument("--tune", type=int, default=TUNE, help="the member choice's candidates also include the modes of gate "
                   "logits tuned for this many steps at the bracket's lambdas from the hypernetwork's output, every "
                   "budget's lambdas up front, 4 a pass each on a quarter of the batch (prune.refine.tuned_together; 0: "
                   f"off, as before the eighth session; default {TUNE})")
    p.add_argument("--tune-at", default=TUNE_AT, choices=["ends", "dearer", "cheaper", "aimed"],
                   help=f"which ends of a budget's lambda bracket are tuned (default {TUNE_AT})")
    p.add_argument("--tune-batch", type=int, default=TUNE_BATCH,
                   help=f"images of each batch a tuning step uses (default {TUNE_BATCH or 'the whole batch'})")
    p.add_argument("--fidelity-networks", type=int, default=20)
    p.add_argument("--match-floor", type=float, default=0.95,
                   help="also match each fixed network with the member confirmed within [this, 1.0] x its measured "
                        "latency (the target's own window at 0.9; a cheaper member, in the fixed network's favour) and "
                        "report its accuracy beside the [0.95, 1.0] match (default 0.95: that match alone)")
    p.add_argument("--loop-candidates", metavar="RESULT", help="no run: for every matched pair of an earlier result "
                   "file (benchmarks/results/prune_*.json, its --dataset), the test accuracy of each candidate the device "
                   "loop tried (the same re-calibration as the pairs'), written beside it as <name>_loop_candidates.json")
    p.add_argument("--pretrain-only", action="store_true",
                   help="pre-train (or find) the cached network and stop (to prepare a later run)")
    p.add_argument("--phase2-pass", default="one", choices=["one", "split"],
                   help="phase 2's lambdas in one forward pass (BatchNorm per share) or a pass each (the earlier runs)")
    p.add_argument("--trim", action=argparse.BooleanOptionalAction, default=False,
                   help="recentring also tries channel groups dropped from the least-loss tried candidate measured just "
                        "above the band, priced by its own window (prune.confirm.trimmed; eleventh session, off by "
                        "default: its runs cost 1.53-1.54 x a fixed pruning)")
    p.add_argument("--recentre", type=int, default=4,
                   help="device loop: further tries with the prediction corrected by the first windows (0: none)")
    p.add_argument("--anchor", default="pinned", choices=["pinned", "learned"],
                   help="phase 2's lambda = 0 logits: pinned to phase 1's fit, or learned on one of the shares "
                        "(L_valid alone; fourth session)")
    p.add_argument("--gap", type=float, default=0.0,
                   help="band search: also bisect between neighbouring lambdas whose members differ by more than this "
                        "share of the cost (0: the dense family alone; the fourth session measured 0.05)")
    p.add_argument("--finetune-epochs", type=int, default=0,
                   help="also fine-tune both networks of every matched pair alike (the same epochs, data order, "
                        "optimiser and seed: prune.finetune, as `search prune --finetune-epochs`) and report the "
                        "accuracy after beside the one before (default 0: the un-tuned comparison alone)")
    p.add_argument("--finetune-lr", type=float, default=0.01, help="the fine-tune's learning rate (the CLI's, 0.01)")
    p.add_argument("--suffix", default="", help="appended to the result files' names (e.g. _s3; keeps the old ones)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = p.parse_args()
    if not 0 < args.match_floor <= 0.95:
        p.error(f"--match-floor must lie in (0, 0.95] (0.95: the match as before), got {args.match_floor}")
    if args.finetune_epochs < 0:
        p.error(f"--finetune-epochs must be >= 0 (0: no fine-tune), got {args.finetune_epochs}")
    logging.basicConfig(level=logging.WARNING)

    import torch

    from hilnas.searchers.cost import ParamsCost
    from hilnas.searchers.prune.band import BandSearch, band_members
    from hilnas.searchers.prune.confirm import DeviceBandConfig, device_members
    from hilnas.searchers.prune.finetune import FinetuneConfig
    from hilnas.searchers.prune.refine import refine
    from hilnas.server.lut.rounds import window_value
    from hilnas.searchers.prune.pretrain import load_pretrained, pretrain, save_pretrained
    from hilnas.searchers.prune.search import PruneConfig, prune_fixed, search
    from hilnas.searchers.result import Budget
    from hilnas.searchers.spaces import create_space
    from hilnas.searchers.train import TrainConfig, evaluate
    from hilnas.server.lut.fidelity import FidelityConfig, run_fidelity
    from hilnas.server.model_meta import attach
    from hilnas.searchers.export import export_onnx

    torch.set_num_threads(args.threads)
    warm_torch()
    datasets, loaders = dataset(args.dataset, args.seed)
    c, h, _ = datasets.input_shape
    overrides = {"C": args.C}
    space = create_space("resnet18-narrow", in_channels=c, input_size=h, num_classes=datasets.num_classes, **overrides)
    calib = [b for _, b in zip(range(20), loaders.train)]
    held_out = [b for _, b in zip(range(args.held_out), loaders.val)]   # the band search's scores (the gates' split, not the test)
    tune_batches = list(itertools.islice(loaders.val, args.held_out, None))   # --tune's: the gates' split less those

    # the pre-trained network (shared by every agent and method; its time is not part of any comparison)
    ck = Path(args.checkpoint) if args.checkpoint else \
        Path.home() / ".cache" / "hilnas" / "bench" / f"prune_{args.dataset}_C{args.C}_e{args.pretrain_epochs}.pt"
    pretrain_s = None
    if not ck.is_file():
        t = time.perf_counter()
        net, res = pretrain(space, loaders, TrainConfig(epochs=args.pretrain_epochs, lr=0.05, weight_decay=5e-4,
                                                        seed=args.seed, device="cpu", log_every=0, eval_split="none"))
        pretrain_s = time.perf_counter() - t
        ck.parent.mkdir(parents=True, exist_ok=True)
        save_pretrained(net, ck, info={"epochs": args.pretrain_epochs, "train_acc": res.history[-1].train_acc})
        print(f"pre-trained in {pretrain_s:.0f} s -> {ck}", flush=True)
    net, info = load_pretrained(ck, space)
    full_acc = evaluate(net, loaders.test)[1]
    print(f"pre-trained network: test accuracy {full_acc:.4f}", flush=True)
    if args.pretrain_only:
        return
    if args.loop_candidates:
        loop_candidates(Path(args.loop_candidates), net, loaders, calib)
        return
    config = PruneConfig(steps=args.steps, phase2_pass=args.phase2_pass, anchor=args.anchor)
    if args.sweep_only:
        sweep_only(args, space, net, config)
        return
    if args.screen_agreement:
        screen_agreement(args, space, net, config)
        return
    if args.tune_probe:
        tune_probe(args, space, net, config)
        return

    tune = FinetuneConfig(epochs=args.finetune_epochs, lr=args.finetune_lr, seed=args.seed, eval_split="none")
    scores = PrunedScores(net, loaders, calib, tune)
    accuracy, noise = scores.accuracy, scores.noise

    per_agent = {}
    started_utc = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())

    def save() -> None:   # after each agent, so a finished agent's figures survive a later one's failure
        write(f"prune_{args.dataset}_{'_'.join(args.agents.split(','))}{args.suffix}", {
            "model": {"space": "resnet18-narrow", **overrides, "input": list(space.input_shape),
                      "checkpoint": str(ck), "pretrain_epochs": args.pretrain_epochs, "pretrain_s": pretrain_s,
                      "test_acc": full_acc, "info": info},
            "setup": {"dataset": args.dataset, "train_images": len(datasets.train), "gate_images": len(datasets.val),
                      "test_images": len(datasets.test), "k": args.k, "fixed": args.fixed or args.k, "steps": args.steps, "aim": args.aim,
                      "threads": args.threads, "seed": args.seed, "config": dataclasses.asdict(config),
                      "finetune": dataclasses.asdict(tune),
                      "anchor": args.anchor, "gap": args.gap, "tries": args.tries, "recentre": args.recentre, "trim": args.trim, "confirm_k": args.confirm_k, "spread_prior": args.spread, "screen": args.screen, "finalists": args.finalists, "near": [args.near_lo, args.near_hi], "held_out_batches": args.held_out, "floor": args.floor,
                      "load_avg_during": os.getloadavg(), "started_utc": started_utc,
                      "written_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())},
            "agents": per_agent,
            "targets": {"monotone_violations": 0, "ratio_window": [0.9, 1.0], "time_ratio": 1.5,
                        "acc_diff_points": ">= -1"},
        })

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for agent in args.agents.split(","):
            sim = agent == "sim"
            lut_build = lut_settings(sim)
            statistic, rounds = lut_build.statistic, lut_build.repeats
            net_measure = network_measure(sim)
            t = time.perf_counter()
            with local_agent(agent, space, tmp, args.seed) as (store, client, latency):
                fid = run_fidelity(store, agent, [client], FidelityConfig(
                    space="resnet18-narrow", space_overrides={"in_channels": c, "input_size": h,
                                                              "num_classes": datasets.num_classes, **overrides},
                    networks=args.fidelity_networks, measure=net_measure, repeats=rounds, statistic=statistic,
                    seed=args.seed))
                corr = fid.correction
                lut_s = time.perf_counter() - t
                print(f"[{agent}] LUT + fidelity {lut_s:.0f} s; fidelity (CV) {100 * fid.corrected.within_10pct:.0f}%"
                      f" within 10 %, RMSPE {fid.corrected.rmspe:.1f} %; correction x{corr.scale:.3f} "
                      f"{corr.offset_ms:+.3f} ms", flush=True)

                # 1. one hypernetwork run and K members, chosen with the device in the loop
                exported: dict = {}

                def onnx_of(p) -> bytes:
                    if p not in exported:
                        exported[p] = attach(export_onnx(net.prune(p).eval(), space.input_shape), space, p)
                    return exported[p]

                loop_wall, loop_cpu = [0.0], [0.0]

                def on_device(measure):
                    """``measure()``, its wall and CPU time counted as the run's device loop."""
                    w0, p0 = time.perf_counter(), time.process_time()
                    out = measure()
                    loop_wall[0] += time.perf_counter() - w0
                    loop_cpu[0] += time.process_time() - p0
                    return out

                def window(p) -> float | None:
                    """One window on the device (the loop's measurement; never a reported figure)."""
                    r = on_device(lambda: client.benchmark(onnx_of(p), config=net_measure))
                    return window_value(r.latency, statistic) if r.status.measured and r.latency else None

                spread = args.spread if args.spread is not None else \
                    window_spread("raspi4", net_measure.min_runs) if sim else 0.01
                loads = {"before_run": os.getloadavg()}   # the 1/5/15-minute load averages beside the times
                t0, c0 = time.perf_counter(), time.process_time()
                res = search(space, latency, config, net=net, data=loaders, seed=args.seed, others=(ParamsCost(),))
                lo, hi = res.reachable()
                pred_lo, pred_hi = corr.apply(lo), corr.apply(hi)
                # the budgets spread over the family's reachable range as measured (its cheapest and dearest
                # networks); the predicted range put the lowest budget where no network is. The ends are measured
                # as every reported figure is (``rounds`` interleaved windows, the statistic): one window each
                # (before the ninth session) put the host's dearest network at 0.438 ms that measured 0.401 ms
                # afresh, so the top budget (0.461 ms) lay where no network reaches 0.9 x it
                ends = res.curve(res.grid(config.curve_points)).points
                end_ms = on_device(lambda: measure_rounds(
                    client, {"lo": onnx_of(ends[-1].genotype), "hi": onnx_of(ends[0].genotype)}, net_measure,
                    rounds, statistic))
                meas_lo, meas_hi = end_ms["lo"], end_ms["hi"]
                budgets = [(meas_lo + (meas_hi - meas_lo) * i / (args.k - 1)) / args.aim for i in range(args.k)]

                def to_lut(ms: float) -> float:
                    return min(max(corr.invert(ms), lo), hi)  # clamped: float round trip
                d0 = time.process_time()
                band = BandSearch(res, held_out, seed=args.seed, gap=args.gap, tune=args.tune, tune_at=args.tune_at,
                                  tune_batch=args.tune_batch, tune_batches=tune_batches, chain=args.chain,
                                  chain_refresh=args.chain_refresh)
                choices = device_members(band, [Budget("latency_ms", b) for b in budgets], corr, window,
                                         DeviceBandConfig(near=(args.near_lo, args.near_hi), tries=args.tries,
                                                          recentre=args.recentre, screen=args.screen,
                                                          finalists=args.finalists, k=args.confirm_k,
                                                          spread=spread, trim=args.trim),
                                         lut_floor=args.floor)
                members = [c.member for c in choices]
                band_cpu = time.process_time() - d0
                choice_passes = band.scorer.block_passes   # the held-out scoring's work (block forwards)
                run_tune = {"steps": band.tune_steps, "cpu_s": band.tune_cpu, "lambdas": len(band.tuned_lambdas),
                            "chain_batches": args.chain, "chain_refresh": args.chain_refresh,
                            "chain_cpu_s": band.chain_cpu}
                hyper_s, hyper_cpu = time.perf_counter() - t0, time.process_time() - c0
                loads["after_run"] = os.getloadavg()
                # the members measured afresh right after the run as well (new interleaved windows, step 4's protocol;
                # not the run's time): step 4 measures them again after the fixed prunings, minutes later, and on
                # the shared host its speed moved 5-12 % between the loop and step 4 (ninth session), so both are
                # reported; the target is judged on step 4's, as before
                after_run_ms = measure_rounds(client, {m.genotype.bits(): onnx_of(m.genotype) for m in members},
                                              net_measure, rounds, statistic)
                after_run_ratios = [after_run_ms[m.genotype.bits()] / b if after_run_ms[m.genotype.bits()] else None
                                    for m, b in zip(members, budgets)]
                # for the comparison only (not part of the run's time): bisection, and the LUT-only band members
                bisected = [res.for_budget(Budget("latency_ms", to_lut(args.aim * b))) for b in budgets]
                lut_choices = band_members(BandSearch(res, held_out, seed=args.seed, gap=args.gap),
                                           [(Budget("latency_ms", to_lut(0.98 * b)), to_lut(args.floor * b))
                                            for b in budgets])
                est = res.estimate
                print(f"[{agent}] hypernetwork {hyper_s:.0f} s (CPU {hyper_cpu:.0f} s; member choice CPU {band_cpu:.1f} s"
                      f" of which the device loop {loop_cpu[0]:.1f} s, {loop_wall[0]:.0f} s wall, tuning "
                      f"{run_tune['cpu_s']:.1f} s ({run_tune['steps']} steps at {run_tune['lambdas']} lambdas), chain "
                      f"{run_tune['chain_cpu_s']:.1f} s; "
                      f"{ {k: round(v, 1) for k, v in res.timings.items()} }); Lambda "
                      f"{res.Lambda:.3g} (sweep {est.sweep_Lambda:.3g}, Theorem 1 {est.theorem.theorem:.3g}); "
                      f"reachable LUT [{lo:.3f}, {hi:.3f}] ms, measured [{meas_lo:.3f}, {meas_hi:.3f}] ms; sources "
                      f"{[c.source for c in choices]}", flush=True)
                run_loop_wall, run_loop_cpu = loop_wall[0], loop_cpu[0]

                # 2. fixed-lambda prunings at the members' lambdas
                fixed = []
                n_fixed = min(args.fixed or args.k, args.k)
                at = sorted({round(i * (args.k - 1) / max(n_fixed - 1, 1)) for i in range(n_fixed)})
                for m in [members[i] for i in at]:
                    c1 = time.process_time()
                    f = prune_fixed(space, latency, m.tradeoff.scale, config, net=net, data=loaders, seed=args.seed)
                    fixed.append((f, time.process_time() - c1))
                    print(f"[{agent}] fixed lambda {f.lam:.3g}: {f.wall_s:.0f} s, LUT {f.costs['latency_ms']:.3f} ms",
                          flush=True)

                loads["after_fixed"] = os.getloadavg()
                # 3. each fixed network measured; the family's member at its measured latency, confirmed on the
                # device within [0.95, 1.0] x it (and, for the comparison, the LUT-only band member at its LUT
                # latency as before, on 4 held-out batches)
                fixed_ms = measure_rounds(client, {f.pattern.bits(): onnx_of(f.pattern) for f, _ in fixed},
                                          net_measure, rounds, statistic)
                def match(floor: float) -> list:
                    """Each fixed network's member: confirmed on the device within [floor, 1.0] x its latency."""
                    return [device_members(band, [Budget("latency_ms", fixed_ms[f.pattern.bits()])], corr, window,
                                           DeviceBandConfig(inner=(floor, 1.0), near=(args.near_lo, args.near_hi),
                                                            tries=args.tries, fallback=(floor, 1.0),
                                                            recentre=args.recentre, screen=args.screen,
                                                            finalists=args.finalists, k=0.0),
                                           lut_floor=args.floor)[0]
                            if fixed_ms[f.pattern.bits()] and meas_lo <= fixed_ms[f.pattern.bits()] <= meas_hi
                            else None for f, _ in fixed]
                matched = match(0.95)
                # sixth session: the member a user gets for a budget of the fixed network's latency under the
                # target's own window, [0.9, 1.0] x it (a member up to 10 % cheaper: in the fixed network's favour)
                matched_wide = match(args.match_floor) if args.match_floor != 0.95 else matched
                band4 = BandSearch(res, held_out[:4], seed=args.seed, gap=args.gap)
                matched_lut = [band4.member(Budget("latency_ms", f.costs["latency_ms"]),
                                            args.floor * f.costs["latency_ms"]).member
                               if lo <= f.costs["latency_ms"] <= hi else None for f, _ in fixed]
                # cause (c): candidates within the LUT band of [0.95, 1.0] x each fixed network's measured latency,
                # bracketed by the dense family alone (gap 0) and with the jumps bisected (--gap)
                dense_only = BandSearch(res, held_out, seed=args.seed, gap=0.0)

                def in_band(bs, fm):
                    a, b = to_lut(0.95 * fm), to_lut(fm)
                    return sum(a <= latency.genotype_cost(space, p) <= b for p in bs.around("latency_ms", a, b))
                gap_counts = [{"dense": in_band(dense_only, fixed_ms[f.pattern.bits()]),
                               "bisected": in_band(band, fixed_ms[f.pattern.bits()])}
                              if fixed_ms[f.pattern.bits()] and meas_lo <= fixed_ms[f.pattern.bits()] <= meas_hi
                              else None for f, _ in fixed]

                def jumps(bs):
                    c = [a.costs["latency_ms"] for a in res.curve(bs.scales("latency_ms")).points]
                    return {"points": len(c), "widest_ms": max(x - y for x, y in zip(c, c[1:])),
                            "widest_at_ms": max(zip(c, c[1:]), key=lambda xy: xy[0] - xy[1])}
                family_jumps = {"dense": jumps(dense_only), "bisected": jumps(band)}
                # the local search (prune.refine) from each matched member within the LUT band of [0.95, 1.0] x the
                # fixed network's measured latency: an experiment, outside the run's time, its CPU reported
                r0 = time.process_time()
                refined = [refine(band, mm.member.genotype, to_lut(0.95 * fixed_ms[f.pattern.bits()]),
                                  to_lut(fixed_ms[f.pattern.bits()])) if mm is not None else None
                           for (f, _), mm in zip(fixed, matched)]
                refine_cpu = time.process_time() - r0
                # 4. every distinct network measured afresh (new windows, interleaved): the reported figures
                patterns = {m.genotype for m in members} | {f.pattern for f, _ in fixed} | \
                    {x.pattern for x in refined if x is not None} | \
                    {m.member.genotype for m in matched + matched_wide if m is not None} | \
                    {m.genotype for m in matched_lut if m is not None} | {m.genotype for m in bisected} | \
                    {c.member.genotype for c in lut_choices}
                lat = measure_rounds(client, {p.bits(): onnx_of(p) for p in patterns}, net_measure, rounds,
                                     statistic)
                grid = res.curve()
                lat.update(measure_rounds(client, {a.genotype.bits(): onnx_of(a.genotype) for a in grid.points
                                                   if a.genotype.bits() not in lat}, net_measure, rounds, statistic))

            try:   # a long run's measurements are kept even if its summary fails
                def other(m, b):
                    ms = lat[m.genotype.bits()]
                    return {"pattern": m.genotype.bits(), "lut_ms": m.costs["latency_ms"], "measured_ms": ms,
                            "ratio": ms / b if ms else None, "test_acc": accuracy(m.genotype)}

                rows = []
                for i, (b, ch, bm, lc) in enumerate(zip(budgets, choices, bisected, lut_choices)):
                    m = ch.member
                    ms = lat[m.genotype.bits()]
                    rows.append({"budget_ms": b, "lambda": m.tradeoff.scale, "pattern": m.genotype.bits(),
                                 "source": ch.source, "candidates_near": ch.candidates, "val_loss": ch.val_loss,
                                 "loop": [w.to_dict() for w in ch.loop], "loop_ms": ch.loop_ms,
                                 "spread": ch.spread, "accepted": list(ch.accepted) if ch.accepted else None,
                                 "lut_ms": m.costs["latency_ms"], "predicted_ms": corr.apply(m.costs["latency_ms"]),
                                 "measured_ms": ms, "ratio": ms / b if ms else None, "test_acc": accuracy(m.genotype),
                                 "params_m": m.costs["params_m"],
                                 "bisection": other(bm, b),
                                 "lut_band": {**other(lc.member, b), "source": lc.source}})
                pairs = []
                for (f, f_cpu), mm, mw, ml, rf, gc in zip(fixed, matched, matched_wide, matched_lut, refined, gap_counts):
                    fm = fixed_ms[f.pattern.bits()]
                    pair = {"lambda": f.lam, "fixed_pattern": f.pattern.bits(), "fixed_lut_ms": f.costs["latency_ms"],
                            "fixed_measured_ms": fm, "fixed_measured_again_ms": lat[f.pattern.bits()],
                            "fixed_test_acc": accuracy(f.pattern), "fixed_wall_s": f.wall_s, "fixed_cpu_s": f_cpu,
                            # the diagnosis: is the fixed network better on the held-out loss the member is chosen by
                            # (then the hypernetwork never produced it), or only on the test split?
                            "fixed_val_loss": band.loss(f.pattern), "candidates_in_lut_band": gc}
                    if mm is not None:
                        g = mm.member.genotype
                        pair.update({"member_pattern": g.bits(), "member_source": mm.source, "member_tuned": band.was_tuned(g),
                                     "member_chain": band.was_chained(g),
                                     "member_loop": [w.to_dict() for w in mm.loop],
                                     "member_lut_ms": mm.member.costs["latency_ms"], "member_measured_ms": lat[g.bits()],
                                     "member_test_acc": accuracy(g), "member_val_loss": mm.val_loss,
                                     "acc_diff_points": 100 * (accuracy(g) - accuracy(f.pattern)),
                                     "noise": noise(g, f.pattern)})
                    if mw is not None and args.match_floor != 0.95:
                        g = mw.member.genotype
                        pair["target_band_member"] = {
                            "floor": args.match_floor, "pattern": g.bits(), "source": mw.source,
                            "val_loss": mw.val_loss, "loop": [w.to_dict() for w in mw.loop],
                            "measured_ms": lat[g.bits()], "ratio_to_fixed": lat[g.bits()] / fm if lat[g.bits()] and fm
                            else None, "test_acc": accuracy(g), "acc_diff_points": 100 * (accuracy(g) - accuracy(f.pattern)),
                            "noise": noise(g, f.pattern)}
                    if rf is not None:
                        rms = lat[rf.pattern.bits()]
                        pair["refined"] = {"pattern": rf.pattern.bits(), "val_loss": rf.val_loss,
                                           "start_loss": rf.start_loss, "moves": rf.moves, "scored": rf.scored,
                                           "lut_ms": latency.genotype_cost(space, rf.pattern), "measured_ms": rms,
                                           "ratio_to_fixed": rms / fm if rms and fm else None,
                                           "test_acc": accuracy(rf.pattern),
                                           "acc_diff_points": 100 * (accuracy(rf.pattern) - accuracy(f.pattern))}
                    if ml is not None:
                        pair["lut_band_4_batches"] = {"pattern": ml.genotype.bits(), "measured_ms": lat[ml.genotype.bits()],
                                                      "test_acc": accuracy(ml.genotype),
                                                      "acc_diff_points": 100 * (accuracy(ml.genotype) - accuracy(f.pattern))}
                    pairs.append(pair)
                # both networks of every matched pair fine-tuned alike (outside the run's time; its CPU reported)
                t0_tune = time.process_time()
                if args.finetune_epochs:
                    for (f, _), mm, pair in zip(fixed, matched, pairs):
                        if mm is None:
                            continue
                        g = mm.member.genotype
                        ta, tb = scores.tuned_accuracy(g), scores.tuned_accuracy(f.pattern)
                        pair["finetuned"] = {"epochs": args.finetune_epochs, "member_test_acc": ta, "fixed_test_acc": tb,
                                             "acc_diff_points": 100 * (ta - tb),
                                             "noise": noise(g, f.pattern, tuned=True)}
                        print(f"[{agent}] fine-tuned pair at lambda {f.lam:.3g}: member {ta:.4f} (was "
                              f"{accuracy(g):.4f}), fixed {tb:.4f} (was {accuracy(f.pattern):.4f})", flush=True)
                tune_cpu = time.process_time() - t0_tune
                print(f"[{agent}] pairs: candidates in the LUT band dense / bisected "
                      f"{[(q['candidates_in_lut_band'] or {}).get('dense') for q in pairs]} / "
                      f"{[(q['candidates_in_lut_band'] or {}).get('bisected') for q in pairs]}; SE of a difference "
                      f"(paired) {[round(q['noise']['se_diff_paired'], 2) for q in pairs if 'noise' in q]} points", flush=True)
                measured = [r["measured_ms"] for r in rows]
                ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
                bisect_ratios = [r["bisection"]["ratio"] for r in rows if r["bisection"]["ratio"] is not None]
                bisect_ms = [r["bisection"]["measured_ms"] for r in rows]
                diffs = [q["acc_diff_points"] for q in pairs if "acc_diff_points" in q]
                diffs_lut = [q["lut_band_4_batches"]["acc_diff_points"] for q in pairs if "lut_band_4_batches" in q]
                diffs_ref = [q["refined"]["acc_diff_points"] for q in pairs if "refined" in q]
                diffs_wide = [q["target_band_member"]["acc_diff_points"] for q in pairs if "target_band_member" in q]
                diffs_tuned = [q["finetuned"]["acc_diff_points"] for q in pairs if "finetuned" in q]
                lut_ratios = [r["lut_band"]["ratio"] for r in rows if r["lut_band"]["ratio"] is not None]
                lut_ms = [r["lut_band"]["measured_ms"] for r in rows]
                fixed_wall = statistics.median(f.wall_s for f, _ in fixed)
                fixed_cpu = statistics.median(cpu for _, cpu in fixed)
                grid_ms = [lat[a.genotype.bits()] for a in grid.points]
                per_agent[agent] = {
                    "statistic": statistic, "rounds": rounds, "spread_prior": spread, "lut_and_fidelity_s": lut_s, "load_avg": loads,
                    "fidelity": {"raw": fid.raw.to_dict(), "corrected_cv": fid.corrected.to_dict(),
                                 "correction": corr.to_dict(), "networks": args.fidelity_networks},
                    "Lambda": res.Lambda, "estimate": est.to_dict(), "phase1": res.phase1, "timings": res.timings,
                    "reachable_lut_ms": [lo, hi], "reachable_predicted_ms": [pred_lo, pred_hi],
                    "members_tuned": [band.was_tuned(m.genotype) for m in members],
                    "members_chain": [band.was_chained(m.genotype) for m in members],
                    "members": rows, "distinct_members": len({r["pattern"] for r in rows}),
                    "monotone_violations_measured": sum(1 for a, b in zip(measured, measured[1:]) if b < a),
                    "ratio_in_window": sum(0.9 <= x <= 1.0 for x in ratios), "ratios": ratios,
                    "right_after_run": {"ratios": after_run_ratios,
                                        "ratio_in_window": sum(x is not None and 0.9 <= x <= 1.0 for x in after_run_ratios)},
                    "bisection_only": {"ratio_in_window": sum(0.9 <= x <= 1.0 for x in bisect_ratios),
                                       "ratios": bisect_ratios,
                                       "distinct_members": len({r["bisection"]["pattern"] for r in rows}),
                                       "monotone_violations_measured": sum(1 for a, b in zip(bisect_ms, bisect_ms[1:])
                                                                           if b < a)},
                    "lut_band_only": {"ratio_in_window": sum(0.9 <= x <= 1.0 for x in lut_ratios), "ratios": lut_ratios,
                                      "monotone_violations_measured": sum(1 for a, b in zip(lut_ms, lut_ms[1:]) if b < a),
                                      "acc_diff_points": diffs_lut,
                                      "within_1_point_or_better": sum(d >= -1.0 for d in diffs_lut)},
                    "target_band_matched": {"floor": args.match_floor, "acc_diff_points": diffs_wide,
                                            "within_1_point_or_better": sum(d >= -1.0 for d in diffs_wide),
                                            "pairs": len(fixed)} if args.match_floor != 0.95 else None,
                    "refined": {"acc_diff_points": diffs_ref, "within_1_point_or_better": sum(d >= -1.0 for d in diffs_ref),
                                "ratios_to_fixed": [q["refined"]["ratio_to_fixed"] for q in pairs if "refined" in q],
                                "cpu_s": refine_cpu},
                    "measured_reachable_ms": [meas_lo, meas_hi],
                    "member_choice_cpu_s": band_cpu, "member_choice_tune": run_tune, "member_choice_block_passes": choice_passes, "device_loop_wall_s": run_loop_wall, "device_loop_cpu_s": run_loop_cpu,
                    "time_ratio_cpu_without_device_loop": (hyper_cpu - run_loop_cpu) / fixed_cpu,
                    "hypernet_wall_s": hyper_s, "hypernet_cpu_s": hyper_cpu, "fixed_median_wall_s": fixed_wall,
                    "fixed_median_cpu_s": fixed_cpu, "time_ratio_wall": hyper_s / fixed_wall,
                    "time_ratio_cpu": hyper_cpu / fixed_cpu, "matched": pairs, "acc_diff_points": diffs,
                    "within_1_point_or_better": sum(d >= -1.0 for d in diffs), "family_jumps": family_jumps,
                    "finetuned": {"epochs": args.finetune_epochs, "acc_diff_points": diffs_tuned,
                                  "within_1_point_or_better": sum(d >= -1.0 for d in diffs_tuned),
                                  "cpu_s": tune_cpu} if args.finetune_epochs else None,
                    "lambda0_member": {"pattern": res.architecture(0.0).genotype.bits(),
                                       "val_loss": band.loss(res.architecture(0.0).genotype),
                                       "test_acc": accuracy(res.architecture(0.0).genotype)},
                    "grid": {"lambdas": [a.tradeoff.scale for a in grid.points],
                             "patterns": [a.genotype.bits() for a in grid.points],
                             "lut_ms": [a.costs["latency_ms"] for a in grid.points], "measured_ms": grid_ms,
                             "raw_violations": grid.raw_violations,
                             "distinct": len({a.genotype for a in grid.raw})},
                }
                print(f"[{agent}] LUT-only band: {per_agent[agent]['lut_band_only']['ratio_in_window']}/{len(lut_ratios)}"
                      f" in [0.9, 1.0] ({', '.join(f'{x:.3f}' for x in lut_ratios)}); accuracy diffs "
                      f"{', '.join(f'{d:+.1f}' for d in diffs_lut)}", flush=True)
                if args.match_floor != 0.95:
                    wide_ratios = [q["target_band_member"]["ratio_to_fixed"] or float("nan") for q in pairs
                                   if "target_band_member" in q]
                    print(f"[{agent}] matched in [{args.match_floor}, 1.0] x the fixed network's latency: accuracy diffs "
                          f"{', '.join(f'{d:+.1f}' for d in diffs_wide)}; measured / fixed "
                          f"{', '.join(f'{x:.3f}' for x in wide_ratios)}", flush=True)
                print(f"[{agent}] refined matched members ({refine_cpu:.1f} s CPU): accuracy diffs "
                      f"{', '.join(f'{d:+.1f}' for d in diffs_ref)}; measured / fixed "
                      f"{', '.join(f'{x:.3f}' for x in per_agent[agent]['refined']['ratios_to_fixed'] if x)}", flush=True)
                print(f"[{agent}] bisection alone: {per_agent[agent]['bisection_only']['ratio_in_window']}/{len(bisect_ratios)}"
                      f" in [0.9, 1.0] ({', '.join(f'{x:.3f}' for x in bisect_ratios)})", flush=True)
                print(f"[{agent}] right after the run: {per_agent[agent]['right_after_run']['ratio_in_window']}/"
                      f"{len(after_run_ratios)} in [0.9, 1.0] ({', '.join(f'{x:.3f}' if x else '-' for x in after_run_ratios)})",
                      flush=True)
                print(f"[{agent}] ratios {', '.join(f'{x:.3f}' for x in ratios)}; {per_agent[agent]['ratio_in_window']}/"
                      f"{len(ratios)} in [0.9, 1.0]; monotone violations "
                      f"{per_agent[agent]['monotone_violations_measured']}; time ratio wall "
                      f"{per_agent[agent]['time_ratio_wall']:.2f}, CPU {per_agent[agent]['time_ratio_cpu']:.2f}; "
                      f"accuracy diffs {', '.join(f'{d:+.1f}' for d in diffs)}" + (
                          f"; fine-tuned alike ({args.finetune_epochs} epochs, {tune_cpu:.0f} s CPU): "
                          f"{', '.join(f'{d:+.1f}' for d in diffs_tuned)}" if args.finetune_epochs else ""), flush=True)
                plot(RESULTS / f"prune_{args.dataset}_{agent}{args.suffix}.png", res, per_agent[agent], full_acc)
            except Exception as err:  # noqa: BLE001
                import traceback
                traceback.print_exc()
                per_agent[agent] = {"error": repr(err), "measured_ms": lat, "budgets": budgets,
                                    "choices": [c.to_dict() for c in choices]}
            save()



def window_spread(profile: str, runs: int) -> float:
    """The relative spread of one window's median on a simulated device, from its profile's noise: the run-to-run
    offset (``run_cv``) and the median of ``runs`` lognormal samples (``cv``; the median's standard error is
    sqrt(pi / 2) x cv / sqrt(runs) for near-normal samples). The raspi4 profile at 20 runs: 1.31 %."""
    import math

    from hilnas.agent.sim.profile import load_profile
    noise = load_profile(profile).noise
    return math.hypot(noise.run_cv, math.sqrt(math.pi / 2) * noise.cv / math.sqrt(runs))


def lut_settings(sim: bool):
    """How the benchmark builds an agent's LUT: the simulated Pi one window of each key (the median), the host 3
    interleaved passes (the fastest run)."""
    from hilnas.agent.config import MeasureConfig
    from hilnas.server.lut.builder import LutBuildConfig

    return LutBuildConfig(measure=MeasureConfig(warmup_runs=3, min_runs=10, min_seconds=0.05 if sim else 0.2, threads=1),
                          repeats=1 if sim else 3, statistic="median" if sim else "min")


def network_measure(sim: bool):
    """How the benchmark measures a whole network: one window (the loop's), or one window per round (the figures)."""
    from hilnas.agent.config import MeasureConfig

    return MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.1 if sim else 0.3, threads=1)


@contextlib.contextmanager
def local_agent(agent: str, space, tmp: Path, seed: int):
    """The benchmark's agent in this process on loopback (``sim``: a simulated Raspberry Pi 4; ``host``: this machine,
    ONNX Runtime), a workspace and a client, with the LUT of ``space``'s module keys built as the run builds it
    (``lut_settings``): yields (store, client, that LUT as a latency cost model, T(e))."""
    from hilnas.agent.config import ServeConfig
    from hilnas.agent.server import create_server
    from hilnas.searchers.cost import LutLatencyCost
    from hilnas.server.client import AgentClient, ClientConfig
    from hilnas.server.lut.builder import LutBuilder
    from hilnas.server.lut.micromodels import MicroModels
    from hilnas.server.store import Store
    from hilnas.server.validation import lut_values

    sim = agent == "sim"
    settings = lut_settings(sim)
    running = create_server(ServeConfig(port=0, cache_dir=str(tmp / f"cache-{agent}"),
                                        simulate="raspi4" if sim else None, seed=seed))
    try:
        with Store.open(tmp / f"ws-{agent}") as store, \
                AgentClient(ClientConfig(address=f"127.0.0.1:{running.port}")) as client:
            LutBuilder(store, agent, [client], settings).build(MicroModels.keys_for_space(space),
                                                               MicroModels(tmp / "micro").onnx)
            yield store, client, LutLatencyCost(lut_values(store, store.find_lut(agent), statistic=settings.statistic))
    finally:
        running.stop(0)


def sim_lut(space, seed: int):
    """The simulated Pi's LUT of ``space``'s module keys, as the run builds it (``lut_settings``)."""
    with tempfile.TemporaryDirectory() as tmp, local_agent("sim", space, Path(tmp), seed) as (_, _, latency):
        return latency


def sweep_only(args, space, net, config) -> None:
    """Phase 1, the lambda sweep and Theorem 1 on the simulated Pi's LUT (phase 2 cut to one step), with the
    defaults and with --sweep-min / --sweep-points: Lambda, the sweep's patterns and CPU side by side (seventh
    session: which sweep settings keep Lambda)."""
    from hilnas.searchers.prune.search import search

    latency = sim_lut(space, args.seed)
    variants = {"default": dataclasses.replace(config, steps=1)}
    changed = {k: v for k, v in (("sweep_min", args.sweep_min), ("sweep_points", args.sweep_points)) if v is not None}
    if changed:
        variants["changed"] = dataclasses.replace(config, steps=1, **changed)
    out = {}
    for name, cfg in variants.items():   # fresh loaders each: the same held-out and training batches in the same order
        res = search(space, latency, cfg, net=net, data=dataset(args.dataset, args.seed)[1], seed=args.seed)
        est = res.estimate
        out[name] = {"sweep_min": cfg.sweep_min, "sweep_points": cfg.sweep_points, "Lambda": est.Lambda,
                     "theorem_Lambda": est.theorem.Lambda, "timings": res.timings,
                     "points": [{"lambda": q.lam, "pattern": q.pattern.bits(), "fraction": q.fraction,
                                 "accuracy": q.accuracy} for q in est.points]}
        print(f"{name}: Lambda {est.Lambda:.4g}; sweep CPU {res.timings['sweep_cpu']:.1f} s, Theorem 1 "
              f"{res.timings['theorem_cpu']:.1f} s; points "
              f"{[(round(q.lam, 3), round(q.accuracy, 3), round(q.fraction, 3)) for q in est.points]}", flush=True)
    write(f"prune_{args.dataset}_sweep{args.suffix}", {"setup": {"dataset": args.dataset, "seed": args.seed,
                                                                  "load_avg": os.getloadavg()}, "variants": out})


def screen_agreement(args, space, net, config) -> None:
    """One hypernetwork run on the simulated Pi's LUT, then the member choice (``prune.confirm``) for --k budgets over
    the family's LUT range with a device that measures every network at its LUT sum (so only the ranking decides),
    under each screen: (--screen, --finalists) and the cheaper settings beside it. Which members each picks, the
    candidates it tried in order, its block passes and CPU (seventh session: what precision the choice needs)."""
    from hilnas.searchers.prune.band import BandSearch
    from hilnas.searchers.prune.confirm import DeviceBandConfig, device_members
    from hilnas.searchers.prune.search import search
    from hilnas.searchers.result import Budget
    from hilnas.server.lut.predict import Correction

    latency = sim_lut(space, args.seed)
    data = dataset(args.dataset, args.seed)[1]
    held_out = [b for _, b in zip(range(args.held_out), data.val)]
    res = search(space, latency, config, net=net, data=data, seed=args.seed)
    lo, hi = res.reachable()
    budgets = [Budget("latency_ms", (lo + (hi - lo) * i / (args.k - 1)) / args.aim) for i in range(args.k)]
    model = res.models["latency_ms"]
    out = {}
    for screen, finalists in dict.fromkeys([(args.screen, args.finalists), (1, args.finalists),
                                            (args.screen, args.finalists - 1), (1, args.finalists - 1), (0, 8)]):
        band = BandSearch(res, held_out, seed=args.seed, gap=args.gap)
        c0 = time.process_time()
        chosen = device_members(band, budgets, Correction(), lambda p: model.genotype_cost(space, p),
                                DeviceBandConfig(near=(args.near_lo, args.near_hi), tries=args.tries,
                                                 recentre=args.recentre, screen=screen, finalists=finalists,
                                                 k=0.0), lut_floor=args.floor)
        out[f"screen{screen}_finalists{finalists}"] = {
            "cpu_s": time.process_time() - c0, "block_passes": band.scorer.block_passes,
            "members": [c.member.genotype.bits() for c in chosen], "sources": [c.source for c in chosen],
            "tried": [[w.pattern.bits() for w in c.loop] for c in chosen],
            "val_loss": [c.val_loss for c in chosen]}
        print(f"screen {screen}, finalists {finalists}: CPU {out[f'screen{screen}_finalists{finalists}']['cpu_s']:.1f}"
              f" s, {band.scorer.block_passes} block passes, sources {[c.source for c in chosen]}", flush=True)
    base = out[f"screen{args.screen}_finalists{args.finalists}"]
    for name, v in out.items():
        v["same_members"] = sum(a == b for a, b in zip(v["members"], base["members"]))
        v["same_tried"] = sum(a == b for a, b in zip(v["tried"], base["tried"]))
        print(f"{name}: {v['same_members']} of {args.k} members and {v['same_tried']} tried orders as "
              f"screen {args.screen} / finalists {args.finalists}", flush=True)
    write(f"prune_{args.dataset}_screen_agreement{args.suffix}", {
        "setup": {"dataset": args.dataset, "seed": args.seed, "k": args.k, "steps": config.steps,
                  "held_out_batches": args.held_out, "tries": args.tries, "recentre": args.recentre,
                  "load_avg": os.getloadavg(), "Lambda": res.Lambda, "timings": res.timings}, "variants": out})


def tune_probe(args, space, net, config) -> None:
    """Cause (ii) measured on the gates' split alone (eighth session): one hypernetwork run on the simulated Pi's LUT,
    then for each matched pair of ``--tune-probe RESULT`` the candidates within the LUT band [0.95, 1.0] x the fixed
    network's LUT sum, without and with ``--tune`` steps of ``refine.tuned`` at the bracket's ends (on the gates' split
    less the held-out batches): how many lie in the band and the least held-out loss among them, against the fixed
    network's held-out loss (the same batches). No test data; the setting is chosen on this."""
    import json

    from hilnas.searchers.prune.band import BandSearch
    from hilnas.searchers.prune.search import search
    from hilnas.searchers.spaces.resnet import GatePattern

    stored = json.loads(Path(args.tune_probe).read_text())["agents"]["sim"]["matched"]
    latency = sim_lut(space, args.seed)
    data = dataset(args.dataset, args.seed)[1]
    held_out = [b for _, b in zip(range(args.held_out), data.val)]
    rest = list(itertools.islice(data.val, args.held_out, None))
    c0 = time.process_time()
    res = search(space, latency, config, net=net, data=data, seed=args.seed)
    run_cpu = time.process_time() - c0
    out = {"run_cpu_s": run_cpu, "timings": res.timings, "Lambda": res.Lambda, "variants": {}}
    fixed = [(q, fp, latency.genotype_cost(space, fp))   # each pair's fixed pattern and its LUT sum, read once
             for q, fp in ((q, GatePattern.from_bits(q["fixed_pattern"])) for q in stored)]
    variants = [(0, "ends", None, 0)] + [(int(t), at, None if b == "all" else int(b), 0)
                                         for t, at, b in (v.split(":") for v in args.tune_variants)]
    # ninth session: the chain on n batches, alone and beside the eighth session's default tuning
    variants = [(*v, 1) for v in variants]
    variants += [v for n, rf in args.chain_variants for v in ((0, "ends", None, n, rf), (12, "ends", None, n, rf))]
    for t, at, tb, n, rf in variants:
        band = BandSearch(res, held_out, seed=args.seed, tune=t, tune_batches=rest, tune_at=at, tune_batch=tb, chain=n,
                          chain_refresh=rf)
        c0 = time.process_time()
        pairs = []
        band.prepare("latency_ms", [(0.95 * c, c) for _, _, c in fixed])
        for q, fp, c in fixed:
            found = band.around("latency_ms", 0.95 * c, c)
            inside = [p for p in found if 0.95 * c <= latency.genotype_cost(space, p) <= c]
            losses = band.losses(inside) if inside else {}
            best = min(inside, key=losses.__getitem__) if inside else None
            pairs.append({"lambda": q["lambda"], "fixed_lut_ms": c, "fixed_val_loss": band.loss(fp),
                          "candidates": len(found), "in_band": len(inside),
                          "tuned_in_band": sum(found[p][1] == "tuned" for p in inside),
                          "chain_in_band": sum(found[p][1] == "chain" for p in inside),
                          "best_val_loss": losses[best] if best else None, "best_source": found[best][1] if best else None,
                          "best_pattern": best.bits() if best else None, "best_lambda": found[best][0] if best else None,
                          "tuned_lambdas": sorted({lam for p, (lam, how) in found.items() if how == "tuned" and p in inside})})
        cpu = time.process_time() - c0
        name = "_".join(([f"tune{t}_{at}_{tb or 'all'}"] if t or not n else []) + ([f"chain{n}r{rf}"] if n else []))
        out["variants"][name] = {"cpu_s": cpu, "tune_steps_taken": band.tune_steps, "chain_cpu_s": band.chain_cpu,
                                 "pairs": pairs}
        print(f"{name}: {band.tune_steps} steps, {cpu:.1f} s CPU (chain {band.chain_cpu:.1f} s); " + "; ".join(
            f"lam {q['lambda']:.3g}: fixed {q['fixed_val_loss']:.3f} best "
            f"{q['best_val_loss'] if q['best_val_loss'] is None else round(q['best_val_loss'], 3)} "
            f"({q['in_band']} in band, {q['tuned_in_band']} tuned, {q['chain_in_band']} chain, {q['best_source']})"
            for q in pairs), flush=True)
    write(f"prune_{args.dataset}_tune_probe{args.suffix}", {
        "setup": {"dataset": args.dataset, "seed": args.seed, "from": args.tune_probe, "held_out_batches": args.held_out,
                  "load_avg": os.getloadavg()}, **out})


def loop_candidates(path: Path, net, loaders, calib) -> None:
    """Why a matched member loses un-tuned accuracy (issue 12, sixth session): for each matched pair of ``path``, every
    candidate the device loop tried for it (least held-out loss first), with its held-out loss, its windows as a share
    of the fixed network's measured latency, and its test accuracy (pre-trained weights, BatchNorm re-estimated on
    the same 20 training batches as the pairs'; checked: the fixed network's accuracy is reproduced)."""
    import json

    from hilnas.searchers.spaces.resnet import GatePattern

    scores = PrunedScores(net, loaders, calib)

    def acc(bits: str) -> float:
        return scores.accuracy(GatePattern.from_bits(bits))

    data = json.loads(path.read_text())
    out: dict = {"source": str(path), "agents": {}}
    for agent, r in data["agents"].items():
        pairs = []
        for q in r.get("matched", []):
            if "member_pattern" not in q:
                continue
            fm, fixed_acc = q["fixed_measured_ms"], acc(q["fixed_pattern"])
            tried = [{"pattern": w["pattern"], "val_loss": w["val_loss"], "confirmed": w["confirmed"],
                      "windows_per_fixed": [v / fm if v else None for v in w["windows_ms"]],
                      "test_acc": acc(w["pattern"])} for w in q["member_loop"]]
            for w in tried:
                w["acc_diff_points"] = 100 * (w["test_acc"] - fixed_acc)
            pairs.append({"lambda": q["lambda"], "fixed_val_loss": q["fixed_val_loss"], "fixed_test_acc": fixed_acc,
                          "fixed_test_acc_reproduced": abs(fixed_acc - q["fixed_test_acc"]) < 1e-9,
                          "member_source": q["member_source"], "member_val_loss": q["member_val_loss"],
                          "member_acc_diff_points": q["acc_diff_points"], "tried": tried})
            print(f"[{agent}] lambda {q['lambda']:.3g}: member {q['acc_diff_points']:+.1f} ({q['member_source']}); tried "
                  + ", ".join(f"{w['val_loss']:.3f}/{w['acc_diff_points']:+.1f}@"
                              f"{'/'.join(f'{v:.3f}' for v in w['windows_per_fixed'] if v)}" for w in tried), flush=True)
        out["agents"][agent] = pairs
    write(path.stem + "_loop_candidates", out)


def plot(path: Path, res, data: dict, full_acc: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hilnas.server.search.prune import draw_sweep

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    draw_sweep(a1, res.estimate)   # the same panel as the run's own sweep plot
    rows = data["members"]
    a2.plot([r["measured_ms"] for r in rows], [r["test_acc"] for r in rows], "o-", label="family members (budgets)")
    pts = [q for q in data["matched"]]
    a2.plot([q["fixed_measured_ms"] for q in pts], [q["fixed_test_acc"] for q in pts], "x", ms=8,
            label="fixed-lambda prunings")
    tuned = [q for q in pts if "finetuned" in q]
    if tuned:
        a2.plot([q["member_measured_ms"] for q in tuned], [q["finetuned"]["member_test_acc"] for q in tuned], "s",
                mfc="none", label=f"matched members, fine-tuned ({tuned[0]['finetuned']['epochs']} epochs)")
        a2.plot([q["fixed_measured_ms"] for q in tuned], [q["finetuned"]["fixed_test_acc"] for q in tuned], "+", ms=9,
                label="fixed-lambda prunings, fine-tuned alike")
    a2.axhline(full_acc, color="k", lw=0.5, ls=":", label="unpruned")
    a2.set_xlabel("measured latency (ms)")
    a2.set_ylabel("test accuracy (lines and x: no fine-tuning)")
    a2.set_title("accuracy vs measured latency", fontsize=9)
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
