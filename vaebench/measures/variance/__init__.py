r"""Gradient variance of an estimator at fixed parameters, with an interval on every figure.

Why: variance is what separates the pathwise gradient from REINFORCE and what every variance-reduction method
claims to lower. The measure fixes everything but the estimator's noise: the parameters (the suite measures
every setting at checkpoints of one anchor training run), the minibatch
(:mod:`~vaebench.measures.variance.minibatches`), and the estimator's state (frozen in eval mode after a
:func:`warm_up` on other minibatches than the measured one).

For a minibatch x and the estimator's gradient estimate g (of the surrogate loss, the negative objective;
NVIL's encoder part divided by its known ``encoder_scale``), with R independent replicates g_1..g_R:

- ``trace_var`` = tr Cov[g | x] = Σ_p Var(g_p), and ``mean_sq_norm`` = E||g||² = ||E g||² + tr Cov;
- ``snr``: Rainforth et al. 2018 (arXiv:1802.04537), |E g_p| / sd(g_p) averaged over coordinates p, and
  ``snr_norm`` = ||E g|| / √tr Cov;
- ``bias_norm`` = ||ḡ - g*|| and ``cosine`` = E cos(g, g*) against a baseline gradient g*: the exact gradient
  on the linear-Gaussian model, else a high-sample pathwise estimate of the same objective
  (:func:`baseline_gradient`; column ``baseline``);
- ``work_normalized_var`` = trace_var x seconds per estimate: the variance at equal compute (averaging n
  estimates divides the variance by n and multiplies the time by n), the figure that decides which estimator
  wins for a fixed budget;
- :func:`decompose_noise`, over several minibatches, the law of total variance,
  tr Cov[g] = E_x[tr Cov[g | x]] (Monte Carlo) + tr Cov_x[E[g | x]] (minibatch).

Every figure comes with a percentile-bootstrap interval over replicates (``<figure>_low``/``_high``). The
replicates are computed batched (:mod:`~vaebench.measures.variance.engines`): a few passes over chunks of the
R x K x B rows with per-replicate gradients from per-layer batched matmuls (chunks sized by device: in cache
on a CPU, large on a GPU), or ``torch.func.vmap`` for models not built of linear layers.

Modules: ``layout`` (parameter order and groups, the engine and measure options), ``engines`` and ``tiled``
(the replicate gradients), ``summary`` (the figures and their intervals), ``baseline``
(:func:`baseline_gradient`), ``measure`` (:func:`measure_variance`, :func:`warm_up`), ``noise``
(:func:`decompose_noise`), ``minibatches`` (which minibatch is measured, which warm up).
"""

from vaebench.measures.variance.baseline import baseline_gradient, baseline_target, target_baseline
from vaebench.measures.variance.engines import gradient_sample, replicate_gradients
from vaebench.measures.variance.harness import COLUMNS, measure_variance, time_estimate, warm_up
from vaebench.measures.variance.layout import (
    METHODS,
    Engine,
    GradientSample,
    Layout,
    VarianceOptions,
    layout,
)
from vaebench.measures.variance.minibatches import (
    WARM_UP_BATCHES,
    measured_minibatch,
    warm_up_minibatches,
)
from vaebench.measures.variance.noise import decompose_noise

__all__ = [
    "COLUMNS",
    "METHODS",
    "WARM_UP_BATCHES",
    "Engine",
    "GradientSample",
    "Layout",
    "VarianceOptions",
    "baseline_gradient",
    "baseline_target",
    "decompose_noise",
    "gradient_sample",
    "layout",
    "measure_variance",
    "measured_minibatch",
    "replicate_gradients",
    "target_baseline",
    "time_estimate",
    "warm_up",
    "warm_up_minibatches",
]
