"""The suite's estimators against the exact variances of Mohamed et al. 2020's 1-D Gaussian problem (Figures 2-3).

Each Monte Carlo variance comes from 200,000 independent estimates of the registered estimator, with a
Student-t interval on the mean of squared deviations; the quadrature figure must lie inside it, for every row
at once: each interval at level 1 - FALSE_ALARM / rows (Bonferroni), so a correct suite fails with probability
at most FALSE_ALARM over the seed. (Over 30 seeds x 60 rows at this number of draws the standardised errors
were N(0, 1)-like: largest |z| 2.9, none beyond 3.)
"""

from __future__ import annotations

import math

import pytest

from vaebench.checks.gaussian_1d import DEFAULT_KS, FORMS, gaussian_1d_check, quadrature_variances
from vaebench.errors import VaebenchError

FALSE_ALARM = 1e-3
DRAWS = 200_000


def check(ks, mu=1.0, sigma=1.0, seed=0):
    rows = sum(len(v) for v in ks.values()) * len(FORMS) * 2
    return gaussian_1d_check(ks, draws=DRAWS, mu=mu, sigma=sigma, level=1 - FALSE_ALARM / rows, seed=seed)


def test_every_registered_estimator_has_the_exact_variance_of_figures_2_and_3():
    # μ = σ = 1, the paper's setting, every cost at the ends and middle of the paper's k ranges.
    frame = check(DEFAULT_KS)
    assert len(frame) == 9 * len(FORMS) * 2
    assert frame["agrees"].all(), frame.loc[~frame["agrees"]].to_string()
    assert set(frame["registered"]) == {
        "reparam",
        "reinforce",
        "reinforce-ma",
        "mvd coupling=True",
        "mvd coupling=False",
    }


def test_the_check_holds_away_from_unit_scale():
    # σ ≠ 1 and μ ≠ 1 expose any misplaced σ (the MVD's 1/(√(2π) σ) and 1/σ, the scores' powers of σ).
    frame = check({"square": (2.0,), "exp": (1.0,), "cos": (3.0,)}, mu=0.5, sigma=0.7, seed=1)
    assert frame["agrees"].all(), frame.loc[~frame["agrees"]].to_string()


def test_the_intervals_resolve_the_differences_the_figures_show():
    # Power: the intervals are narrow enough to tell the forms apart where the paper's curves differ, e.g. the
    # coupling for the scale (f = (x + 3)², 67 against 265) and the mean baseline for the score function.
    frame = check({"square": (-3.0,)}).set_index(["estimator", "parameter"])
    uncoupled = frame.loc[("mvd-uncoupled", "sigma"), "quadrature_var"]
    assert frame.loc[("mvd-coupled", "sigma"), "mc_var_high"] < uncoupled
    no_baseline = frame.loc[("score-function", "mu"), "quadrature_var"]
    assert frame.loc[("score-function-mean", "mu"), "mc_var_high"] < no_baseline


def test_quadrature_matches_closed_forms():
    # f = (z - k)², z ~ N(μ, σ²): the pathwise μ-estimate 2(z - k) has variance 4σ²; its σ-estimate
    # 2(z - k)ε = 2(μ - k)ε + 2σε² has variance 4(μ - k)²  + 8σ².
    mu, sigma, k = 0.5, 0.7, 2.0
    exact = quadrature_variances("square", k, mu, sigma)
    assert math.isclose(exact["pathwise", "mu"], 4 * sigma**2, rel_tol=1e-8)
    assert math.isclose(exact["pathwise", "sigma"], 4 * (mu - k) ** 2 + 8 * sigma**2, rel_tol=1e-8)


def test_bad_input_is_named():
    with pytest.raises(VaebenchError, match=r"unknown estimator form.*nope"):
        gaussian_1d_check({"square": (0.0,)}, forms=["nope"])
    with pytest.raises(VaebenchError, match="unknown cost 'sin'"):
        gaussian_1d_check({"sin": (1.0,)})
