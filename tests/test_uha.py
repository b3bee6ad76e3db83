"""UHA, the annealed bound of uncorrected Langevin steps, proven on the exact-answer models.

On the linear-Gaussian VAE and the Gaussian toy (both know log p(x) and the ELBO in closed form): E[w] = p(x)
(the extended-space weight is right), the bound lies below log p(x), above the ELBO, and tightens as L grows;
its gradient is the derivative of its own Monte Carlo estimate (central finite differences under common random
numbers); L = 0 is IWAE draw by draw; and one call evaluates log p(x, z) L + 1 times. Statistical checks use
fixed seeds and one-sided z-tests, Bonferroni-corrected over datapoints, at family-wise false-alarm rate
FALSE_ALARM per assertion.
"""

from __future__ import annotations

import math

import pytest
import torch

from vaebench.checks.exact_gradients import linear_gaussian
from vaebench.data import load_dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import Bound, make_estimator
from vaebench.exact import exact_elbo, exact_log_marginal
from vaebench.stats import bonferroni_threshold
from vaebench.toy import toy_checkpoint

FALSE_ALARM = 1e-3
CHAINS = 4000
"""Independent chains (K = 1) per datapoint for the bound's estimates."""


def exact_models():
    """(name, model, x, exact ELBO [B], log p(x) [B]) of the two exact-answer models, in float64."""
    model, x = linear_gaussian()
    out = [("linear-gaussian", model, x, exact_elbo(model, x).detach(), exact_log_marginal(model, x))]
    data = load_dataset("gaussian-toy")
    toy = toy_checkpoint(data).double()
    xt = data.train[:4].double()
    out.append(("gaussian-toy", toy, xt, toy.exact_elbo(xt).detach(), toy.exact_log_marginal(xt).detach()))
    return out


MODELS = exact_models()


def log_weights(model, x, steps: int, chains: int = CHAINS, seed: int = 0, **options) -> torch.Tensor:
    """log w [chains, B] of ``chains`` independent chains per datapoint (the same noise for every ``steps``)."""
    est = make_estimator("uha", steps=steps, **options)
    with torch.no_grad():
        log_w = est.log_weights(model, x, chains, torch.Generator().manual_seed(seed))
    return log_w


def mean_and_se(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return values.mean(0), values.std(0) / math.sqrt(values.shape[0])


@pytest.mark.parametrize(("name", "model", "x", "elbo", "log_p"), MODELS, ids=[m[0] for m in MODELS])
def test_the_bound_lies_between_the_elbo_and_log_p_and_tightens_as_l_grows(name, model, x, elbo, log_p):
    z = bonferroni_threshold(FALSE_ALARM, x.shape[0])
    by_steps = {steps: log_weights(model, x, steps) for steps in (0, 2, 8)}
    # The extended-space weight is unbiased for p(x): E[w / p(x)] = 1 (a wrong kinetic term breaks it).
    ratio, ratio_se = mean_and_se((by_steps[8] - log_p).exp())
    assert ((ratio - 1).abs() < z * ratio_se).all(), name
    # L = 0 is the ELBO (K = 1); every L stays below log p(x).
    mean, se = mean_and_se(by_steps[0])
    assert ((mean - elbo).abs() < z * se).all(), name
    for steps in (2, 8):
        mean, se = mean_and_se(by_steps[steps])
        assert (mean + z * se < log_p).all(), (name, steps)
    # Above the ELBO and tighter with more steps: paired differences (the chains share z_0 and ρ_0).
    for fewer, more in ((0, 2), (2, 8)):
        gain, gain_se = mean_and_se(by_steps[more] - by_steps[fewer])
        assert (gain - z * gain_se > 0).all(), (name, fewer, more)


@pytest.mark.parametrize(("name", "model", "x", "elbo", "log_p"), MODELS, ids=[m[0] for m in MODELS])
def test_the_gradient_is_the_derivative_of_its_own_estimate_under_common_random_numbers(
    name, model, x, elbo, log_p
):
    # With the noise fixed, the estimate is a smooth function of the parameters: its autograd gradient along
    # a random direction must equal the central difference (error O(h²) ≈ 1e-10 here, against rounding 1e-9).
    est = make_estimator("uha", steps=3)
    params = [p for p in model.parameters() if p.requires_grad]

    def estimate() -> torch.Tensor:
        return est(model, x, num_samples=3, generator=torch.Generator().manual_seed(5)).surrogate

    grads = torch.autograd.grad(estimate(), params)
    gen = torch.Generator().manual_seed(1)
    h = 1e-5
    for _ in range(3):
        direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        along = sum((g * d).sum() for g, d in zip(grads, direction, strict=True))
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                for p, d in zip(params, direction, strict=True):
                    p.add_(sign * h * d)
            values.append(estimate().detach())
            with torch.no_grad():
                for p, d in zip(params, direction, strict=True):
                    p.sub_(sign * h * d)
        difference = (values[0] - values[1]) / (2 * h)
        torch.testing.assert_close(along.detach(), difference, rtol=1e-6, atol=1e-8)


def test_no_step_is_iwae_draw_by_draw_and_the_target_says_so():
    model, x = linear_gaussian()
    grads = {}
    for name, options in (("iwae", {}), ("uha", {"steps": 0})):
        model.zero_grad(set_to_none=True)
        out = make_estimator(name, **options)(
            model, x, num_samples=4, generator=torch.Generator().manual_seed(2)
        )
        out.surrogate.backward()
        grads[name] = (torch.cat([p.grad.reshape(-1) for p in model.parameters()]), out.elbo)
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(grads["uha"][0], grads["iwae"][0])
    torch.testing.assert_close(grads["uha"][1], grads["iwae"][1])
    assert make_estimator("uha", steps=0).target(4).encoder == Bound("iwae", 4)
    assert (
        str(make_estimator("uha").target(1).encoder) == "UHA_1(L=4, eps=0.5, eta=0.5, linear)"
    )  # not the ELBO


@pytest.mark.parametrize("steps", [0, 1, 4])
def test_a_call_evaluates_log_p_l_plus_one_times_on_k_b_rows(steps, monkeypatch):
    model, x = linear_gaussian()
    rows = []
    original = model.log_joint

    def counted(x_, z):
        rows.append(z.shape[:2])
        return original(x_, z)

    monkeypatch.setattr(model, "log_joint", counted)
    make_estimator("uha", steps=steps)(model, x, num_samples=3).surrogate.backward()
    assert rows == [(3, x.shape[0])] * (steps + 1)


def test_the_posterior_schedule_and_damping_change_the_dynamics_not_the_bound_s_validity():
    model, x = linear_gaussian()
    log_p = exact_log_marginal(model, x)
    z = bonferroni_threshold(FALSE_ALARM, 2 * x.shape[0])
    for options in ({"schedule": "posterior"}, {"damping": 0.0, "step_size": 0.3}):
        ratio, se = mean_and_se((log_weights(model, x, 4, **options) - log_p).exp())
        assert ((ratio - 1).abs() < z * se).all(), options


def test_bad_options_are_named():
    for options, message in (
        ({"steps": -1}, r"steps \(L, the Langevin steps\) must be an integer >= 0"),
        ({"step_size": 0.0}, "step_size must be positive"),
        ({"damping": 1.0}, r"damping must lie in \[0, 1\)"),
        ({"schedule": "cosine"}, "schedule must be one of linear, posterior"),
        ({"sampler": "rqmc"}, "cannot use sampler 'rqmc'"),
    ):
        with pytest.raises(VaebenchError, match=message):
            make_estimator("uha", **options)
