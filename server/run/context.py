"""What the steps of one run share: the store, the run, its folders, the data, the devices, the LUTs.

A ``Step`` is one resumable unit of work: a stable key, a label for progress, and a function
returning its JSON-able result. Steps never pass objects to each other: a step reads what an
earlier step produced from the store (``RunContext.result``), so a step runs the same whether
its predecessors ran a second ago or in a process that was killed since.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilnas.server.progress import Progress
from hilnas.server.run.config import DeviceSpec, RunConfig

if TYPE_CHECKING:
    from hilnas.agent.results import DeviceInfo
    from hilnas.searchers.cost import CostModel
    from hilnas.searchers.result import Budget
    from hilnas.searchers.spaces import SearchSpace
    from hilnas.server.client import AgentClient
    from hilnas.server.store import LutId, Store


@dataclass(frozen=True)
class Step:
    key: str                              # stable within the run: "raspi4/dca/seed0/latency_ms=40%/search"
    label: str                            # for progress: "raspi4 · dca · latency_ms=40% · search"
    run: Callable[[], dict[str, Any]]     # does the work; returns the result the store keeps


@dataclass(frozen=True)
class Chain:
    """Steps that depend on each other in order (one method, device, seed and budget)."""
    device: str
    method: str
    seed: int
    budget: str | None                    # the budget as written; None for a device's own steps
    steps: tuple[Step, ...]


@dataclass
class DeviceState:
    """A connected device of the run."""
    spec: DeviceSpec
    clients: list[AgentClient]
    info: DeviceInfo

    @property
    def key(self) -> str:
        return self.spec.key


class StepMissing(RuntimeError):
    """A step asked for the result of a step that is not done (a bug in a method's chain)."""


@dataclass
class RunContext:
    store: Store
    run_id: int
    config: RunConfig
    workspace: Path
    progress: Progress
    _loaders: dict[tuple[float, int], Any] = field(default_factory=dict)

    # -- places ---------------------------------------------------------------------------------
    @property
    def out_dir(self) -> Path:
        """Where the run's files go: ``<workspace>/runs/<id>/`` (ONNX, checkpoints, trained hypernetworks)."""
        return self.workspace / "runs" / str(self.run_id)

    def path(self, *parts: str) -> Path:
        p = self.out_dir.joinpath(*[part.replace("/", "_").replace("=", "-").replace("%", "pct") for part in parts])
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    # -- results of earlier steps -----------------------------------------------------------------
    def result(self, key: str) -> dict[str, Any]:
        step = self.store.get_step(self.run_id, key)
        if step is None or step.status != "done":
            raise StepMissing(f"step {key!r} of run {self.run_id} is not done")
        return step.result

    # -- data and space ---------------------------------------------------------------------------
    def loaders(self, *, val_fraction: float, seed: int):
        """(datasets, loaders) of the run's dataset, cached per split and seed."""
        from hilnas.searchers.data import loaders_for

        key = (val_fraction, seed)
        if key not in self._loaders:
            self._loaders[key] = loaders_for(self.config.dataset_config(val_fraction=val_fraction, seed=seed))
        return self._loaders[key]

    @property
    def space(self) -> SearchSpace:
        """The run's space, shaped for its dataset (input channels and size, classes)."""
        from hilnas.searchers.spaces import create_space

        datasets, _ = self.loaders(val_fraction=0.0, seed=0)
        c, h, _w = datasets.input_shape
        return create_space(self.config.space, in_channels=c, input_size=h, num_classes=datasets.num_classes,
                            **dict(self.config.space_options))

    # -- a device's LUT and budgets ---------------------------------------------------------------
    def lut_id(self, device: str) -> LutId:
        from hilnas.server.store import LutId

        return LutId(**self.result(f"{device}/lut")["lut_id"])

    def cost_model(self, device: str, metric: str) -> CostModel:
        """The device's cost model for ``metric``: its LUT for latency and energy, exact for params and FLOPs."""
        from hilnas.searchers.cost import FlopsCost, LutEnergyCost, LutLatencyCost, ParamsCost
        from hilnas.server.validation import lut_values

        if metric == "params_m":
            return ParamsCost()
        if metric == "mflops":
            return FlopsCost()
        values = lut_values(self.store, self.lut_id(device), metric)
        return LutLatencyCost(values) if metric == "latency_ms" else LutEnergyCost(values)

    def budget(self, device: str, text: str) -> Budget:
        """A device budget as resolved after its LUT was built (``<device>/budgets``)."""
        from hilnas.searchers.result import Budget

        entry = self.result(f"{device}/budgets")["budgets"][text]
        return Budget(entry["metric"], entry["value"])
