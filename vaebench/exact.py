"""Closed-form answers for the linear-Gaussian VAE, the suite's ground truth.

With ``GaussianVAE(hidden=(), likelihood="gaussian", decoder_scale="learned")`` the decoder is
p(x|z) = Normal(x; W z + b, diag σ_x^2) and the encoder q(z|x) = Normal(m(x), diag s(x)^2). Then

    E_q[log p(x|z)] = Σ_d [ -log σ_d - ½ log 2π - ((x_d - (W m + b)_d)^2 + Σ_j W_dj^2 s_j^2) / (2 σ_d^2) ]
    KL(q || p)      = ½ Σ_j (s_j^2 + m_j^2 - 1 - 2 log s_j)
    ELBO            = E_q[log p(x|z)] - KL(q || p)
    log p(x)        = log Normal(x; b, W Wᵀ + diag σ_x^2)
    p(z|x)          = Normal(z; S Wᵀ Σ_x⁻¹ (x - b), S),   S = (I + Wᵀ Σ_x⁻¹ W)⁻¹,  Σ_x = diag σ_x^2
    KL(p(z|x) || q) = ½ [tr(diag s⁻² S) + (m - m_p)ᵀ diag s⁻² (m - m_p) - Z + Σ_j log s_j² - log det S]

Autograd through :func:`exact_elbo` gives the exact ELBO gradient in every parameter, against which the
unbiased estimators are tested; through :func:`exact_inclusive_kl`, the exact gradient of the inclusive KL in
the encoder's parameters, the target of the wake phase of reweighted wake-sleep.

Any model that knows its exact posterior (the optional method ``exact_posterior(x)``: the linear-Gaussian
:class:`~vaebench.model.GaussianVAE`, whose posterior is a full-covariance Gaussian, and the Gaussian toy
:class:`~vaebench.toy.GaussianToy`) gets the divergence of its encoder from it, :func:`kl_to_posterior`:

    KL(q ‖ p(z|x)) = ½ [tr(Σ⁻¹ S) + (m - μ)ᵀ Σ⁻¹ (m - μ) - Z + log det Σ - log det S]

for q = N(m, S) (S diagonal) and p(z|x) = N(μ, Σ).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vaebench.errors import VaebenchError
from vaebench.model import GaussianVAE, positive_scale

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _linear_decoder(model: GaussianVAE) -> tuple[Tensor, Tensor, Tensor]:
    if not model.is_linear_gaussian:
        raise VaebenchError(
            "closed forms need the linear-Gaussian model: GaussianVAE(hidden=(), likelihood='gaussian', "
            "decoder_scale='learned')"
        )
    layer = model.decoder.net[0]
    scale = positive_scale(model.decoder.raw_scale, model.decoder.min_scale)
    return layer.weight, layer.bias, scale


def exact_elbo(model: GaussianVAE, x: Tensor) -> Tensor:
    """The ELBO of a linear-Gaussian model in closed form, differentiable in all parameters.

    Args:
        model: a linear-Gaussian :class:`GaussianVAE`.
        x: data [B, D].

    Returns:
        ELBO per datapoint [B].
    """
    weight, bias, sigma_x = _linear_decoder(model)
    q = model.posterior(x)
    mean_x = q.loc @ weight.T + bias  # [B, D]
    spread = q.scale.pow(2) @ weight.pow(2).T  # Σ_j W_dj^2 s_j^2, [B, D]
    expected_log_lik = -(
        sigma_x.log() + 0.5 * math.log(2 * math.pi) + ((x - mean_x).pow(2) + spread) / (2 * sigma_x.pow(2))
    ).sum(-1)
    return expected_log_lik - kl_divergence(q, model.prior()).sum(-1)


def exact_log_marginal(model: GaussianVAE, x: Tensor) -> Tensor:
    """log p(x) = log Normal(x; b, W Wᵀ + diag σ_x^2) of a linear-Gaussian model, computed in float64.

    Args:
        model: a linear-Gaussian :class:`GaussianVAE`.
        x: data [B, D].

    Returns:
        log p(x) per datapoint [B], in x's dtype.
    """
    weight, bias, sigma_x = (t.detach().double() for t in _linear_decoder(model))
    cov = weight @ weight.T + torch.diag(sigma_x.pow(2))
    return MultivariateNormal(bias, covariance_matrix=cov).log_prob(x.double()).to(x.dtype)


def kl_to_posterior(model: nn.Module, x: Tensor) -> Tensor | None:
    """KL(q(z|x) ‖ p(z|x)) per datapoint [B] for a model with an ``exact_posterior(x)``, else None.

    ``exact_posterior`` may return a diagonal ``Normal`` [B, Z] or a ``MultivariateNormal`` (batch [B], event
    [Z]); a model without the method, or whose method returns None, has no closed-form posterior.
    """
    exact = getattr(model, "exact_posterior", None)
    truth = exact(x) if callable(exact) else None
    if truth is None:
        return None
    q = model.posterior(x)
    if isinstance(truth, Normal):
        return kl_divergence(q, truth).sum(-1)
    q_full = MultivariateNormal(q.loc, scale_tril=torch.diag_embed(q.scale), validate_args=False)
    return kl_divergence(q_full, truth)


def exact_inclusive_kl(model: GaussianVAE, x: Tensor) -> Tensor:
    """KL(p(z|x) || q(z|x)) per datapoint [B] of a linear-Gaussian model, differentiable in the encoder only.

    p(z|x) is exact and held fixed (detached): the gradient is the encoder's part of the inclusive KL's,
    -E_{p(z|x)}[∇_φ log q_φ(z|x)], what the wake phase of reweighted wake-sleep estimates.
    """
    p = model.exact_posterior(x)
    p = MultivariateNormal(p.loc.detach(), precision_matrix=p.precision_matrix.detach(), validate_args=False)
    q = model.posterior(x)
    return kl_divergence(p, MultivariateNormal(q.loc, scale_tril=torch.diag_embed(q.scale)))


def exact_tvo(model: GaussianVAE, x: Tensor, betas: Tensor) -> Tensor:
    """The thermodynamic bound Σ_s (β_{s+1} - β_s) E_{π_{β_s}}[log w] of a linear-Gaussian model [B], differentiable.

    π_β ∝ q^(1-β) p(z|x)^β is Gaussian: precision Λ_β = (1-β) diag(s⁻²) + β P (P the exact posterior's
    precision), mean Λ_β⁻¹ [(1-β) s⁻² m + β P m_p]; log w = log p(x|z) + log p(z) - log q(z) is quadratic in z,
    so each expectation is closed-form (:mod:`vaebench.estimators.thermodynamic`).

    Args:
        model: a linear-Gaussian :class:`GaussianVAE`.
        x: data [B, D].
        betas: the partition 0 = β_0 < ... < β_S = 1 [S + 1].
    """
    weight, bias, sigma_x = _linear_decoder(model)
    q, post = model.posterior(x), model.exact_posterior(x)
    q_precision = q.scale.pow(-2)  # [B, Z]
    total = x.new_zeros(x.shape[0])
    betas = betas.to(x)
    for beta, width in zip(betas[:-1], betas[1:] - betas[:-1], strict=True):
        precision = (1 - beta) * torch.diag_embed(q_precision) + beta * post.precision_matrix  # [B, Z, Z]
        pulled = (post.precision_matrix @ post.loc.unsqueeze(-1)).squeeze(-1)  # P m_p, [B, Z]
        shift = (1 - beta) * q_precision * q.loc + beta * pulled
        cov = torch.linalg.inv(precision)
        mean = (cov @ shift.unsqueeze(-1)).squeeze(-1)  # [B, Z]
        variances = torch.diagonal(cov, dim1=-2, dim2=-1)  # [B, Z]
        residual = x - mean @ weight.T - bias
        spread = torch.einsum("dj,bjk,dk->bd", weight, cov, weight)  # diag(W C Wᵀ), [B, D]
        log_lik = -(sigma_x.log() + _HALF_LOG_2PI + (residual.pow(2) + spread) / (2 * sigma_x.pow(2))).sum(-1)
        log_prior = -(_HALF_LOG_2PI + 0.5 * (mean.pow(2) + variances)).sum(-1)
        log_q = -(q.scale.log() + _HALF_LOG_2PI + 0.5 * ((mean - q.loc).pow(2) + variances) * q_precision)
        log_q = log_q.sum(-1)
        total = total + width * (log_lik + log_prior - log_q)
    return total
