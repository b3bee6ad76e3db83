r"""Scaling laws in K: log(figure) against log(K), fitted with an interval and checked against the theory.

For an estimator of one parameter group measured at K on a grid, the variance measure gives per K a figure
F(K) (``trace_var``, ``snr``, ``snr_norm``) with an interval. We fit

    log F(K) = a + b log K

by weighted least squares, each point weighted by 1/se², with se its log-interval's half-width over z (the
pooled intervals of the variance summary: a percentile bootstrap over replicates, or the jackknife for the
per-coordinate SNR). The slope's standard error is √(1/Σ w (log K - mean)²); with three points or more, it is
multiplied by √(max(1, χ²/(n-2))) (the Birge ratio, as the Particle Data Group scales its averages), so
that points scattered beyond their own intervals (a curve that is not a power law on that range) widen the
interval; the interval is slope ± z se. (Student's t with n-2 degrees of freedom would multiply a 3-point
fit's interval by 6 whenever χ² exceeds 1 by chance, which makes the verdict a coin toss.) A law *agrees*
when its theoretical slope lies in the interval.

The laws (``LAWS``; the K range each is fitted on is in the ``k_min`` column of the output):

- **variance, slope -1** for every unbiased estimator of the ELBO gradient, both groups: the K-sample
  estimate is the average of K independent one-sample estimates (reparam, analytic-KL, STL, REINFORCE with a
  baseline fixed during the measurement, the Taylor control variate, the measure-valued derivative, whose
  one-sample estimate is its 4Z points of one base draw), so tr Cov = tr Cov₁ / K exactly, at every K; with antithetic pairs it is the average of K/2 independent pairs, the same law. With a leave-one-
  out baseline (``reinforce-loo``, ``vargrad``) the baseline uses the other draws, tr Cov = c/K + O(1/K²):
  the law is asymptotic, fitted on K >= `ASYMPTOTIC_K`. RQMC has no fixed slope (scrambled nets beat 1/K by a
  rate that depends on the integrand's smoothness; Owen 1997): it is not checked.
- The IWAE-objective estimators estimate ∇IWAE_K, a gradient that itself changes with K, so "variance ∝ 1/K
  of a fixed target" does not apply. Rainforth et al. 2018 (arXiv:1802.04537, Theorem 1) give, for the
  pathwise IWAE gradient (``iwae``), SNR = O(√(M K)) for the model (decoder) parameters and SNR = O(√(M/K))
  for the inference network (encoder), where M is the number of K-sample estimates averaged (one here): the
  expected encoder gradient shrinks as 1/K (IWAE_K → log p(x), which does not depend on φ) while its noise
  shrinks as 1/√K. So **IWAE encoder SNR: slope -1/2, IWAE decoder SNR: +1/2**. These are limits: the
  leading terms dominate once K is large against the relative variance of the importance weights
  Var[w]/p(x)², so they are fitted on K >= `ASYMPTOTIC_K` only.
- **DReG encoder SNR: +1/2** (Tucker, Lawson, Gu & Maddison 2018, arXiv:1810.04152, shown empirically there;
  proved as K → ∞ by Daudel & Roueff 2024, arXiv:2410.12035): its mean is IWAE's, O(1/K), its noise
  O(K^-3/2). DReG's decoder gradient is IWAE's, so the decoder law is checked for it too. Asymptotic.
- **MIWAE(M, K)** (``miwae``, M groups of K, M fixed as K varies): Rainforth et al.'s Theorem 1 itself,
  encoder SNR O(√(M/K)) and decoder SNR O(√(M K)): slopes **-1/2** and **+1/2** in K. **PIWAE** (``piwae``):
  its encoder gradient is MIWAE's (-1/2), its decoder's that of IWAE_{M K} (O(√(M K)): +1/2). Asymptotic.
- **Reweighted wake-sleep** (``rws``, ``rws-dreg``): the decoder gradient is IWAE's (+1/2, Rainforth et al.);
  the encoder's is a self-normalised importance-sampling estimate of -∇KL(p(z|x) || q), whose mean tends to
  that K-independent, non-zero gradient with bias O(1/K) and whose noise falls as K^-1/2 (the delta method
  for a ratio of means, Owen 2013, "Monte Carlo theory, methods and examples", Section 9.2): encoder SNR
  **+1/2**, asymptotic (``rws-dreg``'s w̃ - w̃² differs from w̃ by O(1/K) terms, the same limit).
- No law is registered for estimators whose law depends on an option the variance rows do not record: the
  Rényi bound (``renyi``, ``renyi-dreg``: IWAE's laws at α = 0, the ELBO's 1/K at α = 1, between them a
  target VR_{α,K} → L_α that keeps a non-zero encoder gradient, SNR +1/2 by the same delta method),
  ``ciwae`` (β), the U-statistics of ``iwae`` and ``dreg`` with ``subsets=m`` (their target IWAE_m does not
  change with K; by Hoeffding 1948, Var U = m² ζ₁ / K + O(K^-2): variance -1, asymptotically; the law
  registered for the name ``iwae`` assumes its default, no subsets), nor for ``tail-adaptive`` (no fixed
  target).
- The theorems are stated per parameter coordinate, for one datapoint's gradient. The suite's ``snr`` is
  Rainforth et al.'s own summary (|mean| / sd per coordinate, averaged over coordinates) of the minibatch
  gradient: every coordinate follows the same rate, so their average does, and so does ``snr_norm``
  (||E g|| / √tr Cov), which we check alongside. A coordinate-averaged SNR whose interval reaches the noise
  floor √(2/(πR)) measures no signal (it cannot fall below the floor); such points are left out of the fit.

The linear-Gaussian check of STL (:func:`stl_landing`) is the other theoretical property: its encoder
gradient has zero variance when q is the exact posterior (Roeder, Wu & Duvenaud 2017, arXiv:1703.09194).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vaebench.measures.schema import SCALING, conform
from vaebench.stats import normal_quantile, pooled_mean_interval

ASYMPTOTIC_K = 3
"""Smallest K used to fit a law that holds only as K grows (the IWAE and DReG SNR laws, leave-one-out
baselines), with its first finite-K correction c/K: on the suite's grid 1, 3, 10, 30, 100, four points for
three parameters. K = 1 is left out: there the O(1/K²) terms are as large as the c/K one."""

FIGURES = ("trace_var", "snr", "snr_norm")
"""Figures of the variance measure that a law is fitted to."""

SCALING_COLUMNS = SCALING.columns
"""Columns of :func:`scaling_laws`' frame."""

# Estimators whose K-sample estimate is the plain average of K independent one-sample estimates.
_AVERAGES = (
    "reparam",
    "reparam-analytic-kl",
    "stl",
    "reinforce",
    "reinforce-ma",
    "reinforce-nvil",
    "reparam-cv",
    "mvd",
)
_LEAVE_ONE_OUT = ("reinforce-loo", "vargrad")


@dataclass(frozen=True)
class Law:
    """A theoretical slope of log(figure) against log(K).

    Attributes:
        slope: the theoretical slope.
        k_min: smallest K the law is fitted on (1: exact at every K).
        text: the law in words, with its source.
    """

    slope: float
    k_min: int
    text: str


def law(estimator: str, sampler: str, group: str, figure: str) -> Law | None:
    """The law that theory gives for this estimator, sampler, parameter group and figure (None if none)."""
    if estimator in _AVERAGES + _LEAVE_ONE_OUT and figure == "trace_var" and sampler in ("iid", "antithetic"):
        exact = estimator in _AVERAGES
        how = "an average of independent estimates" if exact else "a leave-one-out baseline, asymptotically"
        return Law(-1.0, 1 if exact else ASYMPTOTIC_K, f"variance ∝ 1/K ({how})")
    if sampler != "iid" or figure not in ("snr", "snr_norm"):
        return None
    if estimator == "iwae" and group == "encoder":
        return Law(-0.5, ASYMPTOTIC_K, "IWAE encoder SNR ∝ K^-1/2 (Rainforth et al. 2018)")
    if estimator in ("miwae", "piwae") and group == "encoder":
        return Law(
            -0.5, ASYMPTOTIC_K, "MIWAE encoder SNR ∝ (M/K)^1/2, M fixed (Rainforth et al. 2018, Thm 1)"
        )
    if estimator in ("iwae", "dreg", "rws", "rws-dreg") and group == "decoder":
        return Law(0.5, ASYMPTOTIC_K, "IWAE decoder SNR ∝ K^1/2 (Rainforth et al. 2018)")
    if estimator in ("miwae", "piwae") and group == "decoder":
        return Law(0.5, ASYMPTOTIC_K, "IWAE decoder SNR ∝ (M K)^1/2, M fixed (Rainforth et al. 2018, Thm 1)")
    if estimator == "dreg" and group == "encoder":
        return Law(0.5, ASYMPTOTIC_K, "DReG encoder SNR ∝ K^1/2 (Tucker et al. 2018)")
    if estimator in ("rws", "rws-dreg") and group == "encoder":
        return Law(0.5, ASYMPTOTIC_K, "wake-phase encoder SNR ∝ K^1/2 (self-normalised IS; Owen 2013, 9.2)")
    return None


@dataclass(frozen=True)
class Fit:
    """A weighted least-squares fit of log y on log K: slope with its interval, intercept, points used."""

    slope: float
    low: float
    high: float
    intercept: float
    points: int
    correction: float = 0.0


def fit_power_law(
    k: np.ndarray,
    value: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    level: float = 0.95,
    *,
    correction: bool = False,
) -> Fit:
    """Fit log(value) = a + b log(k) (+ c / k), each point weighted by its interval; b with an interval.

    Args:
        k: [n] K values.
        value: [n] the figure at each K (> 0).
        low, high: [n] the figure's interval at each K, at ``level`` (low > 0).
        level: the level of the given intervals and of the slope's.
        correction: also fit the first finite-K correction c / k (an asymptotic law's next term).

    Returns:
        The :class:`Fit`; NaN slope with fewer distinct K than parameters, NaN interval when a point lacks one.
    """
    k, value, low, high = (np.asarray(a, dtype=float) for a in (k, value, low, high))
    n, p = k.size, 3 if correction else 2
    if np.unique(k).size < p:
        return Fit(math.nan, math.nan, math.nan, math.nan, n)
    design = np.column_stack([np.ones(n), np.log(k), *([1 / k] if correction else [])])
    y = np.log(value)
    z = normal_quantile(level)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = (np.log(high) - np.log(low)) / (2 * z)
    if not (np.isfinite(se).all() and (se > 0).all()):
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        return Fit(
            float(coef[1]), math.nan, math.nan, float(coef[0]), n, float(coef[2]) if correction else 0.0
        )
    root_w = 1 / se
    coef, *_ = np.linalg.lstsq(design * root_w[:, None], y * root_w, rcond=None)
    cov = np.linalg.inv((design * root_w[:, None] ** 2).T @ design)
    stderr = math.sqrt(cov[1, 1])
    if n > p:
        chi2 = float(np.sum((root_w * (y - design @ coef)) ** 2)) / (n - p)
        stderr *= math.sqrt(max(chi2, 1.0))  # points scatter beyond their intervals: widen (Birge ratio)
    slope = float(coef[1])
    return Fit(
        slope,
        slope - z * stderr,
        slope + z * stderr,
        float(coef[0]),
        n,
        float(coef[2]) if correction else 0.0,
    )


def pooled_by_k(variance: pd.DataFrame, group: str, figure: str, checkpoint: str | None) -> pd.DataFrame:
    """One row per (estimator, sampler, K): ``figure`` averaged over the variance seeds with its interval
    (:func:`vaebench.stats.pooled_mean_interval`), and for the SNR whether its interval reaches the floor."""
    rows = variance
    if "status" in rows:
        rows = rows[rows["status"].fillna("ok").isin(["ok", "measured"])]
    rows = rows[rows["group"] == group]
    if checkpoint is not None and "checkpoint" in rows:
        rows = rows[rows["checkpoint"] == checkpoint]
    if "sampler" not in rows:
        rows = rows.assign(sampler="iid")
    out = []
    for (name, sampler, k), g in rows.groupby(["estimator", "sampler", "num_samples"], sort=False):
        if figure not in g:
            continue
        nan = pd.Series(np.nan, index=g.index)
        mean, lo, hi = pooled_mean_interval(
            g[figure], g.get(f"{figure}_low", nan), g.get(f"{figure}_high", nan)
        )
        floor = float(g["snr_floor"].mean()) if "snr_floor" in g else math.nan
        out.append(
            {"estimator": name, "sampler": sampler, "num_samples": int(k), "value": mean, "low": lo, "high": hi,
             "at_floor": _no_signal(figure, lo, floor)}
        )  # fmt: skip
    return pd.DataFrame(
        out, columns=["estimator", "sampler", "num_samples", "value", "low", "high", "at_floor"]
    )


def _no_signal(figure: str, low: float, floor: float) -> bool:
    """Whether an SNR's interval reaches what a gradient of mean zero shows: the floor √(2/(πR)) for the
    coordinate-averaged ``snr``, 0 for the noise-corrected ``snr_norm``."""
    if figure == "snr":
        return bool(math.isfinite(floor) and low <= floor)
    return bool(figure == "snr_norm" and not low > 0)


def scaling_laws(
    variance: pd.DataFrame, *, checkpoint: str | None = None, level: float = 0.95
) -> pd.DataFrame:
    """Fit every law of `law` that the variance rows can test, at one checkpoint.

    Args:
        variance: tidy rows of the variance measure (``estimator, sampler, num_samples, seed, group,
            checkpoint`` and the figures with ``_low``/``_high``).
        checkpoint: which checkpoint (None: all rows, for a frame with one).
        level: the level of the rows' intervals and of the slopes'.

    Returns:
        One row per law with at least two usable K, columns `SCALING_COLUMNS`: the fitted ``slope`` with
        ``slope_low``/``slope_high``, ``theory``, ``agrees`` (theory within the interval; None without an
        interval), the K range fitted (``k_min``, ``k_max``, ``points``), the intercept and the ``law`` in words.
    """
    out = []
    if variance.empty:
        return pd.DataFrame(columns=list(SCALING_COLUMNS))
    for group in ("encoder", "decoder"):
        for figure in FIGURES:
            pooled = pooled_by_k(variance, group, figure, checkpoint)
            for (name, sampler), g in pooled.groupby(["estimator", "sampler"], sort=False):
                rule = law(name, sampler, group, figure)
                if rule is None:
                    continue
                use = g[(g["num_samples"] >= rule.k_min) & ~g["at_floor"].astype(bool)]
                use = use[np.isfinite(use["value"]) & (use["value"] > 0)].sort_values("num_samples")
                fit = fit_power_law(
                    use["num_samples"],
                    use["value"],
                    use["low"],
                    use["high"],
                    level,
                    correction=rule.k_min > 1,
                )
                if math.isnan(fit.slope):
                    continue
                agrees = None if math.isnan(fit.low) else bool(fit.low <= rule.slope <= fit.high)
                out.append(
                    {"estimator": name, "sampler": sampler, "group": group, "figure": figure,
                     "checkpoint": checkpoint, "slope": fit.slope, "slope_low": fit.low, "slope_high": fit.high,
                     "theory": rule.slope, "agrees": agrees, "k_min": int(use["num_samples"].min()),
                     "k_max": int(use["num_samples"].max()), "points": fit.points, "intercept": fit.intercept, "correction": fit.correction,
                     "law": rule.text}
                )  # fmt: skip
    frame = pd.DataFrame(out, columns=list(SCALING_COLUMNS))
    frame["agrees"] = frame["agrees"].astype(object)
    return conform(frame, SCALING)
