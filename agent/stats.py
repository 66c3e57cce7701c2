"""Summary statistics of latency samples, with a distribution-free confidence interval of the
median (latency distributions are skewed and heavy-tailed, so no normality is assumed)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hilnas.agent.results import LatencyStats


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """1-based ranks (l, u) such that [x_(l), x_(u)] covers the median with >= ``confidence``.

    The number of samples below the true median is Binomial(n, 1/2), so the interval between
    order statistics l and u = n + 1 - l covers it with probability 1 - 2 P(K < l). We take the
    largest l whose coverage still reaches ``confidence``. Below n = 6 no pair of order
    statistics reaches 95 %, and the widest interval, (1, n), is returned.
    """
    if n < 1:
        raise ValueError("need at least one sample")
    alpha_half = (1.0 - confidence) / 2.0
    log_half_n = n * math.log(0.5)
    lgn = math.lgamma(n + 1)
    cdf = 0.0  # P(K < l), accumulated in log space so large n does not underflow
    l = 0
    while l < n // 2:
        pmf = math.exp(lgn - math.lgamma(l + 1) - math.lgamma(n - l + 1) + log_half_n)
        if cdf + pmf > alpha_half:
            break
        cdf += pmf
        l += 1
    l = max(l, 1)
    return l, n + 1 - l


def summarise(samples_ms: Sequence[float]) -> LatencyStats:
    """Median, p90, mean, sample std, min, max, CV, robust CV and the 95 % CI of the median (ms)."""
    x = np.sort(np.asarray(samples_ms, dtype=np.float64))
    n = int(x.size)
    if n == 0:
        raise ValueError("cannot summarise zero samples")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples must be finite")
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    lo, hi = median_ci_ranks(n)
    return LatencyStats(
        n=n,
        median_ms=float(np.median(x)),
        p90_ms=float(np.percentile(x, 90)),  # linear interpolation, numpy's default
        mean_ms=mean,
        std_ms=std,
        min_ms=float(x[0]),
        max_ms=float(x[-1]),
        ci95_low_ms=float(x[lo - 1]),
        ci95_high_ms=float(x[hi - 1]),
        cv=std / mean if mean > 0 else 0.0,
        robust_cv=_robust_cv(x),
    )


def _robust_cv(sorted_x: np.ndarray) -> float:
    """1.4826 * MAD / median: the CV of a normal sample, but blind to a few preemption spikes.

    On a shared or busy device a single 5 ms hiccup among a thousand 10 us runs drives the plain
    CV past 1 although the median is solid; the stability rule uses this robust spread instead.
    """
    med = float(np.median(sorted_x))
    if med <= 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(sorted_x - med)) / med)
