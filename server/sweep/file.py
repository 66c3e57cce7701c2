"""The sweep file: a run file (``server/run/file.py``) plus ``[sweep]`` and ``[[cells]]``.

Everything a run file says means the same here; the sweep reads it as a cross product (every
device × each of its budgets × every method × every seed, one cell each), adds the explicit
cells, and runs them apart (``config.py``). Every problem is reported at once with its line,
as for a run file::

    name = "pi-sweep"
    [space] / [data] / [search] / [lut] / [measure] / [agents] / [[devices]]   # as in a run file

    [sweep]
    on = "ray"                 # local (a process pool here; default) | ray
    address = "10.0.0.5:6379"  # a Ray cluster; without it, a local Ray on 127.0.0.1
    workers = 4                # cells at once (default: this machine's cores / the cluster's CPUs)
    cpus_per_cell = 1          # Ray resources a cell reserves
    memory_mb_per_cell = 2048
    per_device = 1             # cells at once on one real board (simulated boards are per cell)
    retries = 2                # a cell whose worker died runs again, this many times at most

    [[cells]]                  # a cell outside the product
    device = "pi4"
    method = "random"
    budget = "latency_ms=3"
    seed = 1                   # default: the first of [search] seeds
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from hilnas.server.run.config import BudgetSpec
from hilnas.server.run.file import Problem, RunFileError, _Checker, _Field, _key_lines, read_file, read_toml
from hilnas.server.sweep.config import ENGINES, Cell, SweepConfig, SweepOptions

_SWEEP: dict[str, _Field] = {
    "on": _Field("str", "local", choices=ENGINES), "address": _Field("str", optional=True),
    "workers": _Field("int", minimum=1, optional=True), "cpus_per_cell": _Field("float", 1.0, minimum=0.01),
    "memory_mb_per_cell": _Field("int", 2048, minimum=0), "per_device": _Field("int", 1, minimum=1),
    "retries": _Field("int", 2, minimum=0), "connect_timeout_s": _Field("float", 30.0, minimum=0.1),
}
_CELL: dict[str, _Field] = {"device": _Field("str"), "method": _Field("str"), "budget": _Field("str"),
                            "seed": _Field("int", minimum=0, optional=True)}


class SweepFileError(RunFileError):
    """A sweep file that cannot run; ``problems`` lists every problem, each with its line."""

    def __init__(self, source: str, problems: list[Problem]):
        super().__init__(source, problems)
        self.args = (str(self.args[0]).replace("in the run file", "in the sweep file", 1),)

    def __str__(self) -> str:
        return str(self.args[0])


def load_sweep_file(path: Path | str) -> SweepConfig:
    path = Path(path)
    return parse_sweep_file(read_file(path, "sweep file"), source=str(path), base_dir=path.parent.resolve(),
                            default_name=path.stem)


def parse_sweep_file(text: str, *, source: str = "<sweep file>", base_dir: Path | None = None,
                     default_name: str = "sweep") -> SweepConfig:
    raw = read_toml(text, source, SweepFileError)
    sweep_raw, cells_raw = raw.pop("sweep", {}), raw.pop("cells", [])
    checker = _Checker(raw, _key_lines(text), source, base_dir, default_name)
    options = checker.table("sweep", _SWEEP, sweep_raw, ("sweep",), "[sweep]")
    cells = _cells(checker, cells_raw)
    try:
        base = checker.config()          # every problem so far, the run file's and ours, at once
    except RunFileError as err:
        raise SweepFileError(source, err.problems) from None
    product = [Cell(d.key, m, b, s) for d in base.devices for b in d.budgets for m in base.methods for s in base.seeds]
    explicit = [Cell(c["device"], c["method"], c["budget"], c["seed"] if c["seed"] is not None else
                     (base.seeds[0] if base.seeds else 0)) for c in cells]
    if not product and not explicit:
        empty = "[search] seeds" if not base.seeds else "the devices' budgets"
        raise SweepFileError(source, [Problem(checker.lines.get(("search", "seeds")), "sweep",
                                              f"the sweep has no cells: {empty} is empty; give at least one seed "
                                              "(seeds = [0]) or add a [[cells]] table")])
    opts = SweepOptions(**options)
    ordered = list(dict.fromkeys(product + explicit))   # an explicit cell already in the product runs once
    return SweepConfig(base=base, cells=tuple(ordered), options=opts, text=text,
                       base_dir=str(base_dir) if base_dir else "")


def _cells(checker: _Checker, raw) -> list[dict]:
    """The ``[[cells]]`` tables, each checked against the file's devices, the methods and the space."""
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        checker.problem(("cells",), "cells", "must be an array of tables ([[cells]])")
        return []
    devices = [d.get("key") for d in checker.raw.get("devices", []) if isinstance(d, dict)] \
        if isinstance(checker.raw.get("devices"), list) else []
    space = (checker.raw.get("space") or {}).get("name", "nb201") if isinstance(checker.raw.get("space"), dict) else ""
    out = []
    for i, c in enumerate(raw):
        path, where = ("cells", i), f"[[cells]] #{i + 1}"
        v = checker.table("cells", _CELL, c, path, where)
        missing = [k for k in ("device", "method", "budget") if v[k] is None]
        if missing:
            checker.problem(path, where, f"needs {', '.join(missing)} (e.g. device = \"pi4\", method = \"dca\", "
                            "budget = \"latency_ms=3\")")
            continue
        ok = True
        if v["device"] not in devices:
            close = difflib.get_close_matches(str(v["device"]), [d for d in devices if isinstance(d, str)], n=1)
            checker.problem(path + ("device",), f"{where} device", f"{v['device']!r} is not a [[devices]] key"
                            + (f" (did you mean {close[0]!r}?)" if close else "") + f"; devices: "
                            f"{', '.join(map(str, devices)) or 'none'}")
            ok = False
        spec = checker.methods.get(v["method"])
        if spec is None:
            checker.problem(path + ("method",), f"{where} method", f"{v['method']!r} is not a method; allowed: "
                            f"{', '.join(checker.methods)}")
            ok = False
        elif space and space not in spec.spaces:
            checker.problem(path + ("method",), f"{where} method", f"method {v['method']!r} searches "
                            f"{', '.join(spec.spaces)}, not {space!r}")
            ok = False
        try:
            v["budget"] = BudgetSpec.parse(v["budget"])
        except ValueError as err:
            checker.problem(path + ("budget",), f"{where} budget", str(err))
            ok = False
        if ok:
            out.append(v)
    return out


def with_options(config: SweepConfig, **overrides) -> SweepConfig:
    """The sweep with engine options replaced (the command line wins over ``[sweep]``)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(config, options=dataclasses.replace(config.options, **given)) if given else config
