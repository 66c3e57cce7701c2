"""The passes of a LUT row: ``lut build --repeats N`` measures every key N times, interleaved,
and one row combines them under the latency statistic (``rounds.py``).

A row records how many passes it combines (``LutRow.passes``) and, from two on, each pass's own
numbers (``conditions["passes"]``), so a build killed between passes resumes with exactly the
passes a key still lacks and combines them as if it had never stopped. The row keeps the
numbers (p90, CI, status, energy) of the pass its value comes from, and ``min_ms``, the fastest
run over all passes. The per-pass conditions (temperatures, load) are kept for the chosen pass
only: a row reconstructed from the store carries the chosen pass's conditions on every pass.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from hilnas.server.lut.rounds import combine_rounds
from hilnas.server.store import LutRow

# What each pass records about itself inside the combined row's conditions.
PASS_FIELDS = ("status", "n", "median_ms", "min_ms", "p90_ms", "mean_ms", "std_ms", "ci95_low_ms",
               "ci95_high_ms", "energy_mj", "energy_net_mj", "energy_estimated", "measured_at")


def passes_of(row: LutRow) -> list[LutRow]:
    """The measured passes a stored row combines, oldest first; [] for a failure row.

    A row without a recorded pass list (one pass, or a row from before schema 3) stands for
    ``row.passes_done`` passes of its own numbers.
    """
    if not row.measured:
        return []
    base = {k: v for k, v in row.conditions.items() if k != "passes"}
    recorded = row.conditions.get("passes")
    if isinstance(recorded, list) and len(recorded) >= 1:
        try:
            out = [dataclasses.replace(row, passes=1, conditions=base, **{k: p[k] for k in PASS_FIELDS if k in p})
                   for p in recorded]
            if all(p.measured and isinstance(p.median_ms, (int, float)) and p.median_ms > 0 for p in out):
                return out
        except (TypeError, KeyError):  # a hand-edited import: fall back to the row itself
            pass
    return [dataclasses.replace(row, passes=1, conditions=base)] * max(1, row.passes_done)


def chosen_index(passes: Sequence[LutRow], statistic: str) -> int:
    """Which pass the combined value comes from (the nearest one, for a median of two)."""
    value = combine_rounds([p.median_ms for p in passes], statistic)
    return min(range(len(passes)), key=lambda i: abs(passes[i].median_ms - value))


def combine(passes: Sequence[LutRow], statistic: str) -> LutRow:
    """One row from the measured passes of one key (at least one)."""
    value = combine_rounds([p.median_ms for p in passes], statistic)
    chosen = passes[chosen_index(passes, statistic)]
    fastest = [p.min_ms for p in passes if p.min_ms is not None]
    conditions = {k: v for k, v in chosen.conditions.items() if k != "passes"}
    if len(passes) > 1:
        conditions["passes"] = [{k: getattr(p, k) for k in PASS_FIELDS} for p in passes]
    return dataclasses.replace(chosen, median_ms=value, min_ms=min(fastest) if fastest else None,
                               passes=len(passes), conditions=conditions)
