r"""Models with global latents: one z shared by the whole data set, and a free mean-field Gaussian q over it.

The estimator contract (:mod:`vaebench.estimators`) was written for local latents, one z_b per datapoint.
A model whose latent is shared by all N datapoints keeps the same two methods, with shapes

    posterior(x)     Normal, batch shape [1, Z]:  q(z) = N(m, diag exp(2ω)), m and ω free parameters [Z]
    log_joint(x, z)  z [K, 1, Z] -> [K, 1]:       (N / B) Σ_{b in x} log p(x_b | z) + log p(z)

for a minibatch x [B, D]. The factor N / B makes the minibatch joint an unbiased estimate of the full-data
joint log p(x_1..N, z) over a uniformly drawn minibatch (each datapoint is in it with probability B / N), and
an estimator's objective is then a function of the *whole* data set's ELBO,

    E_batch E_q [(N / B) Σ_b log p(x_b | z) + log p(z) - log q(z)] = ELBO(x_1..N),

so every estimator whose target is the ELBO stays unbiased for the full-data ELBO's gradient under
subsampling, the minibatch adding a second noise of its own (the "doubly stochastic" VI of Titsias &
Lázaro-Gredilla 2014). Bounds that are not linear in log p (IWAE_K, VR_α, CIWAE, the inclusive KL) are not:
log (1/K) Σ_k w_k of a minibatch-scaled joint does not average over minibatches to IWAE_K of the full data
(nor is it a bound on log p(x)), so those targets are the full data's only when the minibatch is the whole
data set (B = N); :func:`vaebench.problems.problem.Problem.unsupported` refuses them otherwise. An estimator
whose baseline is amortised over datapoints (NVIL's b(x)) has nothing to amortise and refuses to run
(``Estimator.local_only``).

:class:`GlobalLatents` is the base: q's parameters (group ``encoder``, the only one: there is no θ to learn
and no amortisation, q's parameters are free), the minibatch scaling, and the split of log p(x, z) into the Gaussian ``prior()``
that ``reparam-analytic-kl`` integrates in closed form and the rest (``log_likelihood``). A subclass gives its
per-datapoint log-likelihood and, when its prior is not Gaussian, the correction log p(z) - log r(z) to the
Gaussian reference r = ``prior()`` (any such split leaves log p(x, z) and every estimator's target unchanged).
The scale is σ = exp(ω), the usual parameterisation of black-box VI (Kucukelbir et al. 2017, ADVI).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from vaebench.errors import VaebenchError


class GlobalLatents(nn.Module):
    """Base of the global-latent models: q(z) = N(m, diag exp(2ω)) over Z latents shared by N datapoints.

    Args:
        z_dim: Z, the number of global latents.
        x_dim: D, the width of a data row (0 for a model without data, such as a target density).
        n_data: N, the training set's size (the minibatch log-likelihood is scaled by N / B).
        init_scale: q's initial standard deviation in every coordinate (its mean starts at 0).

    Subclasses implement :meth:`point_log_likelihood` and :meth:`prior`, and :meth:`prior_correction` when
    the prior is not the Gaussian ``prior()``.
    """

    global_latents = True
    """Read by the estimators (``Estimator.local_only``) and the problems: z is one draw for the whole data."""

    def __init__(self, z_dim: int, x_dim: int, n_data: int, init_scale: float = 1.0):
        super().__init__()
        for name, value, low in (("z_dim", z_dim, 1), ("x_dim", x_dim, 0), ("n_data", n_data, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise VaebenchError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(init_scale, int | float) and math.isfinite(init_scale) and init_scale > 0):
            raise VaebenchError(f"init_scale must be a positive number, got {init_scale!r}")
        self.z_dim, self.x_dim, self.n_data = z_dim, x_dim, n_data
        self.loc = nn.Parameter(torch.zeros(z_dim))
        self.log_scale = nn.Parameter(torch.full((z_dim,), math.log(init_scale)))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``encoder``: q's mean and log-scale (the variational parameters); no ``decoder`` group, as the model
        has no generative parameters θ (an empty group would be a variance of nothing)."""
        return {"encoder": [self.loc, self.log_scale]}

    def posterior(self, x: Tensor) -> Normal:
        """q(z) for any minibatch x [B, D]: batch shape [1, Z] (the same q whatever the batch)."""
        self._check_x(x)
        return Normal(self.loc.unsqueeze(0), self.log_scale.exp().unsqueeze(0), validate_args=False)

    def prior(self) -> Normal:
        """The Gaussian part r(z) of the prior, batch shape [Z]."""
        raise NotImplementedError

    def prior_correction(self, z: Tensor) -> Tensor:
        """log p(z) - log r(z) for z [K, 1, Z] -> [K, 1]; zero for a Gaussian prior."""
        return z.new_zeros(z.shape[:-1])

    def point_log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x_b | z) for x [B, D] and z [K, 1, Z] -> [K, B]."""
        raise NotImplementedError

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """(N / B) Σ_b log p(x_b | z) + log p(z) - log r(z) for x [B, D], z [K, 1, Z] -> [K, 1]."""
        self._check_x(x)
        self._check_z(z)
        scaled = self.point_log_likelihood(x, z).sum(-1, keepdim=True) * (self.n_data / x.shape[0])
        return scaled + self.prior_correction(z)

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """(N / B) Σ_b log p(x_b | z) + log p(z) for x [B, D], z [K, 1, Z] -> [K, 1]."""
        r = self.prior()
        return self.log_likelihood(x, z) + r.log_prob(z).sum(-1)

    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.x_dim or x.shape[0] < 1:
            raise VaebenchError(
                f"{type(self).__name__}: x must be a minibatch [B, {self.x_dim}] of its data set, got "
                f"{list(getattr(x, 'shape', []))}"
            )

    def _check_z(self, z: Tensor) -> None:
        if z.dim() != 3 or z.shape[1:] != (1, self.z_dim):
            raise VaebenchError(
                f"{type(self).__name__} has global latents: z must have shape [K, 1, {self.z_dim}], got "
                f"{list(z.shape)}"
            )
