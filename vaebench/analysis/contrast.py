r"""One contrast of two figures: a ratio a / b or a difference a - b, with its interval.

Every comparison of two settings the suite states (the bottom line's verdicts, two runs compared, the
equal-budget figures, the published claims) is one call of :func:`contrast`, of one of four kinds: a ratio
or a difference, of two independent estimates or of values paired by round or by seed.

- ``ratio``: two independent positive estimates, each given as (value, low, high) with its own interval
  (e.g. two gradient variances with their bootstrap intervals). On the log scale the errors
  d⁻ = log v - log low and d⁺ = log high - log v of the two add in quadrature:

      r = a / b,    [r · exp(-√((d⁻_a)² + (d⁺_b)²)),  r · exp(√((d⁺_a)² + (d⁻_b)²))]

  (the interval keeps the inputs' level). Two settings measured on the same draws give positively
  correlated estimates, which makes this conservative: wider, never narrower.
- ``paired ratio``: positive values paired by position, e.g. the per-round median step times of two settings
  timed interleaved: d_r = log a_r - log b_r, r = exp(mean_r d_r), interval
  exp(mean d ± t_{1-α/2, R-1} sd(d) / √R). A factor common to both values of a pair (a load over one round)
  cancels in d_r.
- ``paired difference``: values paired by seed (mappings seed -> value; the seeds both have), the mean of
  a_s - b_s with its Student-t interval (:func:`vaebench.stats.mean_interval`). Runs of one seed share the
  initialisation and the data order, so the pairing removes that shared variation.
- ``difference``: two independent samples, Welch's interval (:func:`vaebench.stats.welch_interval`).

:func:`product` multiplies two ratios (independent, their log errors in quadrature): variance x step time.
A contrast is **separated** when its interval excludes the null value (1 for a ratio, 0 for a difference);
without an interval (one round or seed, a figure without one) it is never separated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from vaebench.stats import mean_interval, welch_interval

KINDS = ("ratio", "paired ratio", "difference", "paired difference")
"""The kinds of :func:`contrast`."""

Estimate = tuple[float, float, float]
"""A figure with its interval: (value, low, high)."""


@dataclass(frozen=True)
class Contrast:
    """a / b or a - b with its interval.

    Attributes:
        value, low, high: the contrast and its interval (NaN bounds: no interval could be formed).
        kind: one of `KINDS`.
        n: the pairs behind the interval (rounds or seeds; 0 for two independent estimates).
    """

    value: float
    low: float
    high: float
    kind: str = "ratio"
    n: int = 0

    @property
    def null(self) -> float:
        """The value of no difference: 1 for a ratio, 0 for a difference."""
        return 1.0 if self.kind.endswith("ratio") else 0.0

    @property
    def separated(self) -> bool:
        """Whether the interval excludes the null value (False without an interval)."""
        return bool(
            math.isfinite(self.low)
            and math.isfinite(self.high)
            and (self.high < self.null or self.low > self.null)
        )


def none(kind: str = "ratio") -> Contrast:
    """The contrast that could not be formed."""
    return Contrast(math.nan, math.nan, math.nan, kind, 0)


def contrast(a, b, kind: str, level: float = 0.95) -> Contrast:
    """a set against b (module docstring); NaN where it cannot be formed.

    Args:
        a, b: for ``ratio``, (value, low, high) of each; for ``paired ratio``, sequences of positive values of
            equal length (paired by position); for ``paired difference``, mappings key -> value (paired by key,
            e.g. a ``pandas.Series`` indexed by seed); for ``difference``, sequences of values.
        kind: one of `KINDS`.
        level: the interval's level (``ratio`` keeps its inputs' level instead).
    """
    if kind == "ratio":
        return _ratio(a, b)
    if kind == "paired ratio":
        ta, tb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if ta.size != tb.size or ta.size == 0 or not ((ta > 0).all() and (tb > 0).all()):
            return none(kind)
        d = np.log(ta) - np.log(tb)
        mean = float(d.mean())
        if d.size < 2:
            return Contrast(math.exp(mean), math.nan, math.nan, kind, int(d.size))
        half = (
            float(scipy_stats.t.ppf(0.5 + level / 2, d.size - 1)) * float(d.std(ddof=1)) / math.sqrt(d.size)
        )
        return Contrast(math.exp(mean), math.exp(mean - half), math.exp(mean + half), kind, int(d.size))
    if kind == "paired difference":
        keys = [key for key in _keys(a) if key in _keys(b)]
        d = np.array([float(a[key]) - float(b[key]) for key in keys])
        d = d[~np.isnan(d)]  # a key one side lacks (NaN); an Inf stays and leaves no interval
        if d.size == 0:
            return none(kind)
        low, high = mean_interval(d, level) if d.size > 1 else (math.nan, math.nan)
        return Contrast(float(d.mean()), float(low), float(high), kind, int(d.size))
    if kind == "difference":
        diff, low, high, _ = welch_interval(
            np.asarray(b, dtype=float), np.asarray(a, dtype=float), level
        )  # a - b
        return Contrast(float(diff), float(low), float(high), kind, 0)
    raise ValueError(f"unknown contrast kind {kind!r}; choose one of: {', '.join(KINDS)}")


def product(a: Contrast, b: Contrast) -> Contrast:
    """The ratio a · b of two independent ratios, their log errors in quadrature (NaN interval when either
    lacks one); ``n`` is b's (the rounds of a step-time ratio, when b is one)."""
    if not (math.isfinite(a.value) and math.isfinite(b.value)):
        return none()
    value = a.value * b.value
    (am, ap), (bm, bp) = log_errors(a.value, a.low, a.high), log_errors(b.value, b.low, b.high)
    return Contrast(
        value, value * math.exp(-math.hypot(am, bm)), value * math.exp(math.hypot(ap, bp)), "ratio", b.n
    )


def log_errors(value: float, low: float, high: float) -> tuple[float, float]:
    """(log value - log low, log high - log value) of a positive figure's interval; NaN where it has none."""
    if not all(math.isfinite(v) and v > 0 for v in (value, low, high)):
        return math.nan, math.nan
    return math.log(value) - math.log(low), math.log(high) - math.log(value)


def _ratio(a: Sequence[float], b: Sequence[float]) -> Contrast:
    if not all(math.isfinite(v) and v > 0 for v in (a[0], b[0])):
        return none()
    (am, ap), (bm, bp) = log_errors(*a[:3]), log_errors(*b[:3])
    value = a[0] / b[0]
    return Contrast(
        value, value * math.exp(-math.hypot(am, bp)), value * math.exp(math.hypot(ap, bm)), "ratio"
    )


def _keys(values: Mapping) -> list:
    return list(values.keys())
