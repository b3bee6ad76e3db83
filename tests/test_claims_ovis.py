"""Liévin et al. 2020's claims (vaebench.analysis.claims, vaebench.analysis.ranking): the ranking of five estimators
by test log p(x) at each K, judged link by link from paired contrasts, and DReG's and IWAE's encoder SNR falling
with K along training. Planted tables: each verdict must follow the numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vaebench.analysis import summaries
from vaebench.analysis.claims import LIEVIN_K, LIEVIN_VAE, NOT_MEASURED, Evidence, claims_table
from vaebench.analysis.ranking import TIE, link_verdict
from vaebench.analysis.trends import trend_in_k

FASHION = {"data": "fashion-mnist", "likelihood": "bernoulli"}
HOLDS = {"iwae-stl": -100.0, "dreg": -100.5, "iwae": -102.0, "tvo": -104.0, "ovis-gamma": -104.2}
"""Test log p(x) of a run in which the published ranking holds at every K (the same at each K)."""


def _convergence(final: dict[str, float], noise: dict[str, float] | None = None, ks=LIEVIN_K) -> pd.DataFrame:
    """Three seeds of every estimator at every K with the given test log p(x), plus a seed effect that every
    estimator shares (the pairing removes it) and ``noise[name]`` times a per-seed effect of its own."""
    own = (-1.0, 0.2, 0.8)
    rows = []
    for i, (name, value) in enumerate(final.items()):
        for k in ks:
            for seed in (0, 1, 2):
                shift = 2.0 * seed + (noise or {}).get(name, 0.05 * i) * own[seed]
                rows.append((name, k, seed, 100, "test_elbo", value - 5 + shift))
                rows.append((name, k, seed, 100, "test_log_likelihood", value + shift))
    frame = pd.DataFrame(rows, columns=["estimator", "num_samples", "seed", "step", "metric", "value"])
    return frame.assign(
        sampler="iid", objective="iwae", diverged=False, wall_time_s=1.0, grad_evals=1, latent_samples=1
    )


def _table(convergence: pd.DataFrame, variance: pd.DataFrame | None = None, **where) -> pd.DataFrame:
    summary = summaries.summary_table(None, convergence, None) if not convergence.empty else pd.DataFrame()
    empty = pd.DataFrame()
    where = where or FASHION
    evidence = Evidence(
        empty, empty, empty, summary, convergence, where.get("data"), where.get("likelihood"),
        variance=empty if variance is None else variance,
    )  # fmt: skip
    return claims_table(evidence).set_index("key")


def test_a_ranking_that_holds_agrees_at_every_k_with_the_published_figures_beside_it() -> None:
    table = _table(_convergence(HOLDS))
    for i, k in enumerate(LIEVIN_K):
        row = table.loc[f"lievin-ranking-k{k}"]
        assert row["verdict"] == "agrees" and row["where"] == f"K = {k}", row.to_dict()
        assert "at this budget" in row["detail"] and "100 steps" in row["detail"]
        for name, published in LIEVIN_VAE.items():  # the source's figure beside the run's
            assert f"{name} {HOLDS[name] + 2:.1f} ({published[i]})" in row["detail"]
        assert row["measured_low"] <= row["measured"] <= row["measured_high"]


def test_a_reversed_link_does_not_agree_and_is_the_one_reported() -> None:
    row = _table(_convergence({**HOLDS, "iwae": -100.0})).loc["lievin-ranking-k10"]  # IWAE above DReG
    assert row["verdict"] == "does not agree"
    assert row["figure"] == "test log p(x), dreg - iwae (nats)" and row["measured_high"] < 0
    assert row["theory"] == pytest.approx(LIEVIN_VAE["dreg"][1] - LIEVIN_VAE["iwae"][1])


def test_an_interval_holding_0_on_a_strict_link_is_inconclusive() -> None:
    # DReG 0.3 above IWAE on average, each seed's own effect of +-3 nats: the interval holds 0
    frame = _convergence({**HOLDS, "iwae": -100.8}, noise={"iwae": 3.0})
    row = _table(frame).loc["lievin-ranking-k50"]
    assert row["verdict"] == "inconclusive" and row["figure"] == "test log p(x), dreg - iwae (nats)"
    assert row["measured_low"] < 0 < row["measured_high"]


def test_a_tie_is_an_equivalence_within_a_nat() -> None:
    assert link_verdict("~", -0.4, 0.6) == "agrees"
    assert link_verdict("~", -0.4, TIE + 0.5) == "inconclusive"  # a wide interval is no evidence of a tie
    assert link_verdict("~", TIE + 0.1, TIE + 2) == "does not agree"
    assert link_verdict(">=", -0.1, 0.3) == "consistent" and link_verdict(">", -0.1, 0.3) == "inconclusive"
    assert link_verdict(">", np.nan, np.nan) == "cannot be judged"
    row = _table(_convergence({**HOLDS, "ovis-gamma": -108.0})).loc["lievin-ranking-k5"]
    assert row["verdict"] == "does not agree" and row["figure"] == "test log p(x), tvo - ovis-gamma (nats)"
    assert row["theory"] == 0.0 and row["tolerance"] == TIE


def test_a_ranking_on_other_data_is_stated_but_not_compared() -> None:
    row = _table(_convergence(HOLDS), data="digits", likelihood="gaussian").loc["lievin-ranking-k5"]
    assert row["verdict"] == "not comparable" and "this run is on digits" in row["detail"]
    assert np.isfinite(row["measured"])


def test_a_run_without_the_five_estimators_has_not_measured_the_ranking() -> None:
    frame = _convergence({name: v for name, v in HOLDS.items() if name != "tvo"})
    row = _table(frame).loc["lievin-ranking-k5"]
    assert row["verdict"] == NOT_MEASURED and "--preset ovis" in row["detail"]


def _variance(slopes: dict[tuple[str, str], float], ks=LIEVIN_K) -> pd.DataFrame:
    """Encoder snr_norm rows of two seeds with SNR = K^slope at each (estimator, checkpoint), +-3% intervals."""
    rows = []
    for (name, checkpoint), slope in slopes.items():
        for k in ks:
            for seed in (0, 1):
                value = 0.5 * k**slope * (1 + 0.01 * seed)
                rows.append((name, "iid", k, seed, "encoder", checkpoint, value, 0.97 * value, 1.03 * value))
    return pd.DataFrame(
        rows,
        columns=["estimator", "sampler", "num_samples", "seed", "group", "checkpoint", "snr_norm",
                 "snr_norm_low", "snr_norm_high"],
    )  # fmt: skip


def test_an_snr_falling_at_every_checkpoint_agrees_and_a_rising_one_does_not() -> None:
    variance = _variance(
        {("dreg", "init"): -0.3, ("dreg", "end"): -0.2, ("iwae", "init"): -0.5, ("iwae", "end"): 0.25}
    )
    trend = trend_in_k(variance, "dreg", "encoder", "snr_norm").set_index("checkpoint")
    assert trend.loc["init", "slope"] == pytest.approx(-0.3, abs=0.01) and trend.loc["end", "slope_high"] < 0
    table = _table(pd.DataFrame(), variance)
    dreg, iwae = table.loc["lievin-snr-dreg"], table.loc["lievin-snr-iwae"]
    assert dreg["verdict"] == "agrees" and dreg["where"] == "init, end"
    assert dreg["measured"] == pytest.approx(-0.2, abs=0.01)  # the checkpoint nearest to not falling
    assert "not along each estimator's own training" in dreg["detail"]
    assert iwae["verdict"] == "does not agree" and iwae["figure"] == "snr_norm slope in K at end"


def test_an_snr_slope_whose_interval_holds_0_is_inconclusive_and_one_k_is_not_measured() -> None:
    variance = _variance({("dreg", "end"): 0.0, ("iwae", "end"): -0.5})
    variance.loc[variance["estimator"] == "dreg", "snr_norm_low"] *= 0.5  # wide: the slope's interval holds 0
    table = _table(pd.DataFrame(), variance)
    assert table.loc["lievin-snr-dreg", "verdict"] == "inconclusive"
    single = _table(pd.DataFrame(), _variance({("dreg", "end"): -0.5}, ks=(1, 10)))  # one K >= 2: no slope
    assert single.loc["lievin-snr-dreg", "verdict"] == NOT_MEASURED
