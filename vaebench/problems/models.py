r"""The global-latent models of the problems, and the conjugate one whose answers are exact.

All are :class:`~vaebench.problems.variational.GlobalLatents` (q = N(m, diag exp(2ω)), minibatch-scaled joint).

**Bayesian linear regression** (conjugate; the ground truth of the global-latent contract). A data row is
(f_b, y_b), features f_b ∈ R^P and a response; w ~ N(0, τ² I), y_b | w ~ N(f_bᵀ w, σ²) with τ, σ known. On a
minibatch of B rows scaled by c = N / B, with F [B, P] and y [B]:

    ELBO      = c Σ_b [ -½ log 2πσ² - ((y_b - f_bᵀ m)² + Σ_j f_bj² s_j²) / (2σ²) ] - KL(N(m, diag s²) ‖ N(0, τ² I))
    p(w | ·)  = N(Λ⁻¹ β, Λ⁻¹),  Λ = I / τ² + c FᵀF / σ²,  β = c Fᵀ y / σ²
    log Z     = -(c B / 2) log 2πσ² - c yᵀy / (2σ²) + ½ βᵀ Λ⁻¹ β - ½ log det Λ - (P / 2) log τ²

so autograd through :meth:`ConjugateLinearRegression.exact_elbo` gives the exact gradient every estimator is
checked against, and at c = 1 log Z is the marginal N(y; 0, σ² I + τ² F Fᵀ).

**Bayesian logistic regression** (Mohamed, Rosca, Figurnov & Mnih 2020, JMLR, section 8; Jaakkola & Jordan
2000): a row is (f_b, y_b ∈ {0, 1}), weights w = (w_0, w_1..P) ~ N(0, I), log p(y_b | w) = y_b ℓ_b - log(1 + e^ℓ_b)
with ℓ_b = w_0 + f_bᵀ w_1..P.

**Eight schools, non-centred** (Rubin 1981; Gelman et al., BDA3 section 5.5; the Stan parameterisation of
posteriordb's ``eight_schools_noncentered``): a row is (j, y_j, σ_j), z = (μ, log τ, θ̃_1..8),

    μ ~ N(0, 5²),   τ ~ HalfCauchy(0, 5),   θ̃_j ~ N(0, 1),   y_j ~ N(μ + τ θ̃_j, σ_j²),

with the Jacobian of τ = e^{log τ}. A funnel between τ and θ̃ that a mean-field q cannot follow.

**Neal's funnel** (Neal 2003, "Slice sampling", section 8): z = (v, x_1..9), v ~ N(0, 3²), x_i | v ~ N(0, e^v),
a normalised density (log Z = 0) with no data: its rows are empty [1, 0] and N = 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vaebench.problems.variational import GlobalLatents

_LOG_2PI = math.log(2 * math.pi)


class ConjugateLinearRegression(GlobalLatents):
    """Bayesian linear regression with known noise: w ~ N(0, τ² I), y | f, w ~ N(fᵀ w, σ²); rows (f, y).

    Args:
        n_features: P.
        n_data: N.
        noise_scale: σ.
        prior_scale: τ.
        init_scale: q's initial standard deviation.
    """

    def __init__(
        self, n_features: int, n_data: int, noise_scale: float = 1.0, prior_scale: float = 1.0, init_scale=1.0
    ):
        super().__init__(n_features, n_features + 1, n_data, init_scale)
        self.noise_scale, self.prior_scale = float(noise_scale), float(prior_scale)

    def prior(self) -> Normal:
        return Normal(self.loc.new_zeros(self.z_dim), self.loc.new_full((self.z_dim,), self.prior_scale))

    def point_log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        f, y = x[:, :-1], x[:, -1]
        mean = (z @ f.T).squeeze(-2)  # [K, B]
        return -0.5 * _LOG_2PI - math.log(self.noise_scale) - (y - mean).square() / (2 * self.noise_scale**2)

    def exact_elbo(self, x: Tensor) -> Tensor:
        """The minibatch-scaled ELBO in closed form [1], differentiable in m and ω."""
        self._check_x(x)
        f, y = x[:, :-1], x[:, -1]
        q = self.posterior(x)
        m, s2 = q.loc[0], q.scale[0].square()
        var = self.noise_scale**2
        expected = (
            -0.5 * _LOG_2PI
            - math.log(self.noise_scale)
            - ((y - f @ m).square() + f.square() @ s2) / (2 * var)
        )
        kl = kl_divergence(Normal(q.loc, q.scale), self.prior()).sum(-1)
        return expected.sum() * (self.n_data / x.shape[0]) - kl

    def _precision(self, x: Tensor) -> tuple[Tensor, Tensor, float]:
        f, y = x[:, :-1], x[:, -1]
        c = self.n_data / x.shape[0]
        eye = torch.eye(self.z_dim, dtype=x.dtype, device=x.device)
        precision = eye / self.prior_scale**2 + c * f.T @ f / self.noise_scale**2
        return precision, c * f.T @ y / self.noise_scale**2, c

    def exact_posterior(self, x: Tensor) -> MultivariateNormal:
        """p(w | minibatch-scaled joint) = N(Λ⁻¹ β, Λ⁻¹), batch shape [1]."""
        precision, beta, _ = self._precision(x)
        mean = torch.linalg.solve(precision, beta)
        return MultivariateNormal(
            mean.unsqueeze(0), precision_matrix=precision.unsqueeze(0), validate_args=False
        )

    def exact_log_marginal(self, x: Tensor) -> Tensor:
        """log Z of the minibatch-scaled joint [1] (log p(y | F) when x is the whole data set)."""
        precision, beta, c = self._precision(x)
        y = x[:, -1]
        var = self.noise_scale**2
        chol = torch.linalg.cholesky(precision)
        solved = torch.cholesky_solve(beta.unsqueeze(-1), chol).squeeze(-1)
        log_det = 2 * chol.diagonal().log().sum()
        out = (
            -0.5 * c * x.shape[0] * (_LOG_2PI + math.log(var))
            - c * y.square().sum() / (2 * var)
            + 0.5 * beta @ solved
            - 0.5 * log_det
            - self.z_dim * math.log(self.prior_scale)
        )
        return out.reshape(1)


class LogisticRegression(GlobalLatents):
    """Bayesian logistic regression: w ~ N(0, I) over a bias and P weights; rows (f, y), y in {0, 1}."""

    def __init__(self, n_features: int, n_data: int, init_scale: float = 1.0):
        super().__init__(n_features + 1, n_features + 1, n_data, init_scale)

    def prior(self) -> Normal:
        return Normal(self.loc.new_zeros(self.z_dim), self.loc.new_ones(self.z_dim))

    def logits(self, features: Tensor, z: Tensor) -> Tensor:
        """ℓ = w_0 + fᵀ w_1..P for features [B, P] and z [K, 1, P + 1] -> [K, B]."""
        return z[..., 0] + (z[..., 1:] @ features.T).squeeze(-2)

    def point_log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        logit = self.logits(x[:, :-1], z)
        return x[:, -1] * logit - F.softplus(logit)


EIGHT_SCHOOLS = (
    (28.0, 15.0),
    (8.0, 10.0),
    (-3.0, 16.0),
    (7.0, 11.0),
    (-1.0, 9.0),
    (1.0, 11.0),
    (18.0, 10.0),
    (12.0, 18.0),
)
"""(y_j, σ_j): the estimated coaching effects and their standard errors (Rubin 1981; BDA3 Table 5.2)."""


class EightSchools(GlobalLatents):
    """The non-centred eight-schools model: z = (μ, log τ, θ̃_1..8); rows (j, y_j, σ_j)."""

    MU_SCALE = 5.0  # μ ~ N(0, 5²)
    TAU_SCALE = 5.0  # τ ~ HalfCauchy(0, 5)

    def __init__(self, n_data: int = len(EIGHT_SCHOOLS), init_scale: float = 1.0):
        super().__init__(2 + n_data, 3, n_data, init_scale)

    def prior(self) -> Normal:
        """r(z): N(0, 5²) for μ, N(0, 1) for log τ (a reference: :meth:`prior_correction` makes it HalfCauchy
        in τ) and θ̃."""
        scale = self.loc.new_ones(self.z_dim)
        scale[0] = self.MU_SCALE
        return Normal(self.loc.new_zeros(self.z_dim), scale)

    def prior_correction(self, z: Tensor) -> Tensor:
        """log HalfCauchy(τ; 5) + log τ (the Jacobian) - log N(log τ; 0, 1), for z [K, 1, Z] -> [K, 1]."""
        log_tau = z[..., 1]
        half_cauchy = math.log(2 / (math.pi * self.TAU_SCALE)) - torch.log1p(
            (log_tau.exp() / self.TAU_SCALE).square()
        )
        return half_cauchy + log_tau + 0.5 * (_LOG_2PI + log_tau.square())

    def point_log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        school, y, sigma = x[:, 0].long(), x[:, 1], x[:, 2]
        effect = z[..., 0] + z[..., 1].exp() * z[..., 2:].squeeze(-2)[..., school]  # [K, B]
        return -0.5 * _LOG_2PI - sigma.log() - (y - effect).square() / (2 * sigma.square())


class Funnel(GlobalLatents):
    """Neal's funnel: v ~ N(0, 3²), x_i | v ~ N(0, e^v), i = 1..dim-1; no data, log Z = 0."""

    V_SCALE = 3.0

    def __init__(self, dim: int = 10, init_scale: float = 1.0):
        super().__init__(dim, 0, 1, init_scale)

    def prior(self) -> Normal:
        """r(z): N(0, 3²) for v, N(0, 1) for each x_i (:meth:`prior_correction` gives them variance e^v)."""
        scale = self.loc.new_ones(self.z_dim)
        scale[0] = self.V_SCALE
        return Normal(self.loc.new_zeros(self.z_dim), scale)

    def prior_correction(self, z: Tensor) -> Tensor:
        """Σ_i [log N(x_i; 0, e^v) - log N(x_i; 0, 1)] for z [K, 1, Z] -> [K, 1]."""
        v, rest = z[..., :1], z[..., 1:]
        return (-0.5 * v - 0.5 * rest.square() * ((-v).exp() - 1)).sum(-1)

    def point_log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        return z.new_zeros(z.shape[0], x.shape[0])

    def exact_log_marginal(self, x: Tensor) -> Tensor:
        """log Z = 0: the funnel is a normalised density [1]."""
        return self.loc.new_zeros(1)
