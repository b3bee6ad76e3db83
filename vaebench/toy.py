r"""The Gaussian toy of Rainforth et al. 2018, with every answer in closed form.

Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh 2018, "Tighter Variational Bounds are Not Necessarily
Better" (arXiv:1802.04537), Section 4; Tucker, Lawson, Gu & Maddison 2019 (arXiv:1810.04152), Figure 1, use
the same model. In D = 20 dimensions, with θ ∈ R^D and φ = (A, b), A ∈ R^{D x D}:

    p_θ(z)     = N(z; θ, I)             p(x | z) = N(x; z, I)
    q_φ(z | x) = N(z; A x + b, s² I)    s² fixed (not learned)

so that, exactly,

    p_θ(x)     = N(x; θ, 2 I)           p_θ(z | x) = N(z; (θ + x)/2, I/2)
    KL(q ‖ p_θ(z|x)) = (D/2) [log(1/(2 s²)) + 2 s² - 1] + ‖A x + b - (θ + x)/2‖²
    ELBO(x)    = log p_θ(x) - KL(q ‖ p_θ(z|x)).

The ELBO's optimum in φ puts q's mean on the posterior mean, A = I/2, b = θ/2, and the maximum-likelihood
θ is the data mean μ̂ = mean_n x_n; the paper measures its gradient estimators at that optimum with every
parameter perturbed by N(0, 0.01²) (:func:`toy_checkpoint`: the checkpoint is *built*, never trained).

**s² is the variance 2/3.** The paper writes q_φ(z|x) = N(z; Ax + b, 2/3 I) in the notation N(z; mean,
covariance) it uses for the model itself (N(z; μ, I), covariance I), so 2/3 is a variance. Public
reproductions differ: the OVIS code of Liévin et al. 2020 passes 2/3 to ``torch.distributions.Normal`` as its
*scale* (a standard deviation, variance 4/9). The two readings give different importance weights
w = p_θ(x, z)/q(z|x): with s² = 2/3 > 1/2, q is wider than the posterior and w is bounded (every moment
finite, generalized-Pareto shape k ≤ 0) and χ² = Var(w)/p(x)² = (2s²/√(4s² - 1))^D - 1 ≈ 0.91 at the
optimum (:func:`chi_square_at_optimum`); with s² = 4/9 < 1/2, w has a power tail of shape k = 1 - 2s² = 1/9
(moments of order below 9 finite) and χ² ≈ 0.17. Both are light-tailed, so the scaling laws hold in both;
``q_variance`` chooses, 2/3 by default.

The model satisfies the estimator contract: ``posterior(x)`` (a Normal [B, Z]), ``log_joint(x, z)`` ([K, B, Z]
-> [K, B]), ``prior()`` and ``log_likelihood(x, z)`` for the closed-form-KL estimator, ``parameter_groups()``
(``encoder``: A and b; ``decoder``: θ), ``x_dim``, ``z_dim``, and ``exact_posterior(x)`` for the exact
KL(q ‖ p(z|x)) of the variance rows. A and b are one ``nn.Linear`` and θ is declared through
:meth:`Generative.shared_outputs`, so the variance measure's fast tiled engine covers every parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from vaebench import rng
from vaebench.errors import VaebenchError

TOY_DIM = 20
"""D, the dimension of x and z (Rainforth et al. 2018)."""

TOY_POINTS = 1024
"""N, the data points of each split of the ``gaussian-toy`` data set (Rainforth et al. 2018)."""

Q_VARIANCE = 2.0 / 3.0
"""s², the fixed variance of q in every dimension (see the module docstring for why the variance)."""

PERTURBATION = 0.01
"""Standard deviation of the noise added to every parameter of the built checkpoint (Rainforth et al.)."""

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Generative(nn.Module):
    """p_θ: ``forward(z)`` returns (the likelihood's mean, z itself; the prior's mean θ, shared by every row)."""

    def __init__(self, dim: int):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z, self.mean

    def shared_outputs(self) -> list[tuple[int, nn.Parameter, Callable[[Tensor], Tensor]]]:
        """θ is output 1, the same for every row (the tiled variance engine's protocol; see
        :meth:`vaebench.model.Decoder.shared_outputs`)."""
        return [(1, self.mean, lambda mean: mean)]


class GaussianToy(nn.Module):
    """The Gaussian toy: p_θ(z) = N(θ, I), p(x|z) = N(z, I), q_φ(z|x) = N(Ax + b, s² I).

    Args:
        dim: D, the dimension of x and z.
        q_variance: s², q's fixed variance in every dimension.
    """

    def __init__(self, dim: int = TOY_DIM, q_variance: float = Q_VARIANCE):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise VaebenchError(f"dim must be a positive integer, got {dim!r}")
        if not (isinstance(q_variance, int | float) and math.isfinite(q_variance) and q_variance > 0):
            raise VaebenchError(f"q_variance must be a positive number, got {q_variance!r}")
        self.x_dim = self.z_dim = dim
        self.q_variance = float(q_variance)
        self.encoder = nn.Linear(dim, dim)  # weight A, bias b
        self.decoder = Generative(dim)  # θ
        with torch.no_grad():  # the optimum for θ = 0 until a checkpoint is built
            self.encoder.weight.copy_(torch.eye(dim) / 2)
            self.encoder.bias.zero_()

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``encoder``: A and b (φ); ``decoder``: θ."""
        return {"encoder": list(self.encoder.parameters()), "decoder": [self.decoder.mean]}

    def posterior(self, x: Tensor) -> Normal:
        """q_φ(z | x) = N(Ax + b, s² I) for x [B, D]: batch shape [B, D]."""
        self._check_x(x)
        loc = self.encoder(x)
        return Normal(loc, torch.full_like(loc, math.sqrt(self.q_variance)), validate_args=False)

    def prior(self) -> Normal:
        """p_θ(z) = N(θ, I), batch shape [D]."""
        theta = self.decoder.mean
        return Normal(theta, torch.ones_like(theta), validate_args=False)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) = log N(x; z, I) for x [B, D] and z [K, B, D] -> [K, B]."""
        self._check_x(x)
        return -0.5 * (x - z).square().sum(-1) - self.x_dim * _HALF_LOG_2PI

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p_θ(x, z) = log N(x; z, I) + log N(z; θ, I) for x [B, D] and z [K, B, D] -> [K, B]."""
        self._check_x(x)
        loc, theta = self.decoder(z)  # through the module, so the tiled engine sees θ per row
        return -0.5 * ((x - loc).square() + (z - theta).square()).sum(-1) - 2 * self.z_dim * _HALF_LOG_2PI

    def exact_log_marginal(self, x: Tensor) -> Tensor:
        """log p_θ(x) = log N(x; θ, 2I) for x [B, D] -> [B]."""
        self._check_x(x)
        d = self.x_dim
        return -0.25 * (x - self.decoder.mean).square().sum(-1) - 0.5 * d * math.log(4 * math.pi)

    def exact_posterior(self, x: Tensor) -> Normal:
        """p_θ(z | x) = N((θ + x)/2, I/2) for x [B, D]: batch shape [B, D]."""
        self._check_x(x)
        loc = (self.decoder.mean + x) / 2
        return Normal(loc, torch.full_like(loc, math.sqrt(0.5)), validate_args=False)

    def exact_kl(self, x: Tensor) -> Tensor:
        """KL(q_φ(z|x) ‖ p_θ(z|x)) in closed form for x [B, D] -> [B] (differentiable)."""
        s2, d = self.q_variance, self.z_dim
        gap = self.encoder(x) - (self.decoder.mean + x) / 2
        return 0.5 * d * (math.log(1 / (2 * s2)) + 2 * s2 - 1) + gap.square().sum(-1)

    def exact_elbo(self, x: Tensor) -> Tensor:
        """ELBO(x) = log p_θ(x) - KL(q ‖ p_θ(z|x)) in closed form for x [B, D] -> [B] (differentiable)."""
        return self.exact_log_marginal(x) - self.exact_kl(x)

    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[-1] != self.x_dim:
            raise VaebenchError(
                f"x must have shape [B, {self.x_dim}] (batch, dimension of the Gaussian toy), got "
                f"{list(getattr(x, 'shape', []))}"
            )


def toy_checkpoint(
    data, *, seed: int = 0, perturbation: float = PERTURBATION, q_variance: float = Q_VARIANCE
) -> GaussianToy:
    """The built checkpoint: the optimum A = I/2, b = μ̂/2, θ = μ̂ for the data, every parameter perturbed.

    Args:
        data: the ``gaussian-toy`` :class:`~vaebench.data.Dataset` or its training points [N, D]; μ̂ is their
            mean (the maximum-likelihood θ).
        seed: seeds the perturbation (stream ``init.toy_checkpoint`` of :mod:`vaebench.rng`).
        perturbation: standard deviation of the N(0, perturbation²) noise added to A, b and θ.
        q_variance: s² of the model.

    Returns:
        A :class:`GaussianToy` in float32 (``.double()`` it for exact comparisons).
    """
    train = getattr(data, "train", data)
    if not isinstance(train, Tensor) or train.dim() != 2 or train.shape[0] < 1:
        raise VaebenchError(
            f"toy_checkpoint needs data points [N, D], got {getattr(train, 'shape', train)!r}"
        )
    if not (isinstance(perturbation, int | float) and math.isfinite(perturbation) and perturbation >= 0):
        raise VaebenchError(f"perturbation must be a number >= 0, got {perturbation!r}")
    dim = train.shape[1]
    mu_hat = train.double().mean(0)
    model = GaussianToy(dim, q_variance)
    gen = rng.generator(seed, "init.toy_checkpoint")
    optimum = {
        model.encoder.weight: torch.eye(dim, dtype=torch.float64) / 2,
        model.encoder.bias: mu_hat / 2,
        model.decoder.mean: mu_hat,
    }
    with torch.no_grad():
        for param, value in optimum.items():
            noise = torch.randn(value.shape, generator=gen, dtype=torch.float64)
            param.copy_(value + perturbation * noise)
    return model


def gaussian_toy(
    x_dim: int, z_dim: int | None = None, *, seed: int = 0, q_variance: float = Q_VARIANCE
) -> GaussianToy:
    """The suite's factory of the toy (``model.name = "gaussian-toy"``): D = ``x_dim``; the toy's latent
    dimension is D, so ``z_dim`` (the configuration's, for the VAE) is not used. ``seed`` is not used either:
    the toy starts at A = I/2, b = 0, θ = 0, and its measured checkpoint is built (:func:`toy_checkpoint`)."""
    del z_dim, seed
    return GaussianToy(x_dim, q_variance)


def chi_square_at_optimum(dim: int = TOY_DIM, q_variance: float = Q_VARIANCE) -> float:
    """χ² = E_q[w²]/p(x)² - 1 = Var(w)/p(x)² when q's mean is the posterior's (its optimum): per dimension
    ∫ p(z|x)²/q(z) dz = s / (σ² √(2/σ² - 1/s²)) with σ² = 1/2; infinite when s² <= 1/4."""
    s2 = float(q_variance)
    if s2 <= 0.25:
        return math.inf
    per_dim = math.sqrt(s2) / (0.5 * math.sqrt(4 - 1 / s2))
    return per_dim**dim - 1
