"""The evaluation's statistics (lrjax.evaluation.stats) against hand computations: the
Student-t interval with tabulated quantiles, paired differences, what is not finite."""

import math

import numpy as np
import pytest

from lrjax._validation import ConfigError
from lrjax.evaluation import stats

T975 = {2: 0.95 / math.sqrt(2 * 0.975 * 0.025), 4: 2.776445105, 9: 2.262157163}
"""t_{0.975, df}: with 2 degrees of freedom in closed form, ``(2p - 1) / sqrt(2 p (1 - p))``;
the others from a table of Student's t distribution (to 10 digits)."""


def test_t_half_width_is_the_tabulated_quantile_times_the_standard_error():
    for df, t in T975.items():
        n = df + 1
        assert stats.t_half_width(2.0, n) == pytest.approx(t * 2.0 / math.sqrt(n), rel=1e-9)
    # vectorised, with NaN where there are too few values for an interval
    half = stats.t_half_width(np.array([1.0, 1.0, 1.0]), np.array([3, 1, 0]))
    assert half[0] == pytest.approx(T975[2] / math.sqrt(3), rel=1e-12)
    assert np.isnan(half[1:]).all()


def test_mean_interval_of_five_values():
    x = [1.0, 2.0, 3.0, 4.0, 10.0]  # mean 4, sample variance 12.5
    i = stats.mean_interval(x)
    half = T975[4] * math.sqrt(12.5) / math.sqrt(5)
    assert (i.mean, i.n) == (4.0, 5) and i.std == pytest.approx(math.sqrt(12.5))
    assert i.half_width == pytest.approx(half, rel=1e-9)
    assert (i.low, i.high) == (pytest.approx(4.0 - half), pytest.approx(4.0 + half))
    for bad in ([1.0], [1.0, math.inf], [1.0, math.nan]):
        assert math.isnan(stats.mean_interval(bad).half_width), bad
    assert stats.mean_interval([1.0, math.inf]).mean == math.inf


def test_paired_difference_is_the_interval_of_the_per_seed_differences():
    a = np.array([1.0, 2.0, 4.0])
    b = np.array([0.0, 0.0, 1.0])  # a - b = [1, 2, 3]: mean 2, sd 1
    d = stats.paired_difference(a, b)
    half = T975[2] / math.sqrt(3)  # 2.48: the interval holds 0
    assert d == stats.Difference(2.0, pytest.approx(2.0 - half), pytest.approx(2.0 + half), 3)
    assert not d.excludes_zero
    tight = stats.paired_difference(np.array([1.5, 2.0, 2.5]), np.zeros(3))  # sd 0.5
    assert tight.low == pytest.approx(2.0 - 0.5 * half) and tight.excludes_zero
    reversed_ = stats.paired_difference(np.zeros(3), np.array([1.5, 2.0, 2.5]))  # b - a
    assert reversed_.mean == -2.0 and reversed_.high == pytest.approx(-2.0 + 0.5 * half)
    assert reversed_.excludes_zero and reversed_.high < 0
    diverged = stats.paired_difference(np.array([1.0, math.inf]), np.array([0.0, 0.0]))
    assert math.isnan(diverged.low) and math.isnan(diverged.high) and diverged.n == 2
    with pytest.raises(ConfigError, match=">= 2 seeds"):
        stats.paired_difference(np.array([1.0]), np.array([0.0]))
