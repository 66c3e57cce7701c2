"""The run file: a good file becomes a RunConfig; a bad one is refused with every problem at once,
each with its line and what is allowed."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hilnas.server.run import BudgetSpec, RunFileError, load_run_file, parse_run_file

GOOD = textwrap.dedent("""\
    name = "ci"

    [space]
    name = "nb201"
    options = { C = 4, N = 1 }

    [data]
    dataset = "demo"
    batch_size = 32

    [search]
    methods = ["dca", "hypernet", "random"]
    seeds = [0, 1]
    search_epochs = 1
    train_epochs = 1
    max_batches = 3

    [measure]
    min_runs = 5
    energy = true

    [dca]
    multiplier_lr = 0.25

    [[devices]]
    key = "pi-sim"
    simulate = "raspi4"
    budgets = ["latency_ms=40%", "energy_mj=2.5"]

    [[devices]]
    key = "lab-pi"
    address = "192.168.1.20:50061"
    token_file = "pi.token"
    budgets = ["latency_ms=15"]

    [[devices]]
    key = "fleet-pi"
    budgets = ["params_m=1"]
    """)


def test_a_good_file_becomes_a_run_config(tmp_path: Path) -> None:
    path = tmp_path / "ci.toml"
    path.write_text(GOOD)
    cfg = load_run_file(path)
    assert (cfg.name, cfg.space, dict(cfg.space_options), cfg.dataset, cfg.batch_size) == ("ci", "nb201",
                                                                                          {"C": 4, "N": 1}, "demo", 32)
    assert cfg.methods == ("dca", "hypernet", "random") and cfg.seeds == (0, 1) and cfg.max_batches == 3
    assert cfg.measure.min_runs == 5 and cfg.energy and cfg.method_options == {"dca": {"multiplier_lr": 0.25}}
    sim, lab, fleet = cfg.devices
    assert (sim.source, sim.simulate, [b.text for b in sim.budgets]) == ("simulate", "raspi4",
                                                                        ["latency_ms=40%", "energy_mj=2.5"])
    assert lab.source == "address" and lab.endpoint.token_file == str(tmp_path / "pi.token")  # relative to the file
    assert fleet.source == "fleet" and fleet.budgets == (BudgetSpec("params_m", 1.0),)
    # What the run does, not how the file is written, decides which run a re-run resumes.
    assert parse_run_file(GOOD.replace("[data]", "# a comment\n[data]"), base_dir=tmp_path).fingerprint() == \
        cfg.fingerprint()
    assert parse_run_file(GOOD.replace("train_epochs = 1", "train_epochs = 2"),
                          base_dir=tmp_path).fingerprint() != cfg.fingerprint()
    assert "token" not in str(cfg.to_dict()["devices"][1]["endpoint"])


BAD = textwrap.dedent("""\
    name = "bad"
    colour = "blue"

    [space]
    name = "nb201"
    options = { C = 4, cells = 3 }

    [search]
    methods = ["dca", "dcaa"]
    train_epochs = "two"
    search_epochs = 0

    [measure]
    energy = "yes"

    [hypernet]
    kappa = "high"

    [[devices]]
    key = "pi"
    simulate = "raspi5"
    budgets = ["latency=5", "latency_ms=-1", "latency_ms=150%"]

    [[devices]]
    key = "pi"
    local = true
    address = "10.0.0.2:50061"
    budgets = []
    """)


def test_every_problem_at_once_with_its_line_and_the_allowed_values() -> None:
    with pytest.raises(RunFileError) as info:
        parse_run_file(BAD, source="bad.toml")
    text = str(info.value)
    expect = [
        ("bad.toml:2:", "unknown key 'colour'"),                     # unknown top-level key, with the allowed ones
        ("bad.toml:6:", "unknown key 'cells'"),                      # a field the space does not have
        ("bad.toml:9:", "'dcaa' is not a method; allowed: dca, hypernet, prune, darts, penalty, random"),
        ("bad.toml:10:", "train_epochs: must be an integer >= 1, got 'two'"),
        ("bad.toml:11:", "search_epochs: must be an integer >= 1, got 0"),
        ("bad.toml:14:", "energy: must be true or false, got 'yes'"),
        ("bad.toml:16:", "[hypernet]"),                              # options of a method the run does not run
        ("bad.toml:17:", "kappa: must be a number (default 0.1), got 'high'"),
        ("bad.toml:21:", "'raspi5' is not a profile; allowed: "),
        ("bad.toml:22:", "unknown budget metric 'latency'; use one of latency_ms, energy_mj, params_m, mflops"),
        ("bad.toml:22:", "latency_ms=-1: the value must be > 0"),
        ("bad.toml:22:", "latency_ms=150%: the value must be > 0 and <= 100%"),
        ("bad.toml:25:", "device 'pi' appears twice"),
        ("bad.toml:24:", "give one of simulate, local = true or address, not local = true and address"),
        ("bad.toml:28:", "give at least one budget"),
    ]
    for where, what in expect:
        assert any(line.strip().startswith(where) and what in line for line in text.splitlines()[1:]), (where, what, text)
    assert len(info.value.problems) == len(expect)
    lines = [p.line for p in info.value.problems]
    assert lines == sorted(lines)  # in file order
    assert "allowed: batch_size" not in text  # [data] is fine: no problem invented for it


def test_a_syntax_error_names_its_line_and_a_missing_device_is_a_problem() -> None:
    with pytest.raises(RunFileError, match=r"run.toml:3: syntax"):
        parse_run_file('name = "x"\n\n[space\n', source="run.toml")
    with pytest.raises(RunFileError, match="names no device"):
        parse_run_file('name = "x"\n', source="run.toml")
    with pytest.raises(RunFileError, match="searches nb201, darts, not 'mobilenet'|'mobilenet' is not allowed"):
        parse_run_file('[space]\nname = "mobilenet"\n[[devices]]\nkey = "a"\nlocal = true\nbudgets = ["latency_ms=1"]\n')
    with pytest.raises(FileNotFoundError, match="cannot read run file"):
        load_run_file("/nonexistent/run.toml")


def test_budgets_absolute_and_relative() -> None:
    b = BudgetSpec.parse("latency_ms=40%")
    assert b.relative and b.text == "latency_ms=40%" and b.resolve(1.0, 3.0) == pytest.approx(1.8)
    a = BudgetSpec.parse(" energy_mj = 2.5 ")
    assert not a.relative and a.resolve(1.0, 3.0) == 2.5 and a.text == "energy_mj=2.5"
    for text, why in (("latency_ms", "METRIC=VALUE"), ("latency_ms=fast", "not a number"),
                      ("watts=3", "unknown budget metric"), ("latency_ms=0%", "must be > 0")):
        with pytest.raises(ValueError, match=why):
            BudgetSpec.parse(text)


def test_the_examples_parse() -> None:
    examples = sorted((Path(__file__).parents[2] / "examples").glob("*.toml"))
    assert {p.name for p in examples} >= {"simulated-ci.toml", "raspberry-pi.toml", "termux-phone.toml"}
    for path in examples:
        cfg = load_run_file(path)
        assert cfg.devices and all(d.budgets for d in cfg.devices), path
