"""``PruneRunConfig.chain_batches`` left to the run (None): the benchmarked chain where the validation split holds
its batches besides the held-out ones, off with a note where it does not, and an explicit setting kept as given."""
from types import SimpleNamespace

import pytest

from hilnas.searchers.prune.band import DEFAULT_CHAIN_BATCHES, default_chain
from hilnas.searchers.prune.search import PruneConfig
from hilnas.searchers.result import Budget
from hilnas.server.search.prune import PruneRunConfig, _chain_setting

BUDGETS = (Budget("latency_ms", 5.0),)


def loaders(val_batches):
    return SimpleNamespace(val=[None] * val_batches)


def settle(val_batches, **kw):
    said = []
    config, notes = _chain_setting(PruneRunConfig(search=PruneConfig(eval_batches=8), **kw), loaders(val_batches),
                                   said.append)
    return config.chain_batches, notes, said


def test_the_benchmarked_chain_when_the_split_holds_it():
    assert DEFAULT_CHAIN_BATCHES == 2
    assert settle(8 + 2, budgets=BUDGETS) == (2, [], [])
    assert settle(31, budgets=BUDGETS) == (2, [], [])


def test_too_small_a_split_turns_it_off_and_says_why():
    chain, notes, said = settle(8 + 1, budgets=BUDGETS)
    assert chain == 0 and said == notes
    (note,) = notes
    assert "9 batch(es), 8 held out" in note and "needs 2 more" in note and "--val-fraction" in note


@pytest.mark.parametrize("kw", [{}, {"lambdas": (0.0, 1.0)}, {"budgets": BUDGETS, "band": 0.0},
                                {"budgets": BUDGETS, "model": "mobilenet"}])
def test_off_without_a_band_search_to_use_it(kw):
    assert settle(31, **kw) == (0, [], [])   # no budgets, bisection only, or the MobileNet: nothing to say


@pytest.mark.parametrize("given", [0, 1, 5])
def test_a_given_setting_is_kept_as_it_is(given):
    # even one the split cannot hold: run_prune's check refuses that one, naming the value that fits
    assert settle(9, budgets=BUDGETS, chain_batches=given) == (given, [], [])


def test_a_negative_setting_is_refused():
    with pytest.raises(ValueError, match="chain_batches must be >= 0"):
        PruneRunConfig(chain_batches=-1)


def test_the_run_files_band_search_takes_the_same_default():
    # server/run/prune_steps.derive_step asks default_chain, as run_prune does
    assert [default_chain(v, 8) for v in (8, 9, 10, 31)] == [0, 0, 2, 2]
    assert default_chain(3, 2) == 0 and default_chain(4, 2) == 2
