r"""Estimators of the variational Rényi bound (objective "renyi", Li & Turner 2016).

With log w_k = log p_θ(x, z_k) - log q_φ(z_k|x) for K independent z_k = μ + σ ⊙ ε_k, the K-sample variational
Rényi (VR) bound of order α is

    VR_{α,K} = E[ (1 - α)^-1 log (1/K) Σ_k w_k^(1-α) ],

the objective whose gradient both estimators here estimate without bias (the K-sample bound, as IWAE_K is for
IWAE; Li & Turner's L_α is its K → ∞ limit). α = 0 gives IWAE_K, α → 1 the ELBO (the mean of log w), and at
K = 1 it is the ELBO for every α. α < 1 gives bounds between the ELBO and IWAE_K, α > 1 bounds below the ELBO.
With the weights ŵ = softmax((1 - α) log w):

    pathwise (``renyi``):     ∇ VR ≈ Σ_k ŵ_k ∇ log w_k                          (z_k = μ + σ ⊙ ε_k)

    doubly reparameterized (``renyi-dreg``):
        ∇_θ ≈ Σ_k ŵ_k ∇_θ log w_k,    ∇_φ ≈ Σ_k (α ŵ_k + (1 - α) ŵ_k²) ∂log w_k/∂z_k · ∂z_k/∂φ   (log q fixed)

The second is the generalized DReG (GDReG) of Bauer & Mnih 2021 for this bound. Derivation: the total
derivative of the VR estimate in φ is Σ_k ŵ_k (∂log w_k/∂z_k · ∂z_k/∂φ - ∇_φ log q_φ(z_k)|_z). For the score
term, E[g(z_k) ∇_φ log q_φ(z_k)] = E[∂g/∂z_k · ∂z_k/∂φ] for any g reparameterized through z_k (the identity
behind DReG, Tucker et al. 2018), here g = ŵ_k with ∂ŵ_k/∂log w_k = (1 - α)(ŵ_k - ŵ_k²), so the score term's mean is that of
-(1 - α) Σ_k (ŵ_k - ŵ_k²) ∂log w_k/∂z_k · ∂z_k/∂φ, and the encoder weight is ŵ - (1 - α)(ŵ - ŵ²) = α ŵ +
(1 - α) ŵ². At α = 0 it is DReG's w̃², at α = 1 the uniform 1/K of STL, at K = 1 STL. Unbiased for the same
gradient as ``renyi``; the test suite checks the two against each other and against a many-sample reference.

The bound is an expectation over independent samples (as IWAE_K is), so both take only ``sampler="iid"``.

Li & Turner 2016, "Rényi Divergence Variational Inference", arXiv:1602.02311; Bauer & Mnih 2021,
"Generalized Doubly Reparameterized Gradient Estimators", arXiv:2101.11046.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import torch
from torch import Tensor

from vaebench.estimators.base import Bound, Estimator, Target, check_real, log_density, stop_gradient
from vaebench.estimators.importance_weighted import DEPENDENT_BOUND


def renyi_bound(log_w: Tensor, alpha: float) -> Tensor:
    """(1 - α)^-1 log (1/K) Σ_k w_k^(1-α) from log-weights [K, B] -> [B]; the mean of log w at α = 1."""
    if alpha == 1.0:
        return log_w.mean(0)
    return (torch.logsumexp((1.0 - alpha) * log_w, 0) - math.log(log_w.shape[0])) / (1.0 - alpha)


class RenyiBound(Estimator):
    """Base of the VR-bound estimators: objective "renyi" at their α, independent samples only."""

    objective = "renyi"
    samplers = ("iid",)
    iid_only = DEPENDENT_BOUND.replace("IWAE_K", "variational Rényi")

    def __init__(self, alpha: float = 0.5, sampler: str = "iid"):
        super().__init__(sampler)
        self.alpha = check_real("alpha", alpha)

    def target(self, num_samples):
        bound = Bound.of("renyi", num_samples, self.alpha)
        return Target(bound, bound)


class Renyi(RenyiBound):
    r"""Pathwise gradient of the K-sample variational Rényi bound of order α (objective "renyi").

        VR_{α,K} ≈ (1 - α)^-1 log (1/K) Σ_k w_k^(1-α),   ∇ ≈ Σ_k ŵ_k ∇ log w_k,   ŵ = softmax((1 - α) log w)

    α = 0 is :class:`~vaebench.estimators.importance_weighted.IWAE`, α = 1 and K = 1 reparam.
    Li & Turner 2016, arXiv:1602.02311 (Pyro's ``RenyiELBO``, TFP's ``amari_alpha`` family, blackjax's
    ``RenyiAlpha``).

    Options:
        alpha: the order α (any real; 0.5 by default, Li & Turner's middle ground).
        sampler: ``"iid"`` only.
    """

    summary = "variational Rényi bound of order alpha, pathwise gradient (objective: VR_alpha,K)"
    same_gradient = MappingProxyType({1: "reparam"})  # VR_alpha,1 is the ELBO, whatever alpha
    citation = "Li & Turner 2016, arXiv:1602.02311"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        return self._output(renyi_bound(model.log_joint(x, z) - log_density(q, z), self.alpha))


class RenyiDReG(RenyiBound):
    r"""Doubly reparameterized (GDReG) gradient of the variational Rényi bound (objective "renyi").

        ∇_θ ≈ Σ_k ŵ_k ∇_θ log w_k,   ∇_φ ≈ Σ_k (α ŵ_k + (1 - α) ŵ_k²) ∂log w_k/∂z_k · ∂z_k/∂φ   (log q fixed)

    Unbiased for the gradient :class:`Renyi` estimates (derivation in the module docstring); α = 0 is DReG.
    One decoder pass over [z, stop_grad(z)], as :class:`~vaebench.estimators.importance_weighted.DReG`.
    Bauer & Mnih 2021, arXiv:2101.11046; Tucker, Lawson, Gu & Maddison 2018, arXiv:1810.04152.

    Options:
        alpha: the order α.
        sampler: ``"iid"`` only.
    """

    summary = "doubly reparameterized (GDReG) gradient of the variational Rényi bound (objective: VR_alpha,K)"
    same_gradient = MappingProxyType({1: "stl"})
    citation = "Bauer & Mnih 2021, arXiv:2101.11046; Li & Turner 2016"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        log_joint = model.log_joint(x, torch.cat([z, z.detach()]))
        path, fixed = log_joint[:num_samples], log_joint[num_samples:]
        log_w = path - log_density(stop_gradient(q), z)  # [K, B]: φ only through z
        hat = torch.softmax((1.0 - self.alpha) * log_w.detach(), 0)
        encoder = self.alpha * hat + (1.0 - self.alpha) * hat.pow(2)
        score = (encoder * log_w + (hat - encoder) * fixed).sum(0)  # θ weight: encoder + (ŵ - encoder) = ŵ
        return self._output(renyi_bound(log_w.detach(), self.alpha), score)
