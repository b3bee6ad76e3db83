"""Interval and test helpers shared by the measures and the statistical tests.

Every figure the suite reports comes with an interval from here:

- a mean: Student-t interval, mean ± t_{1-α/2, n-1} s / √n (:func:`mean_interval`, and
  :func:`pooled_mean_interval` for a mean of estimates that carry their own intervals); the difference of
  two independent means: Welch's interval (:func:`welch_interval`, scipy's ``ttest_ind``);
- a median (a step time): the exact distribution-free interval of order statistics (:func:`median_interval`,
  scipy's ``quantile_test``): no resampling, the same answer every time;
- anything else (a variance, a ratio): a percentile bootstrap, the draws made by the measure with a seeded
  generator (:func:`percentile_interval`);
- a figure too costly to bootstrap (a per-coordinate SNR over many parameters): the delete-a-group
  jackknife (:func:`jackknife_interval`).

For tests over many coordinates at once, :func:`bonferroni_threshold` turns a family-wise false-alarm rate
into a per-coordinate two-sided z threshold.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_interval(values: np.ndarray, level: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Student-t interval for the mean along ``axis``; NaN where fewer than two values or any is not finite.

    A diverged run's Inf is a value like any other here: it makes that interval NaN, quietly (numpy's
    "invalid value" warnings would reach the user's terminal and say nothing the NaN does not).
    """
    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    with np.errstate(invalid="ignore", over="ignore"):
        mean = values.mean(axis=axis)
        if n < 2:
            nan = np.full_like(mean, np.nan)
            return nan, nan
        half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(axis=axis, ddof=1) / np.sqrt(n)
        return mean - half, mean + half


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap draws, ignoring non-finite ones; NaN if none is finite.

    A resample of identical replicates has no spread, so ratios over it are 0/0: those draws are dropped.
    """
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
    return float(low), float(high)


def jackknife_interval(estimate: float, leave_outs: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Delete-a-group jackknife interval: estimate ± t_{G-1} √((G-1)/G Σ_j (θ_-j - mean θ_-j)²), floored at 0."""
    leave_outs = np.asarray(leave_outs, dtype=float)
    g = leave_outs.size
    if g < 2 or not np.isfinite(leave_outs).all() or not math.isfinite(estimate):
        return float("nan"), float("nan")
    se = math.sqrt((g - 1) / g * float(np.sum((leave_outs - leave_outs.mean()) ** 2)))
    half = float(stats.t.ppf(0.5 + level / 2, g - 1)) * se
    return max(estimate - half, 0.0), estimate + half


def median_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Exact interval for the median of n values: the order statistics [x_(j), x_(n+1-j)].

    For any continuous distribution the median m lies below x_(j) with probability P(B <= j - 1),
    B ~ Binomial(n, 1/2), so the interval covers m with probability 1 - 2 P(B <= j - 1); j is the largest that
    keeps this >= ``level`` (scipy's ``quantile_test`` at p = 1/2). Distribution-free and deterministic. NaN
    when even [min, max] covers less than ``level`` (1 - 2^(1-n) < level: n <= 5 at 95%) or no value is finite.
    """
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    interval = stats.quantile_test(values, q=float(np.median(values)), p=0.5).confidence_interval(level)
    return float(interval.low), float(interval.high)


def bonferroni_threshold(false_alarm: float, tests: int) -> float:
    """Two-sided z threshold so that ``tests`` standard-normal statistics all pass with prob >= 1 - false_alarm."""
    return float(stats.norm.isf(false_alarm / (2 * tests)))


def normal_quantile(level: float) -> float:
    """z such that a standard normal lies within ±z with probability ``level``."""
    return float(stats.norm.isf((1 - level) / 2))


def pooled_mean_interval(
    values: np.ndarray, lows: np.ndarray, highs: np.ndarray
) -> tuple[float, float, float]:
    """Average of S estimates that each carry their own interval (a fixed-effects pool), with its interval.

    Meant for estimates of S *different* quantities whose average is the target: e.g. a gradient's Monte
    Carlo variance on S minibatches, the same S minibatches for every estimator compared. The interval
    reflects each estimate's own error and keeps its asymmetry: with d⁻_s = value_s - low_s and
    d⁺_s = high_s - value_s,

        low = mean - √(Σ (d⁻_s)²) / S,    high = mean + √(Σ (d⁺_s)²) / S,

    (the errors of independent estimates add in quadrature). It does not widen for the spread between the
    S quantities, which is part of the target, not an error; with S = 1 it returns the estimate's interval.
    The result's level is that of the inputs' intervals.

    NaN estimates are dropped; if any remaining estimate lacks an interval, the interval is NaN.

    Returns:
        (mean, low, high); all NaN when no finite value is left.
    """
    values, lows, highs = (np.asarray(a, dtype=float) for a in (values, lows, highs))
    keep = np.isfinite(values)
    values, lows, highs = values[keep], lows[keep], highs[keep]
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    below, above = values - lows, highs - values
    if not (np.isfinite(below).all() and np.isfinite(above).all()):
        return mean, float("nan"), float("nan")
    n = values.size
    return mean, mean - float(np.sqrt(np.sum(below**2))) / n, mean + float(np.sqrt(np.sum(above**2))) / n


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """mean(b) - mean(a) with Welch's interval: two independent samples whose variances may differ.

    d ± t_{1-α/2, ν} √(s_a²/n_a + s_b²/n_b), ν the Welch–Satterthwaite degrees of freedom (scipy's
    ``ttest_ind(b, a, equal_var=False)``). NaN interval when either sample has fewer than two values; a
    zero-width interval when both have no spread (scipy would give NaN: the difference is then known exactly).

    Returns:
        (difference, low, high, degrees of freedom).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(b.mean() - a.mean()) if a.size and b.size else math.nan
    if a.size < 2 or b.size < 2:
        return diff, math.nan, math.nan, math.nan
    if a.var() == 0 and b.var() == 0:
        return diff, diff, diff, math.inf
    result = stats.ttest_ind(b, a, equal_var=False)
    interval = result.confidence_interval(level)
    return diff, float(interval.low), float(interval.high), float(result.df)
