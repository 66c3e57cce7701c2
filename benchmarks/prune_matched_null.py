"""The matched rule applied to the baseline itself: does a fixed-lambda pruning pass it against the others? (issue 12)

    .venv/bin/python benchmarks/prune_matched_null.py benchmarks/results/prune_*_matched_s10.json [--no-se]

``bench_prune_matched.py`` judges each member of a pruning family against the fixed-lambda prunings measured near
its latency: d = member - the best fixed network at <= M / 0.95, a miss when d < -1 point. The fixed networks are
judged on one test split (2,000 CIFAR-10 images, 10,000 Fashion-MNIST) and the best of several is taken, so even a
method as good as fixed-lambda pruning would miss sometimes. This reads how often: each distinct fixed network of a
matched run's pool is judged exactly as a member is (``bench_prune_matched.judge``, the same measured latencies and
test accuracies the run recorded), against the pool's other distinct networks (itself and copies of its pattern left
out: a network is not its own rival). For each such miss the paired standard error of the difference, on the run's
own pre-trained network (refused when its checkpoint is missing or another; ``--no-se``: skip it, no torch).
Beside it the members' own verdicts, from the same file. No device, no training.
Writes <MATCHED's name>_null.json.
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402
from bench_prune_matched import judge  # noqa: E402


def fixed_as_members(pool: list[dict]) -> list[dict]:
    """Each distinct pattern of a matched run's ``pool`` (rows with ``pattern``, ``measured_ms``, ``test_acc``; a
    network the agent failed to measure left out) judged as a member against the other distinct patterns."""
    networks: dict[str, tuple[float, float]] = {}
    for row in pool:
        if row.get("measured_ms") is not None:
            networks.setdefault(row["pattern"], (row["measured_ms"], row["test_acc"]))
    out = []
    for bits, (ms, acc) in networks.items():
        others = [(b, v) for b, v in networks.items() if b != bits]
        verdict = judge(ms, acc, [v for _, v in others])
        best = verdict.pop("best_rival")
        rival = others[best][0] if best is not None else None
        out.append({"pattern": bits, "measured_ms": ms, "test_acc": acc, "rival_pattern": rival, **verdict})
    return out


def tally(rows: list[dict]) -> dict:
    """Verdict counts, and the differences of the judged (pass or miss) ones."""
    counts = collections.Counter(r["verdict"] for r in rows)
    judged = [r["acc_diff_points"] for r in rows if r["verdict"] in ("pass", "miss")]
    return {"pass": counts["pass"], "miss": counts["miss"], "gap": counts["gap"], "dear_end": counts["dear end"],
            "misses_points": sorted(r["acc_diff_points"] for r in rows if r["verdict"] == "miss"),
            "judged_median_points": statistics.median(judged) if judged else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("matched", nargs="+", help="bench_prune_matched.py result files")
    p.add_argument("--no-se", action="store_true", help="skip the misses' paired standard errors (no torch)")
    args = p.parse_args()

    totals = {"fixed": collections.Counter(), "members": collections.Counter()}
    judged_diffs: dict[str, list[float]] = {"fixed": [], "members": []}
    for path in map(Path, args.matched):
        try:
            matched = json.loads(path.read_text())
            pool, members = matched["pool"], matched["members"]
        except (OSError, ValueError, KeyError) as err:
            p.error(f"{path} is not a bench_prune_matched.py result file: {err}")
        rows = fixed_as_members(pool)
        if not args.no_se and any(r["verdict"] == "miss" for r in rows):
            from _prune_scores import PrunedScores
            from bench_prune import recorded_network
            from hilnas.searchers.spaces.resnet import GatePattern

            loaders, _, net = recorded_network(json.loads(Path(matched["source"]).read_text()))
            scores = PrunedScores(net, loaders, [b for _, b in zip(range(20), loaders.train)])
            for r in rows:
                if r["verdict"] == "miss":
                    r["se_diff_paired"] = scores.noise(GatePattern.from_bits(r["pattern"]),
                                                       GatePattern.from_bits(r["rival_pattern"]))["se_diff_paired"]
        fixed, own = tally(rows), tally(members)
        for key, t, rs in (("fixed", fixed, rows), ("members", own, members)):
            totals[key].update({k: t[k] for k in ("pass", "miss", "gap", "dear_end")})
            judged_diffs[key] += [r["acc_diff_points"] for r in rs if r["verdict"] in ("pass", "miss")]
        ses = [f"{r['acc_diff_points']:+.1f} (SE {r['se_diff_paired']:.2f})" if "se_diff_paired" in r
               else f"{r['acc_diff_points']:+.1f}" for r in rows if r["verdict"] == "miss"]
        print(f"{path.stem}: {len(rows)} distinct fixed networks as members: {fixed['pass']} pass, {fixed['miss']} "
              f"miss {ses}, {fixed['gap']} gap, {fixed['dear_end']} dear end; the members: {own['pass']} pass, "
              f"{own['miss']} miss, {own['gap']} gap, {own['dear_end']} dear end", flush=True)
        write(f"{path.stem}_null", {"source": str(path), "fixed_as_members": rows, "fixed": fixed, "members": own})
    for key, c in totals.items():
        d = judged_diffs[key]
        print(f"all files, {key}: {c['pass']} pass, {c['miss']} miss ({c['miss']} of {len(d)} judged; their median "
              f"difference {statistics.median(d) if d else float('nan'):+.2f} points), {c['gap']} gap, "
              f"{c['dear_end']} dear end")


if __name__ == "__main__":
    main()
