r"""Estimators of the importance-weighted bound IWAE_K (objective "iwae", Burda et al. 2015).

With log w_k = f(z_k) = log p_θ(x, z_k) - log q_φ(z_k|x) for K independent z_k ~ q and the self-normalised
weights w̃ = softmax(log w):

    IWAE_K = E[log (1/K) Σ_k w_k],      ∇ IWAE_K = E[Σ_k w̃_k ∇ log w_k]   (pathwise, z_k = μ + σ ⊙ ε_k).

IWAE_1 is the ELBO; IWAE_K rises towards log p(x) as K grows. The bound is an expectation over *independent*
samples: with antithetic or RQMC draws, E[log (1/K) Σ_k w_k] is a different bound (still below log p(x), since
each w_k keeps mean p(x); Domke & Sheldon 2018), so its gradient would be biased for IWAE_K. These estimators
therefore take only ``sampler="iid"``.

U-statistics (``subsets=m`` for :class:`IWAE` and :class:`DReG`; Burroni, Takatsu, Domke & Sheldon 2023,
"U-Statistics for Importance-Weighted Variational Inference", arXiv:2302.13918). From K independent draws, the
IWAE_m bound can be estimated by the mean over K/m *disjoint* groups (MIWAE's average) or by the mean over
*all* m-subsets S of the K draws,

    U = C(K, m)^-1 Σ_{|S| = m} log (1/m) Σ_{k ∈ S} w_k,       E[U] = IWAE_m,

a U-statistic: the same draws, no extra model evaluation, and a variance no larger than the disjoint
average's (it is that average's mean over relabellings of the draws, so by Rao-Blackwell). Its gradient is
Σ_k a_k ∇ log w_k with a_k = C(K, m)^-1 Σ_{S ∋ k} w̃^S_k (w̃^S the weights normalised within S); DReG's
encoder weight becomes C(K, m)^-1 Σ_{S ∋ k} (w̃^S_k)². When C(K, m) exceeds `MAX_SUBSETS` the sum runs over an
*incomplete* U-statistic instead: the disjoint m-blocks of random permutations of the K draws (each
permutation drawn from the call's generator, independently of the draws, so every block is m independent
draws and every term is unbiased for IWAE_m), as many permutations as give about `MAX_SUBSETS` blocks.
"""

from __future__ import annotations

import functools
import itertools
import math
from types import MappingProxyType

import torch
from torch import Tensor

from vaebench.errors import VaebenchError
from vaebench.estimators.base import Bound, Estimator, Target, log_density, stop_gradient

DEPENDENT_BOUND = (
    "the IWAE_K bound is an expectation over independent samples; with dependent (antithetic or RQMC) draws "
    "E[log (1/K) Σ w_k] is a different bound (Domke & Sheldon 2018), so the gradient would be biased for IWAE_K"
)
"""Why the estimators of the IWAE bound take only independent samples."""

MAX_SUBSETS = 1024
"""Most m-subsets a U-statistic enumerates; beyond it, an incomplete U-statistic over random permutations."""


class ImportanceWeighted(Estimator):
    """Base of the IWAE_K estimators: objective "iwae", independent samples only."""

    objective = "iwae"
    samplers = ("iid",)
    iid_only = DEPENDENT_BOUND


class Subsetted(ImportanceWeighted):
    """An IWAE_K estimator that can average IWAE_m over the m-subsets of its K draws instead (``subsets=m``).

    With ``subsets`` set, the objective is IWAE_m, labelled ``"iwae-subsets"`` (see the module docstring).
    """

    def __init__(self, subsets: int | None = None, sampler: str = "iid"):
        super().__init__(sampler)
        if subsets is not None and (isinstance(subsets, bool) or not isinstance(subsets, int) or subsets < 1):
            raise VaebenchError(
                f"subsets must be None or a positive integer m (the subset size), got {subsets!r}"
            )
        self.subsets = subsets
        if subsets is not None:
            self.objective = "iwae-subsets"  # IWAE_m, not IWAE_K: a label of its own for the tables

    def target(self, num_samples):
        if self.subsets is None:
            return super().target(num_samples)
        bound = Bound.of("iwae", self.subsets)
        return Target(bound, bound)

    def weights(self, log_w: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
        """(bound [B], self-normalised weights [K, B], their squares [K, B]) of the detached log-weights.

        Plain IWAE_K (w̃, w̃²), or the U-statistic's per-draw averages over subsets (a_k, c_k).
        """
        if self.subsets is None:
            weights = torch.softmax(log_w, 0)
            return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0]), weights, weights.pow(2)
        return subset_weights(log_w, subset_index(log_w, self.subsets, generator))


class IWAE(Subsetted):
    r"""Pathwise gradient of the importance-weighted bound IWAE_K (objective "iwae", not the ELBO).

    log w_k = f(z_k),  IWAE_K ≈ log (1/K) Σ_k w_k,  ∇ ≈ Σ_k w̃_k ∇ log w_k  with w̃ = softmax(log w).
    Equals the ELBO at K = 1; tightens towards log p(x) as K grows. Burda, Grosse & Salakhutdinov 2015.

    Options:
        subsets: m, to estimate IWAE_m by the U-statistic over the m-subsets of the K draws (K >= m; see the
            module docstring); None (default): IWAE_K.
        sampler: ``"iid"`` only.
    """

    summary = "importance-weighted bound, pathwise gradient (objective: IWAE_K, not the ELBO)"
    same_gradient = MappingProxyType({1: "reparam"})  # IWAE_1 is the ELBO
    citation = "Burda, Grosse & Salakhutdinov 2015, arXiv:1509.00519"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        log_w = model.log_joint(x, z) - log_density(q, z)
        if self.subsets is None:
            return self._output(torch.logsumexp(log_w, 0) - math.log(num_samples))
        bound, weights, _ = self.weights(log_w.detach(), generator)
        return self._output(bound, (weights * log_w).sum(0))  # gradient Σ_k a_k ∇ log w_k, that of U


class DReG(Subsetted):
    r"""Doubly-reparameterized gradient of the IWAE bound (objective "iwae").

        ∇_θ ≈ Σ_k w̃_k ∇_θ log w_k,     ∇_φ ≈ Σ_k w̃_k² ∂log w_k/∂z_k · ∂z_k/∂φ   (log q's parameters fixed)

    Unbiased for the same gradient as :class:`IWAE`, with encoder variance that does not grow with K.
    Built from one decoder pass over [z, stop_grad(z)]: the θ weights w̃² + (w̃ - w̃²) = w̃, the φ weight w̃².
    Tucker, Lawson, Gu & Maddison 2018, arXiv:1810.04152.

    Options:
        subsets: m, for the U-statistic of IWAE_m over the m-subsets of the K draws, DReG within each subset
            (θ weight a_k, φ weight c_k of the module docstring); None (default): IWAE_K.
        sampler: ``"iid"`` only.
    """

    summary = "doubly-reparameterized IWAE gradient (objective: IWAE_K)"
    same_gradient = MappingProxyType({1: "stl"})  # w̃ = 1: the path term alone
    citation = "Tucker, Lawson, Gu & Maddison 2018, arXiv:1810.04152"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        log_joint = model.log_joint(x, torch.cat([z, z.detach()]))
        path, fixed = log_joint[:num_samples], log_joint[num_samples:]
        log_w = path - log_density(stop_gradient(q), z)  # [K, B]: φ only through z
        bound, weights, squared = self.weights(log_w.detach(), generator)
        score = (squared * log_w + (weights - squared) * fixed).sum(0)
        return self._output(bound, score)


class IWAESTL(ImportanceWeighted):
    r"""IWAE with the score term of log q dropped ("IWAE-STL"): biased for the IWAE_K gradient when K > 1.

        ∇_φ ≈ Σ_k w̃_k ∂/∂z [log p(x, z) - log q_{φ'}(z|x)]|_{φ'=φ fixed, z=z_k} · ∂z_k/∂φ,   ∇_θ as in IWAE

    Roeder et al. 2017's sticking-the-landing idea applied to the IWAE bound, the estimator the DReG paper
    compares with. At K = 1 it is :class:`~vaebench.estimators.pathwise.StickingTheLanding` and unbiased.
    For K > 1 the dropped term -Σ_k w̃_k ∇_φ log q_φ(z_k)|_z no longer has mean zero (the weights depend on
    z_k); by the identity behind DReG its mean is that of -Σ_k (w̃_k - w̃_k²) ∂log w_k/∂z_k · ∂z_k/∂φ, so

        bias = E[Σ_k (w̃_k - w̃_k²) ∂log w_k/∂z_k · ∂z_k/∂φ],

    zero at K = 1 (w̃ = 1) and when q is the exact posterior (∂log w/∂z = 0), nonzero otherwise. The
    encoder gradient is biased, the decoder's is IWAE's. Reports mark its rows.

    Roeder, Wu & Duvenaud 2017, arXiv:1703.09194; Tucker, Lawson, Gu & Maddison 2018, arXiv:1810.04152.
    """

    bias = "biased for the IWAE_K gradient when K > 1"
    summary = "IWAE with the score term of log q dropped (objective: IWAE_K)"
    same_gradient = MappingProxyType({1: "stl"})
    citation = "Roeder, Wu & Duvenaud 2017; Tucker, Lawson, Gu & Maddison 2018, arXiv:1810.04152"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        log_w = model.log_joint(x, z) - log_density(stop_gradient(q), z)  # φ only through z
        return self._output(torch.logsumexp(log_w, 0) - math.log(num_samples))


class VIMCO(ImportanceWeighted):
    r"""VIMCO: the score-function gradient of IWAE_K with a leave-one-out baseline per sample (K >= 2).

    With z_k ~ q drawn without a path to φ, log w_k = log p_θ(x, z_k) - log q_φ(z_k|x),
    L̂ = log (1/K) Σ_j w_j and w̃ = softmax(log w):

        ∇ IWAE_K ≈ Σ_k (L̂ - L̂_{-k}) ∇_φ log q_φ(z_k|x) + Σ_k w̃_k ∇ log w_k      (z fixed in the last term)

    where L̂_{-k} is L̂ with w_k replaced by a mean of the others: their geometric mean
    exp((1/(K-1)) Σ_{j≠k} log w_j) (``baseline="geometric"``, the paper's), or their arithmetic mean
    (1/(K-1)) Σ_{j≠k} w_j (``baseline="arithmetic"``, which makes L̂_{-k} = log (1/(K-1)) Σ_{j≠k} w_j, the
    IWAE_{K-1} estimate of the others; Liévin et al. 2020 compare both). Either L̂_{-k} does not depend on
    z_k, so E[L̂_{-k} ∇_φ log q(z_k)] = 0 and
    the estimator is unbiased for ∇ IWAE_K: the first term is the score-function part of ∇ E[L̂] with the
    baseline subtracted per sample, the second the derivative of L̂ at fixed z (in θ, Σ_k w̃_k ∇_θ log p;
    in φ, -Σ_k w̃_k ∇_φ log q(z_k)). The baseline needs the other samples independent of z_k: independent
    samples only.

    Mnih & Rezende 2016, "Variational Inference for Monte Carlo Objectives", arXiv:1602.06725.

    Options:
        baseline: ``"geometric"`` (default) or ``"arithmetic"``, the mean that stands in for w_k.
        sampler: ``"iid"`` only.
    """

    family = "score-function"
    min_samples = 2
    iid_only = (
        "its baseline for sample k is built from the other samples of the call, which antithetic and RQMC draws "
        "make dependent on z_k, and the IWAE_K bound is defined over independent samples, so the gradient "
        "would be biased"
    )
    summary = "score-function IWAE gradient, leave-one-out baseline per sample (geometric or arithmetic mean)"
    citation = "Mnih & Rezende 2016, arXiv:1602.06725"

    def __init__(self, baseline: str = "geometric", sampler: str = "iid"):
        super().__init__(sampler)
        if baseline not in LEAVE_ONE_OUT_MEANS:
            raise VaebenchError(
                f"baseline must be one of {', '.join(LEAVE_ONE_OUT_MEANS)} (the mean of the other samples' "
                f"weights that stands in for w_k), got {baseline!r}"
            )
        self.baseline = baseline

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator).detach()
        log_q = log_density(q, z)  # [K, B], gradient to φ
        log_w = model.log_joint(x, z) - log_q  # gradient to θ and φ at fixed z
        fixed = log_w.detach()
        bound = torch.logsumexp(fixed, 0) - math.log(num_samples)
        signal = bound - leave_one_out_bounds(fixed, self.baseline)  # L̂ - L̂_{-k}, [K, B]
        weights = torch.softmax(fixed, 0)
        return self._output(bound, (weights * log_w).sum(0) + (signal * log_q).sum(0))


LEAVE_ONE_OUT_MEANS = ("geometric", "arithmetic")
"""The means of the other samples' weights that VIMCO's baseline puts in place of w_k."""


def leave_one_out_bounds(log_w: Tensor, mean: str = "geometric") -> Tensor:
    """L̂_{-k} = log (1/K) [Σ_{j≠k} w_j + ŵ_{-k}] for each k: [K, B] -> [K, B].

    ŵ_{-k} = exp(mean_{j≠k} log w_j) for ``mean="geometric"``; for ``"arithmetic"``, ŵ_{-k} =
    (1/(K-1)) Σ_{j≠k} w_j and L̂_{-k} = log (1/(K-1)) Σ_{j≠k} w_j. Built as a [K, K, B] array whose row k is
    log w with entry k replaced (geometric) or left out (arithmetic): K² B numbers, no difference of large
    exponentials.
    """
    k = log_w.shape[0]
    diagonal = torch.eye(k, dtype=torch.bool, device=log_w.device).unsqueeze(-1)
    if mean == "arithmetic":
        rows = log_w.unsqueeze(0).masked_fill(diagonal, -math.inf)  # [k, j, B], entry k left out
        return torch.logsumexp(rows, 1) - math.log(k - 1)
    others = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)  # [K, B]
    rows = torch.where(diagonal, others.unsqueeze(1), log_w.unsqueeze(0))  # [k, j, B]
    return torch.logsumexp(rows, 1) - math.log(k)


def subset_index(log_w: Tensor, size: int, generator: torch.Generator | None) -> Tensor:
    """The m-subsets of the K draws a U-statistic averages over: [S, m] (all of them) or [B, S, m] (random).

    All C(K, m) subsets when there are at most `MAX_SUBSETS`; else the disjoint m-blocks of random
    permutations of the K draws, one set of permutations per datapoint, drawn from ``generator``.
    """
    k, rows = log_w.shape
    if size > k:
        raise VaebenchError(
            f"subsets={size} averages IWAE_{size} over subsets of {size} of the K draws and needs K >= {size}, "
            f"got K={k}; use a larger K or a smaller subsets"
        )
    if math.comb(k, size) <= MAX_SUBSETS:
        return _all_subsets(k, size).to(log_w.device)
    blocks = k // size
    perms = math.ceil(MAX_SUBSETS / blocks)
    order = torch.rand((rows, perms, k), generator=generator, device=log_w.device).argsort(-1)
    return order[..., : blocks * size].reshape(rows, perms * blocks, size)


@functools.lru_cache(maxsize=64)
def _all_subsets(k: int, size: int) -> Tensor:
    return torch.tensor(list(itertools.combinations(range(k), size)), dtype=torch.long).reshape(-1, size)


def subset_weights(log_w: Tensor, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The U-statistic over the subsets ``index`` ([S, m] or [B, S, m]) of detached log-weights [K, B].

    Returns:
        The mean over subsets of log (1/m) Σ_{k ∈ S} w_k [B]; a_k = mean over subsets of 1[k ∈ S] w̃^S_k and
        c_k, the same with (w̃^S_k)² [K, B].
    """
    k, rows = log_w.shape
    index = index.expand(rows, *index.shape[-2:])  # [B, S, m]
    flat = index.reshape(rows, -1)
    picked = log_w.T.gather(1, flat).reshape(index.shape)  # [B, S, m]
    count, size = index.shape[1:]
    bound = (torch.logsumexp(picked, -1) - math.log(size)).mean(-1)
    weights = torch.softmax(picked, -1)
    a = log_w.new_zeros(rows, k).scatter_add_(1, flat, weights.reshape(rows, -1)) / count
    c = log_w.new_zeros(rows, k).scatter_add_(1, flat, weights.pow(2).reshape(rows, -1)) / count
    return bound, a.T, c.T
