"""The baseline gradient: the gradient the estimators' replicates are compared with (bias, cosine, SNR).

What an estimator is compared with is its own target, ``estimator.target(K)`` (a bound per parameter group),
and `target_baseline` is the one function from a target to its gradient, bound by bound (`bound_baseline`):

- the ELBO: exact where the model has a closed form (autograd through :func:`vaebench.exact.exact_elbo`),
  else the mean of many ``reparam`` estimates;
- IWAE_K, the Rényi bound VR_{α,K}: the mean of many pathwise estimates of the same bound at the same K
  (``iwae``, ``renyi`` at α), exact at K = 1 (they are the ELBO there); CIWAE_β as β x the ELBO's + (1 - β) x
  IWAE_K's (`reference_parts`);
- the inclusive KL -KL(p(z|x) || q) of the wake phase (encoder only): exact on the linear-Gaussian model
  (:func:`vaebench.exact.exact_inclusive_kl`), else `SNIS_SAMPLES`-sample self-normalised estimates
  (``rws``), consistent but biased by O(1/`SNIS_SAMPLES`): no unbiased estimator of it exists;
- the thermodynamic bound TVO_S: exact on the linear-Gaussian model (:func:`vaebench.exact.exact_tvo`), else
  `SNIS_SAMPLES`-sample estimates of ``tvo`` with the same partition (self-normalised likewise);
- UHA's annealed bound: the mean of many of its own pathwise estimates, with the same dynamics.

This table (`reference_parts`, `exact_bound_gradient`, `bound_estimator`) is also the one the exact-gradient
checks reference a bound by (:func:`vaebench.checks.exact_gradients.reference_of`), with their own budget.

A target whose groups differ (``rws``: φ the inclusive KL, θ IWAE_K; ``piwae``) takes each group's
coordinates from its own bound. A model with a closed-form ELBO of its own (``exact_elbo(x)``, as
:class:`vaebench.toy.GaussianToy` has) gives the exact ELBO gradient too. The variance table's ``baseline``
column names the baseline a row was measured against.
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor, nn

from vaebench import rng
from vaebench.errors import VaebenchError, check_int
from vaebench.estimators import (
    TVO,
    UHA,
    Bound,
    Estimator,
    Target,
    check_num_samples,
    make_estimator,
)
from vaebench.exact import exact_elbo, exact_inclusive_kl, exact_tvo
from vaebench.measures.variance.engines import ROW_BUDGET
from vaebench.measures.variance.layout import Layout, layout

DEFAULT_BASELINE_SAMPLES = 4096  # independent estimates averaged into a sampled baseline gradient
SNIS_SAMPLES = 1024  # draws of each self-normalised estimate of the inclusive-KL gradient (non-linear models)


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


def sampled_baseline(model, x, objective, num_samples, samples, seed) -> tuple[Tensor, str, dict[str, float]]:
    """(flat gradient, label, per-group trace of the baseline's own covariance) for ``"elbo"`` or
    ``"iwae"`` at K = ``num_samples`` (the form from before targets; see `target_baseline`)."""
    if objective not in ("elbo", "iwae"):
        raise VaebenchError(f"objective must be 'elbo' or 'iwae', got {objective!r}")
    check_num_samples(num_samples)
    bound = Bound.of(objective, num_samples)
    return target_baseline(model, x, Target(bound, bound), samples, seed)


def baseline_target(estimator: Estimator, num_samples: int) -> Target:
    """What ``estimator``'s replicates at K = ``num_samples`` are compared with: its own target, per group.

    The one place that chooses a baseline for an objective label: every label's estimator declares its
    bounds in ``target`` (IWAE_K, VR_{α,K}, CIWAE_β, the inclusive KL, ...); `target_baseline` computes them.
    """
    return estimator.target(num_samples)


def target_baseline(
    model: nn.Module, x: Tensor, target: Target, samples: int, seed: int
) -> tuple[Tensor, str, dict[str, float]]:
    """(flat gradient [P], label, per-group trace of its own covariance) of ``target``'s gradient.

    Each group's coordinates come from its own bound (`bound_baseline`); the label is the bound's, or
    ``"<encoder's>|<decoder's>"`` when they differ.
    """
    check_int("samples", samples, 2)
    parts = {
        bound: bound_baseline(model, x, bound, samples, seed) for bound in (target.encoder, target.decoder)
    }
    if target.encoder == target.decoder:
        return parts[target.encoder]
    lay = layout(model)
    (enc, enc_label, enc_var), (dec, dec_label, dec_var) = parts[target.encoder], parts[target.decoder]
    offsets = _offsets(lay)
    flat = dec.clone()
    for i in lay.encoder:
        flat[offsets[i] : offsets[i] + lay.params[i].numel()] = enc[
            offsets[i] : offsets[i] + lay.params[i].numel()
        ]
    ref_var = {group: (enc_var if group == "encoder" else dec_var)[group] for group in lay.groups}
    return flat, f"{enc_label}|{dec_label}", ref_var


SELF_NORMALISED = ("inclusive-kl", "tvo")
"""Bounds without an unbiased estimator: sampled by few self-normalised estimates of `SNIS_SAMPLES` draws."""


def reference_parts(bound: Bound) -> tuple[tuple[float, Bound], ...]:
    """``bound``'s gradient as a weighted sum of bounds' gradients: CIWAE_β = β ELBO + (1 - β) IWAE_K is linear
    in the two, so each is referenced apart (exact where the ELBO is, and never by the CIWAE estimator, which
    a reference must check); any other bound is itself."""
    if bound.name == "ciwae":
        return (bound.parameter, Bound.of("elbo")), (1 - bound.parameter, Bound.of("iwae", bound.samples))
    return ((1.0, bound),)


def exact_bound_gradient(model: nn.Module, x: Tensor, bound: Bound) -> tuple[Tensor, str] | None:
    """(flat gradient [P] of the negative batch-mean ``bound``, label) where the model has it in closed form:
    the ELBO of a linear-Gaussian model or of a model with its own ``exact_elbo(x)`` (the Gaussian toy), the
    inclusive KL and TVO_S of a linear-Gaussian model (:mod:`vaebench.exact`); None elsewhere."""
    linear = getattr(model, "is_linear_gaussian", False)
    own = getattr(model, "exact_elbo", None)
    if bound.name == "elbo" and (linear or callable(own)):
        loss, label = (lambda: (own(x) if callable(own) else exact_elbo(model, x)).neg()), "exact"
    elif bound.name == "inclusive-kl" and linear:
        loss, label = (lambda: exact_inclusive_kl(model, x)), "exact-inclusive-kl"
    elif bound.name == "tvo" and linear:
        loss, label = (lambda: exact_tvo(model, x, TVO.for_bound(bound).betas).neg()), "exact-tvo"
    else:
        return None
    params = layout(model).params
    with torch.enable_grad():
        grads = torch.autograd.grad(loss().mean(), params, allow_unused=True)
    return _flat(grads, params), label


def bound_estimator(bound: Bound) -> tuple[Estimator, int, str]:
    """(estimator, K, label stem) whose mean over independent estimates is ``bound``'s gradient: pathwise and
    unbiased for the ELBO (``reparam``), IWAE_K (``iwae``), VR_{α,K} (``renyi`` at α) and UHA's bound (its own
    estimates, the same dynamics); self-normalised (`SELF_NORMALISED`), consistent but biased by
    O(1/`SNIS_SAMPLES`), for the inclusive KL (``rws``) and TVO_S (``tvo``, the same partition). CIWAE_β is
    referenced by its parts (`reference_parts`)."""
    if bound.name == "inclusive-kl":
        return make_estimator("rws"), SNIS_SAMPLES, f"rws{SNIS_SAMPLES}"
    if bound.name == "tvo":
        return TVO.for_bound(bound), SNIS_SAMPLES, f"tvo{SNIS_SAMPLES}"
    if bound.name == "uha":
        return UHA.for_bound(bound), bound.samples, f"uha{bound.parameter[0]}-{bound.samples}"
    if bound.name == "elbo":
        return make_estimator("reparam"), 1, "reparam"
    if bound.name == "iwae":
        return make_estimator("iwae"), bound.samples, f"iwae{bound.samples}"
    if bound.name == "renyi":
        return (
            make_estimator("renyi", alpha=bound.parameter),
            bound.samples,
            f"renyi{bound.parameter:g}-{bound.samples}",
        )
    raise VaebenchError(
        f"no sampled reference for the bound {bound}: reference it by its parts (reference_parts)"
    )


def parts_label(bound: Bound, labels: list[str]) -> str:
    """The label of a reference summed from `reference_parts`, e.g. ``ciwae0.5(exact+iwae5-4096)``."""
    return f"{bound.name}{bound.parameter:g}({'+'.join(labels)})"


def bound_baseline(
    model: nn.Module, x: Tensor, bound: Bound, samples: int, seed: int
) -> tuple[Tensor, str, dict[str, float]]:
    """(flat gradient [P], label, per-group trace of its own covariance) of one bound: exact where the model
    has a closed form (`exact_bound_gradient`), else the mean of ``samples`` estimates of `bound_estimator`'s
    (8 of `SNIS_SAMPLES` draws each for a self-normalised one), a sum of parts by `reference_parts`."""
    lay = layout(model)
    parts = reference_parts(bound)
    if len(parts) > 1:
        done = [(w, bound_baseline(model, x, part, samples, seed)) for w, part in parts]
        flat = sum(w * f for w, (f, _, _) in done)
        # the parts' estimates may be correlated: (Σ w_i sd_i)² bounds the variance of their sum whatever that is
        var = {g: sum(w * math.sqrt(v[g]) for w, (_, _, v) in done) ** 2 for g in lay.groups}
        return flat, parts_label(bound, [label for _, (_, label, _) in done]), var
    exact = exact_bound_gradient(model, x, bound)
    if exact is not None:
        return exact[0], exact[1], dict.fromkeys(lay.groups, 0.0)
    estimator, k, stem = bound_estimator(bound)
    if bound.name in SELF_NORMALISED:  # few estimates, each of many draws
        return _sampled(model, x, estimator, k, 8, seed, f"{stem}x8")
    return _sampled(model, x, estimator, k, samples, seed, f"{stem}-{samples}")


def _sampled(model, x, estimator, k, samples, seed, label) -> tuple[Tensor, str, dict[str, float]]:
    """The mean of ``samples`` independent estimates by ``estimator`` at K = ``k``, with its own noise."""
    lay = layout(model)
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
        target = baseline_target(estimator, num_samples)
        return target_baseline(model, x, target, DEFAULT_BASELINE_SAMPLES, seed)
    if isinstance(baseline, tuple):
        flat, label, ref_var = (*baseline, None)[:3]
    else:
        flat, label, ref_var = baseline, "given", None
    size = layout(model).size
    if not isinstance(flat, Tensor) or flat.shape != (size,):
        raise VaebenchError(
            f"the baseline gradient must be a flat tensor of shape [{size}], got {getattr(flat, 'shape', flat)!r}"
        )
    wants = str(baseline_target(estimator, num_samples))
    match = re.fullmatch(r"iwae(\d+)-\d+", label)
    has = (
        None  # a per-group label "<encoder's>|<decoder's>" (target_baseline's): not one bound
        if "|" in label
        else f"IWAE_{match.group(1)}"
        if match
        else "ELBO"
        if label == "exact" or label.startswith("reparam-")
        else None
    )
    if has is not None and has != wants:
        raise VaebenchError(
            f"baseline {label!r} is the {has} gradient but {estimator.name or 'the estimator'} estimates the "
            f"{wants} gradient; use baseline='auto', or target_baseline(model, x, "
            f"estimator.target({num_samples}), samples, seed)"
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
