"""Check a gradient estimator against exact answers: unbiasedness and variance on a linear-Gaussian VAE.

The linear-Gaussian model has a closed-form ELBO (:mod:`vaebench.exact`), so the mean of N independent
gradient estimates can be compared with the exact gradient coordinate by coordinate: z_i = (ḡ_i - g*_i) / se_i,
and the estimator passes when max_i |z_i| stays below the Bonferroni threshold for a family-wise false-alarm
rate (1e-3 by default: a correct estimator fails with probability at most 1e-3 over the choice of seed).
Estimators of the IWAE objective are checked at K = 1, where IWAE_1 is the ELBO, and at K = 5 against the mean
of 80,000 pathwise IWAE_5 gradients (whose own standard error enters each z). Every sampler an estimator offers
is checked too. An estimator that declares a bias (``iwae-stl`` at K > 1) is expected to fail: the same test,
read the other way, detects its bias with false-alarm rate 1e-3.

Run ``python -m vaebench.verify [NAME ...] [--samplers iid,rqmc]`` to print, for each registered estimator and
sampler, the relative error of its mean gradient, the test's verdict against what the estimator claims, and its
encoder-gradient variance relative to ``reparam`` at K = 1 and 10; it exits with 1 if any verdict differs from
the claim. The test suite uses the same functions.
"""

from __future__ import annotations

import argparse
import math

import pandas as pd
import torch
from torch import Tensor

from vaebench import rng
from vaebench.estimators import ESTIMATORS, SAMPLERS, Estimator, make_estimator, unsupported
from vaebench.exact import exact_elbo
from vaebench.measures.variance import gradient_sample, layout, warm_up
from vaebench.model import GaussianVAE
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
    sample = gradient_sample(
        model, estimator, tiled, num_samples, draws, seed=seed, method="naive", rescale=rescale
    )
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


# Independent estimates (draws x copies) per family: score-function estimators need far more.
BUDGETS = {"pathwise": (300, 40), "score-function": (400, 400), "measure-valued": (300, 40)}

IW_K = 5
"""K at which estimators of the IWAE_K objective are checked against a high-sample IWAE reference (IWAE_K's
gradient has no closed form; at K = 1 they are checked against the exact ELBO gradient)."""

REFERENCE_BUDGET = (400, 200)
"""(draws, copies) of the IWAE reference: 80,000 pathwise estimates, 6.7x a pathwise estimator's budget."""


def budget(name: str) -> tuple[int, int]:
    """(draws, copies) for an estimator: score-function ones get 13x the samples of pathwise ones."""
    return BUDGETS[ESTIMATORS[name].family]


def settings(name: str, sampler: str = "iid") -> list[int]:
    """The K values at which ``name`` with ``sampler`` is checked.

    ELBO estimators at K = 3 (4 for antithetic pairs, which need an even K); IWAE_K estimators at K = 1
    against the exact ELBO gradient (when they can use K = 1) and at K = `IW_K` against `iwae_reference`.
    """
    cls = ESTIMATORS[name]
    if cls.objective == "elbo":
        return [4 if sampler == "antithetic" else 3]
    return [k for k in (1, IW_K) if not unsupported(name, k, sampler)]


def iwae_reference(model: GaussianVAE, x: Tensor, k: int = IW_K, seed: int = 7) -> tuple[Tensor, Tensor]:
    """Mean [P] and standard error [P] of `REFERENCE_BUDGET` independent ``iwae`` gradients at K = ``k``."""
    draws, copies = REFERENCE_BUDGET
    g = gradient_draws(model, make_estimator("iwae"), x, k, draws, copies, seed=seed)
    return g.mean(0), (g.var(0) / g.shape[0]).sqrt()


def expected_unbiased(name: str, k: int) -> bool:
    """False only where the estimator declares a bias (``iwae-stl`` for K > 1)."""
    return not (ESTIMATORS[name].bias and k > 1)


def verify(
    names: list[str] | None = None,
    samplers: list[str] | None = None,
    false_alarm: float = 1e-3,
    level: float = 0.95,
) -> pd.DataFrame:
    """One row per (estimator, sampler, K tested): unbiasedness against the exact gradient, variance vs reparam.

    Args:
        names: registered estimators (default: all).
        samplers: samplers to check (default: every sampler each estimator offers; others are skipped).
        false_alarm: family-wise false-alarm rate of each unbiasedness test.
        level: level of the variance-ratio intervals.

    Returns:
        Columns ``estimator``, ``sampler``, ``k_tested``, ``reference`` (``exact``: the closed-form ELBO
        gradient; ``iwae<K>-<n>``: the mean of n pathwise IWAE_K gradients, whose own standard error enters
        the test), ``estimates`` (independent estimates averaged), ``rel_error`` (||ḡ - g*|| / ||g*||),
        ``max_z``, ``threshold``, ``unbiased`` (max_z < threshold), ``expected`` (what the estimator claims:
        unbiased, or biased for ``iwae-stl`` at K > 1), ``as_expected``, and for K in (1, 10)
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
    references: dict[int, tuple[Tensor, Tensor]] = {}
    rows = []
    for name in names:
        offered = ESTIMATORS[name].samplers
        for sampler in [s for s in offered if samplers is None or s in samplers]:
            for i, k in enumerate(settings(name, sampler)):
                if ESTIMATORS[name].objective == "iwae" and k > 1:
                    if k not in references:
                        references[k] = iwae_reference(model, x, k)
                    target, target_se = references[k]
                    label = f"iwae{k}-{math.prod(REFERENCE_BUDGET)}"
                else:
                    target, target_se, label = exact, 0.0, "exact"
                draws, copies = budget(name)
                est = ready(name, model, x, k, sampler=sampler)
                g = gradient_draws(model, est, x, k, draws, copies, seed=1)
                row = {
                    "estimator": name,
                    "sampler": sampler,
                    "k_tested": k,
                    "reference": label,
                    "estimates": draws * copies,
                    "rel_error": float((g.mean(0) - target).norm() / target.norm()),
                    "max_z": max_z(g, target, target_se),
                    "threshold": threshold,
                }
                row["unbiased"] = row["max_z"] < threshold
                row["expected"] = "unbiased" if expected_unbiased(name, k) else "biased"
                row["as_expected"] = row["unbiased"] == expected_unbiased(name, k)
                if i == 0:
                    row |= _variance_ratios(name, sampler, model, x, mask, reparam_var, z_level)
                rows.append(row)
    return pd.DataFrame(rows)


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


def main(argv: list[str] | None = None) -> int:
    """Print the table of :func:`verify`; exit 1 when a row does not behave as its estimator claims."""
    parser = argparse.ArgumentParser(prog="python -m vaebench.verify", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"estimators (default: all of {', '.join(ESTIMATORS)})"
    )
    parser.add_argument(
        "--samplers",
        default="all",
        metavar="NAMES",
        help=f"comma-separated samplers of {', '.join(SAMPLERS)}, or 'all' (default): each estimator is "
        "checked with those it offers",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in ESTIMATORS]
    if unknown:
        parser.error(f"unknown estimator(s) {', '.join(unknown)}; valid names: {', '.join(ESTIMATORS)}")
    samplers = None if args.samplers == "all" else [s.strip() for s in args.samplers.split(",") if s.strip()]
    bad = [s for s in samplers or [] if s not in SAMPLERS]
    if bad or samplers == []:
        parser.error(f"unknown sampler(s) {', '.join(bad) or '(none)'}; valid: {', '.join(SAMPLERS)} or all")
    table = verify(args.names or None, samplers)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.precision", 4):
        print(table)
    return 0 if table["as_expected"].all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
