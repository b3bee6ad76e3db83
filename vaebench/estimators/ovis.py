r"""OVIS: score-function gradients of IWAE_K with near-optimal control variates (Liévin, Dittadi, Christensen &
Winther 2020, "Optimal Variance Control of the Score Function Gradient Estimator for Importance Weighted
Bounds", arXiv:2008.01998).

With z_k ~ q drawn without a path to φ, log w_k = log p_θ(x, z_k) - log q_φ(z_k|x), L̂ = log (1/K) Σ_j w_j,
w̃ = softmax(log w) and h_k = ∇_φ log q_φ(z_k|x), the encoder gradient of IWAE_K is E[Σ_k d_k h_k] with

    d_k = L̂ - w̃_k       (L̂'s score term, plus the derivative of log w_k = ... - log q(z_k) at fixed z_k).

Any c_k that does not depend on z_k keeps E[c_k h_k] = 0, so Σ_k (d_k - c_k) h_k is unbiased; the variance is
smallest for c_k* = E[d_k | z_{-k}] (the paper's eq. 12). The decoder takes IWAE's gradient Σ_k w̃_k ∇_θ log p.

- :class:`OVISMonteCarlo` estimates c_k* with S auxiliary particles z'_s ~ q, drawn with the K and independent
  of them: c_k = (1/S) Σ_s d_k(z_{-k}, z'_s), d_k with z_k replaced by z'_s. Unbiased at every K (at K = 1 it
  is a baseline from S independent draws); S more evaluations of log p per datapoint.
- :class:`OVISAsymptotic` uses the paper's closed form for large K (eq. 17),
  c_k = log Ẑ_{-k} - γ w̃_k + (1 - γ) log(1 - 1/K),  Ẑ_{-k} = (1/(K-1)) Σ_{j≠k} w_j:
  γ = 1 for an effective sample size >> 1, γ = 0 for ≈ 1. At γ = 0, c_k = log (1/K) Σ_{j≠k} w_j does not
  depend on z_k (unbiased; VIMCO's arithmetic baseline up to a constant); for γ > 0 the term γ w̃_k does, so
  E[c_k h_k] ≠ 0 and the estimator is biased for ∇ IWAE_K (the bias fades as the weights even out).

The claim to test: the encoder's signal-to-noise ratio grows like √K without reparameterization (the paper's
Gaussian toy), where VIMCO's stays flat.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaebench.errors import VaebenchError
from vaebench.estimators.base import check_real, log_density
from vaebench.estimators.importance_weighted import ImportanceWeighted, leave_one_out_bounds

OVIS_CITATION = "Liévin, Dittadi, Christensen & Winther 2020, arXiv:2008.01998"


class _OVIS(ImportanceWeighted):
    """The shared score-function IWAE_K gradient Σ_k (d_k - c_k) h_k + Σ_k w̃_k ∇_θ log p(x, z_k)."""

    family = "score-function"
    iid_only = (
        "its control variate for sample k is built from the other samples of the call, which antithetic and RQMC "
        "draws make dependent on z_k, and the IWAE_K bound is defined over independent samples"
    )

    particles = 0  # S, the auxiliary particles drawn with the K

    def own_numbers(self, num_samples: int) -> int:
        """The K x S x K log-weights with one entry replaced that OVIS_MC's control variate holds."""
        return num_samples * num_samples * self.particles

    def control(self, log_w: Tensor, aux: Tensor | None) -> Tensor:
        """c_k [K, B] from the detached log-weights [K, B] (and the auxiliary particles' [S, B])."""
        raise NotImplementedError

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        extra = self.particles
        z = self.sample(q, num_samples + extra, generator).detach()  # the K particles, then S auxiliary ones
        log_q = log_density(q, z[:num_samples])  # [K, B], gradient to φ
        log_p = model.log_joint(x, z)  # [K + S, B], gradient to θ
        log_w = (log_p[:num_samples] - log_q).detach()
        aux = (log_p[num_samples:] - log_density(q, z[num_samples:])).detach() if extra else None
        bound = torch.logsumexp(log_w, 0) - math.log(num_samples)
        weights = torch.softmax(log_w, 0)
        signal = bound - weights - self.control(log_w, aux)  # d_k - c_k
        return self._output(bound, (weights * log_p[:num_samples]).sum(0) + (signal * log_q).sum(0))


class OVISMonteCarlo(_OVIS):
    r"""OVIS_MC: the score-function IWAE_K gradient with the optimal control variate estimated from S particles.

        ∇_φ ≈ Σ_k (d_k - c_k) ∇_φ log q(z_k),   d_k = L̂ - w̃_k,   c_k = (1/S) Σ_s d_k(z_{-k}, z'_s),  z'_s ~ q,

    ∇_θ as IWAE's. Unbiased for ∇ IWAE_K at every K (c_k does not depend on z_k). Cost: K + S evaluations of
    log p per datapoint, and K² S numbers for the replaced bounds. Liévin, Dittadi, Christensen & Winther 2020,
    eq. 12.

    Options:
        auxiliary: S, the auxiliary particles (>= 1).
        sampler: ``"iid"`` only.
    """

    summary = "OVIS_MC: score-function IWAE gradient, optimal control variate from S auxiliary particles"
    citation = OVIS_CITATION

    def __init__(self, auxiliary: int = 5, sampler: str = "iid"):
        super().__init__(sampler)
        if isinstance(auxiliary, bool) or not isinstance(auxiliary, int) or auxiliary < 1:
            raise VaebenchError(
                f"auxiliary (S, the auxiliary particles) must be an integer >= 1, got {auxiliary!r}"
            )
        self.particles = auxiliary

    def control(self, log_w, aux):
        k = log_w.shape[0]
        diagonal = torch.eye(k, dtype=torch.bool, device=log_w.device)[:, None, :, None]  # [k, 1, j, 1]
        # Row (k, s): log w with entry k replaced by the auxiliary particle s: [K, S, K, B].
        rows = torch.where(diagonal, aux[None, :, None, :], log_w[None, None])
        norm = torch.logsumexp(rows, 2)  # [K, S, B]
        replaced = norm - math.log(k) - (aux[None] - norm).exp()  # L̂ - w̃_k with z_k <- z'_s
        return replaced.mean(1)


class OVISAsymptotic(_OVIS):
    r"""OVIS~: the score-function IWAE_K gradient with the asymptotic control variate of parameter γ (K >= 2).

        ∇_φ ≈ Σ_k (d_k - c_k) ∇_φ log q(z_k),   c_k = log Ẑ_{-k} - γ w̃_k + (1 - γ) log(1 - 1/K),

    Ẑ_{-k} = (1/(K-1)) Σ_{j≠k} w_j; ∇_θ as IWAE's. Unbiased at γ = 0; biased for γ > 0, where c_k depends on
    z_k through w̃_k. No evaluation of log p beyond the K. Liévin, Dittadi, Christensen & Winther 2020, eq. 17.

    Options:
        gamma: γ in [0, 1] (1: the large-ESS limit, the paper's OVIS~ γ = 1; 0: the ESS ≈ 1 limit).
        sampler: ``"iid"`` only.
    """

    min_samples = 2
    min_samples_reason = "its control variate averages the other K-1 weights"
    bias = "biased for the IWAE_K gradient when gamma > 0 (its control variate depends on z_k through w̃_k)"
    summary = "OVIS~: score-function IWAE gradient, asymptotic optimal control variate (gamma)"
    citation = OVIS_CITATION

    def __init__(self, gamma: float = 1.0, sampler: str = "iid"):
        super().__init__(sampler)
        self.gamma = check_real("gamma", gamma, 0.0, 1.0)

    def biased_at(self, num_samples: int) -> bool:
        return self.gamma > 0

    def control(self, log_w, aux):
        k = log_w.shape[0]
        others = leave_one_out_bounds(log_w, "arithmetic")  # log Ẑ_{-k}
        return others - self.gamma * torch.softmax(log_w, 0) + (1 - self.gamma) * math.log(1 - 1 / k)
