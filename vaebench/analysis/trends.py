r"""How a figure of the variance rows moves with K along training, no law assumed: a claim that it falls.

At each checkpoint of the variance rows, one estimator's figure F(K) (pooled over the variance seeds,
:func:`vaebench.analysis.scaling.pooled_by_k`) is fitted as log F = a + b log K over every K >= 2 whose figure
resolves a signal (:func:`vaebench.analysis.scaling.fit_power_law`, the slope with its interval; at K = 1 the
IWAE objective is the ELBO). A claim that the figure *falls* as K grows (:class:`Falling`) agrees when every
fitted slope's interval lies below 0, does not agree when one lies above 0, and is inconclusive otherwise.

The suite measures every setting at the same checkpoints of one anchor training run
(:mod:`vaebench.measures.variance`), so "along training" is along the anchor's training, not along each
estimator's own: the claim's row says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vaebench.analysis.ranking import off_data
from vaebench.analysis.scaling import fit_power_law, pooled_by_k
from vaebench.config.sections import CHECKPOINTS


@dataclass(frozen=True)
class Falling:
    """A claim measured by the slope of log ``figure`` of ``estimator``'s ``group`` against log K, per checkpoint;
    compared only on ``data`` (binarized, Bernoulli likelihood), the source's."""

    estimator: str
    group: str = "encoder"
    figure: str = "snr_norm"
    data: str = "fashion-mnist"


def trend_in_k(
    variance: pd.DataFrame, estimator: str, group: str, figure: str, k_min: int = 2, level: float = 0.95
) -> pd.DataFrame:
    """The slope of log ``figure`` against log K at each checkpoint of the variance rows, no law assumed.

    One estimator (iid draws), every K >= ``k_min`` whose figure resolves a signal (module docstring).

    Returns:
        One row per checkpoint, in the order of training (`CHECKPOINTS`; others after): ``checkpoint, slope,
        slope_low, slope_high, k_min, k_max, points`` (NaN slope with fewer than two usable K).
    """
    out = []
    checkpoints = [None]
    if "checkpoint" in variance:
        found = list(variance["checkpoint"].dropna().unique())
        checkpoints = sorted(found, key=lambda c: CHECKPOINTS.get(c, math.inf))
    for checkpoint in checkpoints:
        pooled = pooled_by_k(variance[variance["estimator"] == estimator], group, figure, checkpoint)
        use = pooled[(pooled["sampler"] == "iid") & (pooled["num_samples"] >= k_min)]
        use = use[~use["at_floor"].astype(bool) & np.isfinite(use["value"]) & (use["value"] > 0)]
        fit = fit_power_law(use["num_samples"], use["value"], use["low"], use["high"], level)
        ks = use["num_samples"]
        out.append(
            {"checkpoint": checkpoint, "slope": fit.slope, "slope_low": fit.low, "slope_high": fit.high,
             "k_min": ks.min() if len(ks) else math.nan, "k_max": ks.max() if len(ks) else math.nan,
             "points": len(use)}
        )  # fmt: skip
    return pd.DataFrame(
        out, columns=["checkpoint", "slope", "slope_low", "slope_high", "k_min", "k_max", "points"]
    )


def trend_verdict(trend: pd.DataFrame) -> str:
    """Whether a figure falls with K at every checkpoint of :func:`trend_in_k`'s rows: ``agrees`` when every
    fitted slope's interval lies below 0, ``does not agree`` when one lies above, ``cannot be judged`` without
    an interval, else ``inconclusive``."""
    fitted = trend[trend["slope_low"].notna() & trend["slope_high"].notna()]
    if fitted.empty:
        return "cannot be judged"
    if (fitted["slope_low"] > 0).any():
        return "does not agree"
    return "agrees" if (fitted["slope_high"] < 0).all() else "inconclusive"


def describe_trend(trend: pd.DataFrame) -> str:
    """:func:`trend_in_k`'s rows in words: each checkpoint's slope, its interval and the K it spans."""
    return "; ".join(
        f"{r['checkpoint']} {r['slope']:+.2f} [{r['slope_low']:+.2f}, {r['slope_high']:+.2f}] over K "
        f"{r['k_min']:.0f}-{r['k_max']:.0f}"
        if math.isfinite(r["slope"])
        else f"{r['checkpoint']}: no fit"
        for _, r in trend.iterrows()
    )


def falling_row(m: Falling, variance: pd.DataFrame, data: str | None, likelihood: str | None) -> dict | None:
    """The claims row of ``m`` (columns of ``claims.csv`` but its key, claim and source), or None when the
    variance rows lack two K >= 2 of its estimator at every checkpoint, or its figure, or are of several
    problems (a run across problems: the trend is one model's)."""
    if variance.empty or m.figure not in variance or not (variance["estimator"] == m.estimator).any():
        return None
    if "problem" in variance and variance["problem"].nunique() > 1:
        return None
    trend = trend_in_k(variance, m.estimator, m.group, m.figure)
    if trend["slope"].isna().all():
        return None
    worst = trend.loc[trend["slope_high"].fillna(math.inf).idxmax()]  # the checkpoint nearest to not falling
    blocker = off_data(m.data, data, likelihood)
    detail = (f"{blocker}; " if blocker else "") + (
        f"slope of log {m.figure} in log K per checkpoint: {describe_trend(trend)}. Every setting is measured "
        "at the same checkpoints of the anchor run, not along each estimator's own training as the source does"
    )
    return {
        "where": ", ".join(map(str, trend["checkpoint"])),
        "figure": f"{m.figure} slope in K at {worst['checkpoint']}",
        "measured": worst["slope"], "measured_low": worst["slope_low"], "measured_high": worst["slope_high"],
        "verdict": "not comparable" if blocker else trend_verdict(trend), "detail": detail,
    }  # fmt: skip
