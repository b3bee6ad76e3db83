"""The per-row diagnostics of the variance measure: DSNR, the noise-corrected SNR, the exact KL, the weights.

Formula checks compare with a brute-force numpy computation on the same replicates (exact to rounding);
statistical checks use fixed seeds and state their false-alarm rates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from vaebench.checks.exact_gradients import linear_gaussian
from vaebench.data import load_dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import make_estimator
from vaebench.exact import kl_to_posterior
from vaebench.measures import schema
from vaebench.measures.variance import GradientSample, Layout, VarianceOptions, measure_variance
from vaebench.measures.variance.harness import summarize
from vaebench.measures.variance.summary import JACKKNIFE_GROUPS, resample_counts
from vaebench.measures.weights import WEIGHT_COLUMNS, weight_summary
from vaebench.model import GaussianVAE
from vaebench.stats import jackknife_interval, percentile_interval
from vaebench.toy import toy_checkpoint


def sample_of(g: torch.Tensor) -> GradientSample:
    """A gradient sample of one parameter whose R replicates are the rows of ``g`` [R, P]."""
    param = nn.Parameter(torch.zeros(g.shape[1], dtype=g.dtype))
    return GradientSample([g], Layout([param], {"all": [0]}, []))


def gaussian_replicates(mean: float, replicates: int, coords: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return mean + torch.randn(replicates, coords, generator=gen, dtype=torch.float64)


def brute_dsnr(g: np.ndarray, counts: np.ndarray | None = None) -> float:
    """Rainforth et al.'s DSNR, each replicate projected on the mean of the others (all its copies left out)."""
    n = g.shape[0]
    w = np.ones(n) if counts is None else counts
    total = (w[:, None] * g).sum(0)
    along, perp = np.zeros(n), np.zeros(n)
    for r in range(n):
        if w[r] == 0:
            continue
        other = (total - w[r] * g[r]) / (n - w[r])
        along[r] = g[r] @ other / np.linalg.norm(other)
        perp[r] = g[r] @ g[r] - along[r] ** 2
    return float((w * np.abs(along)).sum() / n / np.sqrt((w * perp).sum() / n))


def brute_snr_rms(g: np.ndarray) -> float:
    n = g.shape[0]
    m, s2 = g.mean(0), g.var(0, ddof=1)
    return math.sqrt(max(((n - 3) / (n - 1) * m**2 / s2).mean() - 1 / n, 0.0))


def test_dsnr_and_snr_rms_are_their_formulas():
    g = gaussian_replicates(0.3, 40, 7, seed=0)
    g[:, 0] += 2.0  # a direction the mean leans to
    (row,) = summarize(sample_of(g), level=0.9, resamples=200, seed=5)
    gn = g.numpy()
    assert row["dsnr"] == pytest.approx(brute_dsnr(gn), rel=1e-9)
    counts = resample_counts(40, 200, 5)
    draws = [brute_dsnr(gn, c) for c in counts]
    low, high = percentile_interval(np.array(draws), 0.9)
    assert (row["dsnr_low"], row["dsnr_high"]) == (
        pytest.approx(low, rel=1e-9),
        pytest.approx(high, rel=1e-9),
    )
    assert row["snr_rms"] == pytest.approx(brute_snr_rms(gn), rel=1e-9)
    size = 40 // JACKKNIFE_GROUPS
    leave_outs = [brute_snr_rms(np.delete(gn, slice(j * size, (j + 1) * size), 0)) for j in range(10)]
    low, high = jackknife_interval(row["snr_rms"], np.array(leave_outs), 0.9)
    assert (row["snr_rms_low"], row["snr_rms_high"]) == (pytest.approx(low), pytest.approx(high))


def test_the_noise_corrected_snr_is_unbiased_where_the_plain_one_is_not():
    """Per-coordinate SNR 0.025 on 2000 coordinates, R = 2000 normal replicates (the issue's regime, K = 10
    IWAE encoder: 0.0337 at R = 2000 against 0.0263 at R = 20000). The plain ``snr`` is E|ḡ_p|/σ ≈ 0.0280
    (folded normal), its standard deviation over coordinates' average about 3e-4: above 0.0265 except with
    probability below 1e-6. ``snr_rms`` estimates 0.025 with a standard deviation of about 6e-4: within
    0.0025 except with probability 6e-5; a gradient of mean zero gives ``snr`` at its floor and ``snr_rms``
    an interval from 0."""
    (row,) = summarize(sample_of(gaussian_replicates(0.025, 2000, 2000, seed=1)), resamples=10, seed=0)
    assert row["snr"] > 0.0265
    assert abs(row["snr_rms"] - 0.025) < 0.0025
    assert row["snr_rms_low"] <= 0.025 <= row["snr_rms_high"] or abs(row["snr_rms"] - 0.025) < 0.001
    (zero,) = summarize(sample_of(gaussian_replicates(0.0, 2000, 2000, seed=2)), resamples=10, seed=0)
    assert zero["snr"] == pytest.approx(zero["snr_floor"], rel=0.05)
    assert zero["snr_rms_low"] == 0.0 and zero["snr_rms"] < 0.01


def test_dsnr_of_a_known_direction():
    """Mean 1 along one axis of P = 50, unit isotropic noise: E|gᵀu| = E|1 + z| ≈ 1.17 and
    E||g_⊥||² = P - 1, so DSNR ≈ 1.17/7 = 0.167; with 4000 replicates within 10% (each term's relative
    error is about 1%: a false alarm below 1e-6), and its interval holds the value at the estimate."""
    g = gaussian_replicates(0.0, 4000, 50, seed=3)
    g[:, 0] += 1.0
    (row,) = summarize(sample_of(g), resamples=200, seed=0)
    z = torch.randn(10**6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    expected = float((1 + z).abs().mean()) / math.sqrt(49)
    assert row["dsnr"] == pytest.approx(expected, rel=0.1)
    assert row["dsnr_low"] <= row["dsnr"] <= row["dsnr_high"]


def test_the_rows_carry_the_exact_kl_and_the_weights():
    model, x = linear_gaussian()
    frame = measure_variance(
        model, make_estimator("reparam"), x, 2, 20, options=VarianceOptions(timing_repeats=1, weights=200)
    )
    assert set(schema.ROW_DIAGNOSTICS) <= set(frame.columns)
    assert frame["kl_to_posterior"].iloc[0] == pytest.approx(float(kl_to_posterior(model, x).detach().mean()))
    assert (frame["weight_samples"] == 200).all() and frame["khat_max"].notna().all()
    # A summary drawn once is used as given, for every estimator measured on that minibatch.
    summary = weight_summary(model, x, 200, seed=0)
    shared = measure_variance(
        model, make_estimator("iwae"), x, 3, 20, options=VarianceOptions(timing_repeats=1, weights=summary)
    )
    assert shared.iloc[0][list(WEIGHT_COLUMNS)].to_dict() == summary
    assert frame.iloc[0][list(WEIGHT_COLUMNS)].to_dict() == summary  # the same draws (stream and seed)
    none = measure_variance(
        model, make_estimator("reparam"), x, 2, 20, options=VarianceOptions(timing_repeats=1, weights=0)
    )
    assert none["khat_max"].isna().all() and (none["weight_samples"] == 0).all()
    with pytest.raises(VaebenchError, match="lacks khat_max"):
        measure_variance(
            model, make_estimator("reparam"), x, 2, 20, options=VarianceOptions(weights={"chi2_max": 1.0})
        )
    # No closed-form posterior: NaN; the toy's is its closed form.
    digits = GaussianVAE(5, 2, hidden=(4,), seed=0).double()
    assert (
        measure_variance(
            digits, make_estimator("reparam"), x, 1, 5, options=VarianceOptions(timing_repeats=1, weights=0)
        )["kl_to_posterior"]
        .isna()
        .all()
    )
    data = load_dataset("gaussian-toy")
    toy = toy_checkpoint(data)
    row = measure_variance(
        toy,
        make_estimator("dreg"),
        data.train[:4],
        3,
        10,
        options=VarianceOptions(timing_repeats=1, weights=0),
    )
    assert row["kl_to_posterior"].iloc[0] == pytest.approx(
        float(toy.exact_kl(data.train[:4]).detach().mean()), rel=1e-5
    )
