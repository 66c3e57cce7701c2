"""What one ``hilnas run`` does, as typed data: devices and their budgets, the space, the data,
the methods, epochs and seeds, and how to measure.

``RunConfig`` is what ``run.file.load_run_file`` makes from a run file and what ``hilnas demo``
builds in code; ``run.execute.execute`` carries it out. Nothing here imports torch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from hilnas.agent.config import MeasureConfig
from hilnas.server.fleet import AgentEndpoint

# What a budget may bound (searchers.cost.METRICS, repeated so that reading a run file needs no searcher).
BUDGET_METRICS = ("latency_ms", "energy_mj", "params_m", "mflops")
DEFAULT_LUT_MEASURE = MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.1)
DEFAULT_MEASURE = MeasureConfig(warmup_runs=10, min_runs=30, min_seconds=0.5)


@dataclass(frozen=True)
class BudgetSpec:
    """A device budget as written: ``latency_ms=2.5`` (absolute) or ``latency_ms=40%`` (relative).

    A relative budget is a position between the cheapest (0 %) and the dearest (100 %) network of
    the space, priced by the device's own LUT (or exactly, for params and FLOPs); it is resolved
    once the LUT is built, so one run file fits devices of any speed."""

    metric: str
    value: float            # in the metric's unit, or a percentage when relative
    relative: bool = False

    def __post_init__(self) -> None:
        if self.metric not in BUDGET_METRICS:
            raise ValueError(f"unknown budget metric {self.metric!r}; use one of {', '.join(BUDGET_METRICS)}")
        if not math.isfinite(self.value) or self.value <= 0 or (self.relative and self.value > 100):
            raise ValueError(f"budget {self.text}: the value must be > 0" + (" and <= 100%" if self.relative else ""))

    @classmethod
    def parse(cls, text: str) -> "BudgetSpec":
        """``"latency_ms=2.5"`` or ``"latency_ms=40%"``; ValueError naming what is wrong otherwise."""
        name, sep, raw = str(text).partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not raw:
            raise ValueError(f"budget {text!r} must look like METRIC=VALUE or METRIC=PERCENT%, e.g. latency_ms=2.5 "
                             f"or latency_ms=40%; metrics: {', '.join(BUDGET_METRICS)}")
        relative = raw.endswith("%")
        try:
            value = float(raw[:-1] if relative else raw)
        except ValueError:
            raise ValueError(f"budget {text!r}: {raw!r} is not a number (or a percentage like 40%)") from None
        return cls(name, value, relative)

    @property
    def text(self) -> str:
        return f"{self.metric}={self.value:g}{'%' if self.relative else ''}"

    def resolve(self, cheapest: float, dearest: float) -> float:
        """The budget's value in its metric's unit, given the space's cheapest and dearest cost."""
        if not self.relative:
            return self.value
        return cheapest + self.value / 100.0 * (dearest - cheapest)


@dataclass(frozen=True)
class DeviceSpec:
    """One device of a run: where its agent comes from, and the budgets searched for it.

    The agent is, in this order: a simulated agent the run starts (``simulate`` = a profile), an
    agent on this host the run starts (``local``), an agent at ``endpoint``, or the workspace's
    fleet entry of the same key (``hilnas devices add``)."""

    key: str
    budgets: tuple[BudgetSpec, ...]
    simulate: str | None = None
    local: bool = False
    endpoint: AgentEndpoint | None = None
    seed: int = 0                    # noise seed of a simulated agent

    @property
    def source(self) -> str:
        return "simulate" if self.simulate else "local" if self.local else "address" if self.endpoint else "fleet"

    @property
    def started_by_run(self) -> bool:
        return self.source in ("simulate", "local")


@dataclass(frozen=True)
class RunConfig:
    """One hardware-validated search: every method on every device under each of its budgets."""

    name: str
    devices: tuple[DeviceSpec, ...]
    methods: tuple[str, ...] = ("dca", "hypernet")
    space: str = "nb201"
    space_options: Mapping[str, Any] = field(default_factory=lambda: {"C": 8, "N": 1})
    dataset: str = "demo"            # demo | fashion-mnist | cifar10 | synthetic
    data_dir: str | None = None
    train_size: int | None = None    # stratified subset of the training images; None = all
    test_size: int | None = None
    batch_size: int = 64
    seeds: tuple[int, ...] = (0,)
    search_epochs: int = 2
    train_epochs: int = 2            # final training of each found network
    lr: float = 0.05                 # final training's learning rate
    max_batches: int | None = None   # cap of batches per epoch (smoke runs); None = whole epochs
    torch_threads: int | None = 1    # 1 is fastest for these small networks on a busy 2-core host
    lut_measure: MeasureConfig = DEFAULT_LUT_MEASURE   # op micro-models (part of the LUT's identity)
    measure: MeasureConfig = DEFAULT_MEASURE           # whole networks, on validation
    energy: bool = False             # also measure energy on validation (devices with a meter)
    retries: int = 4                 # tries after the first on an agent that does not answer ...
    backoff_s: float = 1.0           # ... waiting this long, doubled each time
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # method -> config fields
    source: str = ""                 # the run file it came from ("" = built in code)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (what the store records as the run's config)."""
        d = json.loads(json.dumps(dataclasses.asdict(self), default=_jsonable))
        d["devices"] = [{**dev, "budgets": [b.text for b in spec.budgets],
                         "endpoint": spec.endpoint.address if spec.endpoint else None}
                        for dev, spec in zip(d["devices"], self.devices)]
        return d

    def fingerprint(self) -> str:
        """Stable hash of what the run does (not where it came from): a re-run of the same file
        resumes the run with this fingerprint."""
        d = self.to_dict()
        d.pop("source", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def dataset_config(self, *, val_fraction: float = 0.0, seed: int = 0):
        from hilnas.searchers.data import DatasetConfig

        return DatasetConfig(name=self.dataset, data_dir=self.data_dir, train_size=self.train_size,
                             test_size=self.test_size, val_fraction=val_fraction, batch_size=self.batch_size,
                             seed=seed)

    def budget_metrics(self, device: DeviceSpec) -> set[str]:
        return {b.metric for b in device.budgets}


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)
