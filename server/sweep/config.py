"""What one ``hilnas sweep`` does, as typed data: the cells, and where and how they run.

A sweep is a run file (``server/run/file.py``: devices with their budgets, methods, seeds, the
space, data and epochs) read as a cross product: every device × each of its budgets × every
method × every seed is one **cell**, plus the explicit ``[[cells]]``. A cell is one
``hilnas run``-style search (``RunConfig`` with one device, one budget, one method, one seed),
run apart from the others on a worker: a process of this machine's pool, or a Ray task.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from hilnas.server.run.config import BudgetSpec, RunConfig

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class SweepOptions:
    """Where the cells run and how many at once (``[sweep]`` in the file; the CLI may override)."""

    on: str = "local"                # "local": a process pool on this machine; "ray": Ray tasks
    address: str | None = None       # Ray cluster ("HOST:PORT" or "ray://HOST:PORT"); None = a local Ray on 127.0.0.1
    workers: int | None = None       # cells at once; None = this machine's cores (local) or the cluster's CPUs / cpus_per_cell
    cpus_per_cell: float = 1.0       # CPUs a cell reserves (Ray resource; 1 torch thread by default)
    memory_mb_per_cell: int = 2048   # memory a cell reserves (Ray resource), MiB; 0 = none
    per_device: int = 1              # cells at once per shared device (an agent address, a fleet entry, local = true)
    retries: int = 2                 # a cell whose worker was lost is run again up to this many times
    connect_timeout_s: float = 30.0  # a Ray address that does not answer within this fails the sweep, nothing started

    def __post_init__(self) -> None:
        if self.on not in ENGINES:
            raise ValueError(f"sweep engine must be one of {', '.join(ENGINES)}, got {self.on!r}")
        if (self.workers is not None and self.workers < 1) or self.cpus_per_cell <= 0 or self.per_device < 1:
            raise ValueError("workers and per_device must be >= 1, cpus_per_cell > 0")
        if self.memory_mb_per_cell < 0 or self.retries < 0 or self.connect_timeout_s <= 0:
            raise ValueError("memory_mb_per_cell and retries must be >= 0, connect_timeout_s > 0")


@dataclass(frozen=True)
class Cell:
    """One search of the sweep: a device, one of its budgets, a method, a seed."""

    device: str
    method: str
    budget: BudgetSpec
    seed: int

    @property
    def key(self) -> str:
        """Stable name of the cell within its sweep: ``raspi4/dca/latency_ms=40%/seed0``."""
        return f"{self.device}/{self.method}/{self.budget.text}/seed{self.seed}"


@dataclass(frozen=True)
class SweepConfig:
    """The sweep: the run file's settings (``base``), its cells in order, and the engine options."""

    base: RunConfig
    cells: tuple[Cell, ...]
    options: SweepOptions = SweepOptions()
    text: str = ""                   # the sweep file as read: a Ray worker re-reads its cell from it
    base_dir: str = ""               # the file's folder (relative token files resolve from it)

    @property
    def name(self) -> str:
        return self.base.name

    def cell(self, key: str) -> Cell:
        for c in self.cells:
            if c.key == key:
                return c
        raise KeyError(f"the sweep has no cell {key!r}")

    def cell_config(self, cell: Cell) -> RunConfig:
        """The ``RunConfig`` one cell runs: its device with its budget only, its method and seed."""
        device = next(d for d in self.base.devices if d.key == cell.device)
        return dataclasses.replace(
            self.base, name=f"{self.base.name} · {cell.key}", devices=(dataclasses.replace(device, budgets=(cell.budget,)),),
            methods=(cell.method,), seeds=(cell.seed,),
            method_options={k: v for k, v in self.base.method_options.items() if k == cell.method})

    def shared_device(self, cell: Cell) -> bool:
        """True when cells of this device measure on the same board (so ``per_device`` applies);
        a simulated device is started by each cell for itself."""
        device = next(d for d in self.base.devices if d.key == cell.device)
        return device.simulate is None

    def fingerprint(self) -> str:
        """What the sweep computes (not where it runs): a re-run of the same file resumes it."""
        base = self.base.to_dict()
        base.pop("source", None)
        base.pop("name", None)
        data = {"base": base, "cells": [c.key for c in self.cells]}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.base.source, "cells": [c.key for c in self.cells],
                "options": dataclasses.asdict(self.options), "run": self.base.to_dict(),
                "fingerprint": self.fingerprint()}
