"""The baseline gradient: the gradient the estimators' replicates are compared with (bias, cosine, SNR).

Exact where the model has a closed-form objective (autograd through :func:`vaebench.exact.exact_elbo`, or the
model's own ``exact_elbo(x)`` method, as :class:`vaebench.toy.GaussianToy` has), else the mean of many
independent pathwise estimates of the same objective. On disk, the variance table's ``reference`` column keeps
the name earlier versions gave it (see :mod:`vaebench.measures.schema`).
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor, nn

from vaebench import rng
from vaebench.errors import VaebenchError, check_int
from vaebench.estimators import IWAE, Reparam, check_num_samples
from vaebench.exact import exact_elbo
from vaebench.measures.variance.engines import ROW_BUDGET
from vaebench.measures.variance.layout import Layout, layout

DEFAULT_BASELINE_SAMPLES = 4096  # independent estimates averaged into a sampled baseline gradient


def baseline_gradient(
    model: nn.Module,
    x: Tensor,
    *,
    objective: str = "elbo",
    num_samples: int = 1,
    samples: int = DEFAULT_BASELINE_SAMPLES,
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
        samples: independent estimates averaged for a sampled baseline.
        seed: seeds the sampled baseline (its own stream, independent of the replicates').

    Returns:
        (gradient [P], label).
    """
    flat, label, _ = sampled_baseline(model, x, objective, num_samples, samples, seed)
    return flat, label


def baseline_key(objective: str, num_samples: int) -> tuple[str, int]:
    """The (objective, K) whose gradient an estimator of ``objective`` at K is compared with: IWAE_K for the
    importance-weighted bound at K > 1, else the ELBO (IWAE_1 is the ELBO). Estimators with the same key share
    one baseline gradient."""
    return ("iwae", num_samples) if objective == "iwae" and num_samples > 1 else ("elbo", 1)


def sampled_baseline(model, x, objective, num_samples, samples, seed) -> tuple[Tensor, str, dict[str, float]]:
    """(flat gradient, label, per-group trace of the baseline's own covariance)."""
    if objective not in ("elbo", "iwae"):
        raise VaebenchError(f"objective must be 'elbo' or 'iwae', got {objective!r}")
    check_num_samples(num_samples)
    check_int("samples", samples, 2)
    lay = layout(model)
    iwae = objective == "iwae" and num_samples > 1
    closed = getattr(model, "exact_elbo", None)  # a model's own closed-form ELBO (the Gaussian toy's)
    if not iwae and (getattr(model, "is_linear_gaussian", False) or callable(closed)):
        with torch.enable_grad():
            elbo = closed(x) if callable(closed) else exact_elbo(model, x)
            grads = torch.autograd.grad(-elbo.mean(), lay.params, allow_unused=True)
        return _flat(grads, lay.params), "exact", dict.fromkeys(lay.groups, 0.0)
    estimator = IWAE() if iwae else Reparam()
    k = num_samples if iwae else 1
    chunks = max(
        8, math.ceil(samples * k * x.shape[0] / ROW_BUDGET)
    )  # >= 8 chunk means to estimate its noise
    sizes = [samples // chunks + (i < samples % chunks) for i in range(chunks)]
    gen = rng.generator(seed, "variance.baseline_gradient", device=x.device)
    means = []
    for size in sizes:
        out = estimator(model, x.repeat(size, 1), num_samples=k, generator=gen)  # mean of `size` estimates
        grads = torch.autograd.grad(out.surrogate, lay.params, allow_unused=True)
        means.append(_flat(grads, lay.params))
    means = torch.stack(means)  # [chunks, P]
    weights = torch.tensor(sizes, dtype=means.dtype, device=means.device) / samples
    flat = weights @ means
    # Var(chunk mean) ≈ Var(g)/size; the chunk means' spread estimates Var(g), the baseline's is Var(g)/samples.
    scaled = (means - flat) * torch.tensor(sizes, dtype=means.dtype, device=means.device).sqrt()[:, None]
    per_coord = scaled.pow(2).sum(0) / (chunks - 1) / samples
    offsets = _offsets(lay)
    ref_var = {
        group: float(sum(per_coord[offsets[i] : offsets[i] + lay.params[i].numel()].sum() for i in members))
        for group, members in lay.groups.items()
    }
    label = f"iwae{num_samples}-{samples}" if iwae else f"reparam-{samples}"
    return flat.detach(), label, ref_var


def resolve_baseline(baseline, model, x, estimator, num_samples, seed):
    """(flat or None, label, per-group variance) from the ``baseline`` argument of measure_variance."""
    if baseline is None:
        return None, "none", None
    if isinstance(baseline, str):
        if baseline != "auto":
            raise VaebenchError(
                f"baseline must be None, 'auto', a tensor or (tensor, label), got {baseline!r}"
            )
        objective, k = baseline_key(estimator.objective, num_samples)
        return sampled_baseline(model, x, objective, k, DEFAULT_BASELINE_SAMPLES, seed)
    if isinstance(baseline, tuple):
        flat, label, ref_var = (*baseline, None)[:3]
    else:
        flat, label, ref_var = baseline, "given", None
    size = layout(model).size
    if not isinstance(flat, Tensor) or flat.shape != (size,):
        raise VaebenchError(
            f"the baseline gradient must be a flat tensor of shape [{size}], got {getattr(flat, 'shape', flat)!r}"
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
            f"baseline {label!r} is the {has} gradient but {estimator.name or 'the estimator'} estimates the "
            f"{wants} gradient; use baseline_gradient(model, x, objective={estimator.objective!r}, "
            f"num_samples={num_samples})"
        )
    return flat.to(device=x.device, dtype=x.dtype), label, ref_var


def _flat(grads: tuple[Tensor | None, ...], params: list[nn.Parameter]) -> Tensor:
    """Gradients (None for unused parameters) concatenated into one detached flat vector."""
    parts = [
        (torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads, strict=True)
    ]
    return torch.cat(parts).detach()


def _offsets(lay: Layout) -> list[int]:
    offsets, start = [], 0
    for p in lay.params:
        offsets.append(start)
        start += p.numel()
    return offsets
