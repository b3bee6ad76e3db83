r"""The scaling laws in K and the published SNR claims, measured where their conditions hold.

Two built checkpoints, each with light-tailed importance weights (so the laws' regime holds; see
:mod:`vaebench.analysis.scaling`):

- ``toy``: the Gaussian toy of Rainforth et al. 2018 at its optimum perturbed by N(0, 0.01²)
  (:func:`vaebench.toy.toy_checkpoint`): q is wider than the posterior, the weights are bounded;
- ``near-posterior``: the linear-Gaussian VAE whose exact posterior its diagonal encoder can represent
  (orthogonal decoder columns, :func:`vaebench.checks.landing.exact_posterior_model`), the encoder set to it,
  its mean's parameters perturbed by N(0, 0.03²) and its standard deviations widened by `OVER_DISPERSION`
  (:func:`near_posterior_model`). Over-dispersed, q is wider than the posterior in every direction, so the
  weights are bounded (k̂ about -0.2, χ² about 1.4). The two other ways to stay near the posterior both fail
  the laws' needs, as measured (8 datapoints, K to 1000): perturbing every encoder parameter by N(0, 0.003²)
  keeps the weights light (χ² of order 10⁻³), but the IWAE encoder gradient, 0 at the exact posterior, then
  has a mean of the order of the perturbation and its SNR is resolved at K <= 3 only (its law cannot be
  judged); perturbing them by 0.03 or 0.1 narrows q in some direction and the weights turn heavy-tailed (k̂
  0.54 and 1.14: every IWAE law not testable).

The suite's ``laws`` units (``--preset scaling``) measure the IWAE, DReG and ELBO estimators there at K on a
grid up to 1000 with :func:`~vaebench.measures.variance.measure_variance` (the weight diagnostics drawn once
per checkpoint and shared); the report fits the laws (:func:`~vaebench.analysis.scaling.scaling_laws`) and
states the published claims with their verdicts (:mod:`vaebench.analysis.claims`).

Replicates (:func:`replicates`): the IWAE encoder's SNR falls as K^-1/2 from about 0.1 at K = 1 on the toy, so the
IWAE-objective estimators get 2000 replicates at K <= 30 (where that SNR can still be resolved from 0 in
seconds) and 200 above (where the other SNRs they carry are large: a 200-replicate interval is a few percent
wide, the slope's over the top decade about ±0.02); the ELBO estimators, whose law is the variance's exact
1/K, get 100 everywhere. The IWAE encoder law is then judged on the largest decade where its SNR is
resolved, which the row's ``k_min``/``k_max`` report (on the toy: K in [3, 30]; resolving it at K = 1000
would take some 10⁵ replicates; on the near-posterior checkpoint too). The 2000-replicate summaries of the
IWAE-objective estimators take most of the preset's time. OVIS_MC, whose encoder SNR rises with K (Liévin et al.
2020), gets 200 at every K, and only the K whose K x S x K replaced bounds fit (:func:`vaebench.suite.cost.laws_grid`:
K <= 100 of the default grid).

:func:`closed_form_gradients` computes the toy's per-draw gradients of ``reparam``, ``stl``, ``iwae`` and
``dreg`` from their formulas, without autograd: an independent check of the variance harness.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaebench import rng
from vaebench.checks.landing import exact_posterior_model
from vaebench.config.sections import LAW_CHECKPOINTS
from vaebench.data import load_dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS
from vaebench.model import GaussianVAE
from vaebench.toy import GaussianToy, toy_checkpoint

CHECKPOINTS = LAW_CHECKPOINTS
"""The built checkpoints (the grid of K and the estimators measured are the scaling preset's:
:data:`vaebench.config.sections.LAW_GRID`, :data:`~vaebench.config.sections.LAW_ESTIMATORS`)."""

BATCH_SIZE = 8
"""Datapoints of the measured minibatch (the laws are per datapoint; a minibatch sums them)."""

NEAR_POSTERIOR = 0.03
"""Standard deviation of the perturbation of the near-posterior checkpoint's encoder mean (its weights and
bias)."""

OVER_DISPERSION = 1.2
"""Factor on the exact posterior's standard deviations in the near-posterior checkpoint's q."""


def replicates(estimator: str, k: int) -> int:
    """The replicates of an estimator at K in the suite's ``laws`` units (see the module docstring)."""
    if estimator == "ovis-mc":
        return 200  # its encoder SNR rises with K from about 0.3 at K = 10: resolved by 200
    if ESTIMATORS[estimator].objective == "iwae":
        return 2000 if k <= 30 else 200
    return 100


def near_posterior_model(
    perturbation: float = NEAR_POSTERIOR, seed: int = 0, over_dispersion: float = OVER_DISPERSION
) -> GaussianVAE:
    """The linear-Gaussian VAE with its encoder at the exact posterior, the parameters of q's mean then perturbed
    by N(0, perturbation²) (stream ``init.near_posterior`` of ``seed``) and q's standard deviations (an input-free
    bias, in the exact model) multiplied by ``over_dispersion``."""
    model = exact_posterior_model(seed=seed)
    gen = rng.generator(seed, "init.near_posterior")
    layer, z = model.encoder.net[0], model.z_dim  # rows [:z] give the mean, rows [z:] the raw scale
    floor = model.encoder.min_scale
    with torch.no_grad():
        layer.weight[:z].add_(perturbation * torch.randn(layer.weight[:z].shape, generator=gen))
        layer.bias[:z].add_(perturbation * torch.randn(z, generator=gen))
        sd = torch.nn.functional.softplus(layer.bias[z:]) + floor
        layer.bias[z:].copy_((over_dispersion * sd - floor).expm1().log())  # softplus⁻¹
    return model


def near_posterior_batch(model: GaussianVAE, batch_size: int = BATCH_SIZE, seed: int = 0) -> Tensor:
    """x [B, D] drawn from the model itself, x = W z + b + σ_x ε (stream ``checks.batch``)."""
    gen = rng.generator(seed, "checks.batch")
    with torch.no_grad():
        loc, scale = model.decoder(torch.randn(batch_size, model.z_dim, generator=gen))
        return loc + scale * torch.randn(batch_size, model.x_dim, generator=gen)


def checkpoint(label: str, batch_size: int = BATCH_SIZE, seed: int = 0) -> tuple[nn.Module, Tensor]:
    """The model and minibatch of one of `CHECKPOINTS`."""
    if label == "toy":
        data = load_dataset("gaussian-toy", seed=seed)
        return toy_checkpoint(data, seed=seed), data.train[:batch_size]
    if label == "near-posterior":
        model = near_posterior_model(seed=seed)
        return model, near_posterior_batch(model, batch_size, seed)
    raise VaebenchError(f"unknown checkpoint {label!r}; choose one of: {', '.join(CHECKPOINTS)}")


@torch.no_grad()
def closed_form_gradients(model: GaussianToy, x: Tensor, eps: Tensor, estimator: str) -> Tensor:
    """The toy's gradient of the surrogate (the negative batch-mean objective) for given noise, from formulas.

    With z_k = Ax + b + s ε_k, ∇_z log p(x, z) = x + θ - 2z and the normalised weights w̃ = softmax_k(log w_k),
    the gradient in q's mean μ = Ax + b and in θ of one datapoint's objective is

        reparam:  g_μ = mean_k (x + θ - 2 z_k)                    g_θ = mean_k (z_k - θ)
        stl:      g_μ = mean_k (x + θ - 2 z_k + ε_k / s)          g_θ as reparam
        iwae:     g_μ = Σ_k w̃_k (x + θ - 2 z_k)                    g_θ = Σ_k w̃_k (z_k - θ)
        dreg:     g_μ = Σ_k w̃_k² (x + θ - 2 z_k + ε_k / s)        g_θ as iwae

    (q's entropy term has no gradient in μ: s is fixed; STL and DReG drop the score of log q, which leaves its
    path term ε/s), and g_A = g_μ xᵀ, g_b = g_μ.

    Args:
        model: the toy.
        x: the minibatch [B, D].
        eps: the standard normal noise [K, B, D] the estimator drew.
        estimator: ``reparam``, ``stl``, ``iwae`` or ``dreg``.

    Returns:
        The flat gradient [D² + 2D] in the order of the variance measure's layout (A row-major, b, θ), float64.
    """
    if estimator not in ("reparam", "stl", "iwae", "dreg"):
        raise VaebenchError(f"no closed form for {estimator!r}; choose reparam, stl, iwae or dreg")
    a, bias, theta = (
        t.detach().double() for t in (model.encoder.weight, model.encoder.bias, model.decoder.mean)
    )
    x, eps = x.double(), eps.double()
    s = math.sqrt(model.q_variance)
    z = x @ a.T + bias + s * eps  # [K, B, D]
    path = x + theta - 2 * z  # ∇_z log p(x, z_k)
    log_w = -0.5 * ((x - z).square() + (z - theta).square()).sum(-1) + 0.5 * eps.square().sum(-1)  # + const
    weights = torch.softmax(log_w, 0)[..., None]  # [K, B, 1]
    k = eps.shape[0]
    if estimator in ("reparam", "stl"):
        g_mu = (path + (eps / s if estimator == "stl" else 0.0)).sum(0) / k
        g_theta = (z - theta).sum(0) / k
    else:
        g_mu = (
            (weights * path).sum(0) if estimator == "iwae" else (weights.square() * (path + eps / s)).sum(0)
        )
        g_theta = (weights * (z - theta)).sum(0)
    batch = x.shape[0]
    g_a = g_mu.T @ x  # Σ_b g_μ,b x_bᵀ: [D, D]
    return -torch.cat([g_a.reshape(-1), g_mu.sum(0), g_theta.sum(0)]) / batch
