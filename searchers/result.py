"""What every search method takes and returns: the budget, the result, the errors, resource use.

``Budget`` is one constraint such as ``latency_ms <= 15``; ``SearchResult`` is plain data (the
genotype, its exact cost, the histories of the constrained optimisation, wall time and memory),
and ``to_dict()`` makes it JSON for the run store.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hilnas.searchers.cost import METRICS

if TYPE_CHECKING:
    from hilnas.searchers.data import Loaders
    from hilnas.searchers.spaces import SearchSpace


class SearchError(ValueError):
    """A search cannot run as configured (bad data, mismatched space, ...)."""


class InfeasibleBudgetError(SearchError):
    """No architecture the search can derive meets the budget; ``cheapest_cost`` says how close one gets."""

    def __init__(self, message: str, *, cheapest_cost: float, cheapest_genotype: Any = None):
        super().__init__(message)
        self.cheapest_cost = cheapest_cost
        self.cheapest_genotype = cheapest_genotype


@dataclass(frozen=True)
class Budget:
    """An upper bound on one cost metric: ``metric`` in METRICS, ``value`` in that metric's unit."""
    metric: str
    value: float

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown budget metric {self.metric!r}; use one of {', '.join(METRICS)}")
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool) \
                or not math.isfinite(self.value) or self.value <= 0:
            raise ValueError(f"budget {self.metric} must be a positive finite number, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))

    @property
    def unit(self) -> str:
        return METRICS[self.metric]

    def scaled(self, value: float) -> Budget:
        return Budget(self.metric, value)

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``"latency_ms=15"`` -> Budget("latency_ms", 15.0); clear errors for anything else."""
        if not isinstance(text, str) or "=" not in text:
            raise ValueError(f"budget {text!r} must look like METRIC=VALUE, e.g. latency_ms=15; "
                             f"metrics: {', '.join(METRICS)}")
        name, _, raw = text.partition("=")
        name, raw = name.strip(), raw.strip()
        if name not in METRICS:
            raise ValueError(f"budget {text!r}: unknown metric {name!r}; use one of {', '.join(METRICS)}")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"budget {text!r}: {raw!r} is not a number") from None
        return cls(name, value)

    def __str__(self) -> str:
        return f"{self.metric}={self.value:g}"


@dataclass(frozen=True)
class SearchResult:
    """The outcome of one search: the genotype, its exact cost, and how the search got there."""
    method: str                          # "dca" | "darts" | "penalty" | "random"
    genotype: Any                        # Genotype | NB201Genotype
    cost: float                          # exact cost of ``genotype`` under the search's cost model
    metric: str                          # the cost model's metric (a key of METRICS)
    budget: Budget | None                # the (search-time) budget, None when unconstrained
    within_budget: bool | None           # cost <= budget.value; None without budget
    derived_genotype: Any                # what the alphas pointed to, before any repair
    derived_cost: float
    repaired: bool = False               # the derived genotype was over budget and was repaired
    edges_changed: int = 0               # how many cell edges the repair changed (0 without repair)
    notes: tuple[str, ...] = ()          # warnings for the user (repairs, ...)
    multiplier_history: tuple[float, ...] = ()   # Lagrange multiplier after each architecture step
    cost_history: tuple[float, ...] = ()          # expected (relaxed) cost at each architecture step
    genotype_cost_history: tuple[float, ...] = ()  # exact cost of the derived genotype after each epoch
    train_acc: float = math.nan          # last epoch's training accuracy of the supernet / best sample
    val_acc: float = math.nan            # accuracy on the validation split at the end
    epochs: int = 0
    steps: int = 0                       # weight steps taken
    wall_s: float = 0.0
    peak_mem_mb: float = 0.0             # peak resident memory above the level at the start (MiB)
    peak_rss_mb: float = 0.0             # peak resident memory of the process during the search (MiB)
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (genotypes as their dicts)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["genotype"] = self.genotype.to_dict()
        d["derived_genotype"] = self.derived_genotype.to_dict()
        d["budget"] = {"metric": self.budget.metric, "value": self.budget.value} if self.budget else None
        for k in ("notes", "multiplier_history", "cost_history", "genotype_cost_history"):
            d[k] = list(d[k])
        d["extra"] = dict(self.extra)
        return d


class PeakMemory:
    """Samples this process's resident memory in a thread; ``peak_mb`` is the rise above the start.

    Torch's CPU tensors bypass Python's allocator, so tracemalloc does not see them; RSS does.
    The sampling period bounds how short a peak can be and still be seen.
    """

    def __init__(self, period_s: float = 0.02):
        self.period_s = period_s
        self.start_mb = self.peak_rss_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def rss_mb() -> float:
        try:
            import psutil
            return psutil.Process(os.getpid()).memory_info().rss / 2**20
        except ImportError:  # Linux fallback: current RSS from /proc
            with open(f"/proc/{os.getpid()}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self) -> PeakMemory:
        self.start_mb = self.peak_rss_mb = self.rss_mb()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())

    @property
    def peak_mb(self) -> float:
        return self.peak_rss_mb - self.start_mb


class Stopwatch:
    """Wall time of a ``with`` block."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def check_data(space: SearchSpace, loaders: Loaders, *, need_val: bool = True) -> None:
    """Raise SearchError unless the loaders' images and labels fit the space (and val exists)."""
    if need_val and loaders.val is None:
        raise SearchError("a bi-level search needs a validation split: load the data with "
                          "DatasetConfig(val_fraction=0.5) (weights learn on one half, alphas on the other)")
    ds = loaders.train.dataset
    if len(ds) == 0:
        raise SearchError("the training split is empty")
    x, y = ds[0]
    shape = tuple(x.shape)
    want = (space.in_channels, space.input_size, space.input_size)
    if shape != want:
        raise SearchError(f"the data's images are {shape} (C, H, W) but the space expects {want}; "
                          f"create the space with in_channels={shape[0]}, input_size={shape[1]}")
    labels = getattr(ds, "tensors", (None, None))[1]
    top = int(labels.max()) if labels is not None else int(y)
    if top >= space.num_classes:
        raise SearchError(f"the data has label {top} but the space has num_classes={space.num_classes}")
