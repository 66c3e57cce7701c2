"""Why a member misses the matched rule: the loop's choice, the family, or what held-out loss cannot see (issue 12).

    .venv/bin/python benchmarks/prune_miss_causes.py benchmarks/results/prune_*_matched_s10.json [--delta 0.01]

``bench_prune_matched.py`` judges each member of a pruning family against the best fixed-lambda pruning measured near
its latency. A miss has one of three causes, told apart by the held-out loss the run itself ranks candidates with
(``prune.score.HeldOutLoss`` on the first ``held_out_batches`` batches of the gates' split: the pruned network, the
frozen weights, BatchNorm on batch statistics), here recomputed for the member, the fixed network that beat it (its
best rival) and every candidate the device loop measured for the member (the source result's ``loop``). "In band":
a tried candidate whose every loop window lay within the target band the source result was judged on
(``targets.ratio_window``, issue 12's [0.9, 1.0] x the budget).

- ``loop``: the loop measured a candidate in band whose held-out loss lay more than ``delta`` below the member's,
  and took the member instead. The loop takes a candidate only when its windows say a fresh measurement will land
  in the band too (``prune.confirm``: both windows in its inner band, their mean a margin of the window's spread
  inside), so here the band's confirmation turned down the better-ranked candidate;
- ``family``: else, the rival's held-out loss lies more than ``delta`` below the member's and every in-band tried
  candidate's: the hypernetwork produced nothing near this budget that the run's own score rates as the rival;
- ``ranking``: else, the member's held-out loss is within ``delta`` of the rival's or below it: the test split
  tells them apart, the held-out batches did not.

Beside each: the held-out loss on the rest of the gates' split (batches no candidate was ranked with), the tried
candidates' windows as shares of the budget and their test accuracies (pre-trained weights, BatchNorm re-estimated
as the matched pairs'), and for a ``loop`` miss whether the candidate passed over would have passed the rule against
the same rival (``passed_over``) — reported, never used to classify. Every judged member (pass or miss) is listed;
only misses get a cause. The run's own pre-trained network is needed (refused when its checkpoint is missing or
another). No device, no training.
Writes <MATCHED's name>_causes.json.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

CAUSES = ("loop", "family", "ranking")


def in_band(windows: list[float | None], budget: float, band: tuple[float, float]) -> bool:
    """Every loop window of a candidate measured, and within ``band`` x ``budget``."""
    return bool(windows) and all(w is not None and band[0] * budget <= w <= band[1] * budget for w in windows)


def cause(member: float, rival: float, tried_in_band: list[float], delta: float) -> str:
    """A miss's cause from held-out losses (nats): the member's, its best rival's and those of the candidates the
    loop measured in band (the module doc)."""
    if tried_in_band and min(tried_in_band) < member - delta:
        return "loop"
    if rival < min([member, *tried_in_band]) - delta:
        return "family"
    return "ranking"


def best_rival(row: dict, pool: list[dict]) -> dict | None:
    """The pool's network a matched member row was judged against (its recorded latency and accuracy)."""
    for p in pool:
        if p.get("measured_ms") == row.get("best_rival_ms") and p.get("test_acc") == row.get("best_rival_acc"):
            return p
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("matched", nargs="+", help="bench_prune_matched.py result files")
    p.add_argument("--delta", type=float, default=0.01,
                   help="held-out loss (nats) within which two networks count as ranked alike (default 0.01)")
    args = p.parse_args()
    if args.delta < 0:
        p.error(f"--delta must be >= 0, got {args.delta}")

    loaded = []
    for path in map(Path, args.matched):   # every file read before any network is loaded
        try:
            matched = json.loads(path.read_text())
            source = json.loads(Path(matched["source"]).read_text())
            members, pool = matched["members"], matched["pool"]
            run = next(iter(source["agents"].values()))
            held = source["setup"]["held_out_batches"]
            target = tuple(source["targets"]["ratio_window"])
        except (OSError, ValueError, KeyError, StopIteration) as err:
            p.error(f"{path} is not a bench_prune_matched.py result file with its source result beside it: {err}")
        loaded.append((path, matched, source, members, pool, run, held, target))

    from _prune_scores import PrunedScores
    from bench_prune import recorded_network
    from hilnas.searchers.prune.gates import freeze
    from hilnas.searchers.prune.score import HeldOutLoss
    from hilnas.searchers.spaces.resnet import GatePattern

    totals: collections.Counter = collections.Counter()
    for path, matched, source, members, pool, run, held, target in loaded:
        loaders, _, net = recorded_network(source)
        scores = PrunedScores(net, loaders, [b for _, b in zip(range(20), loaders.train)])
        val = list(loaders.val)
        ranked_on, rest = HeldOutLoss(freeze(net), val[:held]), HeldOutLoss(net, val[held:])

        def losses(bits: str) -> dict:
            g = GatePattern.from_bits(bits)
            return {"held_out": ranked_on(g), "rest_of_split": rest(g)}

        rows = []
        for m in members:
            if m["verdict"] not in ("pass", "miss"):
                continue
            rival = best_rival(m, pool)
            if rival is None:
                p.error(f"{path}: member {m['member']}'s best rival is not in the pool")
            loop = run["members"][m["member"]]["loop"]
            b = m["budget_ms"]
            tried = [{"pattern": w["pattern"], "windows_x_budget": [v / b if v else None for v in w["windows_ms"]],
                      "in_band": in_band(w["windows_ms"], b, target), **losses(w["pattern"]),
                      "test_acc": scores.accuracy(GatePattern.from_bits(w["pattern"]))} for w in loop]
            inside = [t for t in tried if t["in_band"]]
            row = {"member": m["member"], "verdict": m["verdict"], "acc_diff_points": m["acc_diff_points"],
                   "budget_ms": m["budget_ms"], "source": run["members"][m["member"]]["source"],
                   "pattern": m["pattern"], **losses(m["pattern"]), "test_acc": m["test_acc"],
                   "rival": {"pattern": rival["pattern"], "measured_ms": rival["measured_ms"],
                             "test_acc": rival["test_acc"], **losses(rival["pattern"])},
                   "tried": tried}
            best = min(inside, key=lambda t: t["held_out"], default=None)
            best_diff = 100 * (best["test_acc"] - rival["test_acc"]) if best else None   # points against the rival
            if m["verdict"] == "miss":
                row["cause"] = cause(row["held_out"], row["rival"]["held_out"], [t["held_out"] for t in inside],
                                     args.delta)
                totals[row["cause"]] += 1
                if row["cause"] == "loop":   # the rule's own tolerance, against the same rival
                    row["passed_over"] = {"pattern": best["pattern"], "acc_diff_points": best_diff,
                                          "would_pass": best_diff >= -matched["rule"]["tolerance_points"]}
            rows.append(row)
            print(f"{path.stem} member {m['member']} ({row['source']}): {m['verdict']} {m['acc_diff_points']:+.1f}"
                  f"{' [' + row['cause'] + ']' if 'cause' in row else ''}; held-out loss member {row['held_out']:.3f}, "
                  f"rival {row['rival']['held_out']:.3f}"
                  + (f", least in band {best['held_out']:.3f} at "
                     f"{'/'.join(f'{v:.3f}' for v in best['windows_x_budget'])} x budget "
                     f"({best_diff:+.1f} points against the rival)" if best else
                     ", none tried in band"), flush=True)
        counts = collections.Counter(r["cause"] for r in rows if "cause" in r)
        write(f"{path.stem}_causes", {"source": str(path), "delta_nats": args.delta, "target_band": list(target),
                                      "held_out_batches": held,
                                      "rest_batches": len(val) - held, "causes": {c: counts[c] for c in CAUSES},
                                      "members": rows})
    print("all files: misses by cause " + ", ".join(f"{c} {totals[c]}" for c in CAUSES))


if __name__ == "__main__":
    main()
