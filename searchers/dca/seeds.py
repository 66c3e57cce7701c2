"""Seed 001's restarts: "the search is run 5 times, and the architecture with the highest validation
accuracy is chosen". ``best_of_seeds`` runs one search per seed through any ``map`` (the builtin,
a thread pool's, Ray's) and keeps the result whose supernet scored best on the validation split;
the others are recorded beside it (``extra["seeds"]``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Sequence

from hilnas.searchers.result import SearchResult


def best_of_seeds(search_one: Callable[[int], SearchResult], seeds: Sequence[int], *,
                  map_fn: Callable[..., Iterable[SearchResult]] = map) -> SearchResult:
    """``search_one(seed)`` for every seed; the result with the highest ``val_acc`` (the first on a tie)."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("best_of_seeds needs at least one seed")
    results = list(map_fn(search_one, seeds))
    best = max(results, key=lambda r: r.val_acc if not math.isnan(r.val_acc) else -math.inf)
    runs = [{"seed": r.seed, "val_acc": r.val_acc, "genotype": r.genotype.to_dict(), "cost": r.cost,
             "repaired": r.repaired, "wall_s": r.wall_s} for r in results]
    return dataclasses.replace(best, extra={**best.extra, "seeds": runs, "chosen_seed": best.seed})
