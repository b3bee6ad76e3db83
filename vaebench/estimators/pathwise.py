r"""Pathwise (reparameterization) estimators of the ELBO gradient.

With z = μ_φ(x) + σ_φ(x) ⊙ ε and f(z) = log p_θ(x, z) - log q_φ(z|x), every estimator here averages
∇ f(μ + σ ⊙ ε_k) over K draws, in some form; each ε_k only needs to be N(0, I), so all of them accept every
sampler of :mod:`vaebench.estimators.sampling`.

For a Gaussian q the entropy part of f has a deterministic pathwise gradient (log q(μ + σ ⊙ ε) =
-Σ log σ - |ε|²/2 - const), so all the noise of the encoder gradient comes from ∇_z log p(x, z):

    g_μ = (1/K) Σ_k ∇_z log p(x, z_k),      g_σ = (1/K) Σ_k ∇_z log p(x, z_k) ⊙ ε_k + 1/σ,

which is what :class:`ReparamCV`'s control variate approximates.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import kl_divergence

from vaebench.estimators.base import Estimator, log_density, stop_gradient


class Reparam(Estimator):
    r"""Pathwise (reparameterization) gradient of the ELBO, K samples averaged.

    ∇ ELBO ≈ (1/K) Σ_k ∇ f(μ_φ(x) + σ_φ(x) ⊙ ε_k),  ε_k ~ N(0, I)  (the seed's z = μ + σ ε).

    Kingma & Welling 2014, "Auto-Encoding Variational Bayes"; Rezende et al. 2014.
    """

    summary = "pathwise gradient, z = mu + sigma * eps (the reparameterization trick)"
    citation = "Kingma & Welling 2014, arXiv:1312.6114"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        return self._output((model.log_joint(x, z) - log_density(q, z)).mean(0))


class ReparamAnalyticKL(Estimator):
    r"""Pathwise reconstruction term with the KL divergence in closed form.

    ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z));  ∇ ≈ (1/K) Σ_k ∇ log p(x | μ + σ ε_k) - ∇ KL  (exact KL).

    Kingma & Welling 2014, Appendix B (the estimator of the pytorch/examples VAE).
    """

    summary = "pathwise reconstruction term, closed-form KL(q || p)"
    citation = "Kingma & Welling 2014, arXiv:1312.6114, eq. 10"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        kl = kl_divergence(q, model.prior()).sum(-1)
        return self._output(model.log_likelihood(x, z).mean(0) - kl)


class StickingTheLanding(Estimator):
    r"""Pathwise gradient without the score term of log q ("sticking the landing").

    ∇_φ ≈ (1/K) Σ_k ∂/∂z [log p(x, z) - log q_{φ'}(z|x)]|_{φ'=φ fixed} · ∂z_k/∂φ

    The dropped term ∇_φ log q_φ(z)|_z has zero mean, so the estimator stays unbiased, and its variance
    vanishes as q approaches the true posterior. Roeder, Wu & Duvenaud 2017, arXiv:1703.09194.
    """

    summary = "pathwise gradient with the zero-mean score term of log q dropped"
    citation = "Roeder, Wu & Duvenaud 2017, arXiv:1703.09194"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        return self._output((model.log_joint(x, z) - log_density(stop_gradient(q), z)).mean(0))


class ReparamCV(Estimator):
    r"""Reparameterization gradient with the Taylor-expansion control variate of Miller et al. 2017.

    The noisy part of the encoder gradient is ∇_z log p(x, z_k) (see the module docstring). Its first-order
    Taylor expansion around the posterior mean, ∇_z log p(x, μ) + H(μ)(σ ⊙ ε_k) with H = ∇²_z log p(x, ·),
    is cheap, strongly correlated with it, and has a known expectation. Subtracting the approximation's
    deviation from its mean, per datapoint:

        ĝ_μ = g_μ - H(μ)(σ ⊙ ε̄)              (first order: E[H(σ ⊙ ε)] = 0)
        ĝ_σ = g_σ - ∇_z log p(x, μ) ⊙ ε̄      (zero order: E[∇ log p(x, μ) ⊙ ε] = 0)

    with ε̄ = (1/K) Σ_k ε_k. Both control variates have mean zero for any sampler whose ε_k are N(0, I), so
    the estimator is unbiased; it removes the part of the noise that is linear in ε (all of the μ-gradient's
    noise when log p is quadratic in z, as in the linear-Gaussian model). For the scale the paper's practical
    form is this zero-order one: a first-order term would need diag H (Z more Hessian-vector products per
    datapoint) for its mean. Geffner & Domke 2020 (arXiv:2010.07220) note that the zero-order scale term does
    little, and that for a diagonal Gaussian most of the variance sits in the mean's gradient, which the
    first-order term controls. The decoder gradient (θ) is that of :class:`Reparam`. Control-variate
    coefficient 1 (the full variate).

    Cost per step, on top of :class:`Reparam`'s: one gradient ∇_z log p(x, μ) and one Hessian-vector product
    H(μ) v (double backward), both at the B posterior means, whatever K: about four more decoder passes over
    B rows. H(σ ⊙ ε̄) is one product because the expansion point is shared by the K samples.

    Miller, Foti, D'Amour & Adams 2017, "Reducing Reparameterization Gradient Variance", arXiv:1705.07880.
    """

    summary = (
        "pathwise gradient with a Taylor-expansion control variate (one Hessian-vector product per step)"
    )
    citation = "Miller, Foti, D'Amour & Adams 2017, arXiv:1705.07880"

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        objective = (model.log_joint(x, z) - log_density(q, z)).mean(0)
        loc, scale = q.loc.detach(), q.scale.detach()
        eps_mean = ((z.detach() - loc) / scale).mean(0)  # ε̄ [B, Z], read back from z (exact up to rounding)
        grad, hvp = taylor_terms(model, x, loc, scale * eps_mean)
        # Gradient only, values detached: -(H σ ε̄)·∂μ/∂φ - (∇ log p(μ) ⊙ ε̄)·∂σ/∂φ, per datapoint.
        control = (hvp * q.loc).sum(-1) + (grad * eps_mean * q.scale).sum(-1)
        return self._output(objective, -control)


def taylor_terms(model: nn.Module, x: Tensor, loc: Tensor, direction: Tensor) -> tuple[Tensor, Tensor]:
    """∇_z log p(x, z) and H v at z = ``loc``, for v = ``direction``, per datapoint: ([B, Z], [B, Z]), detached.

    H = ∇²_z log p(x, z). log p(x, z) is a sum over datapoints, so the Hessian of the sum is block-diagonal
    and one product gives every datapoint's H_b v_b: reverse-over-reverse, with ``torch.autograd.grad``, or
    with ``torch.func.grad`` inside ``torch.func`` transforms (the ``vmap`` variance engine), where
    ``torch.autograd.grad`` cannot run.
    """

    if torch._C._functorch.is_functorch_wrapped_tensor(loc):  # inside torch.func transforms (vmap engine)

        def log_joint(z: Tensor) -> Tensor:
            return model.log_joint(x, z.unsqueeze(0)).sum()

        def directional(z: Tensor) -> tuple[Tensor, Tensor]:
            grad = torch.func.grad(log_joint)(z)
            return (grad * direction.detach()).sum(), grad

        hvp, grad = torch.func.grad(directional, has_aux=True)(loc.detach())
        return grad.detach(), hvp.detach()
    z = loc.detach().requires_grad_()
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(model.log_joint(x, z.unsqueeze(0)).sum(), z, create_graph=True)
        (hvp,) = torch.autograd.grad(grad, z, grad_outputs=direction.detach())
    return grad.detach(), hvp.detach()
