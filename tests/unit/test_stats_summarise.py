"""summarise() against numpy, and the binomial order-statistic CI of the median."""
import math

import numpy as np
import pytest

from hilnas.agent.stats import median_ci_ranks, summarise


def _coverage(n: int, l: int) -> float:
    """P(x_(l) <= median <= x_(n+1-l)) = 1 - 2 P(Binomial(n, 1/2) < l)."""
    return 1 - 2 * sum(math.comb(n, k) for k in range(l)) / 2**n


def test_matches_numpy():
    x = np.random.default_rng(1).lognormal(0.0, 0.5, size=101)
    s = summarise(x.tolist())
    assert s.n == 101
    assert s.median_ms == pytest.approx(np.median(x))
    assert s.p90_ms == pytest.approx(np.percentile(x, 90))
    assert s.mean_ms == pytest.approx(x.mean())
    assert s.std_ms == pytest.approx(x.std(ddof=1))
    assert (s.min_ms, s.max_ms) == (x.min(), x.max())
    assert s.cv == pytest.approx(x.std(ddof=1) / x.mean())
    assert s.ci95_low_ms <= s.median_ms <= s.ci95_high_ms


def test_known_table_value_n10():
    # Classic table: for n = 10 the 95 % CI of the median is (x_(2), x_(9)).
    assert median_ci_ranks(10) == (2, 9)
    s = summarise([float(v) for v in range(10, 0, -1)])  # unsorted input
    assert (s.ci95_low_ms, s.ci95_high_ms) == (2.0, 9.0)


@pytest.mark.parametrize("n", range(1, 80))
def test_ranks_are_tightest_with_95_percent_coverage(n):
    l, u = median_ci_ranks(n)
    assert u == n + 1 - l and 1 <= l <= u <= n
    if n >= 6:
        assert _coverage(n, l) >= 0.95
        assert l + 1 > u - 1 or _coverage(n, l + 1) < 0.95  # one rank tighter would fall short
    else:  # no pair reaches 95 %: the widest interval is returned
        assert (l, u) == (1, n)


def test_large_n_is_exact_and_fast():
    l, u = median_ci_ranks(10_000)
    # Normal approximation: n/2 -+ 1.96 sqrt(n)/2 = 5000 -+ 98.
    assert abs(l - 4902) <= 2 and u == 10_001 - l


def test_empirical_coverage_on_skewed_samples():
    rng = np.random.default_rng(7)
    true_median = 1.0  # lognormal(0, s) has median exp(0)
    covered = sum(
        (s := summarise(rng.lognormal(0.0, 1.0, 30))).ci95_low_ms <= true_median <= s.ci95_high_ms
        for _ in range(2000))
    assert covered / 2000 >= 0.94


def test_small_and_degenerate_inputs():
    one = summarise([3.0])
    assert (one.n, one.median_ms, one.std_ms, one.cv, one.ci95_low_ms, one.ci95_high_ms) == (1, 3.0, 0.0, 0.0, 3.0, 3.0)
    const = summarise([2.0] * 5)
    assert const.std_ms == 0.0 and const.cv == 0.0
    with pytest.raises(ValueError):
        summarise([])
    with pytest.raises(ValueError):
        summarise([1.0, float("nan")])
