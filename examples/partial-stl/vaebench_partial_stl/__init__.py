r"""An example vaebench plugin: the partial sticking-the-landing estimator, a fraction c of the score term kept.

With z = μ_φ(x) + σ_φ(x) ⊙ ε and f(z) = log p_θ(x, z) - log q_φ(z|x), the reparameterization gradient of the
ELBO splits into a path term and a score term (Roeder, Wu & Duvenaud 2017):

    ∇_φ f(z(φ), φ) = ∂f/∂z · ∂z/∂φ   -   ∇_φ log q_φ(z|x)|_{z fixed}
                     (path term)          (score term: E_q[∇_φ log q_φ(z|x)] = 0)

Sticking the landing drops the score term; having mean zero, it is a control variate that may be kept with
any scale in between, as Roeder et al. discuss. This estimator keeps the fraction c:

    ĝ_φ = (1/K) Σ_k [ ∂f/∂z(z_k) · ∂z_k/∂φ  -  c ∇_φ log q_φ(z_k|x)|_{z_k fixed} ]

which is unbiased for every c (the dropped part, (1 - c) times a zero-mean term, has mean zero), equal to
``reparam`` at c = 1 and to ``stl`` at c = 0. For the same noise ε, the gradient is draw by draw the straight
line between those two, so its variance is a convex quadratic in c: for c in [0, 1] it never exceeds the
larger of theirs. The θ gradient is the pathwise one of every estimator.

Written against vaebench's documented estimator contract only (:mod:`vaebench.estimators`): a subclass of
``Estimator`` with ``estimate(model, x, num_samples, generator)`` returning an ``EstimatorOutput`` whose value
is the negative ELBO estimate. The plugin declares itself twice: the dict ``ESTIMATORS`` (for
``--plugin vaebench_partial_stl``) and the ``vaebench.estimators`` entry point in ``pyproject.toml`` (for an
installed copy).
"""

from __future__ import annotations

from vaebench.errors import VaebenchError
from vaebench.estimators import Estimator, EstimatorOutput, log_density, stop_gradient

__version__ = "0.1.0"


class PartialSTL(Estimator):
    r"""Pathwise ELBO gradient keeping a fraction c of the zero-mean score term (c = 0: stl, c = 1: reparam).

    ĝ_φ = (1/K) Σ_k [∂f/∂z(z_k) · ∂z_k/∂φ - c ∇_φ log q_φ(z_k|x)], unbiased for every c.
    Roeder, Wu & Duvenaud 2017, "Sticking the Landing", arXiv:1703.09194.

    Args:
        score_fraction: c, the fraction of the score term kept, in [0, 1].
        sampler: how ε is drawn (every sampler keeps it unbiased, as for ``reparam``).
    """

    name = "partial-stl"
    summary = "pathwise gradient keeping a fraction c of the zero-mean score term (c=0: stl, c=1: reparam)"
    citation = "Roeder, Wu & Duvenaud 2017, arXiv:1703.09194"

    def __init__(self, score_fraction: float = 0.5, sampler: str = "iid"):
        valid = isinstance(score_fraction, int | float) and not isinstance(score_fraction, bool)
        if not (valid and 0 <= score_fraction <= 1):
            raise VaebenchError(
                f"partial-stl score_fraction must be a number in [0, 1], got {score_fraction!r}"
            )
        super().__init__(sampler)
        self.score_fraction = float(score_fraction)

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)  # [K, B, Z]
        c = self.score_fraction
        # Both terms have the value log q(z|x); only the first carries ∇_φ log q (the score term), scaled by c.
        log_q = c * log_density(q, z) + (1 - c) * log_density(stop_gradient(q), z)  # [K, B]
        objective = (model.log_joint(x, z) - log_q).mean(0)  # [B]
        return EstimatorOutput(surrogate=-objective.mean(), elbo=objective.detach(), objective=self.objective)


ESTIMATORS = {"partial-stl": PartialSTL}
"""The plugins this module declares, read by ``vaebench.plugins.registry.load_module``."""
