r"""Every estimator on global latents: unbiased against the exact gradient of a conjugate model, or refused.

The model is Bayesian linear regression with known noise (:class:`~vaebench.problems.ConjugateLinearRegression`),
whose minibatch-scaled ELBO, posterior and log Z are closed form: the global-latent counterpart of the
linear-Gaussian VAE that :mod:`vaebench.checks.exact_gradients` proves the local-latent case on. On one
minibatch x of B < N rows, an estimator's mean gradient over R independent estimates is compared with the
gradient of what it declares it estimates (``est.target(K)``) of the minibatch-scaled joint, coordinate by
coordinate: z_i = (ḡ_i - g*_i) / se_i, and max_i |z_i| must stay below the Bonferroni threshold of a
family-wise false-alarm rate (1e-3: a correct estimator fails with probability at most 1e-3 over the seed).
The references: the ELBO and the inclusive KL exactly; IWAE_K and VR_{α,K} by the mean of `REFERENCE_DRAWS`
pathwise estimates of the same bound, whose own standard error enters each z; CIWAE_β as β x the exact ELBO
gradient + (1 - β) x the IWAE_K reference. The K tested are those of the local-latent check
(:func:`~vaebench.checks.exact_gradients.settings`).

That the minibatch-scaled ELBO is unbiased for the full data's is exact, not statistical: averaged over the
minibatches of one epoch (a partition of the rows into batches of equal size), the closed-form minibatch
gradients equal the full-data gradient (:func:`epoch_gradient`). Together, an estimator unbiased on every
minibatch for the minibatch ELBO is unbiased for the full-data ELBO over random minibatches. (For the other
bounds only the first half holds: see :mod:`vaebench.problems.variational`.)

An estimator that declares ``local_only`` (NVIL's amortised baseline) must refuse the model with one error
naming global latents; :func:`verify_global` records that refusal as its verdict.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import Tensor

from vaebench import rng
from vaebench.checks.exact_gradients import max_z, ready, settings
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, Bound, make_estimator
from vaebench.exact import exact_inclusive_kl
from vaebench.measures.variance import Engine, gradient_sample, layout
from vaebench.measures.variance.baseline import bound_estimator
from vaebench.problems import ConjugateLinearRegression
from vaebench.stats import bonferroni_threshold

DRAWS = {"pathwise": 10_000, "score-function": 50_000, "measure-valued": 10_000}
"""Independent gradient estimates per check, by family (score-function noise is far larger)."""

REFERENCE_DRAWS = 50_000
"""Pathwise estimates averaged into a sampled reference (IWAE_K, VR_{α,K})."""


def conjugate_regression(seed: int = 0, n_data: int = 40, n_features: int = 3, batch_size: int = 10):
    """The conjugate model in float64 with q away from the posterior, its data [N, P + 1] and a minibatch [B, P + 1].

    The features are standard normal, the true weights N(0, I) and y = F w + N(0, 1) noise; q's mean and log
    scale are perturbed by N(0, 0.3²) from (0, log 0.5).
    """
    gen = rng.generator(seed, "problems.verify")
    features = torch.randn(n_data, n_features, generator=gen, dtype=torch.float64)
    weights = torch.randn(n_features, generator=gen, dtype=torch.float64)
    y = features @ weights + torch.randn(n_data, generator=gen, dtype=torch.float64)
    rows = torch.column_stack([features, y])
    model = ConjugateLinearRegression(n_features, n_data).double()
    with torch.no_grad():
        model.loc.copy_(0.3 * torch.randn(n_features, generator=gen, dtype=torch.float64))
        model.log_scale.copy_(
            math.log(0.5) + 0.3 * torch.randn(n_features, generator=gen, dtype=torch.float64)
        )
    return model, rows, rows[:batch_size]


def _flat_grad(model, loss: Tensor) -> Tensor:
    grads = torch.autograd.grad(loss, layout(model).params)
    return torch.cat([g.reshape(-1) for g in grads])


def exact_gradient(model: ConjugateLinearRegression, x: Tensor) -> Tensor:
    """[P] exact gradient of the negative minibatch-scaled ELBO on x (the surrogate's gradient)."""
    return _flat_grad(model, -model.exact_elbo(x).sum())


def epoch_gradient(model: ConjugateLinearRegression, rows: Tensor, batch_size: int) -> Tensor:
    """[P] the mean of :func:`exact_gradient` over the minibatches of one epoch (N divisible by B)."""
    if rows.shape[0] % batch_size:
        raise VaebenchError(
            f"an epoch of equal minibatches needs N divisible by B, got {rows.shape[0]} and {batch_size}"
        )
    return torch.stack([exact_gradient(model, b) for b in rows.split(batch_size)]).mean(0)


def draws_of(model, estimator, x: Tensor, num_samples: int, draws: int, seed: int = 1) -> Tensor:
    """[draws, P] independent gradient estimates on x (the vmap engine in one pass: the model is tiny, and each
    pass has a fixed cost; the encoder put back on the ELBO gradient's scale)."""
    engine = Engine("vmap", chunk_size=draws)
    return gradient_sample(model, estimator, x, num_samples, draws, seed=seed, engine=engine).flat()


def reference(bound: Bound, model, x: Tensor, cache: dict) -> tuple[Tensor, Tensor, str]:
    """(mean [P], standard error [P], label) of the gradient of the negative ``bound`` on x."""
    if bound in cache:
        return cache[bound]
    if bound.name == "elbo":
        exact = exact_gradient(model, x)
        out = exact, torch.zeros_like(exact), "exact"
    elif bound.name == "inclusive-kl":
        exact = _flat_grad(model, exact_inclusive_kl(model, x).sum())
        out = exact, torch.zeros_like(exact), "exact-inclusive-kl"
    elif bound.name == "ciwae":
        iwae, se, label = reference(Bound.of("iwae", bound.samples), model, x, cache)
        beta = bound.parameter
        out = beta * exact_gradient(model, x) + (1 - beta) * iwae, (1 - beta) * se, f"ciwae({label})"
    else:  # the suite's one table from a bound to the estimator whose mean is its gradient
        estimator, k, stem = bound_estimator(bound)
        g = draws_of(model, estimator, x, k, REFERENCE_DRAWS, seed=7)
        out = g.mean(0), (g.var(0) / g.shape[0]).sqrt(), f"{stem}-{REFERENCE_DRAWS}"
    cache[bound] = out
    return out


def verify_global(names: list[str] | None = None, false_alarm: float = 1e-3) -> pd.DataFrame:
    """One row per (estimator, K tested) on the conjugate regression's minibatch: unbiased, biased, or refused.

    Returns:
        Columns ``estimator``, ``k_tested``, ``target``, ``reference``, ``estimates``, ``max_z``,
        ``threshold``, ``unbiased`` (max_z < threshold), ``expected`` (``unbiased``, ``biased`` where the
        estimator declares ``biased_at(K)``, or ``refused`` where it declares ``local_only``),
        ``as_expected``, and ``refusal`` (the error's line, for a refused estimator).
    """
    model, _, x = conjugate_regression()
    threshold = bonferroni_threshold(false_alarm, layout(model).size)
    cache: dict = {}
    rows = []
    for name in names or list(ESTIMATORS):
        cls = ESTIMATORS[name]
        for k in settings(name):
            row = {"estimator": name, "k_tested": k, "threshold": threshold}
            if cls.local_only:
                try:
                    make_estimator(name)(model, x, num_samples=k)
                    row |= {"expected": "refused", "as_expected": False, "refusal": ""}
                except VaebenchError as err:
                    row |= {
                        "expected": "refused",
                        "as_expected": "global latents" in str(err),
                        "refusal": str(err),
                    }
                rows.append(row)
                continue
            est = ready(name, model, x, k)
            target, target_se, label = reference(est.target(k).encoder, model, x, cache)
            g = draws_of(model, est, x, k, DRAWS[cls.family])
            z = max_z(g, target, target_se)
            expected = "biased" if est.biased_at(k) else "unbiased"
            row |= {
                "target": str(est.target(k)),
                "reference": label,
                "estimates": g.shape[0],
                "max_z": z,
                "unbiased": z < threshold,
                "expected": expected,
                "as_expected": (z < threshold) == (expected == "unbiased"),
            }
            rows.append(row)
    return pd.DataFrame(rows)
