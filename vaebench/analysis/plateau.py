r"""Whether training had converged: the pace of the test ELBO before the learning rate's decay dominates.

Final numbers compare converged models only if the learning curves have stopped rising; otherwise they
compare early training, where the fastest starter wins. For each run (estimator, K, seed) that did not
diverge, the test-ELBO points in a window of `FRACTION` of its S steps are fitted by least squares,
value ≈ a + s·step, and the change over one such window is

    rise = s · FRACTION · S       (nats per datapoint; positive while the curve still climbs)

**The window** is the last `FRACTION` of the steps taken at a learning rate of at least half its peak
(`HALF_RATE`): the last quarter of the run at a constant rate, the second quarter (S/4 to S/2) under a cosine
decay. Why not the last quarter of a decayed run: as the rate goes to 0 every curve stops moving, converged
or not, so its last quarter measures the schedule, not the model (a short cosine run is flat in its last
quarter and ends far below a longer one). A curve's shape under the decay does not tell either: runs of one
schedule and different lengths have nearly the same shape, scaled. What tells is the pace while the rate is
still high: a model that has converged at that rate no longer climbs there, and the decay then only settles
it. The criterion is strict: after S/2 a cosine run's rate adds up to about a third of a quarter's worth of
full-rate steps (∫ (1 + cos πu)/2 du over [1/2, 1] = 1/4 - 1/(2π)), so a curve rising by r a quarter at S/2
gains about r/3 more at that pace, plus what the decay's settling adds. Setting the final figure
against a longer run of the same setting would tell too, at the price of that run; this criterion needs
none.

Runs of one (estimator, K) are pooled: the mean rise over seeds with a Student-t interval (a single seed
gets the interval of its own fitted slope, from the residuals, when it has three points or more). A setting
counts as **converged** when that interval lies within ±`TOLERANCE` nats: another quarter of training at
that pace would then move its test ELBO by less than that. When the interval reaches beyond, the curve has
not been shown to have converged, and the setting counts as not converged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from vaebench.stats import mean_interval

FRACTION = 0.25
"""The window's length, as a fraction of a run's steps."""

HALF_RATE = {"constant": 1.0, "cosine": 0.5}
"""For each learning-rate schedule (:data:`vaebench.config.sections.LR_SCHEDULES`), the fraction of the run up to
which the rate is at least half its peak: the window ends there (cosine: (1 + cos(π t / S)) / 2 >= 1/2 for
t <= S / 2)."""

TOLERANCE = 1.0
"""Change of the test ELBO over that window (nats per datapoint) below which a curve counts as converged: the
size of the differences that published comparisons of VAE estimators turn on."""

PLATEAU_COLUMNS = (
    "estimator",
    "sampler",
    "num_samples",
    "test_elbo_rise",
    "test_elbo_rise_low",
    "test_elbo_rise_high",
    "rise_from_step",
    "rise_to_step",
    "rise_seeds",
    "converged",
)
"""Columns of `plateau`'s frame."""

SETTING = ("estimator", "sampler", "num_samples")


def plateau(
    convergence: pd.DataFrame,
    *,
    fraction: float = FRACTION,
    tolerance: float = TOLERANCE,
    level: float = 0.95,
    schedule: str = "constant",
) -> pd.DataFrame:
    """The rise of each (estimator, sampler, K)'s test-ELBO curve over its window (module docstring); converged?

    Args:
        convergence: tidy rows of the convergence measure (``estimator, num_samples, seed, step, metric,
            value``, and ``diverged``, whose runs are left out).
        fraction: the window, as a fraction of each run's steps.
        tolerance: |rise| in nats below which the curve counts as levelled off.
        level: level of the interval.
        schedule: the learning-rate schedule of the runs (a key of `HALF_RATE`).

    Returns:
        One row per (estimator, sampler, K) with a curve, columns `PLATEAU_COLUMNS` (no ``sampler`` for a
        frame without one): the mean rise with its interval, the window (mean first and last step), the
        seeds pooled, and ``converged`` (True when the interval lies within ±tolerance, False otherwise,
        None when there is no interval: one seed with fewer than three points in the window).
    """
    if schedule not in HALF_RATE:
        raise ValueError(
            f"unknown learning-rate schedule {schedule!r}; choose one of: {', '.join(HALF_RATE)}"
        )
    end = HALF_RATE[schedule]
    rows = convergence[convergence["metric"] == "test_elbo"]
    if "diverged" in rows:
        rows = rows[~rows["diverged"].astype(bool)]
    out = []
    keys = [c for c in SETTING if c in rows]  # frames from before samplers existed have no sampler column
    for key, setting in rows.groupby(keys, sort=False):
        rises, spans, fits = [], [], []
        for _, run in setting.groupby("seed"):
            run = run.sort_values("step")
            last = float(run["step"].max())
            window = run[(run["step"] >= (end - fraction) * last) & (run["step"] <= end * last)]
            if len(window) < 2 or last <= 0:
                continue
            span = fraction * last
            fit = stats.linregress(window["step"].to_numpy(float), window["value"].to_numpy(float))
            rises.append(fit.slope * span)
            spans.append((float(window["step"].min()), float(window["step"].max())))
            fits.append((fit, len(window), span))
        if not rises:
            continue
        rise = float(np.mean(rises))
        if len(rises) > 1:
            low, high = (float(v) for v in mean_interval(np.asarray(rises), level))
        elif fits[0][1] > 2:
            fit, n, span = fits[0]
            half = stats.t.ppf(0.5 + level / 2, n - 2) * fit.stderr * span
            low, high = rise - half, rise + half
        else:
            low = high = float("nan")
        converged = None if np.isnan(low) else bool(-tolerance < low and high < tolerance)
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "test_elbo_rise": rise,
                "test_elbo_rise_low": low,
                "test_elbo_rise_high": high,
                "rise_from_step": float(np.mean([a for a, _ in spans])),
                "rise_to_step": float(np.mean([b for _, b in spans])),
                "rise_seeds": len(rises),
                "converged": converged,
            }
        )
    return pd.DataFrame(out, columns=[c for c in PLATEAU_COLUMNS if c in keys or c not in SETTING])
