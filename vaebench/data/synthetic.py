"""The synthetic set: a linear-Gaussian model with an exact marginal likelihood (probabilistic PCA).

    z ~ N(0, I_Z),   x | z ~ N(W z + b, diag(s^2)),   so   p(x) = N(x; b, W W^T + diag(s^2))

(Tipping & Bishop 1999), which lets the suite report each bound's gap to the true log p(x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LinearGaussianTruth:
    """The parameters of the synthetic model x = W z + b + s * eps, z ~ N(0, I), eps ~ N(0, I).

    Attributes:
        weight: W, [D, Z] float64.
        bias: b, [D] float64.
        noise_std: s, [D] float64.
    """

    weight: Tensor
    bias: Tensor
    noise_std: Tensor

    def marginal(self) -> torch.distributions.MultivariateNormal:
        """The exact marginal p(x) = N(b, W W^T + diag(s^2)) in float64, parameterized by its Cholesky factor."""
        cov = self.weight @ self.weight.T + torch.diag(self.noise_std**2)
        return torch.distributions.MultivariateNormal(self.bias, scale_tril=torch.linalg.cholesky(cov))

    def exact_log_marginal(self, x: Tensor) -> Tensor:
        """Exact log p(x) under the model.

        Args:
            x: [N, D] points (any float dtype; computed in float64).

        Returns:
            [N] float64 log densities.
        """
        return self.marginal().log_prob(x.to(torch.float64))


def draw_synthetic(
    n_train: int,
    n_test: int,
    x_dim: int,
    z_dim: int,
    noise_std: float,
    truth_gen: torch.Generator,
    sample_gen: torch.Generator,
) -> tuple[Tensor, Tensor, LinearGaussianTruth]:
    """Draw the model (W_ij ~ N(0, 1/Z), b_i ~ N(0, 1)) from ``truth_gen``, then its samples from ``sample_gen``.

    Returns:
        train [n_train, D] and test [n_test, D] float32, and the generating parameters.
    """
    g = truth_gen
    truth = LinearGaussianTruth(
        weight=torch.randn(x_dim, z_dim, generator=g, dtype=torch.float64) / math.sqrt(z_dim),
        bias=torch.randn(x_dim, generator=g, dtype=torch.float64),
        noise_std=torch.full((x_dim,), float(noise_std), dtype=torch.float64),
    )
    g = sample_gen
    n = n_train + n_test
    z = torch.randn(n, z_dim, generator=g, dtype=torch.float64)
    eps = torch.randn(n, x_dim, generator=g, dtype=torch.float64)
    x = (z @ truth.weight.T + truth.bias + truth.noise_std * eps).to(torch.float32)
    return x[:n_train].clone(), x[n_train:].clone(), truth  # clone so each split owns its storage
