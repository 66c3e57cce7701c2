"""NB201 progressive decisions replayed offline: no training, the oracle's latency as the device.

An exploration aid for ``searchers/dca/progressive.py``, not a search benchmark: the supernet's alphas are
random (scaled by ``--alpha-scale``), the penalty is 0, and the device is the noise-free simulated latency of
every cell (``nb201_oracle.simulated_latencies``) times (1 + N(0, sigma)) per call (raspi4 1.2 %, pixel3 2 %:
about the spread the benchmark measured). The device ratio the decisions on the prediction use is the one of
the alphas' argmax cell, as the epoch's derived network gives it in a search. Per device, the budgets of
``bench_search_quality`` (same rule), seeds 0..N-1, and each named setting of ``Progressive`` (JSON, on top of
the benchmark's defaults):

1. the fitted device predictor's error: for each budget, the median and 90th percentile relative error over
   the cells truly within 0.85-1.05 x B, of the corrected LUT and of the fit on ``--fit-sample`` random cells;
2. the replay: the share of final cells whose fresh (noisy) latency / B lies in [0.9, 1.0], the median regret
   against the table, the device calls and reopenings.

    .venv/bin/python benchmarks/nb201_decisions_offline.py --seeds 8 \\
        --setting 'base={"fit_sample": 0}' --setting 'fit30={"fit_sample": 30}'

A setting with ``"select": "oracle"`` replays ``select="perturbation"`` with a perfect supernet: an op is scored by
the best table accuracy among the completions of the decided edges (and it) whose noise-free latency lies in
[0.9, 1.0] x B, and the one-shot choice among measured cells by their table accuracy: the regret the decisions'
feasible sets leave to a selection rule that knew the table (a bound, not a method).

``--choices RESULT.json ...`` scores the choices a benchmark run's supernet made instead (no replay): for every decision
whose ops were scored (``perturbation`` records), the best table accuracy among the in-band completions ([0.9, 1.0] x B
noise-free, the decided edges as they were) of the (edge, op) the score took, against the best over every scored
(edge, op) and against a uniform pick among them: how often the score chose what a perfect score would have, and the
points it lost per decision (one decision at a time; what the later decisions then did is not counted).

    .venv/bin/python benchmarks/nb201_decisions_offline.py --choices \
        benchmarks/results/search_quality_w_heldout_today_pixel3.json --out nb201_score_choices
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import corrected_cost, simulated_device, write  # noqa: E402
from bench_search_quality import choose_budgets  # noqa: E402
from nb201_oracle import ACCURACY_CSV, Oracle, read_accuracy, simulated_latencies  # noqa: E402

NOISE = {"raspi4": 0.012, "pixel3": 0.02}
DEFAULTS = dict(on_device=25, repeats=3, tolerance=0.1, reopen=3, reopen_measurements=75, margin_sigmas=1.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", default="raspi4,pixel3")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--alpha-scale", type=float, default=1.0, help="sd of the random alphas (default: 1)")
    p.add_argument("--fit-sample", type=int, default=30, help="cells the predictor-error table fits on (default: 30)")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=JSON",
                   help="a Progressive setting to replay, e.g. 'fit30={\"fit_sample\": 30}' (repeatable)")
    p.add_argument("--choices", nargs="+", type=Path, metavar="RESULT", help="score the choices of these "
                   "bench_search_quality results' supernets against the table instead of replaying (module docstring)")
    p.add_argument("--out", default="nb201_decisions_offline")
    args = p.parse_args()
    if args.choices:
        missing = [str(f) for f in args.choices if not f.is_file()]
        if missing:
            raise SystemExit(f"nb201_decisions_offline: --choices: no such result {', '.join(missing)}; pass "
                             "bench_search_quality's JSON, e.g. benchmarks/results/search_quality_pt_pixel3.json")
        write(args.out, {"setup": {"choices": [str(f) for f in args.choices]}, "choices": score_choices(args.choices)})
        return
    settings = {}
    for s in args.setting or ['base={"fit_sample": 0}']:
        name, _, text = s.partition("=")
        try:
            settings[name] = json.loads(text)
        except json.JSONDecodeError:
            raise SystemExit(f"nb201_decisions_offline: --setting {s!r} is not NAME=JSON; e.g. "
                             "--setting 'fit30={\"fit_sample\": 30}'") from None

    import torch

    from hilnas.searchers.spaces import create_space
    torch.set_num_threads(1)
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    full = create_space("nb201")
    latency = simulated_latencies(tuple(devices), workers=1)
    accuracy = read_accuracy(ACCURACY_CSV)
    out = {"setup": vars(args), "devices": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for d in devices:
            server, setup = simulated_device(d, full, "nb201", Path(tmp), print)
            server.stop(0)
            tables = corrected_cost(setup, full).tables(full.replace(C=8, N=1))
            oracle = Oracle(accuracy, latency[d])
            budgets = choose_budgets(oracle, 5)
            errors = [predictor_error(tables, latency[d], b, args.fit_sample) for b in budgets]
            out["devices"][d] = {"budgets": budgets, "predictor": errors,
                                 "replay": {name: [replay(tables, latency[d], oracle, d, b, seed, kw, args.alpha_scale)
                                                   for b in budgets for seed in range(args.seeds)]
                                            for name, kw in settings.items()}}
            for row in out["devices"][d]["predictor"]:
                print(d, row)
            for name, rows in out["devices"][d]["replay"].items():
                print(d, name, summary(rows))
            out["devices"][d]["summary"] = {n: summary(r) for n, r in out["devices"][d]["replay"].items()}
    write(args.out, out)


def _progressive(tables, budget: float, measure, scale: float, seed: int, alpha_scale: float, **kw):
    import torch

    from hilnas.searchers.dca.progressive import Progressive
    from hilnas.searchers.spaces import create_space
    from hilnas.searchers.supernet import build_supernet

    torch.manual_seed(seed)
    model = build_supernet(create_space("nb201").replace(C=8, N=1))
    with torch.no_grad():
        model.alphas["cell"].copy_(torch.randn_like(model.alphas["cell"]) * alpha_scale)
    settings = {**DEFAULTS, "margin": 0.02 * budget, "window": 0.05 * budget, **kw}
    return Progressive(model, tables, list(range(6)), penalty=lambda c: 0.0, within=lambda c: c <= budget,
                       scale=lambda: scale, measure=measure, band=(0.91 * budget, 0.99 * budget), **settings)


def predictor_error(tables, latency: dict, budget: float, n: int) -> dict:
    import torch

    rng = random.Random(0)
    p = _progressive(tables, budget, lambda g: latency[g.arch_str] * (1 + rng.gauss(0, 0.012)), 1.0, 0, 1.0,
                     fit_sample=n)
    with torch.no_grad():
        p._sample({})
        p.fit_device(0)
    rows = [(r, latency[a]) for r in range(len(p.costs)) if (a := p._genotype(r).arch_str) in latency
            and 0.85 * budget <= latency[a] <= 1.05 * budget]

    def err(table) -> list[float]:
        e = torch.tensor([abs(float(table[r]) / t - 1) for r, t in rows])
        return [round(float(e.median()), 4), round(float(e.quantile(0.9)), 4)]
    return {"budget": budget, "cells": len(rows), "lut": err(p.costs),
            "fit": err(p._fit) if p._fit is not None else None, "fit_record": p.fits[-1] if p.fits else None}


def replay(tables, latency: dict, oracle, device: str, budget: float, seed: int, kw: dict, alpha_scale: float) -> dict:
    from hilnas.searchers.cost import table_cost
    from hilnas.searchers.genotype import NB201Genotype
    from hilnas.searchers.spaces import create_space

    proxy = create_space("nb201").replace(C=8, N=1)
    rng = random.Random(seed * 1000 + int(budget * 10))
    calls = [0]

    def measure(g) -> float:
        calls[0] += 1
        return latency[g.arch_str] * (1 + rng.gauss(0, NOISE.get(device, 0.015)))
    ratio = [1.0]
    kw = dict(kw)
    if kw.get("select") == "oracle":   # a perfect supernet (module docstring)
        kw["select"] = "perturbation"
        kw["supernet_score"] = lambda fixed: (_oracle_score(p, fixed, latency, oracle, budget), 0.0)
        kw["accuracy"] = lambda g: oracle.accuracy[g.arch_str]
    p = _progressive(tables, budget, measure, 0.0, seed, alpha_scale, **kw)
    p.scale = lambda: ratio[0]
    ref = NB201Genotype(tuple(proxy.ops[i] for i in p.model.alphas["cell"].argmax(1).tolist()))
    if ref.arch_str not in latency:   # cut off from its input: a random connected cell's ratio
        ref = NB201Genotype.from_arch_str(rng.choice(sorted(latency)))
    ratio[0] = latency[ref.arch_str] / table_cost(proxy, tables, ref)   # the derived network's, as in a search
    p.after_step(5)
    g = NB201Genotype(tuple(proxy.ops[p.model.fixed["cell"][e]] for e in range(6)))
    fresh = latency[g.arch_str] * (1 + rng.gauss(0, NOISE.get(device, 0.015))) / budget
    regret = oracle.regret(g.arch_str, budget) if latency[g.arch_str] <= budget else float("inf")
    ahead = [d for d in p.decisions if not d["on_device"]]   # the decisions on the prediction
    return {"budget": budget, "seed": seed, "cell": g.arch_str, "fresh_hit": fresh, "regret": regret,
            "calls": calls[0], "reopened": len(p.reopened), "fits": p.fits[:1],
            "feasible": [[len(d["feasible_ops"]), d["feasible_pairs"], d["widened"]] for d in ahead]}


def _oracle_score(p, fixed: dict, latency: dict, oracle, budget: float) -> float:
    """The best table accuracy among the completions of ``fixed`` within [0.9, 1.0] x B noise-free (-1: none)."""
    import torch

    if not hasattr(p, "_oracle_rows"):   # per cell row: its table accuracy when in the band, else -1
        rows = []
        for r in range(len(p.costs)):
            a = p._genotype(r).arch_str
            rows.append(oracle.accuracy[a] if a in latency and 0.9 * budget <= latency[a] <= budget else -1.0)
        p._oracle_rows = torch.tensor(rows, dtype=torch.float64)
    left = p._completions(fixed)
    return float(p._oracle_rows[left].max()) if bool(left.any()) else -1.0


def score_choices(results: list[Path]) -> dict:
    """Per result file: the supernet's scored choices against a perfect score and a uniform pick (module docstring)."""
    from hilnas.searchers.genotype import NB201Genotype

    accuracy = read_accuracy(ACCURACY_CSV)
    out = {}
    for path in results:
        rows = [r for r in json.loads(path.read_text())["rows"] if r["method"] == "dca"]
        devices = sorted({r["device"] for r in rows})
        latency = simulated_latencies(tuple(devices), workers=1, progress=lambda *a: None)
        ops = {a: NB201Genotype.from_arch_str(a).ops for a in latency[devices[0]]}
        matched, loss, uniform_matches, uniform_loss, empty = 0, [], 0.0, [], 0
        for r in rows:
            band = {a: accuracy[a] for a in ops if 0.9 * r["budget"] <= latency[r["device"]][a] <= r["budget"]}
            fixed: dict[int, str] = {}

            def perfect(edge: int, op: str) -> float:   # the best in-band accuracy with edge -> op (-1: none)
                return max((v for a, v in band.items() if ops[a][edge] == op
                            and all(ops[a][e] == o for e, o in fixed.items())), default=-1.0)
            for d in r["decisions"]:
                if d.get("perturbation"):
                    scored = [perfect(int(e), o) for e, by_op in d["perturbation"].items() for o in by_op]
                    best, chosen = max(scored), perfect(d["edge"], d["op"])
                    empty += sum(v < 0 for v in scored)   # no noise-free in-band completion: left out of the losses
                    reachable = [v for v in scored if v >= 0]
                    matched += chosen >= best
                    if chosen >= 0:
                        loss.append(best - chosen)
                    uniform_matches += sum(v >= best for v in scored) / len(scored)
                    uniform_loss.append(statistics.fmean(best - v for v in reachable))
                fixed[d["edge"]] = d.get("reopened_to", d["op"])
        out[path.name] = {"scored_decisions": len(uniform_loss), "chose_the_perfect_op": matched,
                          "scored_ops_without_in_band_completion": empty,
                          "uniform_expected": round(uniform_matches, 1),
                          "loss_points": {"median": round(statistics.median(loss), 2) if loss else None,
                                          "mean": round(statistics.fmean(loss), 2) if loss else None,
                                          "max": round(max(loss), 2) if loss else None},
                          "uniform_mean_loss": round(statistics.fmean(uniform_loss), 2) if uniform_loss else None}
        print(path.name, out[path.name])
    return out


def summary(rows: list[dict]) -> dict:
    return {"in_band": f"{sum(0.9 <= r['fresh_hit'] <= 1.0 for r in rows)}/{len(rows)}",
            "median_regret": statistics.median(r["regret"] for r in rows),
            "median_calls": statistics.median(r["calls"] for r in rows),
            "reopenings": sum(r["reopened"] for r in rows),
            # the decisions on the prediction: how many chose among > 1 op (the chosen edge's feasible ops), the mean
            # feasible (edge, op) pairs over the undecided edges, the mean feasible ops of the chosen edge
            "choice": f"{sum(f[0] > 1 for r in rows for f in r['feasible'])}/{sum(len(r['feasible']) for r in rows)}",
            "mean_pairs": round(statistics.fmean(f[1] for r in rows for f in r["feasible"]), 2),
            "mean_ops": round(statistics.fmean(f[0] for r in rows for f in r["feasible"]), 2)}


if __name__ == "__main__":
    main()
