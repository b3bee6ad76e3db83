r"""Uncorrected Hamiltonian annealing (UHA), the differentiable annealed importance-weighted bound.

Geffner & Domke 2021 ("MCMC Variational Inference via Uncorrected Hamiltonian Annealing", arXiv:2107.04150);
Zhang, Hernández-Lobato & Ghahramani 2021 ("Differentiable Annealed Importance Sampling and the Perils of
Gradient Noise", arXiv:2107.10211); Zenn & Bamler 2024 (DAIS at scale).

The extended proposal. Each z_0 ~ q_φ(z|x) is moved by L underdamped Langevin steps, with momenta ρ, towards
the posterior along the annealing path π_β ∝ q^(1-β) p_θ(x, ·)^β, β_1 ≤ ... ≤ β_L. Step l:

    ρ'_l = η ρ_{l-1} + √(1 - η²) ξ_l         (partial refresh, damping η; ρ'_1 = ρ_0 ~ N(0, I))
    (z_l, ρ_l) = leapfrog(z_{l-1}, ρ'_l; ∇ log π_{β_l}, step size ε)

with no Metropolis correction, so the path is differentiable. The refresh is reversible with respect to
N(0, I) and the leapfrog map is invertible with unit Jacobian; taking their reversals as the backward kernels,
the importance weight of the extended space telescopes to

    log w = log p_θ(x, z_L) - log q_φ(z_0|x) + Σ_{l=1}^{L} [log N(ρ_l) - log N(ρ'_l)],

the change of kinetic energy across each leapfrog step. E[w] = p(x) whatever ε, η and the path, so

    UHA_{K,L} = E[log (1/K) Σ_k w_k] ≤ log p(x)     (objective "uha"; L = 0: IWAE_K, K = 1: one chain),

and the estimator is the pathwise gradient of that Monte Carlo estimate: every draw (z_0's ε, ρ_0, the ξ_l)
is standard normal noise independent of the parameters, and the dynamics are differentiated through (each
gradient of log p taken with ``create_graph``). It is unbiased for the gradient of its own bound; that the
bound beats the ELBO and tightens with L is a property of the dynamics, checked on the exact-answer models.

The coordinates. The dynamics run in q's standardised coordinates u = (z - μ) / σ (a mass matrix diag(σ⁻²)
in z), where q is N(0, I): the step size is in units of q's scale, so one ε suits datapoints and latents of
very different posterior widths. There ∇_u log π_β(u) = -(1 - β) u + β σ ⊙ ∇_z log p(x, μ + σ ⊙ u).

Cost per sample: L + 1 evaluations of log p(x, z) and of its gradient in z (at z_0 .. z_L; each gradient is
reused by both half-steps that need it), and the backward pass goes through all of them a second time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from vaebench.errors import VaebenchError
from vaebench.estimators.base import Bound, Estimator, Target, check_real
from vaebench.estimators.importance_weighted import DEPENDENT_BOUND

SCHEDULES = ("linear", "posterior")
"""UHA's annealing paths: β_l = l / L, or β_l = 1 at every step (uncorrected HMC on the posterior)."""

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def log_joint_and_slope(model: nn.Module, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    """log p(x, z) [K, B] and ∇_z log p(x, z) [K, B, Z], both differentiable (for the pathwise gradient).

    Reverse mode with ``create_graph``; inside ``torch.func`` transforms (the ``vmap`` variance engine),
    where ``torch.autograd.grad`` cannot run, ``torch.func.grad`` nested in the outer transform.
    """
    if torch._C._functorch.is_functorch_wrapped_tensor(z):

        def total(point: Tensor) -> tuple[Tensor, Tensor]:
            values = model.log_joint(x, point)
            return values.sum(), values

        slope, values = torch.func.grad(total, has_aux=True)(z)
        return values, slope
    differentiable = torch.is_grad_enabled()
    with torch.enable_grad():
        if not z.requires_grad:  # a leaf for the gradient in z (no path to the parameters through it)
            z = z.detach().requires_grad_()
        values = model.log_joint(x, z)
        (slope,) = torch.autograd.grad(values.sum(), z, create_graph=differentiable)
    return (values, slope) if differentiable else (values.detach(), slope)


def log_standard_normal(v: Tensor) -> Tensor:
    """log N(v; 0, I) summed over the last dimension: [..., Z] -> [...]."""
    return -0.5 * v.square().sum(-1) - v.shape[-1] * _HALF_LOG_2PI


class UHA(Estimator):
    r"""Uncorrected Hamiltonian annealing: the importance-weighted bound of L differentiable Langevin steps.

        log w_k = log p(x, z_{L,k}) - log q(z_{0,k}|x) + Σ_l [log N(ρ_{l,k}) - log N(ρ'_{l,k})],
        UHA_{K,L} ≈ log (1/K) Σ_k w_k,     ∇ by differentiating through the K chains (pathwise)

    (see the module docstring for the dynamics and the bound). Below log p(x) for any options; at L = 0 it is
    IWAE_K. Geffner & Domke 2021, arXiv:2107.04150; Zhang, Hernández-Lobato & Ghahramani 2021,
    arXiv:2107.10211.

    Options:
        steps: L, the Langevin steps (0: IWAE_K).
        step_size: ε of the leapfrog, in units of q's scale (the dynamics run in u = (z - μ) / σ).
        damping: η in [0, 1), the momentum kept at each refresh (0: a fresh momentum every step).
        schedule: ``"linear"`` (β_l = l / L) or ``"posterior"`` (β_l = 1: no annealing).
        sampler: ``"iid"`` only.
    """

    objective = "uha"
    samplers = ("iid",)
    iid_only = DEPENDENT_BOUND.replace("IWAE_K", "UHA")
    local_only = (
        "its Langevin steps follow the gradient of the minibatch-scaled joint, so its bound is not the full data's "
        "(it is nonlinear in the likelihood) and the suite has no exact reference for it there"
    )
    summary = (
        "uncorrected Hamiltonian annealing: IW bound after L differentiable Langevin steps (L+1 log p grads)"
    )
    citation = (
        "Geffner & Domke 2021, arXiv:2107.04150; Zhang, Hernández-Lobato & Ghahramani 2021, arXiv:2107.10211"
    )

    def __init__(
        self,
        steps: int = 4,
        step_size: float = 0.5,
        damping: float = 0.5,
        schedule: str = "linear",
        sampler: str = "iid",
    ):
        super().__init__(sampler)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise VaebenchError(f"steps (L, the Langevin steps) must be an integer >= 0, got {steps!r}")
        self.step_size = check_real("step_size", step_size, 0.0)
        if self.step_size == 0.0:
            raise VaebenchError("step_size must be positive, got 0 (for no dynamics use steps=0)")
        damping = check_real("damping", damping, 0.0, 1.0)
        if damping == 1.0:
            raise VaebenchError("damping must lie in [0, 1): at 1 the momentum is never refreshed")
        if schedule not in SCHEDULES:
            raise VaebenchError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        self.steps, self.damping, self.schedule = steps, damping, schedule

    def target(self, num_samples: int) -> Target:
        dynamics = (self.steps, self.step_size, self.damping, self.schedule)
        bound = Bound.of("uha", num_samples, dynamics)
        return Target(bound, bound)

    @classmethod
    def for_bound(cls, bound: Bound) -> UHA:
        """The estimator of ``bound``'s gradient (a ``"uha"`` bound names its dynamics), for references."""
        steps, step_size, damping, schedule = bound.parameter
        return cls(steps, step_size, damping, schedule)

    def betas(self) -> list[float]:
        """β_1 .. β_L of the annealing path."""
        if self.schedule == "posterior":
            return [1.0] * self.steps
        return [step / self.steps for step in range(1, self.steps + 1)]

    def log_weights(self, model: nn.Module, x: Tensor, num_samples: int, generator) -> Tensor:
        """log w [K, B] of K chains per datapoint, differentiable in the model's and the encoder's parameters."""
        q = model.posterior(x)
        loc, scale = q.loc, q.scale  # [B, Z], gradient to φ
        unit = Normal(torch.zeros_like(loc.detach()), torch.ones_like(loc.detach()), validate_args=False)
        draws = self.steps + 1 if self.steps else 1
        noise = self.sample(unit, draws * num_samples, generator).reshape(draws, num_samples, *loc.shape)
        u = noise[0]  # z_0 = μ + σ u_0, u_0 ~ q in standard coordinates
        log_q0 = log_standard_normal(u) - scale.log().sum(-1)  # log q(z_0|x) [K, B]
        log_p, slope = log_joint_and_slope(model, x, loc + scale * u)
        if not self.steps:
            return log_p - log_q0
        eps, eta = self.step_size, self.damping
        rho = noise[1]
        kinetic = 0.0
        for step, beta in enumerate(self.betas()):
            if step:  # partial refresh; ρ'_1 = ρ_0 is already a fresh draw
                rho = eta * rho + math.sqrt(1 - eta**2) * noise[step + 1]
            kinetic = kinetic - log_standard_normal(rho)  # - log N(ρ'_l)
            rho = rho + 0.5 * eps * (-(1 - beta) * u + beta * scale * slope)
            u = u + eps * rho
            log_p, slope = log_joint_and_slope(model, x, loc + scale * u)
            rho = rho + 0.5 * eps * (-(1 - beta) * u + beta * scale * slope)
            kinetic = kinetic + log_standard_normal(rho)  # + log N(ρ_l)
        return log_p - log_q0 + kinetic

    def estimate(self, model, x, num_samples, generator):
        log_w = self.log_weights(model, x, num_samples, generator)
        return self._output(torch.logsumexp(log_w, 0) - math.log(num_samples))
