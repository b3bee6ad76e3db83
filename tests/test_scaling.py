"""Tests for the scaling laws in K (vaebench.measures.scaling), STL's landing check and their report section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vaebench.config import preset
from vaebench.measures.landing import landed, stl_landing
from vaebench.measures.scaling import ASYMPTOTIC_K, SCALING_COLUMNS, fit_power_law, law, scaling_laws
from vaebench.report.writer import write_report
from vaebench.stats import normal_quantile
from vaebench.suite.units import plan

GRID = np.array([1, 3, 10, 30, 100])


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


def _variance(exponents: dict[tuple[str, str], float], snr_exponent: float = 0.5) -> pd.DataFrame:
    """Variance rows whose trace_var ∝ K^exponent (a 2% interval) and SNR ∝ K^snr_exponent."""
    rows = []
    for (name, group), exponent in exponents.items():
        for k in GRID:
            for seed in (0, 1):
                v, s = 3.0 * k**exponent, 0.5 * k**snr_exponent
                rows.append(
                    dict(estimator=name, sampler="iid", num_samples=int(k), seed=seed, group=group, checkpoint="end",
                         step=10, status="ok", trace_var=v, trace_var_low=0.98 * v, trace_var_high=1.02 * v, snr=s,
                         snr_low=0.98 * s, snr_high=1.02 * s, snr_floor=0.01, snr_norm=s, snr_norm_low=0.98 * s,
                         snr_norm_high=1.02 * s)
                )  # fmt: skip
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


def test_asymptotic_laws_are_fitted_with_their_finite_k_correction() -> None:
    # An IWAE encoder SNR K^-1/2 exp(0.8/K) (an O(1/K) correction), and wild at K = 1, below the fitted range.
    frame = _variance({("iwae", "encoder"): -1.0}, snr_exponent=-0.5)
    factor = np.exp(0.8 / frame["num_samples"]) * np.where(frame["num_samples"] < ASYMPTOTIC_K, 5.0, 1.0)
    for col in ("snr", "snr_low", "snr_high"):
        frame[col] *= factor
    laws = scaling_laws(frame, checkpoint="end").set_index("figure")
    assert laws.loc["snr", "k_min"] == ASYMPTOTIC_K and laws.loc["snr", "points"] == 4
    assert laws.loc["snr", "slope"] == pytest.approx(-0.5)
    assert laws.loc["snr", "correction"] == pytest.approx(0.8)
    assert laws.loc["snr", "agrees"] is True
    plain = fit_power_law(GRID[1:], *(np.exp(0.8 / GRID[1:]) * GRID[1:] ** -0.5 * f for f in (1, 0.98, 1.02)))
    assert not plain.low <= -0.5 <= plain.high  # without the correction the curvature fails the law


def test_the_laws() -> None:
    assert law("reparam", "iid", "encoder", "trace_var").slope == -1
    assert law("reparam", "antithetic", "decoder", "trace_var").slope == -1
    assert law("reparam", "rqmc", "encoder", "trace_var") is None  # no fixed rate for RQMC
    assert law("iwae", "iid", "encoder", "trace_var") is None  # ∇IWAE_K changes with K
    assert law("iwae", "iid", "encoder", "snr").slope == -0.5
    assert law("iwae", "iid", "decoder", "snr_norm").slope == 0.5
    assert law("dreg", "iid", "encoder", "snr").slope == 0.5
    assert law("reinforce-loo", "iid", "encoder", "trace_var").k_min == ASYMPTOTIC_K


def test_the_laws_of_the_new_families() -> None:
    # mvd: an average of K independent one-sample estimates, exact at every K; MIWAE/PIWAE: Rainforth et
    # al.'s Theorem 1 at fixed M; the wake phase: a self-normalised estimate of a K-independent gradient.
    assert law("mvd", "iid", "encoder", "trace_var") == law("reparam", "iid", "encoder", "trace_var")
    assert law("mvd", "iid", "decoder", "trace_var").k_min == 1
    assert law("miwae", "iid", "encoder", "snr").slope == law("piwae", "iid", "encoder", "snr").slope == -0.5
    assert (
        law("miwae", "iid", "decoder", "snr_norm").slope == law("piwae", "iid", "decoder", "snr").slope == 0.5
    )
    for name in ("rws", "rws-dreg"):
        assert law(name, "iid", "encoder", "snr").slope == law(name, "iid", "decoder", "snr").slope == 0.5
        assert law(name, "iid", "encoder", "snr").k_min == ASYMPTOTIC_K
    for name in ("renyi", "renyi-dreg", "ciwae", "tail-adaptive"):  # option-dependent or no fixed target
        assert all(
            law(name, "iid", g, f) is None for g in ("encoder", "decoder") for f in ("trace_var", "snr")
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
    assert "2 of 3 laws agree" in text and "**1 fail**" in text
    assert "`reinforce` encoder trace_var: slope -0.500" in text and "**fails**" in text
    assert "### STL at the exact posterior" in text and "**agrees**: STL's variance falls to zero" in text
    assert (tmp_path / "scaling_laws.png").stat().st_size > 0
    saved = pd.read_csv(tmp_path / "scaling.csv")
    assert set(saved["estimator"]) == {"reparam", "reinforce", "stl"}
    assert (tmp_path / "stl_landing.csv").is_file()


def test_the_scaling_preset_measures_variance_only() -> None:
    config = preset("scaling")
    kinds = {u.kind for u in plan(config)}
    assert kinds == {"reference", "variance"}
    assert len(config.samples) >= 3


def test_the_scaling_preset_runs_end_to_end_shrunk(tmp_path: Path) -> None:
    """The preset through the command line, shrunk: variance only, and a report with the scaling section."""
    from vaebench import cli

    tiny = tmp_path / "tiny.toml"
    tiny.write_text(
        'preset = "scaling"\nestimators = ["reparam", "iwae"]\nsamples = [1, 3, 10, 30]\n'
        "[train]\nsteps = 20\n[variance]\nreplicates = 10\nseeds = [0]\nreference_samples = 2\n"
    )
    out = tmp_path / "run"
    assert cli.main(["run", "--config", str(tiny), "--out", str(out)]) == 0
    assert not (out / "convergence.csv").exists() or pd.read_csv(out / "convergence.csv").empty
    laws = pd.read_csv(out / "scaling.csv")
    assert {"reparam", "iwae"} <= set(laws["estimator"])
    text = (out / "report.md").read_text()
    assert "## Scaling laws in K" in text and "No estimator was trained" in text
