"""The run file: one hardware-validated search described in TOML (``hilnas run FILE.toml``).

Every problem of a file is reported at once, each with its line and what is allowed, so a user
fixes a file in one pass::

    run.toml:12: [search] methods: 'dcaa' is not a method; allowed: dca, hypernet, prune, darts, penalty, random
    run.toml:20: [[devices]] #2 simulate: 'raspi5' is not a profile; allowed: jetson-nano, pixel3, raspi4, ...

The format (``examples/*.toml`` are complete files)::

    name = "pi-latency"                 # shown in reports (default: the file's name)

    [space]
    name = "nb201"                      # nb201 | darts | mobilenet (the splitting method's backbone) |
                                        # resnet18-narrow | resnet18 (the prune method's networks)
    options = { C = 8, N = 1 }          # fields of the space (channels, cells, ...; lists for mobilenet's
                                        # base_widths = [32, 64, 128], strides = [2, 2, 1])

    [data]
    dataset = "demo"                    # demo | fashion-mnist | cifar10 | synthetic
    # data_dir, train_size, test_size, batch_size

    [search]
    methods = ["dca", "hypernet"]       # any of the registry's methods (hilnas run --help lists them)
    seeds = [0]
    search_epochs = 2
    train_epochs = 2                    # final training of each found network
    # lr, max_batches, torch_threads

    [lut]                               # measuring the op micro-models (part of the LUT's identity)
    warmup = 5
    min_runs = 20
    min_seconds = 0.1

    [measure]                           # measuring the found networks
    warmup = 10
    min_runs = 30
    min_seconds = 0.5
    energy = false

    [agents]                            # an agent that does not answer is tried again ...
    retries = 4
    backoff_s = 1.0                     # ... after this many seconds, doubling

    [dca]                               # options of one method: fields of its config class
    multiplier_lr = 0.5

    [[devices]]
    key = "raspi4-sim"
    simulate = "raspi4"                 # start a simulated agent (or: local = true, for this host)
    budgets = ["latency_ms=40%", "latency_ms=1.5"]

    [[devices]]
    key = "pi"                          # with address: that agent; without: the fleet's entry
    address = "192.168.1.20:50061"
    token_file = "pi.token"             # relative to the run file
    budgets = ["latency_ms=15"]

A budget is ``METRIC=VALUE`` or ``METRIC=PERCENT%`` (``run.config.BudgetSpec``).
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hilnas.server.run.config import (BUDGET_METRICS, DEFAULT_LUT_MEASURE, DEFAULT_MEASURE, BudgetSpec,
                                      DeviceSpec, RunConfig)

DATASETS = ("demo", "fashion-mnist", "cifar10", "synthetic")
SPACES = ("nb201", "darts", "mobilenet", "resnet18-narrow", "resnet18")
_AGENT_KEYS = ("address", "token", "token_file", "tls", "insecure", "name")


class RunFileError(ValueError):
    """A run file that cannot be run; ``problems`` lists every problem, each with its line."""

    def __init__(self, source: str, problems: list["Problem"]):
        problems = sorted(problems, key=lambda p: p.line or 0)  # in file order
        self.source, self.problems = source, problems
        lines = [p.render(source) for p in problems]
        super().__init__(f"{source}: {len(problems)} problem(s) in the run file:\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class Problem:
    line: int | None
    where: str            # "[search] methods", "[[devices]] #2 simulate"
    message: str

    def render(self, source: str) -> str:
        return f"{Path(source).name}:{self.line if self.line else '?'}: {self.where}: {self.message}"


def load_run_file(path: Path | str) -> RunConfig:
    """Read and check a run file; ``RunFileError`` lists every problem with its line."""
    path = Path(path)
    return parse_run_file(read_file(path, "run file"), source=str(path), base_dir=path.parent.resolve(),
                          default_name=path.stem)


def parse_run_file(text: str, *, source: str = "<run file>", base_dir: Path | None = None,
                   default_name: str = "run") -> RunConfig:
    raw = read_toml(text, source)
    return _Checker(raw, _key_lines(text), source, base_dir, default_name).config()


def read_file(path: Path, what: str) -> str:
    """The text of a run (or sweep) file; ``FileNotFoundError`` saying which file otherwise."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise FileNotFoundError(f"cannot read {what} {path}: {err.strerror or err}") from None


def read_toml(text: str, source: str, error: type[RunFileError] | None = None) -> dict:
    """The file's tables (also the sweep file's); a syntax error as ``error`` with its line."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:  # the parser stops at the first syntax error
        m = re.search(r"line (\d+)", str(err))
        raise (error or RunFileError)(source, [Problem(int(m.group(1)) if m else None, "syntax", str(err))]) from None


# -- where each key is ------------------------------------------------------------------------------
def _key_lines(text: str) -> dict[tuple, int]:
    """Line of every table header and ``key =`` line: ("search", "methods") -> 12, ("devices", 1) -> 20.

    A light scanner (tomllib keeps no positions): enough to point at the key a problem is about."""
    lines: dict[tuple, int] = {}
    table: tuple = ()
    arrays: dict[tuple, int] = {}
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if m := re.match(r"^\[\[\s*([^\]]+?)\s*\]\]", line):
            name = tuple(p.strip().strip('"') for p in m.group(1).split("."))
            arrays[name] = arrays.get(name, -1) + 1
            table = name + (arrays[name],)
            lines.setdefault(table, no)
        elif m := re.match(r"^\[\s*([^\]]+?)\s*\]", line):
            table = tuple(p.strip().strip('"') for p in m.group(1).split("."))
            lines.setdefault(table, no)
        elif m := re.match(r'^((?:[A-Za-z0-9_\-]+|"[^"]*")(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"))*)\s*=', line):
            key = tuple(p.strip().strip('"') for p in m.group(1).split("."))
            lines.setdefault(table + key, no)
    return lines


# -- checking -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Field:
    """A key of a table: its kind, what it may be, and its default."""
    kind: str                      # "int" | "float" | "str" | "bool" | "ints" | "strs" | "table"
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    optional: bool = False         # None allowed (a missing key keeps the default)


_TABLES: dict[str, dict[str, _Field]] = {
    "": {"name": _Field("str"), "version": _Field("int", 1, minimum=1)},
    "space": {"name": _Field("str", "nb201", choices=SPACES), "options": _Field("table", {})},
    "data": {"dataset": _Field("str", "demo", choices=DATASETS), "data_dir": _Field("str", optional=True),
             "train_size": _Field("int", minimum=1, optional=True), "test_size": _Field("int", minimum=1, optional=True),
             "batch_size": _Field("int", 64, minimum=1)},
    "search": {"methods": _Field("strs", ("dca", "hypernet")), "seeds": _Field("ints", (0,), minimum=0),
               "search_epochs": _Field("int", 2, minimum=1), "train_epochs": _Field("int", 2, minimum=1),
               "lr": _Field("float", 0.05, minimum=0), "max_batches": _Field("int", minimum=1, optional=True),
               "torch_threads": _Field("int", 1, minimum=0)},
    "lut": {"warmup": _Field("int", DEFAULT_LUT_MEASURE.warmup_runs, minimum=0),
            "min_runs": _Field("int", DEFAULT_LUT_MEASURE.min_runs, minimum=1),
            "min_seconds": _Field("float", DEFAULT_LUT_MEASURE.min_seconds, minimum=0),
            "threads": _Field("int", 0, minimum=0)},
    "measure": {"warmup": _Field("int", DEFAULT_MEASURE.warmup_runs, minimum=0),
                "min_runs": _Field("int", DEFAULT_MEASURE.min_runs, minimum=1),
                "min_seconds": _Field("float", DEFAULT_MEASURE.min_seconds, minimum=0),
                "threads": _Field("int", 0, minimum=0), "energy": _Field("bool", False)},
    "agents": {"retries": _Field("int", 4, minimum=0), "backoff_s": _Field("float", 1.0, minimum=0)},
}
_DEVICE: dict[str, _Field] = {
    "key": _Field("str"), "budgets": _Field("strs", ()), "simulate": _Field("str", optional=True),
    "local": _Field("bool", False), "seed": _Field("int", 0, minimum=0),
    **{k: _Field("str", optional=True) for k in ("address", "token", "token_file", "name")},
    "tls": _Field("any", optional=True), "insecure": _Field("bool", False),
}


class _Checker:
    """Walks the parsed file once, collecting every problem instead of stopping at the first."""

    def __init__(self, raw: dict, lines: dict[tuple, int], source: str, base_dir: Path | None, default_name: str):
        from hilnas.server.run.methods import METHODS

        self.raw, self.lines, self.source, self.base_dir = raw, lines, source, base_dir
        self.default_name = default_name
        self.methods = METHODS
        self.problems: list[Problem] = []

    def problem(self, path: tuple, where: str, message: str) -> None:
        line = None
        for n in range(len(path), 0, -1):  # the key itself, else the nearest enclosing table
            if path[:n] in self.lines:
                line = self.lines[path[:n]]
                break
        self.problems.append(Problem(line, where, message))

    def config(self) -> RunConfig:
        sections = {**_TABLES, **{m: {} for m in self.methods}, "devices": {}}
        for key in self.raw:
            if key not in sections and key not in _TABLES[""]:
                self.problem((key,), f"[{key}]" if isinstance(self.raw[key], dict) else key,
                             _unknown(key, [k for k in sections if k] + list(_TABLES[""])))
        v = {name: self.table(name, fields) for name, fields in _TABLES.items()}
        methods = tuple(v["search"]["methods"])
        for m in methods:
            if m not in self.methods:
                self.problem(("search", "methods"), "[search] methods",
                             f"{m!r} is not a method; allowed: {', '.join(self.methods)}")
        if not methods:
            self.problem(("search", "methods"), "[search] methods", "give at least one method")
        space_opts = self.space_options(v["space"]["name"], v["space"]["options"])
        options = {m: self.method_options(m) for m in self.methods if m in self.raw}
        for m in options:
            if m not in methods:
                self.problem((m,), f"[{m}]", f"options for {m!r}, which [search] methods does not run")
        devices = self.devices()
        for m in methods:
            spec = self.methods.get(m)
            if spec and v["space"]["name"] not in spec.spaces:
                self.problem(("space", "name"), "[space] name", f"method {m!r} searches {', '.join(spec.spaces)}, "
                             f"not {v['space']['name']!r}")
        if self.problems:
            raise RunFileError(self.source, self.problems)
        lut, meas, search, data = v["lut"], v["measure"], v["search"], v["data"]
        return RunConfig(
            name=v[""]["name"] or self.default_name, devices=devices, methods=methods, space=v["space"]["name"],
            space_options=space_opts, dataset=data["dataset"], data_dir=data["data_dir"],
            train_size=data["train_size"], test_size=data["test_size"], batch_size=data["batch_size"],
            seeds=tuple(search["seeds"]), search_epochs=search["search_epochs"], train_epochs=search["train_epochs"],
            lr=search["lr"], max_batches=search["max_batches"], torch_threads=search["torch_threads"] or None,
            lut_measure=dataclasses.replace(DEFAULT_LUT_MEASURE, warmup_runs=lut["warmup"], min_runs=lut["min_runs"],
                                            min_seconds=lut["min_seconds"], threads=lut["threads"]),
            measure=dataclasses.replace(DEFAULT_MEASURE, warmup_runs=meas["warmup"], min_runs=meas["min_runs"],
                                        min_seconds=meas["min_seconds"], threads=meas["threads"]),
            energy=meas["energy"], retries=v["agents"]["retries"], backoff_s=v["agents"]["backoff_s"],
            method_options=options, source=self.source)

    # -- tables ---------------------------------------------------------------------------------
    def table(self, name: str, fields: dict[str, _Field], raw: Any = None, path: tuple | None = None,
              where: str | None = None) -> dict[str, Any]:
        """The table's values (defaults filled in); a problem for each unknown key or bad value."""
        path = path if path is not None else ((name,) if name else ())
        where = where if where is not None else (f"[{name}]" if name else "")
        if raw is None:
            raw = self.raw if not name else self.raw.get(name, {})
            if not name:
                raw = {k: v for k, v in raw.items() if k in fields}
        out = {k: f.default for k, f in fields.items()}
        if not isinstance(raw, dict):
            self.problem(path, where or name, f"must be a table ([{name}]), got {_kind(raw)}")
            return out
        for key, value in raw.items():
            label = f"{where} {key}".strip()
            if key not in fields:
                self.problem(path + (key,), label, _unknown(key, fields))
                continue
            checked = self.value(fields[key], value, path + (key,), label)
            if checked is not _BAD:
                out[key] = checked
        return out

    def value(self, f: _Field, value: Any, path: tuple, label: str, *, report: bool = True) -> Any:
        if not report:  # a quiet try (one of several allowed kinds)
            saved, self.problems = self.problems, []
            try:
                return self.value(f, value, path, label)
            finally:
                self.problems = saved
        ok: Callable[[Any], bool]
        kinds = {k: (check, _KIND_TEXT[k]) for k, check in _KIND_CHECK.items()}
        if f.kind in ("ints", "strs"):
            item = "int" if f.kind == "ints" else "str"
            if not isinstance(value, list) or not all(kinds[item][0](x) for x in value):
                example = "[0, 1]" if item == "int" else '["dca"]'
                self.problem(path, label, f"must be a list of {kinds[item][1].split(' ', 1)[1]}s, "
                             f"e.g. {example}; got {value!r}")
                return _BAD
            bad = [x for x in value if (f.minimum is not None and item == "int" and x < f.minimum)
                   or (f.choices and x not in f.choices)]
            if bad:
                self.problem(path, label, f"{bad[0]!r} is not allowed; {_allowed(f)}")
                return _BAD
            return tuple(value)
        ok, what = kinds[f.kind]
        if not ok(value):
            self.problem(path, label, f"must be {what}{_range(f)}, got {value!r} ({_kind(value)})")
            return _BAD
        if f.choices and value not in f.choices:
            close = difflib.get_close_matches(str(value), f.choices, n=1)
            self.problem(path, label, f"{value!r} is not allowed"
                         + (f" (did you mean {close[0]!r}?)" if close else "") + f"; {_allowed(f)}")
            return _BAD
        if f.minimum is not None and value < f.minimum:
            self.problem(path, label, f"must be {what}{_range(f)}, got {value!r}")
            return _BAD
        return float(value) if f.kind == "float" else value

    def space_options(self, space: str, options: dict[str, Any]) -> dict[str, Any]:
        """Fields of the space a run file may set (the dataset sets the input shape and classes)."""
        import dataclasses as dc

        from hilnas.searchers.spaces import SpaceError, create_space

        if space not in SPACES or not isinstance(options, dict):
            return {}
        cls = type(create_space(space))
        fixed = {"in_channels", "input_size", "num_classes", "ops"}
        allowed = {f.name: f for f in dc.fields(cls) if f.name not in fixed}
        out = {}
        for key, value in options.items():
            label = f"[space] options.{key}"
            if key not in allowed:
                self.problem(("space", "options"), label, _unknown(key, allowed) + " (the dataset sets the input "
                             "shape and the classes)")
            elif isinstance(value, list) and value and all(_positive(x) for x in value):
                out[key] = tuple(value)  # e.g. mobilenet's base_widths = [32, 64, 128]
            elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
                self.problem(("space", "options"), label, f"must be an integer >= 1 (or a list of numbers > 0, "
                             f"e.g. base_widths = [32, 64, 128]), got {value!r}")
            else:
                out[key] = value
        try:
            create_space(space, **out)
        except SpaceError as err:
            self.problem(("space", "options"), "[space] options", str(err))
        return out

    def method_options(self, method: str) -> dict[str, Any]:
        """``[dca]`` and the like: fields of the method's config, with the types of their defaults."""
        raw = self.raw[method]
        allowed = self.methods[method].options()
        if not isinstance(raw, dict):
            self.problem((method,), f"[{method}]", "must be a table")
            return {}
        out = {}
        for key, value in raw.items():
            label = f"[{method}] {key}"
            if key not in allowed:
                self.problem((method, key), label, _unknown(key, allowed))
                continue
            default, annotation = allowed[key]
            kinds = [k for k in ("bool", "int", "float", "str") if re.search(rf"\b{k}\b", annotation)] or \
                [{bool: "bool", int: "int", float: "float", str: "str"}[type(default)]]
            if "float" in kinds and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not any(self.value(_Field(k), value, (method, key), label, report=False) is not _BAD for k in kinds):
                self.problem((method, key), label, f"must be {' or '.join(_KIND_TEXT[k] for k in kinds)} "
                             f"(default {default!r}), got {value!r} ({_kind(value)})")
                continue
            out[key] = value
        return out

    def devices(self) -> tuple[DeviceSpec, ...]:
        from hilnas.agent.sim.profile import list_profiles
        from hilnas.server.fleet import FleetError, check_device_key
        from hilnas.server.fleet.toml import _agent_from_toml

        raw = self.raw.get("devices")
        if raw is None:
            self.problem((), "[[devices]]", "the run file names no device; add a [[devices]] table with a key "
                         "and budgets (see examples/)")
            return ()
        if not isinstance(raw, list) or not all(isinstance(d, dict) for d in raw):
            self.problem(("devices",), "devices", "must be an array of tables ([[devices]])")
            return ()
        out, keys = [], set()
        profiles = list_profiles()
        for i, d in enumerate(raw):
            where, path = f"[[devices]] #{i + 1}", ("devices", i)
            v = self.table("devices", _DEVICE, d, path, where)
            key = v["key"]
            if key is None:
                self.problem(path, where, "has no key (the device's name, e.g. key = \"pi\")")
                continue
            try:
                check_device_key(key)
            except FleetError as err:
                self.problem(path + ("key",), f"{where} key", str(err))
            if key in keys:
                self.problem(path + ("key",), f"{where} key", f"device {key!r} appears twice")
            keys.add(key)
            where = f"[[devices]] {key!r}"
            budgets = []
            for text in v["budgets"]:
                try:
                    budgets.append(BudgetSpec.parse(text))
                except ValueError as err:
                    self.problem(path + ("budgets",), f"{where} budgets", str(err))
            if not v["budgets"]:
                self.problem(path + ("budgets",), f"{where} budgets", "give at least one budget, e.g. "
                             "budgets = [\"latency_ms=40%\"]; metrics: " + ", ".join(BUDGET_METRICS))
            if v["simulate"] is not None and v["simulate"] not in profiles and not Path(v["simulate"]).suffix == ".toml":
                self.problem(path + ("simulate",), f"{where} simulate",
                             f"{v['simulate']!r} is not a profile; allowed: {', '.join(profiles)} (or a profile .toml)")
            agent = {k: d[k] for k in _AGENT_KEYS if k in d}
            sources = [s for s, on in (("simulate", v["simulate"] is not None), ("local = true", v["local"]),
                                       ("address", "address" in agent)) if on]
            if len(sources) > 1:
                self.problem(path, where, f"give one of simulate, local = true or address, not {' and '.join(sources)}")
            elif agent and "address" not in agent:
                self.problem(path + (next(iter(agent)),), where, f"{', '.join(agent)} without an address")
            endpoint = None
            if "address" in agent and len(sources) == 1:
                try:
                    endpoint = _agent_from_toml(agent, self.base_dir, "agent")
                except FleetError as err:
                    self.problem(path + ("address",), f"{where} address", str(err).removeprefix("agent: "))
            out.append(DeviceSpec(key=key, budgets=tuple(budgets), simulate=v["simulate"], local=v["local"],
                                  endpoint=endpoint, seed=v["seed"]))
        if not raw:
            self.problem(("devices",), "devices", "the list of devices is empty")
        return tuple(out)


_BAD = object()
_KIND_CHECK: dict[str, Callable[[Any], bool]] = {
    "int": lambda x: isinstance(x, int) and not isinstance(x, bool),
    "float": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
    "str": lambda x: isinstance(x, str), "bool": lambda x: isinstance(x, bool),
    "table": lambda x: isinstance(x, dict), "any": lambda x: True}
_KIND_TEXT = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
              "table": "a table, e.g. { C = 8 }", "any": ""}


def _unknown(key: str, allowed) -> str:
    names = sorted(allowed)
    close = difflib.get_close_matches(key, names, n=1)
    return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + f"; allowed: {', '.join(names)}"


def _allowed(f: _Field) -> str:
    if f.choices:
        return f"allowed: {', '.join(f.choices)}"
    return f"must be >= {f.minimum:g}" if f.minimum is not None else ""


def _range(f: _Field) -> str:
    return f" >= {f.minimum:g}" if f.minimum is not None else ""


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)



def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
