r"""The quadratic control variate of Geffner & Domke 2020, for the amortised Gaussian q of a VAE.

Geffner & Domke 2020 ("Approximation Based Variance Reduction for Reparameterization Gradients",
arXiv:2007.14634) subtract from the pathwise gradient ∇_w f(T_w(ε)) the pathwise gradient of a quadratic
approximation f̃ of log p(x, z) and add back its closed-form expectation,

    ĝ = ∇_w f(T_w(ε)) - ∇_w f̃(T_w(ε)) + ∇_w E_q[f̃],

unbiased for any f̃ fixed before the draw, with f̃'s parameters fitted online to minimise the variance of ĝ.
Miller et al.'s Taylor variate (``reparam-cv``) is the special case whose quadratic is the expansion at μ with
its curvature used only for the mean; for the scale it keeps the zero-order term, which the paper shows does
little. The scale's gradient is where the curvature matters: for z = μ + σ ⊙ ε,

    ∇_σ f̃(μ + σ ⊙ ε) = (g + M(σ ⊙ ε)) ⊙ ε,      E = diag(M) ⊙ σ,

with g = ∇_z log p(x, μ), so its expectation needs diag(M): for the model's Hessian H that is Z
Hessian-vector products per datapoint.

What is done here, per datapoint b, with the expansion point μ_b (the posterior mean, detached):
f̃_b(z) = g_b·(z - μ_b) + ½ (z - μ_b)ᵀ M_b (z - μ_b), and

- the mean's term takes M_b = H(μ_b) exactly, as ``reparam-cv`` does: one Hessian-vector product
  H(σ ⊙ ε̄) per datapoint, whatever K (ε̄ the mean of the K draws);
- the scale's term keeps the diagonal of the quadratic, diag(M) = m, a vector [Z] shared by all datapoints and
  fitted online: its off-diagonal part Σ_{i≠j} M_ji σ_i ε_i ε_j has mean zero and is left in the estimator
  (dropping a zero-mean term keeps it unbiased), and m minimises the variance of what remains, coordinate by
  coordinate: with y_j = (1/K) Σ_k ∂_j log p(x, z_k) ε_kj - g_j ε̄_j (the scale gradient's noise after the
  zero-order term) and c_j = σ_j ((1/K) Σ_k ε_kj² - 1) (the variate, mean zero), m_j = E[y_j c_j] / E[c_j²],
  from moving averages over datapoints and past steps (the least-squares fit that gradient steps on the
  variance, the paper's procedure, converge to). For log p quadratic in z, m_j = H_jj.

So ĝ_μ = ḡ_μ - H(σ ⊙ ε̄),   ĝ_σ = ḡ_σ - g ⊙ ε̄ - m ⊙ σ ⊙ ((1/K) Σ_k ε_k² - 1)   (per datapoint; decoder as reparam).

Both variates have mean zero for any sampler whose ε_k are N(0, I), and m is fixed before each draw (the
moments update after use, in training mode only; :meth:`prepare` sets them from an independent draw), so the
estimator is unbiased. Cost per step on top of ``reparam-cv``'s (one gradient and one Hessian-vector product
at the B means): nothing in evaluation; in training, one more backward pass through the decoder over the
K·B samples for ∂ log p(x, z_k)/∂z, the moments' input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from vaebench import rng
from vaebench.errors import VaebenchError
from vaebench.estimators.base import Estimator, log_density, sample_posterior
from vaebench.estimators.pathwise import taylor_terms

PREPARE_SAMPLES = 16
"""Draws per datapoint of the independent batch that sets the curvature's moments before first use."""


class QuadraticCV(Estimator):
    r"""Reparameterization gradient with a quadratic control variate: Hessian term for μ, fitted diagonal for σ.

        ĝ_μ = ḡ_μ - H(μ)(σ ⊙ ε̄),    ĝ_σ = ḡ_σ - ∇_z log p(x, μ) ⊙ ε̄ - m ⊙ σ ⊙ (mean_k ε_k² - 1)

    with m [Z] the variance-minimising diagonal curvature, fitted online from moving moments (see the module
    docstring). m = 0 is ``reparam-cv``. Unbiased for the ELBO gradient with every sampler.
    Geffner & Domke 2020, arXiv:2007.14634 (the quadratic variate, fitted to minimise the variance); Miller,
    Foti, D'Amour & Adams 2017, arXiv:1705.07880 (the expansion at the posterior mean).

    Options:
        decay: of the moving moments E[y c] and E[c²], in [0, 1).
        seed: seeds the noise of the initial moments; None (default): the seed given to :meth:`prepare`
            (the run's), else 0.
        sampler: any (the variates are zero-mean for every sampler).
    """

    stateful = True
    summary = "pathwise gradient with a quadratic control variate (Hessian for the mean, fitted diagonal for the scale)"
    citation = "Geffner & Domke 2020, arXiv:2007.14634; Miller et al. 2017, arXiv:1705.07880"

    def __init__(self, decay: float = 0.9, seed: int | None = None, sampler: str = "iid"):
        super().__init__(sampler)
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0.0 <= decay < 1.0:
            raise VaebenchError(f"decay must lie in [0, 1), got {decay!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise VaebenchError(f"seed must be None or a non-negative integer, got {seed!r}")
        self.decay, self.seed = float(decay), seed
        self.register_buffer("moments", torch.zeros(2, 0))  # [E[y c], E[c²]] per latent coordinate, [2, Z]

    def prepare(self, model: nn.Module, x: Tensor, seed: int | None = None) -> None:
        """Set the moments from an independent draw at these parameters (once)."""
        if self.moments.numel() == 0:
            gen = rng.generator(
                self.seed if self.seed is not None else seed or 0, "init.statistics", device=x.device
            )
            q = model.posterior(x)
            z = sample_posterior(q, PREPARE_SAMPLES, gen)
            grad, _ = taylor_terms(model, x, q.loc.detach(), torch.zeros_like(q.loc.detach()))
            self.moments = row_moments(model, x, q, z, grad).mean(1).to(self.moments.dtype)
        super().prepare(model, x)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "moments")
        if saved is not None and saved.shape != self.moments.shape:  # loaded before prepare knew Z
            self.moments = torch.zeros_like(saved, device=self.moments.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def curvature(self) -> Tensor:
        """m [Z] = E[y c] / E[c²] (0 where no variate has been seen); [S, Z] in the seed-aware form."""
        products, squares = self.moments.unbind(-2)
        return torch.where(squares > 0, products / squares.clamp_min(torch.finfo(squares.dtype).tiny), 0.0)

    def row_curvature(self, rows: int) -> Tensor:
        """m for each of the ``rows`` datapoints of a call: [Z], broadcast (one m for all)."""
        return self.curvature

    def update(self, per_row: Tensor) -> None:
        """Move the moments towards this call's, [2, B, Z] per datapoint (averaged over the batch)."""
        self.moments.mul_(self.decay).add_((1 - self.decay) * per_row.mean(1).to(self.moments))

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        objective = (model.log_joint(x, z) - log_density(q, z)).mean(0)
        loc, scale = q.loc.detach(), q.scale.detach()
        eps = (z.detach() - loc) / scale  # [K, B, Z], read back from z (exact up to rounding)
        eps_mean = eps.mean(0)
        grad, hvp = taylor_terms(model, x, loc, scale * eps_mean)
        m = self.row_curvature(loc.shape[0]).to(loc)
        spread = eps.square().mean(0) - 1  # mean_k ε_k² - 1, mean zero
        # Gradient only, values detached: -(H σ ε̄)·∂μ/∂φ - (g ⊙ ε̄ + m ⊙ σ ⊙ spread)·∂σ/∂φ, per datapoint.
        control = (hvp * q.loc).sum(-1) + ((grad * eps_mean + m * scale * spread) * q.scale).sum(-1)
        if self.training:  # after use: this step's variate did not see its own samples
            with torch.no_grad():
                self.update(row_moments(model, x, q, z, grad))
        return self._output(objective, -control)


def row_moments(model: nn.Module, x: Tensor, q: Normal, z: Tensor, grad: Tensor) -> Tensor:
    """[y c, c²] per datapoint and latent coordinate [2, B, Z], from draws z [K, B, Z] of q.

    y = mean_k ∂ log p(x, z_k)/∂z ⊙ ε_k - g ⊙ ε̄ and c = σ ⊙ (mean_k ε_k² - 1) (module docstring), with
    g = ``grad`` [B, Z], ∇_z log p(x, μ). One more pass through the decoder, forward and backward, over the
    K·B draws (detached: nothing reaches the model's gradient).
    """
    loc, scale = q.loc.detach(), q.scale.detach()
    point = z.detach().requires_grad_()
    with torch.enable_grad():
        (slopes,) = torch.autograd.grad(model.log_joint(x, point).sum(), point)
    eps = (point.detach() - loc) / scale
    y = (slopes * eps).mean(0) - grad * eps.mean(0)
    c = scale * (eps.square().mean(0) - 1)
    return torch.stack([y * c, c.square()])
