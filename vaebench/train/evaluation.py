r"""Evaluation of a model on test data: the test ELBO of the learning curves and the test log-likelihood.

- :func:`evaluate_elbo`: the plain ELBO per datapoint, each the mean of a few pathwise draws, whatever
  estimator the model was trained with, so every learning curve is on one scale;
- :func:`estimate_log_likelihood`: the model-quality number papers report, log p(x) estimated by importance
  sampling with the encoder as proposal (Burda et al. 2015, section 5):

      log p(x) >= L_k(x) = E[log (1/k) Σ_{i=1..k} p(x, z_i) / q(z_i | x)],   z_i ~ q(z | x),

  a lower bound in expectation that increases with k and tends to log p(x) (Burda et al. 2015, Theorem 1);
  the suite uses k = 5000, the paper's choice.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError
from vaebench.estimators import Reparam, log_density, sample_posterior

DEFAULT_EVAL_SAMPLES = 10  # samples per test point for the test ELBO: its MC error is tiny next to the gaps
DEFAULT_LL_SAMPLES = 5000  # importance samples per test point for the test log-likelihood (Burda et al. 2015)
_EVAL_CHUNK = 1024  # test points per evaluation pass, so memory stays bounded on large test sets
# Floats in the widest activation of one chunk: on a CPU about the cache (4 MiB in float32; measured ~2x
# faster than 16 MiB chunks), on a GPU large enough to fill the device.
_MAX_ELEMENTS = {"cpu": 1 << 20, "cuda": 1 << 24}


@torch.no_grad()
def evaluate_elbo(
    model: nn.Module,
    x: Tensor,
    *,
    num_samples: int = DEFAULT_EVAL_SAMPLES,
    generator: torch.Generator | None = None,
    chunk: int = _EVAL_CHUNK,
) -> Tensor:
    """Plain ELBO per datapoint, each the mean of ``num_samples`` pathwise draws; no gradients.

    Args:
        model: anything with ``posterior`` and ``log_joint``.
        x: data [N, D].
        num_samples: samples per datapoint.
        generator: the noise (a generator on x's device), or None for torch's global one.
        chunk: datapoints per pass.

    Returns:
        ELBO estimates [N].
    """
    reparam = Reparam()
    out = [reparam(model, part, num_samples=num_samples, generator=generator).elbo for part in x.split(chunk)]
    return torch.cat(out)


def elbo_noise(
    num_samples: int,
    points: int,
    z_dim: int,
    generator: torch.Generator,
    like: Tensor,
    chunk: int = _EVAL_CHUNK,
) -> Tensor:
    """The noise ε [n, N, Z] that :func:`evaluate_elbo` draws for N points from ``generator``, chunk by chunk.

    For evaluating several seeds at once (:mod:`vaebench.train.seeds`), each with its own noise: point j's
    draws are those ``evaluate_elbo`` gives point j (``like``: a tensor of the draws' dtype and device).
    """
    sizes = [min(chunk, points - start) for start in range(0, points, chunk)]
    draws = [
        torch.randn((num_samples, size, z_dim), generator=generator, dtype=like.dtype, device=like.device)
        for size in sizes
    ]
    return torch.cat(draws, 1) if draws else like.new_zeros((num_samples, 0, z_dim))


@torch.no_grad()
def estimate_log_likelihood(
    model: nn.Module,
    x: Tensor,
    k: int = DEFAULT_LL_SAMPLES,
    *,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Importance-sampled log p(x) per datapoint with the encoder as proposal (the IW bound L_k).

    log p̂(x) = logsumexp_i [log p(x, z_i) - log q(z_i | x)] - log k,  z_i ~ q(z | x), i = 1..k. The k
    samples are drawn in chunks and combined by a logsumexp over the chunks' logsumexps (exact, not an
    approximation), so memory stays bounded whatever k.

    Args:
        model: anything with ``posterior`` and ``log_joint`` (a :class:`~vaebench.model.GaussianVAE`).
        x: data [B, D].
        k: importance samples per datapoint.
        chunk_size: samples per chunk; default: as many as keep the widest activation [chunk, B', width]
            under about 1M floats on a CPU, 16M on a GPU (the datapoints are split too when B alone exceeds it).
        generator: the noise (a generator on x's device), or None for torch's global generator.

    Returns:
        log p̂(x) [B]; below log p(x) in expectation, the gap shrinking as k grows.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise VaebenchError(f"k (importance samples) must be a positive integer, got {k!r}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise VaebenchError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if x.dim() != 2:
        raise VaebenchError(f"x must have shape [B, D], got {list(x.shape)}")
    width = _widest_layer(model, x.shape[-1])
    budget = _MAX_ELEMENTS.get(x.device.type, _MAX_ELEMENTS["cpu"])
    points = max(1, budget // width)
    out = []
    for part in x.split(points):
        q = model.posterior(part)
        step = chunk_size or max(1, budget // (part.shape[0] * width))
        partial = []
        for start in range(0, k, step):
            z = sample_posterior(q, min(step, k - start), generator)
            partial.append(torch.logsumexp(model.log_joint(part, z) - log_density(q, z), 0))
        out.append(torch.logsumexp(torch.stack(partial), 0) - math.log(k))
    return torch.cat(out)


def _widest_layer(model: nn.Module, x_dim: int) -> int:
    z_dim = getattr(model, "z_dim", 0)
    return max(x_dim, 2 * z_dim, *getattr(model, "hidden", ()))
