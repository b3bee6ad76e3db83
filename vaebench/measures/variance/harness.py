"""`measure_variance`: the variance figures of one estimator at one K, parameters and minibatch.

Also the warm-up of stateful estimators and the timing of one ordinary gradient estimate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from vaebench import rng
from vaebench.errors import VaebenchError, check_int
from vaebench.estimators import Estimator
from vaebench.measures.schema import MEASURE_VARIANCE_COLUMNS
from vaebench.measures.throughput.timing import time_steps
from vaebench.measures.variance.baseline import resolve_baseline
from vaebench.measures.variance.diagnostics import row_diagnostics
from vaebench.measures.variance.engines import gradient_sample, resolve_method
from vaebench.measures.variance.layout import GradientSample, VarianceOptions, layout
from vaebench.measures.variance.summary import (
    FIGURES,
    block_partial,
    factored_partial,
    figures,
    finite_rows,
    resample_counts,
    summary_tile,
)

COLUMNS = MEASURE_VARIANCE_COLUMNS
"""Columns of `measure_variance`'s frame, in order."""


def measure_variance(
    model: nn.Module,
    estimator: Estimator,
    x: Tensor,
    num_samples: int,
    replicates: int,
    *,
    baseline: str | Tensor | tuple[Tensor, str] | None = None,
    seed: int = 0,
    options: VarianceOptions = VarianceOptions(),
) -> pd.DataFrame:
    """Gradient variance, SNR, bias and cost of ``estimator`` at the model's current parameters.

    Draws ``replicates`` independent gradient estimates on the same minibatch ``x`` (so this is the Monte
    Carlo noise of the estimator; see ``decompose_noise`` for the minibatch part) and reports, per
    parameter group, the figures of :mod:`vaebench.measures.variance.summary` with bootstrap intervals.

    The estimator is measured in eval mode (its running statistics frozen; the previous mode is restored
    after). Stateful estimators (``reinforce-ma``, ``reinforce-nvil``) must be warmed up at these parameters
    first, on other minibatches than ``x`` (:func:`warm_up`), or the comparison is unfair. Encoder gradients are
    divided by ``estimator.encoder_scale`` (NVIL's known rescaling; the ``encoder_scale`` column records the
    factor), so every estimator is on the scale of the gradient of its objective. Gradients are those of the
    surrogate loss, the negative objective.

    Args:
        model: the model at the parameters to measure (a GaussianVAE or any model of the estimator contract).
        estimator: the estimator (its ``name`` fills the ``estimator`` column).
        x: the minibatch [B, D].
        num_samples: K.
        replicates: R >= 2 independent estimates.
        baseline: the gradient to measure bias and cosine against: None (no bias figures, column
            ``baseline`` = ``"none"``), ``"auto"`` (:func:`baseline_gradient` for the estimator's objective
            at this K), a ``(flat gradient [P], label)`` pair as :func:`baseline_gradient` returns, or a flat
            tensor (label ``"given"``).
        seed: seeds the replicates' noise, the bootstrap and the baseline.
        options: the engine, the level and bootstrap of the intervals, the timing
            (:class:`~vaebench.measures.variance.layout.VarianceOptions`).

    Returns:
        One row per group (``encoder``, ``decoder``, ``all``) with the columns `COLUMNS`. Replicates with a
        NaN or Inf anywhere in their gradient are dropped and counted in ``nan_fraction``; with fewer than two
        finite ones left, the figures are NaN.

    Raises:
        VaebenchError: fewer than 2 replicates, a method the model cannot use, or a baseline of another
            objective.
    """
    check_int("replicates", replicates, 2, "two replicates are the fewest that estimate a variance")
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise VaebenchError(f"x must be a minibatch tensor of shape [B, D], got {getattr(x, 'shape', x)!r}")
    name = estimator.name or type(estimator).__name__
    resolve_method(model, layout(model), options.method)  # a bad method fails before any work
    was_training = estimator.training
    estimator.eval()
    try:
        ref_flat, ref_label, ref_var = resolve_baseline(baseline, model, x, estimator, num_samples, seed)
        sample = gradient_sample(
            model, estimator, x, num_samples, replicates, seed=seed, engine=options.engine(factored=True)
        )
        seconds = time_estimate(
            model, estimator, x, num_samples, repeats=options.timing_repeats, seed=seed, warm=True
        )
        encoder_scale = float(estimator.encoder_scale)
    finally:
        estimator.train(was_training)
    rows = summarize(
        sample,
        baseline=ref_flat,
        baseline_var=ref_var,
        level=options.level,
        resamples=options.resamples,
        seed=seed,
    )
    diagnostics = row_diagnostics(model, x, options.weights, seed)
    for row in rows:
        row.update(diagnostics)
        row.update(
            estimator=name,
            sampler=estimator.sampler,
            objective=estimator.objective,
            num_samples=num_samples,
            seed=seed,
            batch_size=x.shape[0],
            replicates=replicates,
            baseline=ref_label,
            seconds_per_estimate=seconds,
            encoder_scale=encoder_scale,
            method=sample.method,
            level=options.level,
        )
        for suffix in ("", "_low", "_high"):
            row[f"work_normalized_var{suffix}"] = row[f"trace_var{suffix}"] * seconds
    return pd.DataFrame(rows, columns=list(COLUMNS))


def summarize(
    sample: GradientSample,
    *,
    baseline: Tensor | None = None,
    baseline_var: dict[str, float] | None = None,
    level: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> list[dict]:
    """Per-group figures of a gradient sample (finite replicates only), one dict per group.

    Each run of adjacent parameters in the same groups (:meth:`GradientSample.segments`) is reduced once to
    its :class:`~vaebench.measures.variance.summary.Partial`; a group's figures come from the sum of its
    runs' partials.
    """
    lay = sample.layout
    refs = None if baseline is None else list(baseline.split([p.numel() for p in lay.params]))
    # Reduce every replicate first: a replicate with a NaN or Inf anywhere makes the Gram matrix non-finite,
    # and only then is the sample read once more to find it and the finite ones reduced again.
    keep, used = None, sample.replicates
    partials = _partials(sample, refs, keep)
    if not all(_finite(p) for p in partials if p is not None):
        keep = finite_rows(sample)
        used = int(keep.sum())
        partials = _partials(sample, refs, keep) if used >= 2 else [None] * len(lay.params)
    counts = resample_counts(used, resamples, seed) if used >= 2 else None  # the same draws for every group
    rows = []
    for group, members in lay.groups.items():
        row: dict = {
            "group": group,
            "num_params": sum(lay.params[i].numel() for i in members),
            "replicates_used": used,
            "nan_fraction": 1 - used / sample.replicates,
        }
        for name in FIGURES:  # NaN unless measured below
            row[name] = row[f"{name}_low"] = row[f"{name}_high"] = float("nan")
        parts = [partials[i] for i in members if partials[i] is not None]
        if parts:
            total = parts[0]
            for part in parts[1:]:
                total = total + part
            row |= figures(
                total,
                used,
                has_baseline=baseline is not None,
                baseline_var=(baseline_var or {}).get(group, 0.0),
                level=level,
                resamples=resamples,
                seed=seed,
                counts=counts,
            )
        rows.append(row)
    return rows


WARM_UP_CALLS = 20  # train-mode calls that let running statistics settle
WARM_UP_BASELINE_STEPS = 200  # Adam steps on an estimator's own parameters (NVIL's baseline network)


def warm_up(
    estimator: Estimator,
    model: nn.Module,
    batches: Tensor | Sequence[Tensor],
    *,
    num_samples: int,
    calls: int = WARM_UP_CALLS,
    baseline_steps: int = WARM_UP_BASELINE_STEPS,
    lr: float = 1e-2,
    seed: int = 0,
) -> Estimator:
    """Bring a stateful estimator to a fair state at the model's current parameters; return it in eval mode.

    Baselines start from one draw at the parameters they are prepared at, and NVIL's b(x) starts at zero:
    not what a trained run would use. So, without touching the model:

    1. the estimator is prepared on the first batch (its statistics set from an independent draw, seeded by
       ``seed``);
    2. estimators with their own parameters (NVIL's baseline network) fit them for ``baseline_steps`` Adam
       steps (the estimator's own loss, the regression of f on b(x)), cycling through ``batches``;
    3. ``calls`` train-mode calls without any optimizer step, cycling through ``batches``, let running
       statistics (moving averages, NVIL's centre and variance) settle.

    Warm up on minibatches *other than the one you then measure*: a baseline fitted on the measured batch
    learns that batch's f and makes the measured variance look far lower than in training, where each batch
    is new (at the end of the default digits run, K = 1: NVIL's encoder variance 921 with b(x) fitted on the
    measured batch, 20,498 fitted on others, against 36,715 for the moving average).
    The suite's variance units do so (:mod:`vaebench.measures.variance.minibatches`).
    Stateless estimators are only prepared and put in eval mode. Call this before :func:`measure_variance`.

    Args:
        estimator: the estimator (updated in place).
        model: the model at the parameters to measure (left unchanged, gradients included).
        batches: one minibatch [B, D] or several, to warm up on (not the measured one).
        num_samples: K to use in the warm-up calls.
        calls: train-mode calls for the running statistics.
        baseline_steps: optimizer steps on the estimator's own parameters.
        lr: their Adam learning rate.
        seed: seeds the warm-up noise (its own stream).

    Returns:
        The estimator, in eval mode.
    """
    batches = [batches] if isinstance(batches, Tensor) else list(batches)
    if not batches or not all(isinstance(b, Tensor) and b.dim() == 2 for b in batches):
        raise VaebenchError("warm_up needs one minibatch [B, D] or a non-empty list of them")
    x = batches[0]
    estimator.prepare(model, x, seed=seed)
    estimator.to(x.device)
    params = [p for p in estimator.parameters() if p.requires_grad]
    if not params and not list(estimator.buffers()):
        return estimator.eval()
    gen = rng.generator(seed, "variance.warm_up", device=x.device)
    estimator.train()
    if params and baseline_steps > 0:
        opt = torch.optim.Adam(params, lr=lr)
        for step in range(baseline_steps):
            batch = batches[step % len(batches)]
            surrogate = estimator(model, batch, num_samples=num_samples, generator=gen).surrogate
            grads = torch.autograd.grad(surrogate, params, allow_unused=True)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            opt.step()
        for p in params:
            p.grad = None
    with torch.no_grad():
        for call in range(calls):
            estimator(model, batches[call % len(batches)], num_samples=num_samples, generator=gen)
    return estimator.eval()


def time_estimate(
    model: nn.Module,
    estimator: Estimator,
    x: Tensor,
    num_samples: int,
    *,
    repeats: int = 5,
    seed: int = 0,
    warm: bool = False,
) -> float:
    """Median seconds of one ordinary gradient estimate (forward + backward) at this batch, after a warm-up.

    Gradients are taken for the model's and the estimator's parameters, as in a training step, without
    accumulating them, with the throughput measure's clock (``time_steps`` of
    :mod:`vaebench.measures.throughput.timing`: CUDA events on a GPU, ``perf_counter`` on a CPU). ``warm``: the estimator has just run on
    this model (as in :func:`measure_variance`, after the replicates), so no untimed call comes first (else one
    does: it warms up caches and allocators).
    """
    params = [p for p in (*model.parameters(), *estimator.parameters()) if p.requires_grad]
    gen = rng.generator(seed, "variance.timing", device=x.device)

    def estimate() -> None:
        surrogate = estimator(model, x, num_samples=num_samples, generator=gen).surrogate
        torch.autograd.grad(surrogate, params, allow_unused=True)

    return float(statistics.median(time_steps(estimate, x.device, repeats, warmup=0 if warm else 1)))


def _partials(sample: GradientSample, refs: list[Tensor] | None, keep: Tensor | None) -> list:
    """The partial of each segment of ``sample`` (rows ``keep``, or all), at its first parameter's index."""
    partials = [None] * len(sample.layout.params)
    used = sample.replicates if keep is None else int(keep.sum())
    segments = sample.segments()
    widest = max(sample.blocks[run[0]].shape[1] if cols is None else cols.shape[1] for cols, run in segments)
    tile = min(widest, summary_tile(used, sample.blocks[0]))
    scratch = sample.blocks[0].new_empty(2 * used * tile)  # one work buffer for every segment
    every = keep is None or used == sample.replicates
    for cols, members in segments:
        ref = None if refs is None else torch.cat([refs[i] for i in members])
        if cols is None:  # a weight kept as factors (a, δ): reduced without forming its block
            shared, deltas = sample.factors[members[0]]
            partials[members[0]] = factored_partial(
                shared, deltas if every else deltas[keep], ref, scratch, tile
            )
        else:
            partials[members[0]] = block_partial(cols if every else cols[keep], ref, scratch, tile)
    return partials


def _finite(partial) -> bool:
    return bool(torch.isfinite(partial.gram).all()) and all(
        math.isfinite(v) for v in (partial.mean_sq, partial.snr_sum)
    )
