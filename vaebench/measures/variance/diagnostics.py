r"""Per-row diagnostics of a variance measurement that depend on the model and minibatch, not on the estimator.

- ``kl_to_posterior``: KL(q(z|x) ‖ p(z|x)) averaged over the minibatch, exact, for a model with an
  ``exact_posterior(x)`` (:func:`vaebench.exact.kl_to_posterior`: the linear-Gaussian VAE, the Gaussian toy);
  NaN elsewhere. How far q is from the posterior decides how heavy the importance weights are.
- the weight diagnostics of :func:`vaebench.measures.weights.weight_summary` (k̂, ESS, χ²), which decide
  whether the IWAE and DReG scaling laws can be tested at these parameters.

Both are the same for every estimator and K measured on one minibatch at one checkpoint, so a caller that
measures many can draw the weights once (:func:`vaebench.measures.weights.weight_summary`) and pass the
summary to each :func:`~vaebench.measures.variance.measure_variance` call as ``weights=``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError
from vaebench.exact import kl_to_posterior
from vaebench.measures.weights import WEIGHT_COLUMNS, empty_summary, weight_summary


@torch.no_grad()
def row_diagnostics(
    model: nn.Module, x: Tensor, weights: int | Mapping[str, float] | None, seed: int
) -> dict[str, float]:
    """``kl_to_posterior`` and the weight columns for one measurement.

    Args:
        model: the model at the measured parameters.
        x: the measured minibatch [B, D].
        weights: S, the draws per datapoint of the weight diagnostics (0 or None: not drawn, NaN columns), or
            a summary :func:`~vaebench.measures.weights.weight_summary` returned for this model and minibatch.
        seed: the measurement's seed (the weights' stream).
    """
    kl = kl_to_posterior(model, x)
    out = {"kl_to_posterior": math.nan if kl is None else float(kl.mean())}
    if isinstance(weights, Mapping):
        missing = [c for c in WEIGHT_COLUMNS if c not in weights]
        if missing:
            raise VaebenchError(
                f"weights= must be a weight_summary() of the measured minibatch; it lacks {', '.join(missing)}"
            )
        return out | {c: weights[c] for c in WEIGHT_COLUMNS}
    if weights is None or weights == 0:
        return out | empty_summary()
    return out | weight_summary(model, x, weights, seed=seed)
