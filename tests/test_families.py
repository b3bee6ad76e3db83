"""The measure-valued derivative and the log-weight family: identities, the targets their options choose, their
declared biases.

Every registered entry is also checked by the registry-parametrized tests (test_estimators.py: unbiased for the
ELBO where that is its target at K = 1, surrogate and value; test_samplers.py; test_variance.py's engines) and by
``python -m vaebench verify``. Here: the special cases each new estimator reduces to (draw by draw, same noise),
the U-statistic's weights written out, the option forms the verification does not run (``subsets``), and the
biases of ``rws``, ``rws-dreg`` and ``tail-adaptive`` detected against their exact targets. Statistical checks
use fixed seeds and the max-|z| test of :mod:`vaebench.checks.exact_gradients` at family-wise false-alarm rate FALSE_ALARM.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats

from vaebench.checks.exact_gradients import (
    budget,
    encoder_mask,
    gradient_draws,
    linear_gaussian,
    max_z,
    target_gradient,
)
from vaebench.errors import VaebenchError
from vaebench.estimators import (
    MVD_NORMALS,
    Bound,
    Target,
    importance_weighted,
    make_estimator,
    mvd_points,
    sample_posterior,
    subset_index,
    subset_weights,
)
from vaebench.exact import exact_elbo
from vaebench.stats import bonferroni_threshold

FALSE_ALARM = 1e-3


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def grads_and_value(
    name: str, model, x, k: int, seed: int = 2, **options
) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient [P], objective estimate [B]) of one call with a fixed generator."""
    model.zero_grad(set_to_none=True)
    out = make_estimator(name, **options)(model, x, num_samples=k, generator=gen(seed))
    out.surrogate.backward()
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    return g, out.elbo


# --- special cases, draw by draw ---------------------------------------------------------------------------

REDUCTIONS = [
    ("renyi", {"alpha": 0.0}, "iwae", {}, 5),  # VR_0 = IWAE_K
    ("renyi", {"alpha": 1.0}, "reparam", {}, 5),  # VR_1 = ELBO
    ("renyi", {"alpha": 2.5}, "reparam", {}, 1),  # any α at K = 1
    ("renyi-dreg", {"alpha": 0.0}, "dreg", {}, 5),  # GDReG at α = 0 is DReG
    ("renyi-dreg", {"alpha": 1.0}, "stl", {}, 5),  # ... at α = 1 STL
    ("ciwae", {"beta": 0.0}, "iwae", {}, 5),
    ("ciwae", {"beta": 1.0}, "reparam", {}, 5),
    ("miwae", {"groups": 1}, "iwae", {}, 5),
    ("piwae", {"groups": 1}, "iwae", {}, 5),
    ("tail-adaptive", {"beta": 0.0}, "reparam", {}, 5),  # uniform rank weights
    ("iwae", {"subsets": 5}, "iwae", {}, 5),  # one subset: all draws
    ("dreg", {"subsets": 5}, "dreg", {}, 5),
    ("iwae", {"subsets": 1}, "reparam", {}, 5),  # IWAE_1 over single draws: the ELBO
]


@pytest.mark.parametrize(
    ("name", "options", "same_as", "its_options", "k"),
    REDUCTIONS,
    ids=[f"{a}-{'-'.join(f'{k}={v}' for k, v in o.items())}-is-{b}" for a, o, b, _, _ in REDUCTIONS],
)
def test_special_cases_are_the_estimators_they_reduce_to(name, options, same_as, its_options, k):
    model, x = linear_gaussian()
    g, value = grads_and_value(name, model, x, k, **options)
    g_ref, value_ref = grads_and_value(same_as, model, x, k, **its_options)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(value, value_ref, rtol=1e-12, atol=1e-12)


def test_renyi_dreg_weights_follow_from_the_score_identity():
    # GDReG's encoder weight α ŵ + (1-α) ŵ² written out against autograd on the same draws; θ keeps ŵ.
    model, x = linear_gaussian()
    alpha, k = 0.3, 4
    q = model.posterior(x)
    z = sample_posterior(q, k, gen(2))
    fixed_q = torch.distributions.Normal(q.loc.detach(), q.scale.detach())
    log_w = model.log_joint(x, z) - fixed_q.log_prob(z).sum(-1)
    hat = torch.softmax((1 - alpha) * log_w.detach(), 0)
    enc = (alpha * hat + (1 - alpha) * hat**2).detach()
    mask = encoder_mask(model)
    params = list(model.parameters())
    enc_grad = torch.autograd.grad(-(enc * log_w).sum(0).mean(), params, retain_graph=True)
    dec_grad = torch.autograd.grad(
        -(hat * model.log_joint(x, z.detach())).sum(0).mean(), params, allow_unused=True
    )
    flat = lambda grads: torch.cat(  # noqa: E731
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads, strict=True)]
    )
    expected = torch.where(mask, flat(enc_grad), flat(dec_grad))
    torch.testing.assert_close(grads_and_value("renyi-dreg", model, x, k, alpha=alpha)[0], expected)


def test_the_wake_phase_dreg_needs_two_samples_and_both_wake_phases_give_the_iwae_decoder_gradient():
    model, x = linear_gaussian()
    mask = encoder_mask(model)
    with pytest.raises(VaebenchError, match=r">= 2 for rws-dreg \(at K = 1 its encoder weight .* is 0"):
        make_estimator("rws-dreg")(model, x, num_samples=1)
    for name in ("rws", "rws-dreg"):  # θ: Σ w̃ ∇θ log p, IWAE's, draw by draw
        torch.testing.assert_close(
            grads_and_value(name, model, x, 5)[0][~mask], grads_and_value("iwae", model, x, 5)[0][~mask]
        )


def test_values_of_the_grouped_estimators():
    # miwae: the mean over M groups of IWAE_K; piwae: IWAE_{M K} over all draws; same draws as the sampler's.
    model, x = linear_gaussian()
    q = model.posterior(x)
    z = sample_posterior(q, 4 * 3, gen(2))
    f = (model.log_joint(x, z) - q.log_prob(z).sum(-1)).detach()
    miwae = (torch.logsumexp(f.reshape(4, 3, -1), 1) - math.log(3)).mean(0)
    torch.testing.assert_close(grads_and_value("miwae", model, x, 3)[1], miwae)
    torch.testing.assert_close(grads_and_value("piwae", model, x, 3)[1], torch.logsumexp(f, 0) - math.log(12))


# --- U-statistics ----------------------------------------------------------------------------------------------


def test_u_statistic_weights_are_averages_over_the_subsets():
    log_w = torch.randn(5, 3, generator=gen(0), dtype=torch.float64)
    index = subset_index(log_w, 2, None)
    assert index.shape == (10, 2)  # all C(5, 2) subsets
    bound, a, c = subset_weights(log_w, index)
    subsets = list(itertools.combinations(range(5), 2))
    expected_bound = sum(torch.logsumexp(log_w[list(s)], 0) - math.log(2) for s in subsets) / len(subsets)
    expected_a, expected_c = torch.zeros_like(log_w), torch.zeros_like(log_w)
    for s in subsets:
        w = torch.softmax(log_w[list(s)], 0)
        expected_a[list(s)] += w / len(subsets)
        expected_c[list(s)] += w**2 / len(subsets)
    torch.testing.assert_close(bound, expected_bound)
    torch.testing.assert_close(a, expected_a)
    torch.testing.assert_close(c, expected_c)
    torch.testing.assert_close(a.sum(0), torch.ones(3, dtype=torch.float64))  # a is the gradient of U


def test_an_incomplete_u_statistic_uses_disjoint_blocks_of_random_permutations(monkeypatch):
    monkeypatch.setattr(importance_weighted, "MAX_SUBSETS", 6)
    log_w = torch.zeros(7, 4, dtype=torch.float64)
    index = subset_index(log_w, 3, gen(1))  # C(7, 3) = 35 > 6: 3 permutations of 2 blocks of 3, per row
    assert index.shape == (4, 6, 3)
    blocks = index.reshape(4, 3, 6)  # per permutation: 6 distinct draws out of 7
    assert all(len(set(b.tolist())) == 6 for b in blocks.reshape(-1, 6))
    assert not torch.equal(index[0], index[1])  # each datapoint its own permutations
    torch.testing.assert_close(subset_index(log_w, 3, gen(1)), index)  # from the generator


@pytest.mark.parametrize("complete", [True, False], ids=["complete", "incomplete"])
@pytest.mark.parametrize("name", ["iwae", "dreg"])
def test_u_statistics_are_unbiased_for_iwae_m(name, complete, monkeypatch):
    # subsets=2 at K = 5 estimates ∇IWAE_2: against the mean of 80,000 pathwise IWAE_2 gradients (both
    # standard errors in each z). Incomplete: MAX_SUBSETS = 4 forces random permutations' blocks.
    if not complete:
        monkeypatch.setattr(importance_weighted, "MAX_SUBSETS", 4)
    model, x = linear_gaussian()
    est = make_estimator(name, subsets=2)
    assert (
        est.target(5) == Target(Bound.of("iwae", 2), Bound.of("iwae", 2)) and est.objective == "iwae-subsets"
    )
    target, target_se, _ = target_gradient(est.target(5), model, x)
    g = gradient_draws(model, est, x, 5, *budget(name), seed=3)
    assert max_z(g, target, target_se) < bonferroni_threshold(FALSE_ALARM, target.numel())


# --- declared biases, detected ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rws", "rws-dreg"])
def test_wake_sleep_is_unbiased_for_iwae_in_the_decoder_and_biased_for_the_inclusive_kl(name):
    # θ: IWAE_5 (the 80,000-sample reference); φ: the exact KL(p(z|x) || q) gradient of the linear-Gaussian
    # model. The max-|z| test passes a correct decoder gradient with probability >= 1 - FALSE_ALARM and, read
    # the other way, detects the encoder's declared bias at false-alarm rate FALSE_ALARM (measured: max_z in
    # the thousands against a threshold near 4).
    model, x = linear_gaussian()
    est = make_estimator(name)
    assert est.biased_at(1) and est.biased_at(5) and est.min_samples == (2 if name == "rws-dreg" else 1)
    target, target_se, label = target_gradient(est.target(5), model, x)
    assert label == "exact-inclusive-kl|iwae5-80000"
    g = gradient_draws(model, est, x, 5, *budget(name), seed=3)
    enc, dec = encoder_mask(model), ~encoder_mask(model)
    assert max_z(g[:, dec], target[dec], target_se[dec]) < bonferroni_threshold(FALSE_ALARM, int(dec.sum()))
    assert max_z(g[:, enc], target[enc], target_se[enc]) > bonferroni_threshold(FALSE_ALARM, int(enc.sum()))


def test_the_two_wake_phases_have_the_same_mean_and_their_bias_shrinks_with_k():
    # rws-dreg is the doubly reparameterized form of rws's wake phase: equal means (two-sample max-|z| test),
    # and both are consistent for the inclusive KL: the encoder's relative error falls with K (measured 0.77,
    # 0.48, 0.29 at K = 5, 50, 500, each with a standard error near 0.0006, so the ordering is no accident;
    # the weights of this q are far from degenerate only at large K, hence the slow fall).
    model, x = linear_gaussian()
    enc = encoder_mask(model)
    rws = gradient_draws(model, make_estimator("rws"), x, 5, *budget("rws"), seed=4)[:, enc]
    dreg = gradient_draws(model, make_estimator("rws-dreg"), x, 5, *budget("rws-dreg"), seed=5)[:, enc]
    assert max_z(dreg, rws.mean(0), (rws.var(0) / rws.shape[0]).sqrt()) < bonferroni_threshold(
        FALSE_ALARM, int(enc.sum())
    )
    target = target_gradient(make_estimator("rws").target(5), model, x)[0][enc]
    error = {}
    for k in (5, 50, 500):
        g = gradient_draws(model, make_estimator("rws-dreg"), x, k, 100, 20, seed=6)[:, enc]
        error[k] = float((g.mean(0) - target).norm() / target.norm())
    assert error[500] < error[50] - 0.1 < error[5] - 0.2


def test_tail_adaptive_keeps_the_elbo_decoder_gradient_and_biases_the_encoder():
    model, x = linear_gaussian()
    est = make_estimator("tail-adaptive")
    assert (
        not est.biased_at(1)
        and est.biased_at(5)
        and not make_estimator("tail-adaptive", beta=0.0).biased_at(5)
    )
    target, target_se, label = target_gradient(est.target(5), model, x)
    assert label == "exact"
    g = gradient_draws(model, est, x, 5, *budget("tail-adaptive"), seed=3)
    enc, dec = encoder_mask(model), ~encoder_mask(model)
    assert max_z(g[:, dec], target[dec], target_se[dec]) < bonferroni_threshold(FALSE_ALARM, int(dec.sum()))
    assert max_z(g[:, enc], target[enc], target_se[enc]) > bonferroni_threshold(FALSE_ALARM, int(enc.sum()))


# --- the measure-valued derivative -----------------------------------------------------------------------------


@pytest.mark.parametrize("coupling", [True, False])
def test_mvd_points_have_the_weibull_and_maxwell_laws(coupling):
    # Kolmogorov-Smirnov tests of each variate's law over 4,000 draws and a binomial test of M's sign,
    # Bonferroni over the 5 tests at family-wise false-alarm rate FALSE_ALARM; the coupling shares W and makes
    # N = M U.
    normals = torch.randn(MVD_NORMALS, 4000, 1, 2, generator=gen(3), dtype=torch.float64)
    points = mvd_points(normals, coupling)  # [4, Z, K, B, Z]
    assert points.shape == (4, 2, 4000, 1, 2)
    d = 1
    w, minus, m, n = (points[j, d, :, 0, d].numpy() for j in range(4))
    torch.testing.assert_close(
        points[:, d, :, 0, 0], normals[0, :, 0, 0].expand(4, -1)
    )  # other coordinate: base
    level = FALSE_ALARM / 5
    assert stats.kstest(w, stats.rayleigh.cdf).pvalue > level  # Weibull(√2, 2) is the Rayleigh law
    assert stats.kstest(-minus, stats.rayleigh.cdf).pvalue > level
    assert stats.kstest(abs(m), stats.chi(3).cdf).pvalue > level  # |M| ~ χ_3, with a fair sign
    assert stats.binomtest(int((m > 0).sum()), m.size).pvalue > level
    assert stats.kstest(n, "norm").pvalue > level
    assert (minus == -w).all() == coupling
    if coupling:
        ratio = n / m
        assert ((ratio > 0) & (ratio < 1)).all()  # N = M U, U in (0, 1)


def test_mvd_evaluates_4z_points_per_sample_in_one_call_and_estimates_the_elbo():
    model, x = linear_gaussian()
    calls = []
    log_joint = model.log_joint

    def counting(x_, z):
        calls.append(tuple(z.shape))
        return log_joint(x_, z)

    model.log_joint = counting
    est = make_estimator("mvd")
    values = torch.stack([est(model, x, num_samples=3, generator=gen(s)).elbo for s in range(2000)])
    assert calls[0] == (4 * 2 * 3, 4, 2) and len(calls) == 2000
    # Unbiased ELBO estimate: a z-test of the mean of 2,000 independent estimates per datapoint, Bonferroni
    # over the 4 datapoints at family-wise false-alarm rate FALSE_ALARM.
    z = (values.mean(0) - exact_elbo(model, x).detach()) / (values.std(0) / math.sqrt(values.shape[0]))
    assert z.abs().max() < bonferroni_threshold(FALSE_ALARM, 4)


# --- bad input ---------------------------------------------------------------------------------------------------


def test_bad_options_are_named():
    with pytest.raises(VaebenchError, match="alpha must be a finite real number"):
        make_estimator("renyi", alpha="half")
    with pytest.raises(VaebenchError, match=r"beta must lie in \[0, 1\]"):
        make_estimator("ciwae", beta=2.0)
    with pytest.raises(VaebenchError, match="groups must be a positive integer"):
        make_estimator("miwae", groups=0)
    with pytest.raises(VaebenchError, match="subsets must be None or a positive integer"):
        make_estimator("dreg", subsets=0)
    with pytest.raises(VaebenchError, match="coupling must be True or False"):
        make_estimator("mvd", coupling="yes")
    model, x = linear_gaussian()
    with pytest.raises(VaebenchError, match=r"subsets=6 .* needs K >= 6, got K=5"):
        make_estimator("iwae", subsets=6)(model, x, num_samples=5)
    for name in ("mvd", "renyi", "rws", "tail-adaptive", "miwae", "ciwae", "piwae"):
        with pytest.raises(VaebenchError, match=rf"estimator '{name}' cannot use sampler 'rqmc'"):
            make_estimator(name, sampler="rqmc")
