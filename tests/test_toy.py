"""The Gaussian toy (vaebench.toy) and its data set: exact answers, the built checkpoint, the contract."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

import vaebench.estimators as estimators_module
from vaebench.checks.landing import exact_posterior_model
from vaebench.data import load_dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, make_estimator
from vaebench.exact import kl_to_posterior
from vaebench.measures.variance import Engine, VarianceOptions, gradient_sample, warm_up
from vaebench.model import GaussianVAE
from vaebench.toy import (
    PERTURBATION,
    TOY_DIM,
    TOY_POINTS,
    GaussianToy,
    chi_square_at_optimum,
    toy_checkpoint,
)


@pytest.fixture(scope="module")
def data():
    return load_dataset("gaussian-toy")


@pytest.fixture(scope="module")
def toy(data):
    return toy_checkpoint(data).double()


def test_the_data_set_is_the_toy_and_deterministic(data):
    assert data.train.shape == data.test.shape == (TOY_POINTS, TOY_DIM)
    assert not torch.equal(data.train, data.test)
    again = load_dataset("gaussian-toy")
    assert torch.equal(again.train, data.train) and torch.equal(again.truth.bias, data.truth.bias)
    other = load_dataset("gaussian-toy", seed=1)
    assert not torch.equal(other.truth.bias, data.truth.bias)
    # p(x) = N(μ, 2I): the data's exact log-likelihood, and the sample moments agree with it (a 2x2 check of
    # mean and variance at 6 standard errors: false alarm below 1e-8 per coordinate).
    mu = data.truth.bias
    x = data.train.double()
    expected = -0.25 * (x - mu).square().sum(-1) - 0.5 * TOY_DIM * math.log(4 * math.pi)
    torch.testing.assert_close(data.exact_log_marginal(data.train), expected)
    assert ((x.mean(0) - mu).abs() < 6 * math.sqrt(2 / TOY_POINTS)).all()
    assert ((x.var(0) - 2).abs() < 6 * 2 * math.sqrt(2 / TOY_POINTS)).all()
    with pytest.raises(VaebenchError, match="cannot be binarized"):
        load_dataset("gaussian-toy", binarize="fixed")


def test_the_built_checkpoint_is_the_optimum_perturbed(data, toy):
    mu_hat = data.train.double().mean(0)
    a, b, theta = toy.encoder.weight, toy.encoder.bias, toy.decoder.mean
    eye = torch.eye(TOY_DIM, dtype=torch.float64)
    noise = torch.cat([(a - eye / 2).flatten(), b - mu_hat / 2, theta - mu_hat]).detach()
    # 440 N(0, 0.01²) draws: their sd within 10% and none beyond 5 sd (false alarm about 1e-4).
    assert noise.std().item() == pytest.approx(PERTURBATION, rel=0.1)
    assert noise.abs().max().item() < 5 * PERTURBATION
    same = toy_checkpoint(data)
    assert all(torch.equal(p.double(), q) for p, q in zip(same.parameters(), toy.parameters(), strict=True))
    assert not torch.equal(toy_checkpoint(data, seed=1).decoder.mean.double(), theta)
    exact = toy_checkpoint(data, perturbation=0.0).double()
    torch.testing.assert_close(exact.decoder.mean.detach(), mu_hat)


def test_exact_answers(toy, data):
    x = data.test[:6].double()
    z = toy.posterior(x).sample((5,))
    # Bayes: log p(x, z) - log p(z | x) = log p(x) at every z.
    post = toy.exact_posterior(x)
    torch.testing.assert_close(
        toy.log_joint(x, z) - post.log_prob(z).sum(-1), toy.exact_log_marginal(x).expand(5, -1)
    )
    # The closed-form KL is torch's, and the ELBO is log p(x) minus it.
    torch.testing.assert_close(toy.exact_kl(x), kl_divergence(toy.posterior(x), post).sum(-1))
    torch.testing.assert_close(kl_to_posterior(toy, x), toy.exact_kl(x))
    torch.testing.assert_close(toy.exact_elbo(x), toy.exact_log_marginal(x) - toy.exact_kl(x))
    # At the optimum only the variance mismatch is left: (D/2)(log(1/(2s²)) + 2s² - 1).
    best = toy_checkpoint(data, perturbation=0.0).double()
    xb = data.train[:3].double()
    s2 = best.q_variance
    floor = 0.5 * TOY_DIM * (math.log(1 / (2 * s2)) + 2 * s2 - 1)
    torch.testing.assert_close(
        best.exact_kl(xb), torch.full((3,), floor, dtype=torch.float64), rtol=0, atol=1e-9
    )


def test_the_closed_form_elbo_matches_a_large_sample_estimate(toy, data):
    x = data.test[:4].double()
    q = toy.posterior(x)
    z = q.sample((200_000,))
    f = toy.log_joint(x, z) - q.log_prob(z).sum(-1)
    se = f.std(0) / math.sqrt(f.shape[0])
    assert ((f.mean(0) - toy.exact_elbo(x)).abs() < 5 * se).all()  # false alarm ~6e-7 per datapoint


def test_the_weights_chi_square_at_the_optimum(data):
    """E_q[w²]/p(x)² - 1 at the unperturbed optimum, by Monte Carlo, against the closed form (0.91 at D = 20)."""
    best = toy_checkpoint(data, perturbation=0.0).double()
    x = data.train[:1].double()
    q = best.posterior(x)
    z = q.sample((400_000,))
    w = (best.log_joint(x, z) - q.log_prob(z).sum(-1) - best.exact_log_marginal(x)).exp()
    chi2 = w.square().mean() - 1
    # w is bounded here (q wider than the posterior), so the Monte Carlo se is small: 5 se is a false alarm
    # below 1e-6.
    se = w.square().std() / math.sqrt(w.numel())
    assert abs(chi2.item() - chi_square_at_optimum()) < 5 * se.item()
    assert chi_square_at_optimum(q_variance=0.25) == math.inf


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_every_registered_estimator_runs_on_the_toy(toy, data, name):
    est = make_estimator(name)
    k = max(3, est.min_samples)
    x = data.train[:8].double()
    if est.stateful:
        warm_up(est, toy, [data.train[8:16].double()], num_samples=k, baseline_steps=5, calls=3)
    est = est.to(torch.float64)
    out = est(toy, x, num_samples=k, generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad(out.surrogate, list(toy.parameters()), allow_unused=True)
    assert torch.isfinite(out.surrogate) and all(g is not None and torch.isfinite(g).all() for g in grads)
    # Every bound lies below log p(x) (IWAE_K by at most the ELBO's gap): a loose but failing check.
    assert (out.elbo <= toy.exact_log_marginal(x) + 5).all()
    # The fast engine covers the toy, except the closed-form KL, which reads θ outside the model's forward
    # pass (prior()), and falls back to vmap.
    sample = gradient_sample(toy, est, x, k, 4)
    assert sample.method == ("vmap" if name == "reparam-analytic-kl" else "tiled")
    assert torch.isfinite(sample.flat()).all()


@pytest.fixture
def pooled_noise(monkeypatch):
    """Every estimator draws ε from one pool, row by row, so the engines see the same noise per replicate."""
    pool = torch.randn(400, 5, TOY_DIM, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    state = {"row": 0}

    def sample(q, num_samples, generator=None, sampler="iid"):
        rows = q.loc.shape[0]
        start = state["row"]
        state["row"] += rows
        eps = pool[start : start + rows, :num_samples].transpose(0, 1)
        return q.loc + q.scale * eps

    monkeypatch.setattr(estimators_module.base, "sample_posterior", sample)
    return state


@pytest.mark.parametrize("name", ["reparam", "iwae", "dreg", "stl"])
def test_the_tiled_engine_is_exact_on_the_toy(pooled_noise, toy, data, name):
    """θ reaches the tiled engine through Generative.shared_outputs: per replicate it must equal autograd."""
    x = data.train[:4].double()
    est = make_estimator(name)
    out = {}
    for method in ("naive", "tiled"):
        pooled_noise["row"] = 0
        out[method] = gradient_sample(toy, est, x, 5, 6, engine=Engine(method=method)).flat()
    torch.testing.assert_close(out["tiled"], out["naive"], rtol=1e-9, atol=1e-11)


def test_the_linear_gaussian_posterior_is_exact():
    model = GaussianVAE(5, 3, hidden=(), init_decoder_scale=0.7, seed=2).double()
    with torch.no_grad():
        model.decoder.net[0].weight.add_(torch.randn(5, 3, generator=torch.Generator().manual_seed(3)))
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    from vaebench.exact import exact_log_marginal

    post = model.exact_posterior(x)
    assert isinstance(post, MultivariateNormal) and post.batch_shape == (4,)
    z = torch.randn(6, 4, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(
        model.log_joint(x, z) - post.log_prob(z), exact_log_marginal(model, x).expand(6, -1)
    )
    kl = kl_to_posterior(model, x)
    assert kl.shape == (4,) and (kl > 0).all()
    # The model built for STL's check has its encoder at the exact (diagonal) posterior: KL 0.
    exact = exact_posterior_model().double()
    xe = torch.randn(3, exact.x_dim, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    assert kl_to_posterior(exact, xe).abs().max().item() < 1e-6
    assert GaussianVAE(5, 2, hidden=(4,)).exact_posterior(x.float()) is None
    assert kl_to_posterior(GaussianVAE(5, 2, hidden=(4,)), x.float()) is None


def test_bad_toy_input_is_named():
    with pytest.raises(VaebenchError, match=r"shape \[B, 20\]"):
        GaussianToy().posterior(torch.zeros(3, 4))
    with pytest.raises(VaebenchError, match="q_variance"):
        GaussianToy(q_variance=0.0)
    with pytest.raises(VaebenchError, match="data points"):
        toy_checkpoint(torch.zeros(3))
    assert isinstance(GaussianToy().prior(), Normal)


def test_the_baseline_gradient_on_the_toy_is_exact(toy, data):
    """The variance measure's bias figures on the toy use its closed-form ELBO: reparam is unbiased for it."""
    from vaebench.measures.variance import baseline_gradient, layout, measure_variance

    x = data.train[:4].double()
    flat, label = baseline_gradient(toy, x)
    grads = torch.autograd.grad(-toy.exact_elbo(x).mean(), layout(toy).params)
    torch.testing.assert_close(flat, torch.cat([g.reshape(-1) for g in grads]))
    assert label == "exact"
    frame = measure_variance(
        toy,
        make_estimator("reparam"),
        x,
        2,
        200,
        baseline="auto",
        options=VarianceOptions(timing_repeats=1, level=0.999),
    )
    assert (frame["baseline"] == "exact").all()
    # An unbiased estimator: the noise-corrected bias interval reaches 0 (a 99.9% interval: it misses only if
    # the mean error exceeds its noise by 3.3 sd, a false alarm of about 5e-4 per group).
    assert (frame["bias_norm_low"] == 0).all()
