r"""MIWAE, CIWAE and PIWAE: the IWAE variants of Rainforth et al. 2018, which trade the bound's tightness for the
encoder's signal.

Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh 2018 ("Tighter Variational Bounds are Not Necessarily
Better", arXiv:1802.04537) show that the pathwise IWAE_K gradient's signal-to-noise ratio falls as K^-1/2 for
the encoder while it rises as K^1/2 for the decoder (their Theorem 1: O(√(M/K)) and O(√(M K)) for the average
of M independent IWAE_K estimates), and propose three ways out. With log w = log p_θ(x, z) - log q_φ(z|x):

``miwae`` (groups M): M independent groups of K draws (M·K evaluations of log p), the mean of their IWAE_K
    estimates, (1/M) Σ_m log (1/K) Σ_k w_{m,k}. Its mean is IWAE_K: objective ``"iwae"``, unbiased for
    ∇IWAE_K, with M times the draws of ``iwae`` at the same K (the work-normalised variance counts them).
``ciwae`` (beta β): β ELBO + (1 - β) IWAE_K on the same K draws, β (1/K) Σ_k log w_k + (1 - β) log (1/K)
    Σ_k w_k; objective ``"ciwae"`` (β = 0: IWAE_K, β = 1: the ELBO).
``piwae`` (groups M): M·K draws; the decoder's gradient is that of IWAE_{M·K} over all of them, the
    encoder's that of MIWAE over the M groups of K (an IWAE_K target); objective ``"piwae"``, its surrogate's
    value the IWAE_{M·K} estimate (the decoder's objective). Built from one decoder pass over
    [z, stop_grad(z)]: the encoder takes MIWAE's weights (1/M) w̃^{(m)}_k through z and log q, the decoder
    those of IWAE_{M·K}.

All are pathwise and unbiased for their targets. Every bound here is an expectation over independent draws:
``sampler="iid"`` only.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import torch

from vaebench.errors import VaebenchError
from vaebench.estimators.base import Bound, Estimator, Target, check_real, log_density
from vaebench.estimators.importance_weighted import DEPENDENT_BOUND


def _check_groups(groups) -> int:
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise VaebenchError(
            f"groups must be a positive integer M (independent groups of K draws), got {groups!r}"
        )
    return groups


class Grouped(Estimator):
    """Base of the estimators that draw M groups of K: independent samples only, ``groups`` = M."""

    samplers = ("iid",)
    iid_only = DEPENDENT_BOUND

    def __init__(self, groups: int = 4, sampler: str = "iid"):
        super().__init__(sampler)
        self.groups = _check_groups(groups)

    def grouped_log_weights(self, model, x, num_samples, generator):
        """log w [M, K, B] of M·K reparameterized draws (gradient to θ and, through z and log q, to φ)."""
        q = model.posterior(x)
        z = self.sample(q, self.groups * num_samples, generator)
        log_w = model.log_joint(x, z) - log_density(q, z)
        return log_w.reshape(self.groups, num_samples, -1)


class MIWAE(Grouped):
    r"""MIWAE(M, K): the mean of M independent IWAE_K estimates (objective "iwae", M·K draws).

        ∇ ≈ (1/M) Σ_m Σ_k w̃^{(m)}_k ∇ log w_{m,k},   w̃^{(m)} = softmax over group m

    Unbiased for ∇IWAE_K; encoder SNR O(√(M/K)), decoder O(√(M K)) (Rainforth et al. 2018, Theorem 1).

    Options:
        groups: M (4 by default).
        sampler: ``"iid"`` only.
    """

    objective = "iwae"
    summary = "MIWAE: the mean of M independent IWAE_K estimates (objective: IWAE_K; M x K draws)"
    citation = "Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh 2018, arXiv:1802.04537"

    def estimate(self, model, x, num_samples, generator):
        log_w = self.grouped_log_weights(model, x, num_samples, generator)
        return self._output((torch.logsumexp(log_w, 1) - math.log(num_samples)).mean(0))


class CIWAE(Estimator):
    r"""CIWAE_β: β ELBO + (1 - β) IWAE_K on the same K draws, pathwise gradient (objective "ciwae").

        CIWAE_β ≈ β (1/K) Σ_k log w_k + (1 - β) log (1/K) Σ_k w_k,   ∇ ≈ Σ_k (β/K + (1 - β) w̃_k) ∇ log w_k

    Rainforth et al. 2018, arXiv:1802.04537.

    Options:
        beta: β in [0, 1] (0.5 by default).
        sampler: ``"iid"`` only.
    """

    objective = "ciwae"
    samplers = ("iid",)
    iid_only = DEPENDENT_BOUND
    summary = "CIWAE: beta ELBO + (1 - beta) IWAE_K on the same draws, pathwise gradient (objective: CIWAE)"
    same_gradient = MappingProxyType({1: "reparam"})  # IWAE_1 is the ELBO, whatever beta
    citation = "Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh 2018, arXiv:1802.04537"

    def __init__(self, beta: float = 0.5, sampler: str = "iid"):
        super().__init__(sampler)
        self.beta = check_real("beta", beta, 0.0, 1.0)

    def target(self, num_samples):
        bound = Bound.of("ciwae", num_samples, self.beta)
        return Target(bound, bound)

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        log_w = model.log_joint(x, z) - log_density(q, z)
        iwae = torch.logsumexp(log_w, 0) - math.log(num_samples)
        return self._output(self.beta * log_w.mean(0) + (1.0 - self.beta) * iwae)


class PIWAE(Grouped):
    r"""PIWAE(M, K): θ by IWAE_{M·K} over all draws, φ by MIWAE(M, K) on the same draws (objective "piwae").

        ∇_θ ≈ Σ_j w̃_j ∇_θ log p_θ(x, z_j)  (w̃ over all M·K),   ∇_φ ≈ (1/M) Σ_m Σ_k w̃^{(m)}_k ∇_φ log w_{m,k}

    Unbiased for ∇_θ IWAE_{M·K} and ∇_φ IWAE_K. Rainforth et al. 2018, arXiv:1802.04537.

    Options:
        groups: M (4 by default).
        sampler: ``"iid"`` only.
    """

    objective = "piwae"
    summary = "PIWAE: theta by IWAE_{M K} over all draws, phi by MIWAE(M, K) (M x K draws)"
    citation = "Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh 2018, arXiv:1802.04537"

    def target(self, num_samples):
        return Target(Bound.of("iwae", num_samples), Bound.of("iwae", self.groups * num_samples))

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, self.groups * num_samples, generator)
        log_joint = model.log_joint(x, torch.cat([z, z.detach()]))
        total = z.shape[0]
        path, fixed = log_joint[:total], log_joint[total:]
        log_w = path - log_density(q, z)  # [M·K, B]: φ through z and log q
        flat = log_w.detach()
        groups = flat.reshape(self.groups, num_samples, -1)
        encoder = (torch.softmax(groups, 1) / self.groups).reshape(total, -1)  # MIWAE's weights
        decoder = torch.softmax(flat, 0)  # IWAE_{M·K}'s weights
        # θ: encoder + (decoder - encoder) = decoder; φ: encoder, through z and log q.
        score = (encoder * log_w + (decoder - encoder) * fixed).sum(0)
        return self._output(torch.logsumexp(flat, 0) - math.log(total), score)
