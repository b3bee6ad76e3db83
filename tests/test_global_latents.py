"""Global latents: every estimator unbiased on the conjugate regression (or refused), and the models' maths.

Unbiasedness uses the max-|z| test of :mod:`vaebench.checks.global_latents` over all coordinates with a
Bonferroni threshold at family-wise false-alarm rate 1e-3 per estimator and K; a declared bias must be detected
by the same test. Intervals in the noise decomposition are read at level 0.999 (false alarm 1e-3).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.distributions import Cauchy, MultivariateNormal, Normal

from vaebench import rng
from vaebench.checks.global_latents import conjugate_regression, epoch_gradient, exact_gradient, verify_global
from vaebench.errors import VaebenchError
from vaebench.estimators import BUILTIN_ESTIMATORS, make_estimator, sample_posterior
from vaebench.exact import kl_to_posterior
from vaebench.measures.merit import global_merit
from vaebench.measures.variance import VarianceOptions, decompose_noise
from vaebench.problems import EIGHT_SCHOOLS, EightSchools, Funnel, get_problem


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILTIN_ESTIMATORS)
def test_every_estimator_is_unbiased_on_global_latents_or_refuses_them(name):
    rows = verify_global([name])
    assert len(rows) >= 1
    assert rows["as_expected"].all(), rows.to_string()
    for line in rows.get("refusal", rows["expected"].iloc[:0]).dropna():
        assert "global latents" in line and "\n" not in line


def test_the_minibatch_scaled_elbo_averages_over_an_epoch_to_the_full_data_elbo_exactly():
    model, rows, _ = conjugate_regression()
    full = exact_gradient(model, rows)
    assert torch.allclose(epoch_gradient(model, rows, 10), full, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(exact_gradient(model, rows[:10]), full, rtol=1e-3)  # one batch alone is not


def test_conjugate_closed_forms_agree_with_each_other():
    model, rows, batch = conjugate_regression()
    features, y = rows[:, :-1], rows[:, -1]
    marginal = MultivariateNormal(
        torch.zeros(40, dtype=torch.float64), torch.eye(40, dtype=torch.float64) + features @ features.T
    )
    assert torch.allclose(model.exact_log_marginal(rows), marginal.log_prob(y).reshape(1))
    for x in (rows, batch):  # ELBO = log Z - KL(q ‖ p(z | x)), for the scaled minibatch joint too
        gap = model.exact_log_marginal(x) - model.exact_elbo(x)
        assert torch.allclose(gap, kl_to_posterior(model, x), rtol=1e-9)


def test_a_monte_carlo_elbo_of_the_conjugate_model_matches_its_closed_form():
    model, _, batch = conjugate_regression()
    q = model.posterior(batch)
    z = sample_posterior(q, 200_000, rng.generator(0, "problems.verify", 1))
    f = (model.log_joint(batch, z) - q.log_prob(z).sum(-1)).squeeze(-1).detach()
    se = float(f.std() / math.sqrt(f.numel()))
    assert abs(float(f.mean() - model.exact_elbo(batch).detach())) < 4.0 * se  # false alarm ~6e-5


def test_eight_schools_and_funnel_joints_are_the_published_models():
    schools = EightSchools()
    rows = get_problem("eight-schools").load().train.double()
    schools.double()
    z = torch.randn(5, 1, 10, generator=rng.generator(0, "problems.verify", 3), dtype=torch.float64)
    mu, log_tau, theta = z[..., 0], z[..., 1], z[..., 2:].squeeze(1)
    y = torch.tensor([p[0] for p in EIGHT_SCHOOLS], dtype=torch.float64)
    sigma = torch.tensor([p[1] for p in EIGHT_SCHOOLS], dtype=torch.float64)
    tau = log_tau.exp()
    expected = (
        Normal(0.0, 5.0).log_prob(mu)
        + Cauchy(0.0, 5.0).log_prob(tau)
        + math.log(2)
        + log_tau  # half-Cauchy, with the Jacobian of τ = e^{log τ}
        + Normal(0.0, 1.0).log_prob(theta).sum(-1, keepdim=True)
        + Normal(mu + tau * theta, sigma).log_prob(y).sum(-1, keepdim=True)
    )
    assert torch.allclose(schools.log_joint(rows, z), expected)
    funnel = Funnel().double()
    v, rest = z[..., 0], z[..., 1:]
    expected = Normal(0.0, 3.0).log_prob(v) + Normal(0.0, (v / 2).exp().unsqueeze(-1)).log_prob(rest).sum(-1)
    assert torch.allclose(funnel.log_joint(torch.zeros(1, 0, dtype=torch.float64), z), expected)


def test_global_latent_models_refuse_local_shapes():
    model, _, batch = conjugate_regression()
    with pytest.raises(VaebenchError, match=r"global latents: z must have shape \[K, 1, 3\]"):
        model.log_joint(batch, torch.zeros(2, 10, 3, dtype=torch.float64))
    with pytest.raises(VaebenchError, match=r"x must be a minibatch \[B, 4\]"):
        model.posterior(torch.zeros(3, 5))


def test_noise_decomposition_separates_minibatch_noise_on_global_latents():
    # The minibatch part of the variance is tr Cov_x[E(g | x)], and E(g | x) is the exact minibatch gradient.
    model, rows, _ = conjugate_regression()
    gen = rng.generator(3, "problems.verify", 2)
    batches = [rows[torch.randperm(40, generator=gen)[:10]] for _ in range(30)]
    exact = torch.stack([exact_gradient(model, b) for b in batches])
    truth = float(exact.var(0).sum())
    parts = decompose_noise(
        model,
        make_estimator("reparam"),
        batches,
        3,
        200,
        seed=0,
        options=VarianceOptions(method="vmap", level=0.999),
    )
    row = parts[parts["group"] == "all"].iloc[0]
    assert row["minibatch_var_low"] <= truth <= row["minibatch_var_high"]
    assert row["mc_var"] > 0 and 0 < row["mc_fraction"] < 1


def test_merit_of_a_global_model_gives_the_gap_to_log_z_and_a_khat():
    model, rows, _ = conjugate_regression()
    data = SimpleNamespace(train=rows, test=rows)
    merit = global_merit(model, data, ("elbo", "gap_to_log_z", "khat"), samples=4000, level=0.999).set_index(
        "figure"
    )
    exact_gap = float(kl_to_posterior(model, rows).detach())
    assert merit.loc["gap_to_log_z", "low"] <= exact_gap <= merit.loc["gap_to_log_z", "high"]
    assert math.isfinite(merit.loc["khat", "value"])
    with pytest.raises(VaebenchError, match="unknown figure"):
        global_merit(model, data, ("test_elbo",))
