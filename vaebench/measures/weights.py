r"""How heavy the importance weights' tail is: the PSIS Pareto k̂, the effective sample size and χ².

For a datapoint x and S draws z_s ~ q(z|x), the importance weights are w_s = p(x, z_s) / q(z_s|x), with
E_q[w] = p(x). Everything the IWAE-type estimators promise as K grows rests on their moments.

**k̂** (Vehtari, Simpson, Gelman, Yao & Gabry 2024, "Pareto Smoothed Importance Sampling", JMLR 25(72),
arXiv:1507.02646): a generalized Pareto distribution (GPD) is fitted to the M = ⌈min(S/5, 3√S)⌉ largest
weights, as exceedances over the next largest, by the estimator of Zhang & Stephens 2009 (Technometrics
51(3)): a profile-likelihood posterior mean of θ = -k/σ over a grid of 30 + ⌊√M⌋ points,

    θ_j = 1/x_(M) + (1 - √(m/(j - ½))) / (3 x_(⌊M/4 + ½⌋)),       k(θ) = mean_i log(1 - θ x_i),
    ℓ(θ) = M [log(-θ/k(θ)) - k(θ) - 1],     θ̂ = Σ_j θ_j softmax(ℓ)_j,     k̂ = k(θ̂),

then shrunk towards 1/2 by the weakly informative prior of Vehtari et al. (10 pseudo-observations):
k̂ ← (M k̂ + 5)/(M + 10). Weights that are all equal (q the exact posterior) have no tail: k̂ = -∞.

What k means for moments: a GPD tail of shape k > 0 has P(w > t) ~ t^{-1/k}, so E[w^r] is finite exactly for
r < 1/k; a shape k <= 0 (an exponential or bounded tail) has every moment. Hence

    Var(w) < ∞  ⇔  k < 1/2,        E[w⁴] < ∞  ⇔  k < 1/4.

**ESS and χ²**: with the normalised weights, ESS = (Σ_s w_s)² / Σ_s w_s² (Kong 1992), and
χ²(p(z|x) ‖ q) = E_q[w²]/p(x)² - 1 = Var(w)/p(x)², estimated by S Σ w² / (Σ w)² - 1 = S/ESS - 1 (finite at any
S even when the true χ² is infinite, which is what k̂ is for).

**The regime rule** the suite applies to the scaling laws (:mod:`vaebench.analysis.scaling`), on the largest
k̂ of the minibatch (one datapoint with an infinite moment makes the minibatch gradient's moment infinite):

- the IWAE SNR laws (Rainforth et al. 2018, arXiv:1802.04537, Theorem 1: an expansion of the IWAE gradient
  in 1/K whose terms need a finite Var(w), small against K) are *tested* only where k̂ < 1/2;
- DReG's encoder SNR law (Tucker et al. 2019, arXiv:1810.04152; proved as K → ∞ by Daudel & Roueff 2024,
  arXiv:2410.12035, under moment conditions on w up to the fourth) only where k̂ < 1/4;
- past 0.7 Vehtari et al. find that no Monte Carlo estimate built from the weights is reliable at practical
  sample sizes: the suite flags such rows' bootstrap intervals as untrustworthy.

k̂ is itself an estimate (at S = 4000, a standard deviation of about 0.07 for an exponential tail, 0.1 for a
GPD tail of shape 1/2; see the tests);
the rule uses it as a point estimate, and :func:`weight_summary` reports the fractions of datapoints past
1/2 and 1/4 beside the maximum. It measures the tail the S draws see, not only the asymptotic one (Vehtari
et al.'s "pre-asymptotic" reading): on the Gaussian toy (D = 20) with q's variance s² < 1/2 the weights'
asymptotic shape is 1 - 2s², but at S = 4000 k̂ reads 0.97 for s² = 0.2 (shape 0.6), 0.64 for s² = 0.3
(0.4), 0.07 for the paper's s² = 2/3 (bounded weights), and 0.47 for s² = 1 (bounded too, but χ² ≈ 18: K in
the hundreds is not yet large against it). That is the reading the laws need: they are limits whose
finite-K corrections grow with the weights' spread.

:func:`weight_summary` draws the S log-weights of a minibatch from a model (stream ``variance.weights`` of
:mod:`vaebench.rng`) and summarises them in the columns of `WEIGHT_COLUMNS`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaebench import rng
from vaebench.errors import VaebenchError
from vaebench.estimators.base import log_density, sample_posterior
from vaebench.measures import schema

FINITE_VARIANCE = 0.5
"""k̂ below which Var(w) is finite (moments of order < 1/k exist)."""

FINITE_FOURTH = 0.25
"""k̂ below which E[w⁴] is finite."""

UNRELIABLE = 0.7
"""k̂ above which Vehtari et al. (2024, Section 3) find importance-sampling estimates unreliable."""

WEIGHT_SAMPLES = 4000
"""Draws S per datapoint of :func:`weight_summary`: a tail of M = 190 points, where k̂ of an exponential
tail has a standard deviation of about 0.07 (0.1 at S = 1000: the largest of 20 datapoints' k̂ of such
weights then passes 1/4 half the time). A few times the largest K the suite measures: k̂ reads the
tail that this many draws see (see the module docstring)."""

MIN_SAMPLES = 25
"""Fewest draws with a tail of at least 5 points, the fewest a GPD fit uses."""

WEIGHT_COLUMNS = schema.WEIGHT_COLUMNS
"""The per-minibatch summary of :func:`weight_summary`, in order (declared in :mod:`vaebench.measures.schema`)."""

_PRIOR = 3.0  # Zhang & Stephens' grid scale
_WIP_STRENGTH = 10.0  # pseudo-observations of the weakly informative prior at k = 1/2 (Vehtari et al.)
_CHUNK_ELEMENTS = 1 << 20  # numbers in the widest activation of one chunk of draws (CPU cache sized)


def tail_length(samples: int) -> int:
    """M = ⌈min(S/5, 3√S)⌉, the weights the GPD is fitted to (Vehtari et al. 2024, with r_eff = 1)."""
    return math.ceil(min(0.2 * samples, 3 * math.sqrt(samples)))


def pareto_khat(log_weights: Tensor) -> Tensor:
    """PSIS k̂ of S log-weights per column: [S, N] -> [N] float64 (see the module docstring).

    Only the ratios of the weights matter, so log-weights may be off by any constant per column. A column with
    a NaN or +Inf gets NaN; a column whose tail weights are all equal gets -∞ (no tail).

    Raises:
        VaebenchError: fewer than `MIN_SAMPLES` draws, or not a 2-d tensor.
    """
    if not isinstance(log_weights, Tensor) or log_weights.dim() != 2:
        raise VaebenchError(f"log_weights must be [S, N], got {getattr(log_weights, 'shape', log_weights)!r}")
    samples = log_weights.shape[0]
    if samples < MIN_SAMPLES:
        raise VaebenchError(f"k-hat needs at least {MIN_SAMPLES} draws per column, got {samples}")
    lw = log_weights.detach().double()
    bad = torch.isnan(lw).any(0) | torch.isposinf(lw).any(0)
    lw = torch.where(bad, torch.zeros_like(lw), lw)
    tail = tail_length(samples)
    top = torch.topk(lw, tail + 1, dim=0).values.flip(0)  # ascending: the cutoff, then the M largest
    top = top - top[-1]  # shifted by the maximum: weights in (0, 1]
    x = top[1:].exp() - top[0].exp()  # exceedances over the cutoff, ascending [M, N]
    khat = _gpd_shape(x)
    khat = torch.where(x[-1] <= 0, torch.full_like(khat, -math.inf), khat)
    return torch.where(bad, torch.full_like(khat, math.nan), khat)


def _gpd_shape(x: Tensor) -> Tensor:
    """Zhang & Stephens' k̂ of exceedances x [M, N] (ascending per column), with the weakly informative prior."""
    m = x.shape[0]
    grid = 30 + math.isqrt(m)
    largest = x[-1].clamp_min(torch.finfo(x.dtype).tiny)
    quartile = x[math.floor(m / 4 + 0.5) - 1]
    smallest = torch.where(x > 0, x, torch.full_like(x, math.inf)).min(0).values
    quartile = torch.where(quartile > 0, quartile, smallest)  # ties at 0 in the lower quarter
    j = torch.arange(1, grid + 1, dtype=x.dtype, device=x.device)[:, None]  # [grid, 1]
    theta = 1 / largest + (1 - torch.sqrt(grid / (j - 0.5))) / (_PRIOR * quartile)  # [grid, N], < 1/x_(M)
    k = torch.log1p(-theta[:, None, :] * x[None]).mean(1)  # [grid, N]
    profile = m * (torch.log(-theta / k) - k - 1)
    theta_hat = (torch.softmax(profile, 0) * theta).sum(0)
    shape = torch.log1p(-theta_hat * x).mean(0)
    return (m * shape + _WIP_STRENGTH * 0.5) / (m + _WIP_STRENGTH)


def effective_sample_size(log_weights: Tensor) -> Tensor:
    """ESS = (Σ w)² / Σ w² per column of log-weights [S, N] -> [N] float64, computed from logsumexps."""
    lw = log_weights.detach().double()
    return torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))


def chi_square(log_weights: Tensor) -> Tensor:
    """The χ² estimate S Σ w² / (Σ w)² - 1 = S / ESS - 1 per column of [S, N] -> [N] float64."""
    return log_weights.shape[0] / effective_sample_size(log_weights) - 1


@torch.no_grad()
def log_weights(
    model: nn.Module, x: Tensor, samples: int, generator: torch.Generator | None = None
) -> Tensor:
    """log w = log p(x, z) - log q(z|x) at ``samples`` draws z ~ q(z|x) per datapoint: x [B, D] -> [S, B].

    Drawn in chunks so that the widest activation stays near a cache-sized budget (the draws are the same
    in number and distribution whatever the chunking).
    """
    q = model.posterior(x)
    width = max(x.shape[-1], getattr(model, "z_dim", 1), *(getattr(model, "hidden", ()) or (1,)))
    step = max(1, _CHUNK_ELEMENTS // max(1, x.shape[0] * width))
    parts = []
    for start in range(0, samples, step):
        z = sample_posterior(q, min(step, samples - start), generator)
        parts.append(model.log_joint(x, z) - log_density(q, z))
    return torch.cat(parts)


def weight_summary(
    model: nn.Module, x: Tensor, samples: int = WEIGHT_SAMPLES, *, seed: int = 0
) -> dict[str, float]:
    """The weight diagnostics of a minibatch, for the rows of the variance measure.

    Draws S log-weights per datapoint (stream ``variance.weights`` of ``seed``), and summarises over the B
    datapoints: ``khat_max`` and ``khat_median``; ``khat_over_half`` and ``khat_over_quarter``, the fractions
    of datapoints with k̂ >= 1/2 (infinite Var(w)) and >= 1/4 (infinite E[w⁴]); ``ess_fraction_min`` and
    ``ess_fraction_median`` (ESS / S); ``chi2_max`` and ``chi2_median``; ``weight_samples`` = S.

    Args:
        model: any model of the estimator contract (``posterior``, ``log_joint``).
        x: the minibatch [B, D].
        samples: S >= `MIN_SAMPLES`.
        seed: the measurement's seed.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < MIN_SAMPLES:
        raise VaebenchError(f"weight samples must be an integer >= {MIN_SAMPLES}, got {samples!r}")
    gen = rng.generator(seed, "variance.weights", device=x.device)
    lw = log_weights(model, x, samples, gen)
    khat = pareto_khat(lw)
    ess = effective_sample_size(lw) / samples
    chi2 = samples / (ess * samples) - 1
    finite = khat[~torch.isnan(khat)]

    def stat(values: Tensor, how: str) -> float:
        if values.numel() == 0:
            return math.nan
        return float(values.max() if how == "max" else values.min() if how == "min" else values.quantile(0.5))

    return {
        "khat_max": stat(finite, "max"),
        "khat_median": stat(finite, "median"),
        "khat_over_half": float((finite >= FINITE_VARIANCE).double().mean()) if finite.numel() else math.nan,
        "khat_over_quarter": float((finite >= FINITE_FOURTH).double().mean()) if finite.numel() else math.nan,
        "ess_fraction_min": stat(ess, "min"),
        "ess_fraction_median": stat(ess, "median"),
        "chi2_max": stat(chi2, "max"),
        "chi2_median": stat(chi2, "median"),
        "weight_samples": samples,
    }


def empty_summary() -> dict[str, float]:
    """The columns of `WEIGHT_COLUMNS` when no diagnostic was drawn (NaN, 0 samples)."""
    return {**dict.fromkeys(WEIGHT_COLUMNS, math.nan), "weight_samples": 0}
