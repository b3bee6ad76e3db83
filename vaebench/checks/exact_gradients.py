"""Check a gradient estimator against exact answers: unbiasedness and variance on a linear-Gaussian VAE.

The linear-Gaussian model has a closed-form ELBO (:mod:`vaebench.exact`), so the mean of N independent
gradient estimates can be compared with the exact gradient coordinate by coordinate: z_i = (ḡ_i - g*_i) / se_i,
and the estimator passes when max_i |z_i| stays below the Bonferroni threshold for a family-wise false-alarm
rate (1e-3 by default: a correct estimator fails with probability at most 1e-3 over the choice of seed).
Each estimator is compared with the gradient of what it declares it estimates, ``est.target(K)``, group by
group (:func:`target_gradient`, each bound by `reference_of` from the variance measure's table of references,
:mod:`vaebench.measures.variance.baseline`): the ELBO and
the inclusive KL KL(p(z|x) || q) exactly (closed forms); IWAE_K and the Rényi bound VR_{α,K} by the mean of
80,000 pathwise estimates of the same bound at the same K (whose own standard error enters each z); CIWAE_β as
β x exact ELBO + (1 - β) x the IWAE_K reference; the thermodynamic bound TVO_S exactly (closed form); UHA's
bound, which has no closed form, by the mean of 80,000 of its own pathwise estimates (a tautology there: its
gradient is proven against finite differences in ``tests/test_recent_estimators.py``). Estimators whose
objective is not the ELBO are checked at K = 1 (where most bounds are the ELBO) and at K = 5. Every sampler an estimator offers is checked too. An
estimator that declares a bias at that K (``est.biased_at(K)``: ``iwae-stl`` and ``tail-adaptive`` at K > 1,
``rws``, ``rws-dreg`` and ``tvo`` at every K, ``ovis-gamma`` for γ > 0) is expected to fail: the same test, read the other way, detects its bias
with false-alarm rate 1e-3.

``python -m vaebench verify [NAME ...] [--samplers iid,rqmc] [--csv FILE]`` (:mod:`vaebench.cli`) prints, as
each estimator and sampler finishes (`verify`'s ``on_done``), PASS or FAIL with the max |z| that decided each K
against the threshold and the relative error of its mean gradient; the CSV holds the whole table (with the
encoder-gradient variance relative to ``reparam`` at K = 1 and 10). It exits with 1 if any verdict differs from
the claim. A plugin's estimator is first called on the batch (:func:`vaebench.plugins.registry.probe_estimator`), so a
broken one is named in one line. The test suite uses the same functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import torch
from torch import Tensor

from vaebench import rng
from vaebench.errors import VaebenchError
from vaebench.estimators import (
    BUILTIN_ESTIMATORS,
    ESTIMATORS,
    Bound,
    Estimator,
    Target,
    make_estimator,
    unsupported,
)
from vaebench.exact import exact_elbo
from vaebench.measures.variance import Engine, gradient_sample, layout, warm_up
from vaebench.measures.variance.baseline import (
    bound_estimator,
    exact_bound_gradient,
    parts_label,
    reference_parts,
)
from vaebench.model import GaussianVAE
from vaebench.plugins import summarize
from vaebench.plugins.registry import probe_estimator
from vaebench.stats import bonferroni_threshold, normal_quantile


def flat_grad(params: list[torch.nn.Parameter]) -> Tensor:
    return torch.cat(
        [p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1) for p in params]
    )


def encoder_mask(model: GaussianVAE) -> Tensor:
    """[P] bool: True at the encoder's coordinates in the variance layout's order (`gradient_draws`' columns)."""
    lay = layout(model)
    return torch.cat([torch.full((p.numel(),), i in lay.encoder) for i, p in enumerate(lay.params)])


def gradient_draws(
    model: GaussianVAE,
    estimator: Estimator,
    x: Tensor,
    num_samples: int,
    draws: int,
    copies: int = 1,
    seed: int = 0,
    rescale: bool = True,
) -> Tensor:
    """[draws, P] independent gradient estimates of the batch-mean objective at fixed parameters.

    The variance measure's own sampler (:func:`~vaebench.measures.variance.gradient_sample`, one estimate at
    a time: the simplest engine, the one the others are checked against), so what is verified is what is
    measured. With ``copies`` > 1 the batch is tiled ``copies`` times in one call, so each draw is the mean of
    that many independent estimates (valid because every registered estimator treats datapoints independently
    when its state is frozen in eval mode); the draws stay independent, so their standard error is still
    honest. With ``rescale`` the encoder coordinates are divided by ``estimator.encoder_scale``, putting
    estimators that rescale their encoder gradient (NVIL) back on the ELBO-gradient scale.
    """
    tiled = x.repeat(copies, 1)
    engine = Engine(method="naive", rescale=rescale)
    sample = gradient_sample(model, estimator, tiled, num_samples, draws, seed=seed, engine=engine)
    model.zero_grad(set_to_none=True)
    return sample.flat()


def trace_variance(draws: Tensor) -> tuple[float, float]:
    """Trace of the covariance of [N, P] draws and the standard error of that estimate.

    tr Cov = E||g - E g||², estimated by the mean of d_i = ||g_i - ḡ||² (times N/(N-1)); its standard error is
    std(d_i)/√N, which makes no Gaussian assumption about the gradients.
    """
    n = draws.shape[0]
    d = (draws - draws.mean(0)).pow(2).sum(1) * n / (n - 1)
    return float(d.mean()), float(d.std() / n**0.5)


def linear_gaussian(seed: int = 0) -> tuple[GaussianVAE, Tensor]:
    """A small linear-Gaussian VAE in float64 (D=5, Z=2), moved away from its initialisation, and a batch [4, 5]."""
    gen = rng.generator(seed, "verify.model")
    model = GaussianVAE(x_dim=5, z_dim=2, hidden=(), init_decoder_scale=0.8, seed=seed).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    return model, x


def ready(name: str, model: GaussianVAE, x: Tensor, num_samples: int = 3, **options) -> Estimator:
    """An estimator with non-trivial state (learned parts perturbed, then warmed up), frozen in eval mode.

    The warm-up is the variance measure's (:func:`~vaebench.measures.variance.warm_up`: five training-mode
    calls, no baseline training), after a perturbation of the estimator's parameters so that a learned
    baseline is not at its zero initialisation.
    """
    est = make_estimator(name, **options)
    est.prepare(model, x)
    est.to(x.dtype)
    gen = rng.generator(0, "verify.state")
    with torch.no_grad():
        for p in est.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    k = max(num_samples, est.min_samples)
    return warm_up(est, model, x, num_samples=k, calls=5, baseline_steps=0, seed=0)


def exact_gradient(model: GaussianVAE, x: Tensor) -> Tensor:
    """[P] exact gradient of the negative batch-mean ELBO of a linear-Gaussian model."""
    model.zero_grad(set_to_none=True)
    (-exact_elbo(model, x).mean()).backward()
    grad = flat_grad(layout(model).params)
    model.zero_grad(set_to_none=True)
    return grad


ROUNDING = 1e-9
"""Relative size of rounding error allowed in a coordinate that has no Monte Carlo noise at all."""


def max_z(draws: Tensor, target: Tensor, target_se: Tensor | float = 0.0) -> float:
    """max_i |mean_i - target_i| / se_i over coordinates of [N, P] draws (target's own se added if given).

    A coordinate can be exact in every draw (a control variate or antithetic pairs can cancel all of its
    noise on the linear-Gaussian model); its se then adds `ROUNDING` x (|target_i| + 1) in quadrature, so that
    rounding error is not read as bias, while any real bias (far larger) still is.
    """
    floor = ROUNDING * (target.abs() + 1)
    se = (draws.var(0) / draws.shape[0] + torch.as_tensor(target_se) ** 2 + floor**2).sqrt()
    return float(((draws.mean(0) - target).abs() / se).max())


def log_ratio(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """log(a / b) and its delta-method standard error, from (estimate, standard error) pairs."""
    return math.log(a[0] / b[0]), math.hypot(a[1] / a[0], b[1] / b[0])


# Independent estimates (draws x copies) per family: score-function estimators need far more. The
# measure-valued derivative's encoder variance lies between reparam's and REINFORCE's (0.4-0.9x reparam's at
# K = 3 here), so it takes the pathwise budget.
BUDGETS = {"pathwise": (300, 40), "score-function": (400, 400), "measure-valued": (300, 40)}

IW_K = 5
"""K at which the estimators whose objective is not the ELBO are checked against their target's reference
(IWAE_K's and VR_{α,K}'s gradients have no closed form: a high-sample reference; at K = 1 most targets are the
ELBO, checked against its exact gradient)."""

REFERENCE_BUDGET = (400, 200)
"""(draws, copies) of a sampled reference (IWAE_K, VR_{α,K}): 80,000 pathwise estimates, 6.7x a pathwise
estimator's budget."""


def budget(name: str) -> tuple[int, int]:
    """(draws, copies) for an estimator: score-function ones get 13x the samples of pathwise ones."""
    return BUDGETS[ESTIMATORS[name].family]


def settings(name: str, sampler: str = "iid") -> list[int]:
    """The K values at which ``name`` with ``sampler`` is checked.

    ELBO estimators at K = 3 (4 for antithetic pairs, which need an even K); the others at K = 1 (when they
    can use K = 1) and at K = `IW_K`, each against :func:`target_gradient` of its target there.
    """
    cls = ESTIMATORS[name]
    if cls.objective == "elbo":
        return [4 if sampler == "antithetic" else 3]
    return [k for k in (1, IW_K) if not unsupported(name, k, sampler)]


def reference_of(bound: Bound, model: GaussianVAE, x: Tensor) -> tuple[Tensor, Tensor, str]:
    """(mean [P], standard error [P], label) of the gradient of the negative batch-mean ``bound``.

    The bound-to-reference table is the variance measure's (:mod:`vaebench.measures.variance.baseline`): exact
    where the model has a closed form (the ELBO, the inclusive KL, TVO_S), a weighted sum of parts for CIWAE_β
    (β x the exact ELBO's + (1 - β) x IWAE_K's; the standard errors add, a bound whatever their correlation),
    else the mean of `REFERENCE_BUDGET` independent estimates of the bound's own estimator (``iwae``,
    ``renyi`` at α, UHA's).
    """
    parts = reference_parts(bound)
    if len(parts) > 1:
        done = [(w, reference_of(part, model, x)) for w, part in parts]
        mean = sum(w * m for w, (m, _, _) in done)
        se = sum(w * e for w, (_, e, _) in done)
        return mean, se, parts_label(bound, [label for _, (_, _, label) in done])
    exact = exact_bound_gradient(model, x, bound)
    if exact is not None:
        return exact[0], torch.zeros_like(exact[0]), exact[1]
    estimator, k, stem = bound_estimator(bound)
    g = gradient_draws(model, estimator, x, k, *REFERENCE_BUDGET, seed=7)
    return g.mean(0), (g.var(0) / g.shape[0]).sqrt(), f"{stem}-{math.prod(REFERENCE_BUDGET)}"


def target_gradient(
    target: Target, model: GaussianVAE, x: Tensor, cache: dict | None = None
) -> tuple[Tensor, Tensor, str]:
    """(mean [P], standard error [P], label) of the gradient of ``target``: each group from its own bound.

    ``cache`` (a dict, bound -> `reference_of`'s answer) shares the sampled references between calls.
    """
    cache = {} if cache is None else cache
    for bound in (target.encoder, target.decoder):
        if bound not in cache:
            cache[bound] = reference_of(bound, model, x)
    if target.encoder == target.decoder:
        return cache[target.encoder]
    (enc, enc_se, enc_label), (dec, dec_se, dec_label) = cache[target.encoder], cache[target.decoder]
    mask = encoder_mask(model)
    return torch.where(mask, enc, dec), torch.where(mask, enc_se, dec_se), f"{enc_label}|{dec_label}"


def expected_unbiased(name: str, k: int, **options) -> bool:
    """False only where the estimator declares a bias at this K (``est.biased_at(k)``)."""
    return not make_estimator(name, **options).biased_at(k)


def verify(
    names: list[str] | None = None,
    samplers: list[str] | None = None,
    false_alarm: float = 1e-3,
    level: float = 0.95,
    on_done: Callable[[list[dict]], None] | None = None,
) -> pd.DataFrame:
    """One row per (estimator, sampler, K tested): unbiasedness against the exact gradient, variance vs reparam.

    Args:
        names: registered estimators (default: all).
        samplers: samplers to check (default: every sampler each estimator offers; others are skipped).
        false_alarm: family-wise false-alarm rate of each unbiasedness test.
        level: level of the variance-ratio intervals.
        on_done: called with the rows of each (estimator, sampler) as soon as they are computed (progress).

    Returns:
        Columns ``estimator``, ``sampler``, ``k_tested``, ``target`` (the bounds, ``est.target(K)``),
        ``reference`` (``exact``: the closed-form ELBO gradient; ``exact-inclusive-kl``: the closed-form
        inclusive-KL gradient; ``iwae<K>-<n>`` / ``renyi<α>-<K>-<n>``: the mean of n pathwise gradients of
        that bound, whose own standard error enters the test; ``a|b``: the encoder's | the decoder's),
        ``estimates`` (independent estimates averaged), ``rel_error`` (||ḡ - g*|| / ||g*||),
        ``max_z``, ``threshold``, ``unbiased`` (max_z < threshold), ``expected`` (what the estimator claims:
        unbiased, or biased where it declares ``biased_at(K)``), ``as_expected``, and for K in (1, 10)
        ``enc_var_ratio_K{k}`` with ``_low``/``_high``: encoder variance over that of ``reparam`` (iid) at
        the same K, interval at ``level`` (delta method on the log).
    """
    names = list(names or ESTIMATORS)
    model, x = linear_gaussian()
    exact = exact_gradient(model, x)
    mask = encoder_mask(model)
    z_level = normal_quantile(level)
    threshold = bonferroni_threshold(false_alarm, exact.numel())
    reparam_var = {
        k: trace_variance(gradient_draws(model, make_estimator("reparam"), x, k, 600, seed=11)[:, mask])
        for k in (1, 10)
    }
    references: dict[Bound, tuple[Tensor, Tensor, str]] = {}
    rows = []
    for name in names:
        offered = ESTIMATORS[name].samplers
        for sampler in [s for s in offered if samplers is None or s in samplers]:
            done = len(rows)
            plugin = name not in BUILTIN_ESTIMATORS
            if plugin:  # a plugin's broken output is named (what, where), not a traceback
                for k in settings(name, sampler):
                    est = make_estimator(name, sampler=sampler) if sampler != "iid" else make_estimator(name)
                    gen = rng.generator(0, "probe")
                    probe_estimator(est.to(x.dtype), model, x, k, gen, f"{name!r} ({sampler}, K={k})")
            try:
                rows += _check(name, sampler, model, x, mask, reparam_var, z_level, threshold, references)
            except VaebenchError:
                raise
            except Exception as err:
                if not plugin:
                    raise
                raise VaebenchError(
                    f"estimator {name!r} ({sampler}) raised while verified: {summarize(err)}"
                ) from None
            if on_done is not None:
                on_done(rows[done:])
    return pd.DataFrame(rows)


def _check(name, sampler, model, x, mask, reparam_var, z_level, threshold, references) -> list[dict]:
    """The rows of one estimator and sampler: one per K of `settings`."""
    rows = []
    for i, k in enumerate(settings(name, sampler)):
        draws, copies = budget(name)
        est = ready(name, model, x, k, sampler=sampler)
        target, target_se, label = target_gradient(est.target(k), model, x, references)
        g = gradient_draws(model, est, x, k, draws, copies, seed=1)
        unbiased = not est.biased_at(k)
        row = {
            "estimator": name,
            "sampler": sampler,
            "k_tested": k,
            "target": str(est.target(k)),
            "reference": label,
            "estimates": draws * copies,
            "rel_error": float((g.mean(0) - target).norm() / target.norm()),
            "max_z": max_z(g, target, target_se),
            "threshold": threshold,
        }
        row["unbiased"] = row["max_z"] < threshold
        row["expected"] = "unbiased" if unbiased else "biased"
        row["as_expected"] = row["unbiased"] == unbiased
        if i == 0:
            row |= _variance_ratios(name, sampler, model, x, mask, reparam_var, z_level)
        rows.append(row)
    return rows


def _variance_ratios(name, sampler, model, x, mask, reparam_var, z_level) -> dict[str, float]:
    out = {}
    for k in (1, 10):
        if unsupported(name, k, sampler):
            continue
        est = ready(name, model, x, k, sampler=sampler)
        var = trace_variance(gradient_draws(model, est, x, k, 600, seed=11)[:, mask])
        r, se = log_ratio(var, reparam_var[k])
        out |= {
            f"enc_var_ratio_K{k}": math.exp(r),
            f"enc_var_ratio_K{k}_low": math.exp(r - z_level * se),
            f"enc_var_ratio_K{k}_high": math.exp(r + z_level * se),
        }
    return out
