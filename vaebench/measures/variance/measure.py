"""`measure_variance`: the variance figures of one estimator at one K, parameters and minibatch.

Also the pieces it needs: the reference gradient (exact or high-sample), the warm-up of stateful estimators,
and the timing of one ordinary gradient estimate.
"""

from __future__ import annotations

import math
import re
import statistics
import time

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError
from vaebench.estimators import IWAE, Estimator, Reparam, check_num_samples
from vaebench.exact import exact_elbo
from vaebench.measures.variance.engines import (
    ROW_BUDGET,
    GradientSample,
    Layout,
    gradient_sample,
    layout,
    resolve_method,
)
from vaebench.measures.variance.summary import FIGURES, block_partial, figures, finite_rows

DEFAULT_REFERENCE_SAMPLES = 4096  # independent estimates averaged into a sampled reference gradient
STREAMS = {"replicates": 0, "reference": 1, "timing": 2, "warm_up": 3}
"""Independent random streams of one seed, so the reference's noise never correlates with the replicates'."""

COLUMNS = (
    "estimator",
    "objective",
    "num_samples",
    "seed",
    "group",
    "num_params",
    "batch_size",
    "replicates",
    "replicates_used",
    "nan_fraction",
    *(c for f in FIGURES[:4] for c in (f, f"{f}_low", f"{f}_high")),
    "snr_floor",
    "snr_coordinates",
    "reference",
    *(c for f in FIGURES[4:] for c in (f, f"{f}_low", f"{f}_high")),
    "mean_error_norm",
    "bias_floor",
    "seconds_per_estimate",
    "work_normalized_var",
    "work_normalized_var_low",
    "work_normalized_var_high",
    "encoder_scale",
    "method",
    "level",
)
"""Columns of `measure_variance`'s frame, in order."""


def stream_generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for one independent stream (a key of `STREAMS`) of ``seed``."""
    state = np.random.SeedSequence([seed, STREAMS[stream]]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))


def stream_seed(seed: int, stream: str) -> int:
    """An integer seed for one independent stream of ``seed`` (for engines that take a seed)."""
    return int(np.random.SeedSequence([seed, STREAMS[stream]]).generate_state(1, dtype=np.uint32)[0])


def measure_variance(
    model: nn.Module,
    estimator: Estimator,
    x: Tensor,
    num_samples: int,
    replicates: int,
    *,
    reference: str | Tensor | tuple[Tensor, str] | None = None,
    seed: int = 0,
    chunk_size: int | None = None,
    level: float = 0.95,
    method: str = "batched",
    resamples: int = 1000,
    timing_repeats: int = 5,
) -> pd.DataFrame:
    """Gradient variance, SNR, bias and cost of ``estimator`` at the model's current parameters.

    Draws ``replicates`` independent gradient estimates on the same minibatch ``x`` (so this is the Monte
    Carlo noise of the estimator; see ``decompose_noise`` for the minibatch part) and reports, per
    parameter group, the figures of :mod:`vaebench.measures.variance.summary` with bootstrap intervals.

    The estimator is measured in eval mode (its running statistics frozen; the previous mode is restored
    after). Stateful estimators (``reinforce-ma``, ``reinforce-nvil``) must be warmed up at these parameters
    first (:func:`warm_up`), or their baselines are zero and the comparison is unfair. Encoder gradients are
    divided by ``estimator.encoder_scale`` (NVIL's known rescaling; the ``encoder_scale`` column records the
    factor), so every estimator is on the scale of the gradient of its objective. Gradients are those of the
    surrogate loss, the negative objective.

    Args:
        model: the model at the parameters to measure (a GaussianVAE or any model of the estimator contract).
        estimator: the estimator (its ``name`` fills the ``estimator`` column).
        x: the minibatch [B, D].
        num_samples: K.
        replicates: R >= 2 independent estimates.
        reference: the gradient to measure bias and cosine against: None (no bias figures, reference
            ``"none"``), ``"auto"`` (:func:`reference_gradient` for the estimator's objective at this K), a
            ``(flat gradient [P], label)`` pair as :func:`reference_gradient` returns, or a flat tensor
            (label ``"given"``).
        seed: seeds the replicates' noise, the bootstrap and the reference.
        chunk_size: replicates per batched pass (bounds memory; default from the batch size and K).
        level: level of every interval.
        method: ``batched`` (default), ``tiled``, ``vmap`` or ``naive``; see
            :mod:`vaebench.measures.variance.engines`.
        resamples: bootstrap resamples per interval.
        timing_repeats: timed gradient estimates for ``seconds_per_estimate`` (their median).

    Returns:
        One row per group (``encoder``, ``decoder``, ``all``) with the columns `COLUMNS`. Replicates with a
        NaN or Inf anywhere in their gradient are dropped and counted in ``nan_fraction``; with fewer than two
        finite ones left, the figures are NaN.

    Raises:
        VaebenchError: fewer than 2 replicates, an impossible K for this estimator, a bad level or method, or a
            reference of another objective.
    """
    _check_int("replicates", replicates, 2, "two replicates are the fewest that estimate a variance")
    _check_int("resamples", resamples, 1)
    _check_int("timing_repeats", timing_repeats, 1)
    if not 0 < level < 1:
        raise VaebenchError(f"level must lie strictly between 0 and 1, got {level!r}")
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise VaebenchError(f"x must be a minibatch tensor of shape [B, D], got {getattr(x, 'shape', x)!r}")
    name = estimator.name or type(estimator).__name__
    check_num_samples(num_samples, estimator.min_samples, name)
    resolve_method(model, layout(model), method)  # a bad method fails before any work
    was_training = estimator.training
    estimator.eval()
    try:
        ref_flat, ref_label, ref_var = _resolve_reference(reference, model, x, estimator, num_samples, seed)
        sample = gradient_sample(
            model,
            estimator,
            x,
            num_samples,
            replicates,
            seed=stream_seed(seed, "replicates"),
            chunk_size=chunk_size,
            method=method,
        )
        seconds = time_estimate(model, estimator, x, num_samples, repeats=timing_repeats, seed=seed)
        encoder_scale = float(estimator.encoder_scale)
    finally:
        estimator.train(was_training)
    rows = summarize(
        sample, reference=ref_flat, reference_var=ref_var, level=level, resamples=resamples, seed=seed
    )
    for row in rows:
        row.update(
            estimator=name,
            objective=estimator.objective,
            num_samples=num_samples,
            seed=seed,
            batch_size=x.shape[0],
            replicates=replicates,
            reference=ref_label,
            seconds_per_estimate=seconds,
            encoder_scale=encoder_scale,
            method=sample.method,
            level=level,
        )
        for suffix in ("", "_low", "_high"):
            row[f"work_normalized_var{suffix}"] = row[f"trace_var{suffix}"] * seconds
    return pd.DataFrame(rows, columns=list(COLUMNS))


def summarize(
    sample: GradientSample,
    *,
    reference: Tensor | None = None,
    reference_var: dict[str, float] | None = None,
    level: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> list[dict]:
    """Per-group figures of a gradient sample (finite replicates only), one dict per group.

    Each block is reduced once to its :class:`~vaebench.measures.variance.summary.Partial`; a group's
    figures come from the sum of its blocks' partials.
    """
    keep = finite_rows(sample)
    used = int(keep.sum())
    lay = sample.layout
    refs = [None] * len(lay.params) if reference is None else _split(reference, lay)
    partials = []
    if used >= 2:
        largest = max(b.shape[1] for b in sample.blocks)
        scratch = sample.blocks[0].new_empty(2 * used * largest)  # one work buffer for every block
        for block, ref in zip(sample.blocks, refs, strict=True):
            partials.append(block_partial(block[keep] if used < sample.replicates else block, ref, scratch))
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
        if partials and members:
            total = partials[members[0]]
            for i in members[1:]:
                total = total + partials[i]
            row |= figures(
                total,
                used,
                has_reference=reference is not None,
                reference_var=(reference_var or {}).get(group, 0.0),
                level=level,
                resamples=resamples,
                seed=seed,
            )
        rows.append(row)
    return rows


def reference_gradient(
    model: nn.Module,
    x: Tensor,
    *,
    objective: str = "elbo",
    num_samples: int = 1,
    samples: int = DEFAULT_REFERENCE_SAMPLES,
    seed: int = 0,
) -> tuple[Tensor, str]:
    """The gradient the estimators are compared with: exact where possible, else a high-sample estimate.

    The gradient of the surrogate loss -mean_b objective, flattened in the order of
    :func:`~vaebench.measures.variance.engines.layout`. For the ELBO (and IWAE_1, which is the ELBO) of a
    linear-Gaussian model it is exact (autograd through :func:`vaebench.exact.exact_elbo`, label ``"exact"``);
    otherwise it is the mean of ``samples`` independent pathwise estimates of the same objective at the same
    K: ``reparam`` for the ELBO (label ``"reparam-<samples>"``), ``iwae`` at K for IWAE_K (label
    ``"iwae<K>-<samples>"``).

    Args:
        model: the model at the parameters to measure.
        x: the minibatch [B, D].
        objective: ``"elbo"`` or ``"iwae"``.
        num_samples: K of the IWAE_K objective (ignored for the ELBO).
        samples: independent estimates averaged for a sampled reference.
        seed: seeds the sampled reference (its own stream, independent of the replicates').

    Returns:
        (gradient [P], label).
    """
    flat, label, _ = _reference(model, x, objective, num_samples, samples, seed)
    return flat, label


def _reference(model, x, objective, num_samples, samples, seed) -> tuple[Tensor, str, dict[str, float]]:
    """(flat gradient, label, per-group trace of the reference's own covariance)."""
    if objective not in ("elbo", "iwae"):
        raise VaebenchError(f"objective must be 'elbo' or 'iwae', got {objective!r}")
    check_num_samples(num_samples)
    _check_int("samples", samples, 2)
    lay = layout(model)
    iwae = objective == "iwae" and num_samples > 1
    if not iwae and getattr(model, "is_linear_gaussian", False):
        with torch.enable_grad():
            grads = torch.autograd.grad(-exact_elbo(model, x).mean(), lay.params, allow_unused=True)
        return _flat(grads, lay.params), "exact", dict.fromkeys(lay.groups, 0.0)
    estimator = IWAE() if iwae else Reparam()
    k = num_samples if iwae else 1
    chunks = max(
        8, math.ceil(samples * k * x.shape[0] / ROW_BUDGET)
    )  # >= 8 chunk means to estimate its noise
    sizes = [samples // chunks + (i < samples % chunks) for i in range(chunks)]
    gen = stream_generator(seed, "reference", x.device)
    means = []
    for size in sizes:
        out = estimator(model, x.repeat(size, 1), num_samples=k, generator=gen)  # mean of `size` estimates
        grads = torch.autograd.grad(out.surrogate, lay.params, allow_unused=True)
        means.append(_flat(grads, lay.params))
    means = torch.stack(means)  # [chunks, P]
    weights = torch.tensor(sizes, dtype=means.dtype, device=means.device) / samples
    flat = weights @ means
    # Var(chunk mean) ≈ Var(g)/size; the chunk means' spread estimates Var(g), the reference's is Var(g)/samples.
    scaled = (means - flat) * torch.tensor(sizes, dtype=means.dtype, device=means.device).sqrt()[:, None]
    per_coord = scaled.pow(2).sum(0) / (chunks - 1) / samples
    offsets = _offsets(lay)
    ref_var = {
        group: float(sum(per_coord[offsets[i] : offsets[i] + lay.params[i].numel()].sum() for i in members))
        for group, members in lay.groups.items()
    }
    label = f"iwae{num_samples}-{samples}" if iwae else f"reparam-{samples}"
    return flat.detach(), label, ref_var


def _resolve_reference(reference, model, x, estimator, num_samples, seed):
    """(flat or None, label, per-group variance) from the ``reference`` argument of measure_variance."""
    if reference is None:
        return None, "none", None
    if isinstance(reference, str):
        if reference != "auto":
            raise VaebenchError(
                f"reference must be None, 'auto', a tensor or (tensor, label), got {reference!r}"
            )
        return _reference(model, x, estimator.objective, num_samples, DEFAULT_REFERENCE_SAMPLES, seed)
    if isinstance(reference, tuple):
        flat, label, ref_var = (*reference, None)[:3]
    else:
        flat, label, ref_var = reference, "given", None
    size = layout(model).size
    if not isinstance(flat, Tensor) or flat.shape != (size,):
        raise VaebenchError(
            f"the reference gradient must be a flat tensor of shape [{size}], got {getattr(flat, 'shape', flat)!r}"
        )
    wants = f"IWAE_{num_samples}" if estimator.objective == "iwae" and num_samples > 1 else "ELBO"
    match = re.fullmatch(r"iwae(\d+)-\d+", label)
    has = (
        f"IWAE_{match.group(1)}"
        if match
        else "ELBO"
        if label == "exact" or label.startswith("reparam-")
        else None
    )
    if has is not None and has != wants:
        raise VaebenchError(
            f"reference {label!r} is the {has} gradient but {estimator.name or 'the estimator'} estimates the "
            f"{wants} gradient; use reference_gradient(model, x, objective={estimator.objective!r}, "
            f"num_samples={num_samples})"
        )
    return flat.to(device=x.device, dtype=x.dtype), label, ref_var


def warm_up(
    estimator: Estimator,
    model: nn.Module,
    x: Tensor,
    *,
    num_samples: int,
    calls: int = 20,
    baseline_steps: int = 200,
    lr: float = 1e-2,
    seed: int = 0,
) -> Estimator:
    """Bring a stateful estimator to a fair state at the model's current parameters; return it in eval mode.

    Baselines start at zero: REINFORCE with a zero moving average is plain REINFORCE, and NVIL's untrained
    b(x) and unit variance normaliser are not what a trained run would use. So, without touching the model:

    1. estimators with their own parameters (NVIL's baseline network) fit them for ``baseline_steps`` Adam
       steps on ``x`` (the estimator's own loss, the regression of f on b(x));
    2. ``calls`` train-mode calls without any optimizer step let running statistics (moving averages, NVIL's
       centre and variance) settle.

    Stateless estimators are only prepared and put in eval mode. Call this before :func:`measure_variance`.

    Args:
        estimator: the estimator (updated in place).
        model: the model at the parameters to measure (left unchanged, gradients included).
        x: the minibatch [B, D].
        num_samples: K to use in the warm-up calls.
        calls: train-mode calls for the running statistics.
        baseline_steps: optimizer steps on the estimator's own parameters.
        lr: their Adam learning rate.
        seed: seeds the warm-up noise (its own stream).

    Returns:
        The estimator, in eval mode.
    """
    check_num_samples(num_samples, estimator.min_samples, estimator.name)
    estimator.prepare(model, x)
    estimator.to(x.device)
    params = [p for p in estimator.parameters() if p.requires_grad]
    if not params and not list(estimator.buffers()):
        return estimator.eval()
    gen = stream_generator(seed, "warm_up", x.device)
    estimator.train()
    if params and baseline_steps > 0:
        opt = torch.optim.Adam(params, lr=lr)
        for _ in range(baseline_steps):
            surrogate = estimator(model, x, num_samples=num_samples, generator=gen).surrogate
            grads = torch.autograd.grad(surrogate, params, allow_unused=True)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            opt.step()
        for p in params:
            p.grad = None
    with torch.no_grad():
        for _ in range(calls):
            estimator(model, x, num_samples=num_samples, generator=gen)
    return estimator.eval()


def time_estimate(
    model: nn.Module, estimator: Estimator, x: Tensor, num_samples: int, *, repeats: int = 5, seed: int = 0
) -> float:
    """Median seconds of one ordinary gradient estimate (forward + backward) at this batch, after a warm-up.

    Gradients are taken for the model's and the estimator's parameters, as in a training step, without
    accumulating them; the device is synchronised before each clock read.
    """
    params = [p for p in (*model.parameters(), *estimator.parameters()) if p.requires_grad]
    gen = stream_generator(seed, "timing", x.device)
    times = []
    for i in range(repeats + 1):
        _sync(x.device)
        start = time.perf_counter()
        surrogate = estimator(model, x, num_samples=num_samples, generator=gen).surrogate
        torch.autograd.grad(surrogate, params, allow_unused=True)
        _sync(x.device)
        if i > 0:  # the first call warms up caches and allocators
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _flat(grads: tuple[Tensor | None, ...], params: list[nn.Parameter]) -> Tensor:
    """Gradients (None for unused parameters) concatenated into one detached flat vector."""
    parts = [
        (torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads, strict=True)
    ]
    return torch.cat(parts).detach()


def _split(flat: Tensor, lay: Layout) -> list[Tensor]:
    return list(flat.split([p.numel() for p in lay.params]))


def _offsets(lay: Layout) -> list[int]:
    offsets, start = [], 0
    for p in lay.params:
        offsets.append(start)
        start += p.numel()
    return offsets


def _check_int(name: str, value, minimum: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        reason = f" ({why})" if why else ""
        raise VaebenchError(f"{name} must be an integer >= {minimum}{reason}, got {value!r}")
