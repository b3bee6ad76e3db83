"""Shared helpers for the statistical gradient tests: draw many independent gradient estimates fast."""

from __future__ import annotations

import torch
from torch import Tensor

from vaebench.estimators import Estimator
from vaebench.model import GaussianVAE


def flat_grad(params: list[torch.nn.Parameter]) -> Tensor:
    return torch.cat(
        [p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1) for p in params]
    )


def encoder_mask(model: GaussianVAE) -> Tensor:
    """[P] bool: True at the encoder's coordinates in ``flat_grad(list(model.parameters()))`` order."""
    enc = {id(p) for p in model.parameter_groups()["encoder"]}
    return torch.cat([torch.full((p.numel(),), id(p) in enc) for p in model.parameters()])


def gradient_draws(
    model: GaussianVAE,
    estimator: Estimator,
    x: Tensor,
    num_samples: int,
    draws: int,
    copies: int = 1,
    seed: int = 0,
    rescale: bool = True,
) -> Tensor:
    """[draws, P] independent gradient estimates of the batch-mean objective at fixed parameters.

    With ``copies`` > 1 the batch is tiled ``copies`` times in one call, so each draw is the mean of that many
    independent estimates (valid because every registered estimator treats datapoints independently when its
    state is frozen in eval mode); the draws stay independent, so their standard error is still honest.
    With ``rescale`` the encoder coordinates are divided by ``estimator.encoder_scale``, putting estimators
    that rescale their encoder gradient (NVIL) back on the ELBO-gradient scale.
    """
    params = list(model.parameters())
    mask = encoder_mask(model)
    scale = torch.where(mask, 1.0 / estimator.encoder_scale, 1.0).to(x.dtype) if rescale else 1.0
    tiled = x.repeat(copies, 1)
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(draws, mask.numel(), dtype=x.dtype)
    for i in range(draws):
        model.zero_grad(set_to_none=True)
        estimator(model, tiled, num_samples=num_samples, generator=gen).surrogate.backward()
        out[i] = flat_grad(params) * scale
    model.zero_grad(set_to_none=True)
    return out


def trace_variance(draws: Tensor) -> tuple[float, float]:
    """Trace of the covariance of [N, P] draws and the standard error of that estimate.

    tr Cov = E||g - E g||², estimated by the mean of d_i = ||g_i - ḡ||² (times N/(N-1)); its standard error is
    std(d_i)/√N, which makes no Gaussian assumption about the gradients.
    """
    n = draws.shape[0]
    d = (draws - draws.mean(0)).pow(2).sum(1) * n / (n - 1)
    return float(d.mean()), float(d.std() / n**0.5)
