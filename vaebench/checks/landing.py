r"""STL "sticks the landing": its encoder gradient's variance falls to zero as q reaches the exact posterior.

Roeder, Wu & Duvenaud 2017 (arXiv:1703.09194): the pathwise ELBO gradient in φ is
∇_z[log p(x, z) - log q_φ(z|x)] ∂z/∂φ - ∇_φ log q_φ(z|x); STL drops the last term (the score, mean zero). When
q_φ(z|x) = p(z|x), log p(x, z) - log q(z|x) = log p(x) for every z, so the first term vanishes for every draw:
STL's estimate is exactly 0 and so is its variance, while reparam keeps the score term's variance.

The check needs a model whose exact posterior the encoder can represent. In the linear-Gaussian model
p(z) = N(0, I), p(x|z) = N(W z + b, s² I), the posterior is N(Σ Wᵀ(x - b)/s², Σ) with Σ = (I + WᵀW/s²)⁻¹; it is
diagonal (as the encoder's q is) when the columns of W are orthogonal, and its mean is affine in x (as the
linear encoder's is). :func:`stl_landing` builds such a model with a fixed seed, sets the encoder to the
exact posterior, then moves it away along a straight line in parameter space, and measures the encoder
gradient variance of ``stl`` and ``reparam`` at each point, with KL(q || p(z|x)) (exact, averaged over the
minibatch) as the distance to the posterior.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from vaebench import rng
from vaebench.estimators import make_estimator
from vaebench.measures.variance import VarianceOptions, measure_variance
from vaebench.model import GaussianVAE

STEPS = (1.0, 0.3, 0.1, 0.03, 0.01, 0.0)
"""Fractions of the way from the exact posterior (0) to the perturbed encoder (1), measured in this order."""


def exact_posterior_model(
    x_dim: int = 8, z_dim: int = 3, noise_std: float = 0.5, seed: int = 0
) -> GaussianVAE:
    """A linear-Gaussian VAE with orthogonal decoder columns and its encoder set to the exact posterior."""
    gen = rng.generator(seed, "landing.model")
    model = GaussianVAE(
        x_dim, z_dim, hidden=(), likelihood="gaussian", init_decoder_scale=noise_std, seed=seed
    )
    q, _ = torch.linalg.qr(torch.randn(x_dim, z_dim, generator=gen, dtype=torch.float64))
    weight = q * torch.linspace(1.0, 2.0, z_dim, dtype=torch.float64)  # orthogonal columns of distinct norms
    bias = torch.randn(x_dim, generator=gen, dtype=torch.float64)
    # σ_x², one per dimension
    s2 = model.decoder(torch.zeros(1, z_dim))[1].detach().double().expand(x_dim) ** 2
    cov = torch.linalg.inv(torch.eye(z_dim, dtype=torch.float64) + weight.T @ (weight / s2[:, None]))
    gain = cov @ weight.T / s2  # posterior mean = gain (x - b)
    sd = cov.diagonal().sqrt()
    floor = model.encoder.min_scale
    raw = (sd - floor).expm1().log()  # inverse of softplus(raw) + floor
    with torch.no_grad():
        model.decoder.net[0].weight.copy_(weight)
        model.decoder.net[0].bias.copy_(bias)
        layer = model.encoder.net[0]
        layer.weight.zero_()
        layer.weight[:z_dim].copy_(gain)
        layer.bias[:z_dim].copy_(-gain @ bias)
        layer.bias[z_dim:].copy_(raw)
    return model


def stl_landing(
    estimators: Sequence[str] = ("stl", "reparam"),
    *,
    replicates: int = 100,
    batch_size: int = 32,
    seed: int = 0,
    steps: Sequence[float] = STEPS,
) -> pd.DataFrame:
    """Encoder gradient variance of ``estimators`` (K = 1) along a line from a perturbed q to the exact posterior.

    Returns:
        Tidy rows: ``estimator, fraction`` (0 at the exact posterior), ``kl_to_posterior`` (nats per datapoint),
        ``trace_var`` with ``_low``/``_high`` (encoder group).
    """
    model = exact_posterior_model(seed=seed)
    gen = rng.generator(seed, "landing.data")
    x = model.decoder.net[0].bias.detach() + torch.randn(batch_size, model.x_dim, generator=gen)
    layer = model.encoder.net[0]
    exact = [layer.weight.detach().clone(), layer.bias.detach().clone()]
    away = [p + 0.3 * torch.randn(p.shape, generator=gen) for p in exact]
    with torch.no_grad():
        truth = model.posterior(x)
    rows = []
    for fraction in steps:
        with torch.no_grad():
            layer.weight.copy_(exact[0] + fraction * (away[0] - exact[0]))
            layer.bias.copy_(exact[1] + fraction * (away[1] - exact[1]))
            kl = float(torch.distributions.kl_divergence(model.posterior(x), truth).sum(-1).mean())
        for name in estimators:
            frame = measure_variance(
                model,
                make_estimator(name),
                x,
                1,
                replicates,
                seed=seed,
                options=VarianceOptions(timing_repeats=1),
            )
            enc = frame[frame["group"] == "encoder"].iloc[0]
            rows.append(
                {"estimator": name, "fraction": fraction, "kl_to_posterior": kl,
                 **{c: float(enc[c]) for c in ("trace_var", "trace_var_low", "trace_var_high")}}
            )  # fmt: skip
    return pd.DataFrame(rows)
