r"""Active latent units: how many dimensions of z the encoder uses (Burda, Grosse & Salakhutdinov 2015).

Burda et al. 2015 (arXiv:1509.00519) call latent unit u *active* when its posterior mean varies
across the data,

    A_u = Cov_x( E_{q(z|x)}[z_u] ) > 10⁻²,

and count the active units of each trained model: an inactive unit has q(z_u|x) the same for every x (it
carries no information about x; the KL term has pulled it to the prior). A final metric of every training run
(:func:`vaebench.measures.convergence.measure_convergence`), on the same test points as the other final
metrics. For q = N(μ(x), diag σ(x)²) the posterior mean is μ(x), so A_u is the variance of μ_u over the points.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError

ACTIVE_THRESHOLD = 1e-2
"""Burda et al.'s threshold on Cov_x(E_q[z_u])."""

_CHUNK = 4096  # datapoints per encoder pass


@torch.no_grad()
def activity(model: nn.Module, x: Tensor) -> Tensor:
    """A_u = Var_x(E_q[z_u]) for every unit: x [N, D] -> [Z] float64 (the unbiased variance over the N points)."""
    if x.dim() != 2 or x.shape[0] < 2:
        raise VaebenchError(f"activity needs at least two datapoints [N, D], got {list(x.shape)}")
    means = torch.cat([model.posterior(part).loc for part in x.split(_CHUNK)]).double()
    return means.var(0)


def active_units(model: nn.Module, x: Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    """The number of latent units with A_u > ``threshold`` on the points x [N, D]."""
    return int((activity(model, x) > threshold).sum())
