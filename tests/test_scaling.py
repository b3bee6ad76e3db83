"""Tests for the scaling laws in K (vaebench.analysis.scaling), STL's landing check and their report section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vaebench.analysis.claims import landed
from vaebench.analysis.scaling import (
    ASYMPTOTIC_K,
    SCALING_COLUMNS,
    TOLERANCE_ASYMPTOTIC,
    TOLERANCE_EXACT,
    fit_power_law,
    interval_trust,
    law,
    scaling_laws,
)
from vaebench.checks.landing import stl_landing
from vaebench.report.writer import write_report
from vaebench.stats import normal_quantile

GRID = np.array([1, 3, 10, 30, 100])
WIDE = np.array([1, 3, 10, 30, 100, 300, 1000])


def test_the_fit_recovers_a_known_slope_with_its_stated_coverage() -> None:
    """Points log y = 2 - 0.7 log K + noise of known, unequal sd, each given its 95% interval: the fitted
    slope is unbiased and its 95% interval misses the true slope in about 5% of 400 draws. The widening for
    scatter only makes intervals wider, so misses stay at or below 5%; the test fails (false alarm) with
    probability below 0.1%, when the misses exceed the binomial(400, 0.05) 99.9% quantile."""
    rng = np.random.default_rng(0)
    trials, z, sd = 400, normal_quantile(0.95), np.array([0.05, 0.1, 0.02, 0.08, 0.15])
    slopes, misses = [], 0
    for _ in range(trials):
        y = 2 - 0.7 * np.log(GRID) + sd * rng.standard_normal(GRID.size)
        fit = fit_power_law(GRID, np.exp(y), np.exp(y - z * sd), np.exp(y + z * sd))
        slopes.append(fit.slope)
        misses += not (fit.low <= -0.7 <= fit.high)
    assert misses <= stats.binom.isf(1e-3, trials, 0.05)
    assert misses >= 1  # an interval that never misses would be vacuous
    se = np.std(slopes) / np.sqrt(trials)
    assert abs(np.mean(slopes) + 0.7) < 4 * se


def test_a_curved_series_widens_the_interval() -> None:
    """Points that follow no power law (scatter far beyond their intervals) get a wider slope interval."""
    y = np.log(np.array([1.0, 2.0, 1.0, 2.0, 1.0]))
    tight = fit_power_law(GRID, np.exp(y), np.exp(y - 0.01), np.exp(y + 0.01))
    straight = fit_power_law(
        GRID, np.exp(-np.log(GRID)), np.exp(-np.log(GRID) - 0.01), np.exp(-np.log(GRID) + 0.01)
    )
    assert tight.high - tight.low > 20 * (straight.high - straight.low)


def _variance(
    exponents: dict[tuple[str, str], float], snr_exponent: float = 0.5, grid=GRID, khat: float | None = 0.1
) -> pd.DataFrame:
    """Variance rows whose trace_var ∝ K^exponent (a 2% interval) and every SNR ∝ K^snr_exponent, with the
    weights' k̂ of the minibatch (None: rows from before the weight diagnostic)."""
    rows = []
    for (name, group), exponent in exponents.items():
        for k in grid:
            for seed in (0, 1):
                v, s = 3.0 * k**exponent, 0.5 * k**snr_exponent
                row = dict(
                    estimator=name,
                    sampler="iid",
                    num_samples=int(k),
                    seed=seed,
                    group=group,
                    checkpoint="end",
                    step=10,
                    status="ok",
                    trace_var=v,
                    trace_var_low=0.98 * v,
                    trace_var_high=1.02 * v,
                    snr=s,
                    snr_low=0.98 * s,
                    snr_high=1.02 * s,
                    snr_floor=0.01,
                    snr_norm=s,
                    snr_norm_low=0.98 * s,
                    snr_norm_high=1.02 * s,
                    snr_rms=s,
                    snr_rms_low=0.98 * s,
                    snr_rms_high=1.02 * s,
                )
                if khat is not None:
                    row["khat_max"] = khat
                rows.append(row)  # fmt: skip
    return pd.DataFrame(rows)


def test_the_agrees_flag_can_fail() -> None:
    frame = _variance({("reparam", "encoder"): -1.0, ("reinforce", "encoder"): -0.5})
    laws = scaling_laws(frame, checkpoint="end")
    assert list(laws.columns) == list(SCALING_COLUMNS)
    laws = laws.set_index(["estimator", "figure"])
    assert laws.loc[("reparam", "trace_var"), "agrees"] is True
    assert laws.loc[("reinforce", "trace_var"), "agrees"] is False
    assert laws.loc[("reinforce", "trace_var"), "slope"] == pytest.approx(-0.5)
    assert laws.loc[("reparam", "trace_var"), "k_min"] == 1


def _bend(frame: pd.DataFrame, c: float, figures=("snr_norm", "snr_rms")) -> pd.DataFrame:
    """Multiply the SNRs by (1 + c/K), a finite-K correction, and make K = 1 wild (below any asymptotic fit)."""
    k = frame["num_samples"]
    factor = (1 + c / k) * np.where(k < ASYMPTOTIC_K, 5.0, 1.0)
    for f in figures:
        for col in (f, f"{f}_low", f"{f}_high"):
            frame[col] = frame[col] * factor
    return frame


def test_asymptotic_laws_are_judged_on_the_largest_decade_within_the_tolerance() -> None:
    # An IWAE encoder SNR K^-1/2 (1 + 3/K): over the whole grid the slope is far from -1/2, over the top
    # decade [100, 1000] it is about 0.39 * 3/100 steeper, well within the tolerance, and the fit's own interval (2%
    # points) is narrow enough that exact inclusion would fail it.
    frame = _bend(_variance({("iwae", "encoder"): -1.0}, snr_exponent=-0.5, grid=WIDE), c=3.0)
    laws = scaling_laws(frame, checkpoint="end").set_index("figure")
    assert list(laws.index) == ["snr_norm", "snr_rms"]  # the plain snr is never a law's figure
    row = laws.loc["snr_norm"]
    assert (row["k_min"], row["k_max"], row["points"]) == (100, 1000, 3)
    assert row["correction"] == 0.0 and row["tolerance"] == TOLERANCE_ASYMPTOTIC
    assert (
        -0.5 - TOLERANCE_ASYMPTOTIC < row["slope"] < -0.5
        and not row["slope_low"] <= -0.5 <= row["slope_high"]
    )
    assert row["agrees"] is True and row["verdict"] == "agrees" and row["regime"].startswith("finite Var(w)")
    assert row["interval_trusted"] is True
    whole = fit_power_law(WIDE[1:], *((1 + 3 / WIDE[1:]) * WIDE[1:] ** -0.5 * f for f in (1, 0.98, 1.02)))
    assert whole.slope < -0.5 - TOLERANCE_ASYMPTOTIC  # over the whole grid, the bend is past the tolerance


def test_a_law_that_misses_on_a_tested_point_fails() -> None:
    # A decoder SNR rising as K^0.3, light-tailed weights: tested, and a failure, not "not testable".
    frame = _variance({("iwae", "decoder"): -1.0}, snr_exponent=0.3, grid=WIDE)
    laws = scaling_laws(frame, checkpoint="end").set_index("figure")
    assert (laws["agrees"] == False).all() and (laws["verdict"] == "fails").all()  # noqa: E712
    # Exact laws have the tighter tolerance: a variance slope of -0.97 (2% points) fails, -0.99 agrees.
    for exponent, verdict in ((-0.97, "fails"), (-0.99, "agrees")):
        rows = scaling_laws(_variance({("reparam", "encoder"): exponent}), checkpoint="end")
        assert rows.set_index("figure").loc["trace_var", "verdict"] == verdict
        assert rows["tolerance"].iloc[0] == TOLERANCE_EXACT and rows["k_min"].iloc[0] == 1


@pytest.mark.parametrize(
    ("khat", "decoder", "dreg_encoder"),
    [
        (0.1, "agrees", "agrees"),
        (0.3, "agrees", "not testable here: heavy-tailed weights (k-hat = 0.30 >= 0.25"),
        (0.7, "not testable here: heavy-tailed weights (k-hat = 0.70 >= 0.5", "not testable here"),
        (None, "not testable here: no weight diagnostic", "not testable here: no weight diagnostic"),
    ],
)
def test_the_regime_rule_decides_which_laws_are_tested(khat, decoder, dreg_encoder) -> None:
    """Var(w) finite (k̂ < 1/2) for the IWAE laws, E[w⁴] finite (k̂ < 1/4) for DReG's encoder law; a law
    whose condition fails is never reported as failing, however far its slope is (here: flat)."""
    frame = pd.concat(
        [
            _variance({("dreg", "decoder"): -1.0}, snr_exponent=0.5, grid=WIDE, khat=khat),
            _variance(
                {("dreg", "encoder"): -1.0}, snr_exponent=0.5 if khat == 0.1 else 0.0, grid=WIDE, khat=khat
            ),
        ]
    )
    laws = scaling_laws(frame, checkpoint="end").set_index(["group", "figure"])
    assert laws.loc[("decoder", "snr_norm"), "verdict"].startswith(decoder)
    assert laws.loc[("encoder", "snr_norm"), "verdict"].startswith(dreg_encoder)
    untested = laws[laws["verdict"].str.startswith("not testable")]
    assert untested["agrees"].isna().all() and (laws["agrees"] != False).all()  # noqa: E712
    if khat is not None:
        assert (laws["khat"] == khat).all()
        assert (laws["interval_trusted"] == (khat < 0.5)).all()


def test_interval_trust_per_variance_row() -> None:
    rows = pd.DataFrame({"objective": ["iwae", "iwae", "elbo", "iwae"], "khat_max": [0.2, 0.6, 0.9, np.nan]})
    assert list(interval_trust(rows)) == [True, False, True, None]


def test_an_interval_that_also_holds_zero_is_inconclusive() -> None:
    # A decoder SNR law measured with ±80% intervals on K in {100, 300, 1000}: the slope's interval meets the
    # theory but holds 0 too.
    frame = _variance({("iwae", "decoder"): -1.0}, grid=np.array([100, 300, 1000]))
    frame = frame[frame["seed"] == 0].copy()
    for col, factor in (("snr_norm_low", 0.2 / 0.98), ("snr_norm_high", 1.8 / 1.02)):
        frame[col] = frame[col] * factor
    row = scaling_laws(frame, checkpoint="end").set_index("figure").loc["snr_norm"]
    assert row["slope_low"] < 0 < 0.5 < row["slope_high"]
    assert row["verdict"].startswith("inconclusive") and row["agrees"] is None


def test_snr_points_without_signal_are_left_out() -> None:
    frame = _variance({("iwae", "decoder"): -1.0}, grid=WIDE)
    frame = frame[frame["seed"] == 0].copy()  # one seed: its interval is the pooled one
    top = frame["num_samples"] == 1000
    frame.loc[top, "snr_norm_low"] = 0.0  # no signal resolved at K = 1000
    row = scaling_laws(frame, checkpoint="end").set_index("figure").loc["snr_norm"]
    assert (row["k_min"], row["k_max"]) == (30, 300)  # the largest decade of the resolved points


def test_the_laws() -> None:
    assert law("reparam", "iid", "encoder", "trace_var").slope == -1
    assert law("reparam", "antithetic", "decoder", "trace_var").slope == -1
    assert law("reparam", "iid", "encoder", "trace_var").regime is None
    assert law("reparam", "rqmc", "encoder", "trace_var") is None  # no fixed rate for RQMC
    assert law("iwae", "iid", "encoder", "trace_var") is None  # ∇IWAE_K changes with K
    assert law("iwae", "iid", "encoder", "snr") is None  # biased near its floor: not a law's figure
    assert law("iwae", "iid", "encoder", "snr_rms").slope == -0.5
    assert law("iwae", "iid", "decoder", "snr_norm").slope == 0.5
    assert law("iwae", "iid", "decoder", "snr_norm").regime == "variance"
    assert law("dreg", "iid", "encoder", "snr_norm").slope == 0.5
    assert law("dreg", "iid", "encoder", "snr_norm").regime == "fourth"
    assert law("reinforce-loo", "iid", "encoder", "trace_var").k_min == ASYMPTOTIC_K


def test_the_laws_of_the_new_families() -> None:
    # mvd: an average of K independent one-sample estimates, exact at every K; MIWAE/PIWAE: Rainforth et
    # al.'s Theorem 1 at fixed M; the wake phase: a self-normalised estimate of a K-independent gradient.
    assert law("mvd", "iid", "encoder", "trace_var") == law("reparam", "iid", "encoder", "trace_var")
    assert law("mvd", "iid", "decoder", "trace_var").k_min == 1
    assert (
        law("miwae", "iid", "encoder", "snr_norm").slope
        == law("piwae", "iid", "encoder", "snr_norm").slope
        == -0.5
    )
    assert (
        law("miwae", "iid", "decoder", "snr_norm").slope
        == law("piwae", "iid", "decoder", "snr_norm").slope
        == 0.5
    )
    for name in ("rws", "rws-dreg"):
        assert (
            law(name, "iid", "encoder", "snr_norm").slope
            == law(name, "iid", "decoder", "snr_norm").slope
            == 0.5
        )
        assert law(name, "iid", "encoder", "snr_norm").k_min == ASYMPTOTIC_K
    for name in ("renyi", "renyi-dreg", "ciwae", "tail-adaptive"):  # option-dependent or no fixed target
        assert all(
            law(name, "iid", g, f) is None for g in ("encoder", "decoder") for f in ("trace_var", "snr_norm")
        )


def test_stl_variance_vanishes_at_the_exact_posterior() -> None:
    frame = stl_landing(replicates=10, batch_size=8, steps=(1.0, 0.1, 0.0))
    ratio = landed(frame)
    assert ratio["stl"] < 1e-8
    assert ratio["reparam"] > 0.05
    stl = frame[frame["estimator"] == "stl"].set_index("fraction")["trace_var"]
    assert stl[1.0] > stl[0.1] > stl[0.0]


def test_the_report_has_a_scaling_section(tmp_path: Path) -> None:
    frame = _variance(
        {("reparam", "encoder"): -1.0, ("reinforce", "encoder"): -0.5, ("stl", "encoder"): -1.0}
    )
    frame.to_csv(tmp_path / "variance.csv", index=False)
    (tmp_path / "run.json").write_text(json.dumps({"status": "complete"}))
    text = write_report(tmp_path).read_text()
    assert "## Scaling laws in K" in text
    assert "3 laws fitted (verdicts: agrees 2, fails 1)" in text  # every slope is scaling.csv's
    assert "(`reinforce` encoder trace_var at end: fails)" in text
    assert (tmp_path / "scaling_laws.png").stat().st_size > 0
    saved = pd.read_csv(tmp_path / "scaling.csv")
    assert set(saved["estimator"]) == {"reparam", "reinforce", "stl"}
    # The report measures nothing: the STL check is a unit of the suite, read from stl_landing.csv.
    assert "### STL at the exact posterior" not in text and not (tmp_path / "stl_landing.csv").exists()
    stl_landing(replicates=10, batch_size=8, steps=(1.0, 0.0)).to_csv(
        tmp_path / "stl_landing.csv", index=False
    )
    text = write_report(tmp_path).read_text()
    roeder = next(
        line for line in text.splitlines() if line.startswith("| STL's encoder gradient variance is zero")
    )
    assert roeder.endswith("| **agrees** |")  # the claim's row of the measured claims (claims.csv)


def test_laws_without_a_fit_are_returned_on_request() -> None:
    # The IWAE laws need K >= 3: with K in {1, 10} one point is left, no slope.
    frame = _variance({("iwae", "decoder"): -1.0}, grid=np.array([1, 10]))
    assert scaling_laws(frame, checkpoint="end").empty
    rows = scaling_laws(frame, checkpoint="end", unfitted=True)
    assert rows["slope"].isna().all() and rows["verdict"].str.startswith("cannot be judged").all()
    assert rows["agrees"].isna().all()
