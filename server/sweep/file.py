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
import re
from pathlib import Path

from hilnas.server.run.config import BudgetSpec
from hilnas.server.run.file import Problem, RunFileError, _Checker, _Field, _key_lines
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


def load_sweep_file(path: Path | str) -> SweepConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise FileNotFoundError(f"cannot read sweep file {path}: {err.strerror or err}") from None
    return parse_sweep_file(text, source=str(path), base_dir=path.parent.resolve(), default_name=path.stem)


def parse_sweep_file(text: str, *, source: str = "<sweep file>", base_dir: Path | None = None,
                     default_name: str = "sweep") -> SweepConfig:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+)", str(err))
        raise SweepFileError(source, [Problem(int(m.group(1)) if m else None, "syntax", str(err))]) from None
    sweep_raw, cells_raw = raw.pop("sweep", {}), raw.pop("cells", [])
    checker = _Checker(raw, _key_lines(text), source, base_dir, default_name)
    options = checker.table("sweep", _SWEEP, sweep_raw, ("sweep",), "[sweep]")
    cells = _cell_tables(checker, cells_raw)
    try:
        base = checker.config()          # every problem so far, the run file's and ours, at once
    except RunFileError as err:
        raise SweepFileError(source, err.problems) from None
    problems: list[Problem] = []
    product = [Cell(d.key, m, b, s) for d in base.devices for b in d.budgets for m in base.methods for s in base.seeds]
    explicit = []
    devices = {d.key: d for d in base.devices}
    for i, c in enumerate(cells):
        line, where = checker.lines.get(("cells", i)), f"[[cells]] #{i + 1}"
        if c["device"] not in devices:
            close = difflib.get_close_matches(str(c["device"]), devices, n=1)
            problems.append(Problem(line, f"{where} device", f"{c['device']!r} is not a [[devices]] key"
                                    + (f" (did you mean {close[0]!r}?)" if close else "")
                                    + f"; devices: {', '.join(devices)}"))
        if c["method"] not in checker.methods:
            problems.append(Problem(line, f"{where} method", f"{c['method']!r} is not a method; allowed: "
                                    f"{', '.join(checker.methods)}"))
        elif base.space not in checker.methods[c["method"]].spaces:
            problems.append(Problem(line, f"{where} method", f"method {c['method']!r} searches "
                                    f"{', '.join(checker.methods[c['method']].spaces)}, not {base.space!r}"))
        try:
            budget = BudgetSpec.parse(c["budget"])
        except ValueError as err:
            problems.append(Problem(line, f"{where} budget", str(err)))
            continue
        seed = c["seed"] if c["seed"] is not None else (base.seeds[0] if base.seeds else 0)
        explicit.append(Cell(c["device"], c["method"], budget, seed))
    if not product and not explicit and not problems:
        empty = "[search] seeds" if not base.seeds else "the devices' budgets"
        problems.append(Problem(checker.lines.get(("search", "seeds")), "sweep",
                                f"the sweep has no cells: {empty} is empty; give at least one seed (seeds = [0]) "
                                "or add a [[cells]] table"))
    if problems:
        raise SweepFileError(source, problems)
    try:
        opts = SweepOptions(**options)
    except ValueError as err:  # pragma: no cover - the field checks above refuse these first
        raise SweepFileError(source, [Problem(checker.lines.get(("sweep",)), "[sweep]", str(err))]) from None
    ordered = list(dict.fromkeys(product + explicit))   # an explicit cell already in the product runs once
    return SweepConfig(base=base, cells=tuple(ordered), options=opts, text=text,
                       base_dir=str(base_dir) if base_dir else "")


def _cell_tables(checker: _Checker, raw) -> list[dict]:
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        checker.problem(("cells",), "cells", "must be an array of tables ([[cells]])")
        return []
    out = []
    for i, c in enumerate(raw):
        v = checker.table("cells", _CELL, c, ("cells", i), f"[[cells]] #{i + 1}")
        missing = [k for k in ("device", "method", "budget") if v[k] is None]
        if missing:
            checker.problem(("cells", i), f"[[cells]] #{i + 1}", f"needs {', '.join(missing)} (e.g. device = \"pi4\", "
                            "method = \"dca\", budget = \"latency_ms=3\")")
            continue
        out.append(v)
    return out


def with_options(config: SweepConfig, **overrides) -> SweepConfig:
    """The sweep with engine options replaced (the command line wins over ``[sweep]``)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(config, options=dataclasses.replace(config.options, **given)) if given else config
