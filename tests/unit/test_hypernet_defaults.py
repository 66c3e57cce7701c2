"""Per-space defaults of the hypernetwork search (``HypernetConfig``'s ``"auto"``, ``hypernet.defaults``; issue 11
item 5 with the defaults): each space gets its measured family setting, an explicit setting wins field by field, the
search runs and records the resolved values, and nothing runs an unresolved config."""
from __future__ import annotations

import pytest

from hilnas.searchers.cost import ParamsCost
from hilnas.searchers.data import DatasetConfig, loaders_for
from hilnas.searchers.hypernet import HypernetConfig, new_hypernetwork, search
from hilnas.searchers.hypernet.defaults import FALLBACK, PER_SPACE
from testmodels import hyper_architect, tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIELDS = ("weight_lambda", "arch_step", "phase1", "anchor", "scale_sampling", "knee", "derivation")


def _settings(config: HypernetConfig) -> dict[str, str]:
    return {f: getattr(config, f) for f in FIELDS}


def test_auto_resolves_to_each_spaces_measured_setting():
    config = HypernetConfig()
    assert _settings(config) == dict.fromkeys(FIELDS, "auto") and not config.is_resolved
    assert _settings(config.resolved(tiny_space("darts"))) == {
        "weight_lambda": "sandwich", "arch_step": "relaxed", "phase1": "dearest", "anchor": "pinned",
        "scale_sampling": "log", "knee": "none", "derivation": "argmax"}
    assert _settings(config.resolved(tiny_space("nb201"))) == {
        "weight_lambda": "sandwich-children", "arch_step": "relaxed", "phase1": "dearest", "anchor": "pinned",
        "scale_sampling": "uniform", "knee": "family", "derivation": "argmax"}
    assert config.resolved(tiny_space("nb201")).is_resolved


def test_a_space_without_a_measured_setting_keeps_the_earlier_defaults():
    class Other:
        name = "mobilenet"

    assert _settings(HypernetConfig().resolved(Other())) == FALLBACK == {
        "weight_lambda": "drawn", "arch_step": "relaxed", "phase1": "none", "anchor": "none", "scale_sampling": "log",
        "knee": "none", "derivation": "argmax"}


@pytest.mark.parametrize("kind", ["darts", "nb201"])
def test_an_explicit_setting_wins_field_by_field(kind):
    given = HypernetConfig(weight_lambda="uniform", arch_step="relaxed" if kind == "nb201" else "straight-through")
    got = _settings(given.resolved(tiny_space(kind)))
    assert got["weight_lambda"] == "uniform" and got["arch_step"] == given.arch_step
    assert got["phase1"] == PER_SPACE[kind]["phase1"] and got["anchor"] == PER_SPACE[kind]["anchor"]
    explicit = HypernetConfig(weight_lambda="drawn", arch_step="relaxed", phase1="none", anchor="none",
                              scale_sampling="log", knee="none", derivation="argmax")
    assert explicit.resolved(tiny_space(kind)) is explicit


def test_phase1_turned_off_turns_the_auto_anchor_off_and_an_explicit_pin_without_it_is_refused():
    assert HypernetConfig(phase1="none").resolved(tiny_space("darts")).anchor == "none"
    with pytest.raises(ValueError, match=r"set phase1='dearest'"):
        HypernetConfig(phase1="none", anchor="pinned")


def test_nothing_runs_an_unresolved_config():
    from hilnas.searchers.hypernet import HyperArchitect

    with pytest.raises(ValueError, match="resolve the config for the space first"):
        new_hypernetwork(4, {"alphas.cell": (6, 5)}, HypernetConfig())
    hook = hyper_architect(tiny_space("nb201"), HypernetConfig())   # the helper resolves, as ``search`` does
    assert hook.config.weight_lambda == "sandwich-children"
    with pytest.raises(ValueError, match="resolve the config for the space first"):
        HyperArchitect(hook.relaxed, hook.objective, HypernetConfig(), steps_per_epoch=4, seed=0)
    from hilnas.searchers.hypernet.tradeoff import ScaleMap
    with pytest.raises(ValueError, match="resolve the config for the space first"):   # "auto" is not a scale map
        ScaleMap.of(HypernetConfig())
    assert ScaleMap.of(HypernetConfig().resolved(tiny_space("nb201"))).floor is None            # uniform
    assert ScaleMap.of(HypernetConfig().resolved(tiny_space("darts"))).floor == HypernetConfig().log_floor


def test_the_search_runs_and_records_the_resolved_setting():
    data = loaders_for(DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4,
                                     synthetic_train=128, synthetic_test=32, val_fraction=0.5, batch_size=16))[1]
    res = search(tiny_space("darts"), ParamsCost(), HypernetConfig(epochs=2, eval_batches=1), data=data)
    assert _settings(res.config) == PER_SPACE["darts"]
    assert {f: res.to_dict()["config"][f] for f in FIELDS} == PER_SPACE["darts"]
    from hilnas.searchers.hypernet import Anchored
    assert isinstance(res.hypernet, Anchored) and bool(res.hypernet.pinned)   # the pin ran: phase 1 and the anchor


def test_the_cli_states_exactly_the_configs_per_space_settings():
    from hilnas.server.cli.search import hypernet as cli

    assert {k: v for k, v in cli.AUTO_SETTINGS.items() if k != "other spaces"} == PER_SPACE
    assert cli.AUTO_SETTINGS["other spaces"] == FALLBACK and set(cli.SHOWN_SETTINGS) == set(FALLBACK)
