"""Would the member choice's own score have preferred the fixed network that beat a member? (issue 12, tenth session)

    .venv/bin/python benchmarks/prune_matched_heldout.py benchmarks/results/prune_*_matched_s10.json

For each ``bench_prune_matched.py`` result: every member's and every fixed network's held-out cross-entropy on the
batches the member choice ranks candidates by (the first ``held_out_batches`` batches of the gates' split, from the
source run's setup; ``prune.score.HeldOutLoss``, as the band search scores), checked against the losses the source
run recorded for its members (the same batches, or refused), on the run's own pre-trained network (refused when its
checkpoint is missing or another pre-training). For each member judged a miss: the rival's loss beside
the member's. A rival with the lower loss is a pattern the member choice would have taken had the family offered it
(the family's candidates fall short); a rival with the higher loss is one the choice's score itself ranks below the
member (the score falls short). No device, no training. Writes <MATCHED's name>_heldout.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402
from _prune_scores import PrunedScores  # noqa: E402
from bench_prune import recorded_network  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("matched", nargs="+", help="bench_prune_matched.py result files")
    args = p.parse_args()

    from hilnas.searchers.prune.score import HeldOutLoss
    from hilnas.searchers.spaces.resnet import GatePattern

    for path in map(Path, args.matched):
        matched = json.loads(path.read_text())
        source = json.loads(Path(matched["source"]).read_text())
        setup = source["setup"]
        loaders, _, net = recorded_network(source)
        held_out = [b for _, b in zip(range(setup["held_out_batches"]), loaders.val)]
        loss = HeldOutLoss(net, held_out)
        scores = PrunedScores(net, loaders, [b for _, b in zip(range(20), loaders.train)])
        recorded = [(r["pattern"], r["val_loss"]) for r in source["agents"][matched["agent"]]["members"]
                    if r.get("val_loss") is not None]
        agree = max((abs(loss(GatePattern.from_bits(b)) - v) for b, v in recorded), default=None)
        # within 0.01 nats: the run's own scores and these differ by up to 0.004 on the same batches (not bit-identical,
        # cause not traced), far under the member-rival differences this reads
        if agree is None or agree > 0.01:
            sys.exit(f"{path}: the held-out losses do not reproduce the source run's (largest difference {agree}): "
                     f"not the batches the member choice ranked by")
        pool = {x["pattern"]: x for x in matched["pool"]}
        rows = []
        for m in matched["members"]:
            if m.get("verdict") != "miss":
                continue
            rival = next(x for x in pool.values() if x["measured_ms"] == m["best_rival_ms"]
                         and abs(x["test_acc"] - m["best_rival_acc"]) < 1e-9)
            member, other = GatePattern.from_bits(m["pattern"]), GatePattern.from_bits(rival["pattern"])
            lm, lr = loss(member), loss(other)
            se = scores.noise(member, other)["se_diff_paired"]
            rows.append({"member": m["member"], "measured_ms": m["measured_ms"], "member_loss": lm,
                         "member_test_acc": m["test_acc"], "rival_ms": rival["measured_ms"], "rival_loss": lr,
                         "rival_test_acc": rival["test_acc"], "rival_lambda": rival["lambda"],
                         "acc_diff_points": m["acc_diff_points"], "se_diff_paired": se,
                         "score_prefers": "rival" if lr < lm else "member"})
            print(f"{path.stem} member {m['member']} ({m['measured_ms']:.3f} ms, {100 * m['test_acc']:.1f} %): held-out "
                  f"{lm:.3f}; rival ({rival['measured_ms']:.3f} ms, {100 * rival['test_acc']:.1f} %) {lr:.3f}: the "
                  f"score prefers the {rows[-1]['score_prefers']}; test difference {m['acc_diff_points']:+.1f}, paired "
                  f"SE {se:.2f}", flush=True)
        write(f"{path.stem}_heldout", {"source": str(path), "held_out_batches": setup["held_out_batches"],
                                       "recorded_losses_reproduced_within": agree, "misses": rows})


if __name__ == "__main__":
    main()
