"""The bounds of the rollout gates against independent computations (monitoring.rollout_stats)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from monitoring import rollout_stats as rs

pytestmark = pytest.mark.unit


def test_wilson_bounds_are_the_score_interval_one_sided():
    k, n, z = 20, 400, stats.norm.ppf(0.95)
    p = k / n
    centre, spread = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = rs.wilson_bounds(k, n, 0.95)
    assert (low, high) == pytest.approx(
        ((centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n))
    )
    assert rs.wilson_bounds(0, 400, 0.95)[0] == 0.0


@pytest.mark.parametrize("n", [1, 10, 200, 400, 5_000])
def test_the_order_statistic_is_the_highest_that_bounds_the_p99(n):
    k = rs.quantile_order_statistic(n, 0.99, 0.95)
    covers = stats.binom.sf(k - 1, n, 0.99)  # P(X_(k) <= p99) = P(Binomial(n, 0.99) >= k)
    assert covers >= 0.95
    assert stats.binom.sf(k, n, 0.99) < 0.95  # the (k+1)-th would not bound it


def test_the_p99_lower_bound_is_the_kth_smallest_and_covers_the_true_p99():
    rng = np.random.default_rng(0)
    values = rng.exponential(10, 400)
    assert rs.quantile_lower_bound(values, 0.99, 0.95) == np.sort(values)[391]
    true_p99 = stats.expon(scale=10).ppf(0.99)
    covered = [
        rs.quantile_lower_bound(rng.exponential(10, 400), 0.99, 0.95) <= true_p99
        for _ in range(400)
    ]
    assert np.mean(covered) >= 0.93  # 95% coverage, within sampling error of 400 trials
    assert rs.quantile_lower_bound(np.array([]), 0.99, 0.95) is None


def test_t_bounds_equal_scipys_one_sided_intervals():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1, 1, 50), rng.normal(0.5, 2, 80)
    one = stats.ttest_1samp(a, 0, alternative="greater").confidence_interval(0.95).low
    welch = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert rs.mean_lower_bound(a, 0.95) == pytest.approx(one)
    assert rs.abs_mean_difference_lower_bound(a, b, 0.95) == pytest.approx(
        welch.confidence_interval(0.95).low
    )
    assert rs.abs_mean_difference_lower_bound(b, a, 0.95) == pytest.approx(
        welch.confidence_interval(0.95).low
    )
    assert rs.abs_mean_difference_lower_bound(a, a + 1e-3, 0.95) == 0.0


def test_the_rate_difference_bound_is_newcombes():
    low, _ = confint_proportions_2indep(100, 400, 10, 2_000, method="newcomb", alpha=0.10)
    assert rs.abs_rate_difference_lower_bound(100, 400, 10, 2_000, 0.95) == pytest.approx(low)
    assert rs.abs_rate_difference_lower_bound(10, 2_000, 100, 400, 0.95) == pytest.approx(low)
    assert rs.abs_rate_difference_lower_bound(20, 400, 100, 2_000, 0.95) == 0.0


def test_the_bootstrap_is_reproducible_and_pairs_draws():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1, 1, 300), rng.normal(0, 1, 500)
    seen = []

    def difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
        seen.append(first is second)
        return a[first].mean(axis=1) - a[second].mean(axis=1)

    assert rs.bootstrap_upper_bound(difference, (300, 300), True, 0.95) == 0.0
    assert all(seen)  # one draw of positions serves both samples

    def unpaired(first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return a[first].mean(axis=1) - b[second].mean(axis=1)

    upper = rs.bootstrap_upper_bound(unpaired, (300, 500), False, 0.95)
    assert upper == rs.bootstrap_upper_bound(unpaired, (300, 500), False, 0.95)  # fixed seed
    normal = a.mean() - b.mean() + stats.norm.ppf(0.95) * np.sqrt(a.var() / 300 + b.var() / 500)
    assert upper == pytest.approx(normal, abs=0.02)
