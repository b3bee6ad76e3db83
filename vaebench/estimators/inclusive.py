r"""Estimators whose encoder targets an inclusive (mass-covering) divergence: reweighted wake-sleep, tail-adaptive.

With log w_k = log p_θ(x, z_k) - log q_φ(z_k|x) for K independent z_k ~ q and w̃ = softmax(log w), the
self-normalised importance weights approximate expectations under the posterior p(z|x): Σ_k w̃_k g(z_k) is a
consistent, biased estimate of E_{p(z|x)}[g] (Owen 2013, "Monte Carlo theory, methods and examples", Section
9.2). Its bias is O(1/K) only asymptotically: the leading term of an expansion in 1/K whose coefficient grows
with the variance of the weights (χ²(p || q)), so until K is large against that variance the bias stays of the
order of the gradient itself and falls far more slowly than 1/K (at K = 1 it is the whole gradient, see below).

Reweighted wake-sleep (Bornschein & Bengio 2015) fits the decoder to IWAE_K, as IWAE does, and the encoder to
the *inclusive* KL, -∇_φ KL(p(z|x) || q_φ(z|x)) = E_{p(z|x)}[∇_φ log q_φ(z|x)], in its wake phase:

    ``rws``:       ∇_θ ≈ Σ_k w̃_k ∇_θ log p_θ(x, z_k),    ∇_φ ≈ Σ_k w̃_k ∇_φ log q_φ(z_k|x)      (z fixed)
    ``rws-dreg``:  ∇_θ as rws,                          ∇_φ ≈ Σ_k (w̃_k - w̃_k²) ∂log w_k/∂z_k · ∂z_k/∂φ

The second is Tucker, Lawson, Gu & Maddison 2018's doubly reparameterized form of the first (E[w̃_k ∇_φ log
q(z_k)] = E[∂w̃_k/∂z_k · ∂z_k/∂φ] with ∂w̃_k/∂log w_k = w̃_k - w̃_k²): the same mean, so the same bias. Their
objective label is ``"inclusive-kl"``: θ's target is IWAE_K (unbiased), φ's is -KL(p(z|x) || q), for which both
are biased at every finite K: at K = 1, w̃ = 1 and the mean of the wake-phase gradient is E_q[∇ log q] = 0.
Their surrogate's value is the IWAE_K estimate (θ's objective; the inclusive KL has no estimate without log p(x)).

The tail-adaptive f-divergence (Wang, Liu & Liu 2018) replaces the weights by ranks: with the tail estimate
F̂_k = (1/K) #{j : w_j >= w_k} (1/K for the largest weight, 1 for the smallest) and γ_k = F̂_k^β,

    ``tail-adaptive``:  ∇_φ ≈ Σ_k γ̃_k ∇_φ log w_k (pathwise, z_k = μ + σ ⊙ ε_k),   γ̃ = γ / Σ_j γ_j,

the gradient of an f-divergence D_f(p || q) whose f is re-chosen at each step from the tail of the weights
(mass-covering like the inclusive KL, but with bounded weights, whatever the tail of w). β = -1 is the paper's
choice; β = 0 gives uniform weights, i.e. reparam. It is not the gradient of a fixed objective: its objective
label is ``"tail-adaptive"``, it is compared with the ELBO gradient (the one it replaces, and its value at
β = 0 or K = 1), and is biased for it at K > 1 when β ≠ 0. Its decoder takes the ELBO's pathwise gradient
(1/K) Σ_k ∇_θ log p_θ(x, z_k) (the paper adapts the divergence of the approximate posterior only; Pyro's
``TraceTailAdaptive_ELBO`` applies the rank weights to every parameter), and its surrogate's value is the ELBO
estimate (Pyro returns no value at all).

This follows the paper, not Pyro: Pyro's ``TraceTailAdaptive_ELBO`` is a different estimator. It gives the
largest rank weight to the *smallest* w (the reverse of F̂ above), its ranks come out scrambled for K >= 3
(pyro-ppl/pyro#3170), and its gradient is 1/K the size of this one. Its numbers are not comparable with these.

All three self-normalise or rank over the K draws of one call, which dependent draws would bias:
``sampler="iid"`` only.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import torch

from vaebench.estimators.base import Bound, Estimator, Target, check_real, log_density, stop_gradient

SELF_NORMALISED = (
    "its weights are normalised (or ranked) over the K draws of the call, which antithetic and RQMC draws make "
    "dependent, and its decoder's IWAE_K bound is defined over independent samples, so the gradient would change"
)
"""Why the self-normalised estimators take only independent samples."""


class WakeSleep(Estimator):
    """Base of the reweighted wake-sleep estimators: θ by IWAE_K, φ by the inclusive KL's wake phase."""

    objective = "inclusive-kl"
    samplers = ("iid",)
    iid_only = SELF_NORMALISED
    bias = (
        "biased for the inclusive-KL gradient of its encoder at every K (self-normalised weights; "
        "its mean is 0 at K = 1); its decoder gradient, IWAE_K's, is unbiased"
    )

    def target(self, num_samples):
        return Target(Bound.of("inclusive-kl"), Bound.of("iwae", num_samples))

    def biased_at(self, num_samples):
        return True


class ReweightedWakeSleep(WakeSleep):
    r"""Reweighted wake-sleep (wake phase): θ by IWAE_K, φ by Σ_k w̃_k ∇_φ log q_φ(z_k|x) at fixed z.

    The encoder gradient estimates -∇_φ KL(p(z|x) || q) by self-normalised importance sampling: consistent as
    K → ∞, biased at every finite K. No sleep phase (the variant of Le, Kosiorek, Siddharth, Teh & Wood 2019).
    Bornschein & Bengio 2015, "Reweighted Wake-Sleep", arXiv:1406.2751 (Pyro's ``ReweightedWakeSleep``).
    """

    family = "score-function"
    summary = "reweighted wake-sleep: theta by IWAE_K, phi by the self-normalised wake phase (inclusive KL)"
    citation = "Bornschein & Bengio 2015, arXiv:1406.2751"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator).detach()
        log_q = log_density(q, z)  # [K, B], gradient to φ
        log_p = model.log_joint(x, z)  # [K, B], gradient to θ
        log_w = (log_p - log_q).detach()
        weights = torch.softmax(log_w, 0)
        bound = torch.logsumexp(log_w, 0) - math.log(num_samples)
        return self._output(bound, (weights * (log_p + log_q)).sum(0))


class WakeSleepDReG(WakeSleep):
    r"""Doubly reparameterized wake phase: φ by Σ_k (w̃_k - w̃_k²) ∂log w_k/∂z_k · ∂z_k/∂φ, θ by IWAE_K.

    The same mean as :class:`ReweightedWakeSleep`'s encoder gradient (so the same bias for the inclusive KL),
    with lower variance. At K = 1 it would be exactly 0 (w̃ = 1): K >= 2. One decoder pass over [z, stop_grad(z)]: θ's weights
    (w̃ - w̃²) + w̃² = w̃. Tucker, Lawson, Gu & Maddison 2018 (DReG; its RWS form), arXiv:1810.04152.
    """

    min_samples = 2
    min_samples_reason = "at K = 1 its encoder weight w̃ - w̃² is 0: the encoder would get no gradient at all"
    summary = "reweighted wake-sleep with the doubly reparameterized wake phase (inclusive KL)"
    citation = "Tucker, Lawson, Gu & Maddison 2018, arXiv:1810.04152; Bornschein & Bengio 2015"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        log_joint = model.log_joint(x, torch.cat([z, z.detach()]))
        path, fixed = log_joint[:num_samples], log_joint[num_samples:]
        log_w = path - log_density(stop_gradient(q), z)  # φ only through z
        weights = torch.softmax(log_w.detach(), 0)
        encoder = weights - weights.pow(2)
        score = (encoder * log_w + weights.pow(2) * fixed).sum(0)
        bound = torch.logsumexp(log_w.detach(), 0) - math.log(num_samples)
        return self._output(bound, score)


class TailAdaptive(Estimator):
    r"""Tail-adaptive f-divergence: φ by Σ_k γ̃_k ∇_φ log w_k with rank weights γ_k = F̂_k^β; θ by the ELBO.

    F̂_k = (1/K) #{j : w_j >= w_k}, γ̃ = γ / Σ γ (see the module docstring). Not the gradient of a fixed
    objective: compared with the ELBO gradient, biased for it at K > 1 unless β = 0 (then it is reparam).
    Wang, Liu & Liu 2018, "Variational Inference with Tail-adaptive f-Divergence", NeurIPS
    (arXiv:1810.11943). Not Pyro's ``TraceTailAdaptive_ELBO``, which differs (see the module docstring).

    Options:
        beta: the exponent β of the tail estimate (-1, the paper's, by default; 0: uniform weights).
        sampler: ``"iid"`` only.
    """

    objective = "tail-adaptive"
    samplers = ("iid",)
    iid_only = SELF_NORMALISED
    bias = "not the ELBO gradient in the encoder when K > 1 and beta != 0 (rank-adaptive f-divergence)"
    summary = "tail-adaptive f-divergence: rank weights F^beta on the encoder's pathwise gradient; theta by the ELBO"
    same_gradient = MappingProxyType({1: "reparam"})  # one draw: its rank weight is 1
    citation = "Wang, Liu & Liu 2018, arXiv:1810.11943"

    def __init__(self, beta: float = -1.0, sampler: str = "iid"):
        super().__init__(sampler)
        self.beta = check_real("beta", beta)

    def biased_at(self, num_samples):
        return num_samples > 1 and self.beta != 0.0

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        log_joint = model.log_joint(x, torch.cat([z, z.detach()]))
        path, fixed = log_joint[:num_samples], log_joint[num_samples:]
        log_w = path - log_density(q, z)  # [K, B]: φ through z and log q (the full pathwise gradient)
        fixed_w = log_w.detach()
        tail = (fixed_w.unsqueeze(0) >= fixed_w.unsqueeze(1)).sum(1).to(log_w.dtype) / num_samples  # F̂_k
        gamma = tail.pow(self.beta)
        gamma = gamma / gamma.sum(0)
        # θ: γ̃ + (1/K - γ̃) = 1/K, the ELBO's pathwise weight; φ: γ̃.
        score = (gamma * log_w + (1.0 / num_samples - gamma) * fixed).sum(0)
        return self._output(fixed_w.mean(0), score)
