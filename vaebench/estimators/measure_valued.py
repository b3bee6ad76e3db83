r"""The measure-valued derivative (MVD) of the ELBO for a Gaussian q: differences of f, no derivative of f.

For q = N(μ, σ²) in one coordinate, the derivative of the density in a parameter is a difference of two
probability densities times a constant (Pflug 1989; Mohamed, Rosca, Figurnov & Mnih 2020, JMLR, Section 6
and Table 1):

    ∂/∂μ N(z; μ, σ²) = (1 / (σ √(2π))) [ μ + σ Weibull(√2, 2)  -  μ - σ Weibull(√2, 2) ]     (densities of)
    ∂/∂σ N(z; μ, σ²) = (1 / σ)          [ μ + σ M              -  μ + σ ε               ]

where W ~ Weibull(scale √2, shape 2) has density w e^{-w²/2} on w > 0 (the Rayleigh law: the norm of two
standard normals), M is the standard double-sided Maxwell variable, density m² e^{-m²/2} / √(2π) on ℝ (the norm
of three standard normals, with a random sign), and ε ~ N(0, 1). So, for any integrable f,

    ∂/∂μ_d E_q[f] = E[f(z with z_d = μ_d + σ_d W) - f(z with z_d = μ_d - σ_d W')] / (√(2π) σ_d)
    ∂/∂σ_d E_q[f] = E[f(z with z_d = μ_d + σ_d M) - f(z with z_d = μ_d + σ_d ε)] / σ_d

with the other coordinates z_{-d} drawn from q. Both are unbiased whatever the coupling of the two points of a
difference, as long as each has its law; the coupling only changes the variance. ``coupling=True`` uses the
coupling of google-deepmind/mc_gradients (``gradient_estimators.py``; the paper's Section 7.2): W' = W, and
ε = M U with U ~ U(0, 1), which is N(0, 1) (for x > 0 its density is ∫_x^∞ m e^{-m²/2} / √(2π) dm = φ(x)).
``coupling=False`` draws W' and ε independently.

Here f = log p_θ(x, z). The entropy of the diagonal Gaussian q, H = Σ_d log σ_d + (Z/2) log(2πe), has the
exact gradient ∂H/∂σ_d = 1/σ_d, so the encoder gradient of ELBO = E_q[log p(x, z)] + H is the MVD of
E_q[log p] plus that closed form. Per sample k: one base draw z_k ~ q for the other coordinates, and for each
latent coordinate d four points (mean +, mean -, scale +, scale -): 4Z evaluations of log p(x, ·) per
sample, made in one ``log_joint`` call on the stacked [4·Z·K, B, Z] points. The decoder gradient stays
pathwise: θ's gradient is that of the mean of log p_θ(x, ·) over the Z·K scale-minus points, each of which is
a draw from q (the coupled ones too), so it is the reparameterization gradient in θ (z does not depend on θ),
averaged over Z correlated draws per sample. The same points give the ELBO estimate, their mean log p plus
the exact H.

Cost: 4Z decoder evaluations per sample against reparam's one, and no backward pass through the decoder to
z (only to θ); the decoder's forward and its θ-backward on 4·Z·K·B rows dominate, so a step costs roughly 4Z
times a reparam step at the same K (Z = 8: ~32x, Z = 50: ~200x the decoder work), which the work-normalised
variance of the variance measure counts, being measured time x variance.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Normal

from vaebench.estimators.base import Estimator, check_flag

_LOG_2PI_E = math.log(2 * math.pi) + 1.0
_SQRT_2PI = math.sqrt(2 * math.pi)


class MeasureValued(Estimator):
    r"""Measure-valued derivative of the ELBO for the Gaussian encoder (Weibull and Maxwell parts per coordinate).

    For each latent coordinate d, with W ~ Weibull(√2, 2), M ~ double-sided Maxwell(0, 1), ε ~ N(0, 1) and
    f = log p_θ(x, z) at the base draw z_k ~ q with coordinate d replaced:

        ∇_μ_d ≈ (1/K) Σ_k [f(z_d = μ_d + σ_d W) - f(z_d = μ_d - σ_d W')] / (√(2π) σ_d)
        ∇_σ_d ≈ (1/K) Σ_k [f(z_d = μ_d + σ_d M) - f(z_d = μ_d + σ_d ε)] / σ_d + 1/σ_d    (exact entropy part)

    and ∇_θ the pathwise gradient at the scale-minus points (draws from q). Unbiased for the ELBO gradient
    with either coupling. 4Z evaluations of log p per sample; independent draws only.

    Mohamed, Rosca, Figurnov & Mnih 2020, "Monte Carlo Gradient Estimation in Machine Learning", JMLR 21(132),
    Section 6; Pflug 1989; google-deepmind/mc_gradients (the coupling).

    Options:
        coupling: couple the two points of each difference (W' = W; ε = M U, U ~ U(0, 1)), as mc_gradients
            does by default; False draws them independently.
        sampler: ``"iid"`` only.
    """

    family = "measure-valued"
    samplers = ("iid",)
    iid_only = (
        "its Weibull, Maxwell and uniform variates are drawn independently per sample, and the antithetic and "
        "RQMC samplers only shape standard normal draws: no dependent design of the MVD's points is defined"
    )
    summary = (
        "measure-valued derivative: Weibull (mean) and Maxwell (scale) differences, 4Z evaluations/sample"
    )
    citation = "Mohamed, Rosca, Figurnov & Mnih 2020, JMLR 21(132), Section 6"

    def __init__(self, coupling: bool = True, sampler: str = "iid"):
        super().__init__(sampler)
        self.coupling = check_flag("coupling", coupling)

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        loc, scale = q.loc, q.scale  # [B, Z], gradient to φ
        shape = (num_samples, *loc.shape)
        # Every variate from standard normals drawn by the sampler (through `sample`, like every estimator's
        # noise): MVD_NORMALS per sample and coordinate, from the call's generator.
        unit = Normal(torch.zeros_like(loc.detach()), torch.ones_like(loc.detach()), validate_args=False)
        normals = self.sample(unit, MVD_NORMALS * num_samples, generator).reshape(MVD_NORMALS, *shape)
        points = mvd_points(normals, self.coupling)
        z = loc.detach() + scale.detach() * points  # [4, Z, K, B, Z]: no path to φ
        dim = loc.shape[-1]
        log_p = model.log_joint(x, z.reshape(4 * dim * num_samples, *loc.shape)).reshape(4, dim, *shape[:2])
        f = log_p.detach()  # [4, Z, K, B]
        s = scale.detach()
        grad_loc = (f[0] - f[1]).mean(1).T / (_SQRT_2PI * s)  # [B, Z]
        grad_scale = (f[2] - f[3]).mean(1).T / s
        entropy = scale.log().sum(-1) + 0.5 * dim * _LOG_2PI_E  # exact H(q) [B]: gradient 1/σ to φ
        objective = log_p[3].mean((0, 1)) + entropy  # ELBO estimate [B]; θ's gradient is pathwise
        score = (grad_loc * loc + grad_scale * scale).sum(-1)  # gradient only: the MVD part of ∇_φ
        return self._output(objective, score)


MVD_NORMALS = 10
"""Standard normals drawn per sample and coordinate: all of the MVD's variates are made from them."""


def mvd_points(normals: Tensor, coupling: bool) -> Tensor:
    """The standardised points of the MVD, (z - μ) / σ: [4, Z, K, B, Z] from ``normals`` [`MVD_NORMALS`, K, B, Z].

    Entry [j, d, k, b] is the base draw ε_{k,b} = normals[0] with coordinate d replaced by the j-th variate of
    (W, -W', M, N), each made from standard normals n_1, n_2, ... of ``normals`` (chi constructions):
    W = √(n_1² + n_2²), the Rayleigh law, which is Weibull(√2, 2); W' likewise from n_3, n_4 (``coupling``:
    W' = W); M = sign(n_8) √(n_5² + n_6² + n_7²), the double-sided Maxwell law (a χ_3 with a random sign);
    N = M Φ(n_9), Φ(n_9) ~ U(0, 1) (coupled), or N = n_10 (uncoupled).
    """
    n = normals
    dim = n.shape[-1]
    base = n[0]
    weibull = torch.hypot(n[1], n[2])
    other = weibull if coupling else torch.hypot(n[3], n[4])
    maxwell = n[5:8].square().sum(0).sqrt() * n[8].sign()
    gaussian = maxwell * torch.special.ndtr(n[9]) if coupling else n[9]
    values = torch.stack([weibull, -other, maxwell, gaussian])  # [4, K, B, Z]: value of coordinate d
    diagonal = torch.eye(dim, dtype=torch.bool, device=base.device).reshape(1, dim, 1, 1, dim)
    k, b = base.shape[:2]
    return torch.where(diagonal, values.permute(0, 3, 1, 2).unsqueeze(-1), base.expand(4, dim, k, b, dim))
