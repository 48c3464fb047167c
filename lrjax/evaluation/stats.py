"""The statistics of the evaluation: means over seeds, the Student-t confidence interval, paired
differences.

Every confidence interval lrjax reports comes from :func:`t_half_width`: ``mean +- t_{(1 + c)
/ 2, n - 1} * sd / sqrt(n)``, ``sd`` the sample standard deviation (ddof 1) of ``n`` seeds. Its
assumption is that the per-seed values (or, for :func:`paired_difference`, their per-seed
differences) are independent draws of a roughly normal quantity; with the 10 seeds of the
protocol the t quantile, not the normal one, is the honest width.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lrjax._validation import ConfigError

CONFIDENCE = 0.95
"""The level of every interval lrjax reports."""


def t_half_width(std, n, confidence: float = CONFIDENCE):
    """The half-width ``t_{(1 + confidence) / 2, n - 1} * std / sqrt(n)`` of the Student-t
    interval of a mean of ``n`` values with sample standard deviation ``std``; NaN where
    ``n < 2``. ``std`` and ``n`` may be arrays (broadcast); a float for scalars."""
    from scipy import stats

    std, n = np.asarray(std, np.float64), np.asarray(n)
    ok = n >= 2
    df = np.where(ok, n - 1, 1)
    half = stats.t.ppf((1 + confidence) / 2, df) * std / np.sqrt(np.where(ok, n, 1))
    half = np.where(ok, half, math.nan)
    return float(half) if half.ndim == 0 else half


@dataclasses.dataclass(frozen=True)
class Interval:
    """The mean of ``n`` values, their sample standard deviation and the half-width of the 95%
    Student-t confidence interval of the mean (``std`` and ``half_width`` NaN when ``n < 2`` or
    a value is not finite)."""

    mean: float
    std: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def mean_interval(x) -> Interval:
    """The :class:`Interval` of the values ``x`` (1-D)."""
    x = np.asarray(x, np.float64).ravel()
    mean = float(np.mean(x)) if x.size else math.nan
    if x.size < 2 or not np.all(np.isfinite(x)):
        return Interval(mean, math.nan, math.nan, x.size)
    std = float(np.std(x, ddof=1))
    return Interval(mean, std, t_half_width(std, x.size), x.size)


@dataclasses.dataclass(frozen=True)
class Difference:
    """Mean and 95% confidence interval (Student t) of paired per-seed differences."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.high < 0 or self.low > 0


def paired_difference(a: np.ndarray, b: np.ndarray) -> Difference:
    """``a - b`` per seed: its mean and 95% CI, ``mean +- t_{0.975, n-1} sd / sqrt(n)``
    (NaN bounds if a difference is not finite, e.g. a diverged episode's)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.ndim != 1 or d.size < 2:
        raise ConfigError(f"paired differences need >= 2 seeds, got {d.shape}.")
    i = mean_interval(d)
    return Difference(i.mean, i.low, i.high, i.n)
