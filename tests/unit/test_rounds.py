import math

import pytest

from hilnas.agent.results import LatencyStats
from hilnas.server.lut.fidelity import FidelityConfig
from hilnas.server.lut.builder import LutBuildConfig
from hilnas.server.lut.predict import Correction
from hilnas.server.lut.rounds import combine_rounds, window_value, windows_agree


def test_min_keeps_the_least_disturbed_window_and_median_the_middle_one():
    windows = [2.7, 1.8, 1.7]          # one window slowed by a neighbour
    assert combine_rounds(windows, "min") == 1.7
    assert combine_rounds(windows, "median") == 1.8
    assert combine_rounds(windows) == 1.8  # median is the default (a dedicated device)
    assert combine_rounds([3.0], "min") == 3.0


def test_a_window_stands_for_its_median_run_or_its_fastest_run():
    lat = LatencyStats(n=50, median_ms=2.0, p90_ms=2.6, mean_ms=2.1, std_ms=0.2, min_ms=1.7, max_ms=3.0,
                       ci95_low_ms=1.9, ci95_high_ms=2.1, cv=0.1)
    assert window_value(lat) == 2.0 and window_value(lat, "median") == 2.0
    assert window_value(lat, "min") == 1.7


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [1.0, -2.0], [0.0], [1.0, math.inf]])
def test_empty_or_non_physical_windows_are_refused(bad):
    with pytest.raises(ValueError):
        combine_rounds(bad, "min")


def test_unknown_statistic_is_refused_by_name_everywhere():
    with pytest.raises(ValueError, match="latency statistic must be one of median, min"):
        combine_rounds([1.0], "mean")
    for make in (lambda: FidelityConfig(statistic="p10"), lambda: LutBuildConfig(statistic="mean")):
        with pytest.raises(ValueError, match="latency statistic"):
            make()
    with pytest.raises(ValueError, match="repeats"):
        FidelityConfig(repeats=0)


def test_the_least_disturbed_window_is_trusted_once_a_second_one_confirms_it():
    assert not windows_agree([1.7], 0.05)               # one window alone proves nothing
    assert windows_agree([2.7, 1.75, 1.7], 0.05)        # 1.75 is within 5 % of 1.7
    assert not windows_agree([2.5, 3.7, 3.2], 0.05)     # every window disturbed differently
    assert windows_agree([2.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="max_repeats"):
        FidelityConfig(repeats=3, max_repeats=2)


def test_a_correction_remembers_its_statistic_and_old_ones_read_as_median():
    c = Correction(1.1, -0.5, 30, "min")
    assert Correction.from_dict(c.to_dict()) == c
    assert Correction.from_dict({"scale": 1.0, "offset_ms": 0.0, "fitted_on": 3}).statistic == "median"
