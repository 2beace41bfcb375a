"""The one-sided bounds the rollout gates judge with (scipy.stats; no I/O).

Every bound holds at `confidence` on its own side: a gate fails only when the data show, at
that confidence, that the candidate is past its threshold; too little data fails nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import stats

BOOTSTRAP_RESAMPLES = 1_000
BOOTSTRAP_SEED = 0  # a fixed seed: the same log gives the same decision
_DRAWN_PER_CHUNK = 2_000_000  # indices drawn at once (memory stays bounded on large windows)


def wilson_bounds(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Lower and upper one-sided Wilson score bounds of a proportion, each at `confidence`."""
    interval = stats.binomtest(successes, trials).proportion_ci(
        confidence_level=2 * confidence - 1, method="wilson"
    )
    return float(interval.low), float(interval.high)


def quantile_order_statistic(n: int, quantile: float, confidence: float) -> int:
    """k such that the k-th smallest of n values is a lower bound of the `quantile` at
    `confidence`: k = binom.ppf(1 - confidence, n, quantile), since P(X_(k) <= q) = P(B >= k)
    for B ~ Binomial(n, quantile). 0: n is too small for any bound."""
    return int(stats.binom.ppf(1 - confidence, n, quantile))


def quantile_lower_bound(values: np.ndarray, quantile: float, confidence: float) -> float | None:
    """Distribution-free lower bound of the `quantile` of what `values` sample (None: too few)."""
    k = quantile_order_statistic(len(values), quantile, confidence)
    if k < 1:
        return None
    return float(np.partition(values, k - 1)[k - 1])


def mean_lower_bound(values: np.ndarray, confidence: float) -> float:
    """One-sided Student t lower bound of a mean (at least two values)."""
    n = len(values)
    spread = float(np.std(values, ddof=1)) / math.sqrt(n)
    return float(np.mean(values)) - float(stats.t.ppf(confidence, n - 1)) * spread


def abs_mean_difference_lower_bound(a: np.ndarray, b: np.ndarray, confidence: float) -> float:
    """Welch's one-sided lower bound of |mean(a) - mean(b)|, 0 when no difference is shown
    (at least two values each)."""
    difference = abs(float(np.mean(a)) - float(np.mean(b)))
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    if va + vb == 0:
        return difference
    freedom = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return max(0.0, difference - float(stats.t.ppf(confidence, freedom)) * math.sqrt(va + vb))


def abs_rate_difference_lower_bound(k1: int, n1: int, k2: int, n2: int, confidence: float) -> float:
    """Newcombe's hybrid score bound (from Wilson's) of |k1/n1 - k2/n2|, 0 when none is shown."""
    p1, p2 = k1 / n1, k2 / n2
    low1, high1 = wilson_bounds(k1, n1, confidence)
    low2, high2 = wilson_bounds(k2, n2, confidence)
    if p1 >= p2:
        return max(0.0, p1 - p2 - math.hypot(p1 - low1, high2 - p2))
    return max(0.0, p2 - p1 - math.hypot(high1 - p1, p2 - low2))


def bootstrap_upper_bound(
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    sizes: tuple[int, int],
    paired: bool,
    confidence: float,
) -> float | None:
    """Percentile-bootstrap upper bound at `confidence` of a two-sample statistic.

    `statistic(first, second)` takes resamples as index matrices (one row per resample) of
    each sample and returns one value per row (NaN where undefined). Paired: one draw of
    positions serves both samples (same length). None when every resample is undefined.
    """
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    chunk = max(1, _DRAWN_PER_CHUNK // max(sizes))
    values = []
    for start in range(0, BOOTSTRAP_RESAMPLES, chunk):
        count = min(chunk, BOOTSTRAP_RESAMPLES - start)
        first = rng.integers(0, sizes[0], size=(count, sizes[0]))
        second = first if paired else rng.integers(0, sizes[1], size=(count, sizes[1]))
        values.append(statistic(first, second))
    drawn = np.concatenate(values)
    if np.isnan(drawn).all():
        return None
    return float(np.nanquantile(drawn, confidence))
