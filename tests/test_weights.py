"""The importance-weight diagnostics (vaebench.measures.weights): k-hat against exact tails, ESS, chi^2.

Statistical checks draw from fixed seeds; each states its false-alarm rate (the probability that a correct
estimator fails it over the choice of seed).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaebench.data import load_dataset
from vaebench.errors import VaebenchError
from vaebench.measures.weights import (
    FINITE_VARIANCE,
    MIN_SAMPLES,
    WEIGHT_COLUMNS,
    chi_square,
    effective_sample_size,
    pareto_khat,
    tail_length,
    weight_summary,
)
from vaebench.toy import toy_checkpoint

COLUMNS = 200  # independent weight sets per check


def gpd_log_weights(shape: float, samples: int = 4000, seed: int = 0) -> torch.Tensor:
    """log w for w ~ GPD(shape, scale 1) (exponential at shape 0): [samples, COLUMNS]."""
    u = torch.rand(samples, COLUMNS, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    w = -torch.log(u) if shape == 0 else (u.pow(-shape) - 1) / shape
    return w.log()


@pytest.mark.parametrize("shape", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("family", ["gpd", "pareto"])
def test_khat_recovers_the_shape_of_exact_tails(shape, family):
    """GPD(k) and Pareto(1/k) tails (w = U^-k) have shape k. At S = 4000 the mean k̂ of 200 weight sets lies
    within 0.05 of k: the prior's pull towards 1/2 is 10/(M + 10) (1/2 - k), at most 0.015 here, and the
    mean's standard error about 0.007, so a correct estimator fails with probability below 1e-6. Each k̂'s
    own spread grows with k (about 0.07 at k = 0, 0.1 at 1/2, 0.13 at 0.8): its standard deviation lies in
    [0.04, 0.16]."""
    if family == "gpd":
        lw = gpd_log_weights(shape, seed=int(10 * shape))
    else:
        u = torch.rand(4000, COLUMNS, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        lw = -shape * u.log()
    khat = pareto_khat(lw)
    assert khat.shape == (COLUMNS,)
    assert abs(khat.mean().item() - shape) < 0.05
    assert 0.04 < khat.std().item() < 0.16


@pytest.mark.parametrize(
    ("what", "log_weights"),
    [
        ("exponential tail, k = 0", gpd_log_weights(0.0)),
        ("bounded, k = -0.3", gpd_log_weights(-0.3)),
        ("log-normal, sd 0.5", 0.5 * torch.randn(4000, COLUMNS, generator=torch.Generator().manual_seed(2))),
    ],
)
def test_light_tails_give_khat_below_one_half(what, log_weights):
    """Every one of 200 light-tailed weight sets has k̂ < 1/2 (the largest seen is about 0.2; with a spread
    of 0.07, one of 200 passing 1/2 by chance has probability below 1e-8)."""
    assert (pareto_khat(log_weights) < FINITE_VARIANCE).all(), what


def test_heavy_tails_are_flagged():
    """GPD(0.8): infinite variance; at least 95% of 200 sets read k̂ >= 1/2 (k̂ ~ N(0.79, 0.08): each misses
    with probability 1e-4, so more than 10 misses has probability below 1e-9)."""
    assert (pareto_khat(gpd_log_weights(0.8)) >= FINITE_VARIANCE).double().mean() >= 0.95


def test_khat_edge_cases():
    lw = gpd_log_weights(0.5, samples=1000)[:, :3]
    torch.testing.assert_close(pareto_khat(lw + torch.tensor([0.0, 50.0, -700.0])), pareto_khat(lw))
    broken = lw.clone()
    broken[5, 1] = math.nan
    broken[7, 2] = math.inf
    out = pareto_khat(torch.cat([broken, torch.zeros(1000, 1, dtype=torch.float64)], 1))
    assert not math.isnan(out[0]) and math.isnan(out[1]) and math.isnan(out[2])
    assert out[3] == -math.inf  # equal weights: no tail
    assert tail_length(1000) == 95 and tail_length(4000) == 190 and tail_length(100) == 20
    with pytest.raises(VaebenchError, match=f"at least {MIN_SAMPLES} draws"):
        pareto_khat(lw[:10])
    with pytest.raises(VaebenchError, match=r"\[S, N\]"):
        pareto_khat(lw[:, 0])


def test_ess_and_chi_square_on_known_weights():
    weights = torch.tensor([[1.0, 1.0, 2.0], [1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    ess = effective_sample_size(weights.log())
    torch.testing.assert_close(ess, torch.tensor([4.0, 1.0, 16 / 6], dtype=torch.float64))
    torch.testing.assert_close(chi_square(weights.log()), 4 / ess - 1)
    # χ² estimates Var(w)/E[w]²: for exponential weights (mean 1, variance 1), 1 within 5 standard errors
    # of a 4000-draw estimate (the relative variance of w² is 20, so the se is about 0.07; false alarm 6e-7).
    chi2 = chi_square(gpd_log_weights(0.0)[:, :1])
    assert abs(chi2.item() - 1.0) < 5 * math.sqrt(20 / 4000)


@pytest.fixture(scope="module")
def toy():
    data = load_dataset("gaussian-toy")
    return toy_checkpoint(data), data.train[:8]


def test_weight_summary_of_a_minibatch(toy):
    model, x = toy
    out = weight_summary(model, x, 1000, seed=3)
    assert list(out) == list(WEIGHT_COLUMNS) and out["weight_samples"] == 1000
    assert out == weight_summary(model, x, 1000, seed=3)  # seeded
    assert out != weight_summary(model, x, 1000, seed=4)
    assert (
        out["khat_median"] <= out["khat_max"] and 0 <= out["khat_over_half"] <= out["khat_over_quarter"] <= 1
    )
    assert 0 < out["ess_fraction_min"] <= out["ess_fraction_median"] <= 1
    assert out["chi2_max"] == pytest.approx(1 / out["ess_fraction_min"] - 1)
    # q is wider than the posterior (s² = 2/3 > 1/2): light tails, and χ² near its closed form 0.91.
    assert out["khat_max"] < FINITE_VARIANCE and 0.5 < out["chi2_median"] < 2
    with pytest.raises(VaebenchError, match="weight samples"):
        weight_summary(model, x, 10)


def test_a_narrow_q_has_heavy_weights():
    """q narrower than the posterior (s² = 0.3 < 1/2): a power tail of shape 1 - 2s² = 0.4 (infinite
    E[w⁴]), which k̂ reads heavier still at these S (the tail the draws see): most datapoints past 1/2."""
    data = load_dataset("gaussian-toy")
    out = weight_summary(toy_checkpoint(data, q_variance=0.3), data.train[:8], 4000)
    assert out["khat_over_quarter"] == 1.0 and out["khat_max"] >= FINITE_VARIANCE
    assert np.isfinite(out["chi2_max"]) and out["chi2_max"] > 10


def test_khat_is_arviz_psis_khat_on_a_fixed_sample():
    # The batched k-hat is a port of PSIS (Vehtari et al. 2024) as ArviZ implements it: the same tail length,
    # Zhang & Stephens' fit and the weakly informative prior, so the two agree to rounding on any sample.
    # Columns: light (normal log-weights), GPD-like tails of shape 1/2 and 0.7, a wide lognormal.
    az = pytest.importorskip("arviz")
    gen = np.random.default_rng(0)
    samples = 4000
    columns = [gen.standard_normal(samples), np.log1p(gen.pareto(2.0, samples)),
               np.log1p(gen.pareto(1 / 0.7, samples)), 3 * gen.standard_normal(samples)]  # fmt: skip
    log_weights = np.stack(columns, axis=1)
    ours = pareto_khat(torch.from_numpy(log_weights)).numpy()
    theirs = np.array([float(az.psislw(column.copy(), reff=1.0)[1]) for column in log_weights.T])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours, [0.1053, 0.4395, 0.6703, 0.7910], atol=5e-5)  # arviz 0.23's values
