r"""Figures of merit of a trained global-latent model (:mod:`vaebench.problems.variational`), one tidy table.

With S draws z_s ~ q and log w_s = log p(x_1..N, z_s) - log q(z_s) on the *full* training data (B = N, so the
joint is unscaled):

- ``elbo`` = mean_s log w_s, with the standard error sd(log w) / √S (a t interval);
- ``gap_to_log_z`` = log Z - ELBO = KL(q ‖ p(z | x)) ≥ 0, for a model with ``exact_log_marginal`` (the funnel:
  log Z = 0; the conjugate regression);
- ``khat``: the Pareto k̂ of the S weights w_s (PSIS, Vehtari et al. 2024; :func:`~vaebench.measures.weights.
  pareto_khat`), the diagnostic of q as an importance proposal for the posterior (Yao et al. 2018: k̂ < 0.5
  reliable, k̂ > 0.7 not; it has no interval);
- ``predictive_log_likelihood`` = mean over the M held-out rows x*_m of log (1/S) Σ_s p(x*_m | z_s), the
  Monte Carlo estimate of log E_q[p(x* | z)] (biased low by Jensen's inequality in 1/S; an interval over rows).

A model with local latents (the amortised VAEs, the Gaussian toy) is judged on its test points, each figure a
mean over them with a normal interval: ``test_elbo`` (S pathwise draws per point, :func:`~vaebench.train.
evaluate_elbo`), ``test_log_likelihood`` (the IWAE_S bound with q as proposal, Burda et al. 2015,
:func:`~vaebench.train.estimate_log_likelihood`) and, for a model that knows its exact posterior (the
linear-Gaussian VAE, the Gaussian toy), ``gap_to_log_z`` = log p_θ(x) - ELBO = KL(q(z|x) ‖ p_θ(z|x)) in closed
form (:func:`~vaebench.exact.kl_to_posterior`), with no Monte Carlo noise. :func:`figures_of_merit` computes either kind.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

from vaebench import rng
from vaebench.data import Dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import log_density, sample_posterior
from vaebench.exact import kl_to_posterior
from vaebench.measures.weights import pareto_khat
from vaebench.stats import normal_quantile
from vaebench.train import estimate_log_likelihood, evaluate_elbo

MERIT_SAMPLES = 4000
"""Draws from q for every figure (k̂ fits the largest 3√S = 190 weights)."""

GLOBAL_FIGURES = ("elbo", "gap_to_log_z", "khat", "predictive_log_likelihood")
LOCAL_FIGURES = ("test_elbo", "test_log_likelihood", "gap_to_log_z")


def figures_of_merit(model: nn.Module, dataset: Dataset, figures: tuple[str, ...], **options) -> pd.DataFrame:
    """A problem's figures of merit for either kind of model (``options``: those of `global_merit` or
    `local_merit`)."""
    merit = global_merit if getattr(model, "global_latents", False) else local_merit
    return merit(model, dataset, figures, **options)


@torch.no_grad()
def local_merit(
    model: nn.Module,
    dataset: Dataset,
    figures: tuple[str, ...] = LOCAL_FIGURES,
    *,
    samples: int = 1000,
    points: int = 0,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """The test-point figures of a model with local latents: one row per figure, as `global_merit`'s.

    Args:
        samples: draws per test point (the test ELBO's and the log-likelihood's).
        points: the first test points used (0: all).
    """
    unknown = [f for f in figures if f not in LOCAL_FIGURES]
    if unknown:
        raise VaebenchError(
            f"unknown figure(s) {', '.join(unknown)}; local-latent figures: {', '.join(LOCAL_FIGURES)}"
        )
    test = dataset.test[: points or None]
    gen = rng.generator(seed, "problems.merit")
    elbo = evaluate_elbo(model, test, num_samples=samples, generator=gen).double()
    per_point = {"test_elbo": elbo}
    if "test_log_likelihood" in figures:
        per_point["test_log_likelihood"] = estimate_log_likelihood(
            model, test, samples, generator=gen
        ).double()
    if "gap_to_log_z" in figures:
        gap = kl_to_posterior(model, test)
        if gap is None:
            raise VaebenchError(f"{type(model).__name__} has no exact_posterior: it has no gap to log Z")
        per_point["gap_to_log_z"] = gap.double()
    half = normal_quantile(level)
    rows = []
    for f in figures:
        values = per_point[f]
        mean, se = float(values.mean()), float(values.std() / math.sqrt(values.numel()))
        rows.append(
            {
                "figure": f,
                "value": mean,
                "low": mean - half * se,
                "high": mean + half * se,
                "samples": samples,
                "seed": seed,
            }
        )
    return pd.DataFrame(rows)


@torch.no_grad()
def global_merit(
    model: nn.Module,
    dataset: Dataset,
    figures: tuple[str, ...] = GLOBAL_FIGURES,
    *,
    samples: int = MERIT_SAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """The figures of merit of a global-latent model at its current q.

    Args:
        model: a model with ``global_latents`` (posterior [1, Z]).
        dataset: its data set: the figures read ``train`` (all of it) and ``test`` (held-out rows).
        figures: which of `GLOBAL_FIGURES` to compute (``gap_to_log_z`` needs ``model.exact_log_marginal``).
        samples: S, draws from q (stream ``problems.merit`` of ``seed``).
        seed: the seed of the draws.
        level: the level of the intervals.

    Returns:
        One row per figure: ``figure``, ``value``, ``low``, ``high`` (NaN for k̂), ``samples``, ``seed``.
    """
    if not getattr(model, "global_latents", False):
        raise VaebenchError(
            "global_merit needs a model with global latents (posterior of batch shape [1, Z])"
        )
    unknown = [f for f in figures if f not in GLOBAL_FIGURES]
    if unknown:
        raise VaebenchError(
            f"unknown figure(s) {', '.join(unknown)}; global-latent figures: {', '.join(GLOBAL_FIGURES)}"
        )
    train = dataset.train.to(model.loc.dtype)
    q = model.posterior(train)
    z = sample_posterior(q, samples, rng.generator(seed, "problems.merit"))  # [S, 1, Z]
    log_w = (model.log_joint(train, z) - log_density(q, z)).squeeze(-1).double()  # [S]
    half = normal_quantile(level)
    elbo, se = float(log_w.mean()), float(log_w.std() / math.sqrt(samples))
    found = {"elbo": (elbo, elbo - half * se, elbo + half * se)}
    if "gap_to_log_z" in figures:
        if not callable(getattr(model, "exact_log_marginal", None)):
            raise VaebenchError(f"{type(model).__name__} has no exact_log_marginal: it has no gap to log Z")
        log_z = float(model.exact_log_marginal(train).sum())
        found["gap_to_log_z"] = (log_z - elbo, log_z - elbo - half * se, log_z - elbo + half * se)
    if "khat" in figures:
        found["khat"] = (float(pareto_khat(log_w.unsqueeze(-1))[0]), math.nan, math.nan)
    if "predictive_log_likelihood" in figures:
        test = dataset.test.to(model.loc.dtype)
        per_row = torch.logsumexp(model.point_log_likelihood(test, z), 0).double() - math.log(samples)  # [M]
        mean, se = float(per_row.mean()), float(per_row.std() / math.sqrt(per_row.numel()))
        found["predictive_log_likelihood"] = (mean, mean - half * se, mean + half * se)
    return pd.DataFrame(
        [
            {"figure": f, "value": v, "low": lo, "high": hi, "samples": samples, "seed": seed}
            for f in figures
            for v, lo, hi in [found[f]]
        ]
    )
