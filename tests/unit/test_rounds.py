import math

import pytest

from hilnas.server.fidelity import FidelityConfig
from hilnas.server.rounds import combine_rounds, windows_agree


def test_min_keeps_the_least_disturbed_window_and_median_the_middle_one():
    windows = [2.7, 1.8, 1.7]          # one window slowed by a neighbour
    assert combine_rounds(windows, "min") == 1.7
    assert combine_rounds(windows, "median") == 1.8
    assert combine_rounds(windows) == 1.7  # min is the default
    assert combine_rounds([3.0], "median") == 3.0


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [1.0, -2.0], [0.0], [1.0, math.inf]])
def test_empty_or_non_physical_windows_are_refused(bad):
    with pytest.raises(ValueError):
        combine_rounds(bad, "min")


def test_unknown_statistic_is_refused_by_name_everywhere():
    with pytest.raises(ValueError, match="round statistic must be one of min, median"):
        combine_rounds([1.0], "mean")
    with pytest.raises(ValueError, match="round statistic"):
        FidelityConfig(round_statistic="p10")
    with pytest.raises(ValueError, match="repeats"):
        FidelityConfig(repeats=0)


def test_the_least_disturbed_window_is_trusted_once_a_second_one_confirms_it():
    assert not windows_agree([1.7], 0.05)               # one window alone proves nothing
    assert windows_agree([2.7, 1.75, 1.7], 0.05)        # 1.75 is within 5 % of 1.7
    assert not windows_agree([2.5, 3.7, 3.2], 0.05)     # every window disturbed differently
    assert windows_agree([2.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="max_repeats"):
        FidelityConfig(repeats=3, max_repeats=2)
