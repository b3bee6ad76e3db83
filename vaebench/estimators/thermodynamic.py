r"""The thermodynamic variational objective (TVO; Masrani, Le & Wood 2019, arXiv:1907.00031).

With log w = f(z) = log p_θ(x, z) - log q_φ(z|x), the path of densities π_β(z) ∝ q_φ(z|x)^(1-β) p_θ(x, z)^β
joins q (β = 0) to the posterior (β = 1), and the thermodynamic identity reads

    log p(x) = ∫_0^1 E_{π_β}[log w] dβ.

E_{π_β}[log w] rises with β (its derivative is Var_{π_β}[log w] >= 0), so the left Riemann sum over a partition
0 = β_0 < β_1 < ... < β_S = 1 is a lower bound on log p(x),

    TVO_S = Σ_{s=0}^{S-1} (β_{s+1} - β_s) E_{π_{β_s}}[log w]    (objective "tvo"),

whose first term is (β_1 - β_0) ELBO: TVO_1 is the ELBO, and refining the partition raises the bound.

Estimate. Each expectation is self-normalised from the same K draws z_k ~ q: π̄_{s,k} = softmax_k(β_s log w_k),
Ê_s = Σ_k π̄_{s,k} log w_k. Gradient (the paper's covariance form, eq. 11): with π̃_β = q^(1-β) p^β,

    ∇ E_{π_β}[f] = E_{π_β}[∇ f] + Cov_{π_β}(f, ∇ log π̃_β),     ∇ log π̃_β = ∇ log q + β ∇ log w  (z fixed),

each term estimated with the weights π̄_s. No path through z: the encoder gradient comes through ∇ log q
(family "score-function"). Self-normalised estimates are biased at every finite K (consistent as K → ∞),
including K = 1, where the covariance vanishes and the ELBO's score term is lost; hence K >= 2 and the
declared bias. On the linear-Gaussian model π_β is Gaussian and the bound has a closed form
(:func:`vaebench.exact.exact_tvo`), against which the bias is measured.

The partition (``schedule``): ``"log"``, β_1 .. β_S log-spaced from ``beta1`` to 1 (the paper's choice), or
``"linear"``, β_s = s / S.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaebench.errors import VaebenchError
from vaebench.estimators.base import Bound, Estimator, Target, check_real, log_density

SCHEDULES = ("log", "linear")
"""TVO's partitions of [0, 1]: log-spaced from β_1, or evenly spaced."""


def partition(intervals: int, schedule: str = "log", beta1: float = 0.01) -> Tensor:
    """0 = β_0 < β_1 < ... < β_S = 1 [S + 1] in float64: log-spaced from ``beta1`` to 1, or linear."""
    if intervals == 1:
        return torch.tensor([0.0, 1.0], dtype=torch.float64)
    if schedule == "linear":
        return torch.linspace(0.0, 1.0, intervals + 1, dtype=torch.float64)
    inner = torch.logspace(math.log10(beta1), 0.0, intervals, dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), inner])


class TVO(Estimator):
    r"""The thermodynamic variational objective: left Riemann sum of ∫_0^1 E_{π_β}[log w] dβ, covariance gradient.

        TVO_S ≈ Σ_s Δβ_s Σ_k π̄_{s,k} log w_k,       π̄_s = softmax(β_s log w),   Δβ_s = β_{s+1} - β_s,
        ∇ ≈ Σ_s Δβ_s Σ_k π̄_{s,k} [∇ log w_k + (log w_k - Ê_s)(∇ log q(z_k) + β_s ∇ log w_k)]   (z fixed)

    A lower bound on log p(x) at least as tight as the ELBO (TVO_1 = ELBO); biased for its gradient at every K
    (self-normalised expectations; see the module docstring). Masrani, Le & Wood 2019, arXiv:1907.00031.

    Options:
        intervals: S, the number of intervals of the partition (S = 1: the ELBO).
        schedule: ``"log"`` (β_1 .. β_S log-spaced from ``beta1`` to 1) or ``"linear"``.
        beta1: β_1 of the log-spaced partition, in (0, 1).
        sampler: ``"iid"`` only.
    """

    objective = "tvo"
    family = "score-function"
    min_samples = 2
    min_samples_reason = "its self-normalised covariances need two draws; at K = 1 they vanish"
    samplers = ("iid",)
    iid_only = (
        "its self-normalised expectations and covariances treat the K draws as an independent sample from q"
    )
    bias = "biased for the TVO bound's gradient at every K (self-normalised expectations)"
    summary = "thermodynamic variational objective: Riemann sum over q^(1-b) p^b, covariance gradient"
    citation = "Masrani, Le & Wood 2019, arXiv:1907.00031"

    def __init__(self, intervals: int = 5, schedule: str = "log", beta1: float = 0.01, sampler: str = "iid"):
        super().__init__(sampler)
        if isinstance(intervals, bool) or not isinstance(intervals, int) or intervals < 1:
            raise VaebenchError(f"intervals (S) must be an integer >= 1, got {intervals!r}")
        if schedule not in SCHEDULES:
            raise VaebenchError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        self.beta1 = check_real("beta1", beta1, 0.0, 1.0)
        if not 0.0 < self.beta1 < 1.0:
            raise VaebenchError(f"beta1 must lie strictly between 0 and 1, got {beta1!r}")
        self.intervals, self.schedule = intervals, schedule
        self.betas = partition(intervals, schedule, self.beta1)

    def target(self, num_samples: int) -> Target:
        bound = Bound.of("tvo", self.intervals, self.beta1 if self.schedule == "log" else 0.0)
        return Target(bound, bound)

    @classmethod
    def for_bound(cls, bound: Bound) -> TVO:
        """The estimator of a ``"tvo"`` bound's gradient (its partition), for references and baselines."""
        if bound.parameter:
            return cls(bound.samples, "log", bound.parameter)
        return cls(bound.samples, "linear")

    def biased_at(self, num_samples: int) -> bool:
        return True  # at every K, S = 1 included (self-normalised covariances)

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator).detach()
        log_q = log_density(q, z)  # [K, B], gradient to φ
        log_w = model.log_joint(x, z) - log_q  # gradient to θ and φ at fixed z
        f = log_w.detach()
        betas = self.betas.to(f)
        weights = torch.softmax(betas[:-1, None, None] * f, 1)  # π̄ [S, K, B]
        means = (weights * f).sum(1, keepdim=True)  # Ê_s [S, 1, B]
        widths = (betas[1:] - betas[:-1])[:, None, None]  # Δβ_s
        bound = (widths * means).sum((0, 1))  # [B]
        centred = widths * weights * (f - means)  # Δβ_s π̄_{s,k} (f_k - Ê_s)
        on_log_w = (widths * weights + betas[:-1, None, None] * centred).sum(0)  # [K, B]
        score = (on_log_w * log_w + centred.sum(0) * log_q).sum(0)
        return self._output(bound, score)
