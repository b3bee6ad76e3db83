"""The model's densities against torch.distributions, its closed forms against Monte Carlo, and its errors."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal

from vaebench.errors import VaebenchError
from vaebench.exact import exact_elbo, exact_log_marginal
from vaebench.model import GaussianVAE


@pytest.mark.parametrize("decoder_scale", ["learned", "network"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_densities_and_shapes(decoder_scale, dtype):
    model = GaussianVAE(6, 3, hidden=(8, 5), decoder_scale=decoder_scale, seed=1).to(dtype)
    x = torch.rand(4, 6, dtype=dtype)
    q = model.posterior(x)
    assert q.batch_shape == (4, 3) and q.loc.dtype == dtype and (q.scale > 0).all()
    z = q.sample((7,))
    loc, scale = model.decoder(z)
    expected = Independent(Normal(loc, scale), 1).log_prob(x) + Normal(0.0, 1.0).log_prob(z).sum(-1)
    out = model.log_joint(x, z)
    assert out.shape == (7, 4) and out.dtype == dtype
    torch.testing.assert_close(out, expected.to(dtype))
    assert model.prior().batch_shape == (3,) and model.prior().loc.dtype == dtype


def test_bernoulli_likelihood_matches_torch():
    model = GaussianVAE(5, 2, hidden=(4,), likelihood="bernoulli", activation="relu")
    x = torch.bernoulli(
        torch.full((3, 5), 0.4, dtype=torch.float32), generator=torch.Generator().manual_seed(0)
    )
    z = torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(1))
    logits, _ = model.decoder(z)
    torch.testing.assert_close(
        model.log_likelihood(x, z), Independent(Bernoulli(logits=logits), 1).log_prob(x)
    )


def test_scale_floor_keeps_log_density_finite():
    model = GaussianVAE(3, 2, hidden=(), min_scale=1e-3).double()
    with torch.no_grad():
        model.decoder.raw_scale.fill_(-1e4)
        model.encoder.net[0].bias.fill_(-1e4)
    x = torch.zeros(2, 3, dtype=torch.float64)
    q = model.posterior(x)
    assert (q.scale >= 1e-3).all()
    assert torch.isfinite(model.log_joint(x, q.sample((4,)))).all()


def test_exact_elbo_matches_monte_carlo():
    model = GaussianVAE(4, 2, hidden=(), init_decoder_scale=0.6, seed=3).double()
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    q = model.posterior(x)
    z = q.sample((200_000,))
    f = model.log_joint(x, z) - q.log_prob(z).sum(-1)
    se = f.std(0) / f.shape[0] ** 0.5
    assert ((f.mean(0) - exact_elbo(model, x)).abs() < 5 * se).all()


def test_exact_log_marginal_bounds_and_matches_importance_sampling():
    model = GaussianVAE(4, 2, hidden=(), init_decoder_scale=0.6, seed=3).double()
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    log_px = exact_log_marginal(model, x)
    assert (exact_elbo(model, x) < log_px).all()
    # Prior sampling is a consistent estimator of p(x) = E_p(z)[p(x|z)] for this low-dimensional model.
    z = torch.randn(400_000, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    estimate = torch.logsumexp(model.log_likelihood(x, z), 0) - torch.log(torch.tensor(400_000.0))
    torch.testing.assert_close(estimate, log_px, rtol=0, atol=2e-2)


def test_closed_forms_refuse_nonlinear_models():
    with pytest.raises(VaebenchError, match="linear-Gaussian"):
        exact_elbo(GaussianVAE(4, 2, hidden=(3,)), torch.zeros(1, 4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"likelihood": "poisson"}, r"unknown likelihood 'poisson'; choose one of: gaussian, bernoulli"),
        ({"activation": "gelu"}, "unknown activation"),
        ({"hidden": (0,)}, "hidden must hold positive integer widths"),
        ({"min_scale": 0.0}, "min_scale must be > 0"),
        ({"z_dim": 0}, "z_dim must be a positive integer"),
    ],
)
def test_bad_model_options(kwargs, message):
    args = {"x_dim": 4, "z_dim": 2} | kwargs
    with pytest.raises(VaebenchError, match=message):
        GaussianVAE(**args)


def test_same_seed_same_initialisation():
    a, b = GaussianVAE(5, 2, seed=9), GaussianVAE(5, 2, seed=9)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
