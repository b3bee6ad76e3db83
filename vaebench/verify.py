"""Check a gradient estimator against exact answers: unbiasedness and variance on a linear-Gaussian VAE.

The linear-Gaussian model has a closed-form ELBO (:mod:`vaebench.exact`), so the mean of N independent
gradient estimates can be compared with the exact gradient coordinate by coordinate: z_i = (ḡ_i - g*_i) / se_i,
and the estimator passes when max_i |z_i| stays below the Bonferroni threshold for a family-wise false-alarm
rate (1e-3 by default: a correct estimator fails with probability at most 1e-3 over the choice of seed).
Estimators of the IWAE objective are checked at K = 1, where IWAE_1 is the ELBO.

Run ``python -m vaebench.verify [NAME ...]`` to print, for each registered estimator, the relative error of its
mean gradient, the test's verdict, and its encoder-gradient variance relative to ``reparam`` at K = 1 and 10.
The test suite uses the same functions.
"""

from __future__ import annotations

import argparse
import math

import pandas as pd
import torch
from torch import Tensor

from vaebench.estimators import ESTIMATORS, Estimator, make_estimator
from vaebench.exact import exact_elbo
from vaebench.model import GaussianVAE
from vaebench.stats import bonferroni_threshold, normal_quantile


def flat_grad(params: list[torch.nn.Parameter]) -> Tensor:
    return torch.cat(
        [p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1) for p in params]
    )


def encoder_mask(model: GaussianVAE) -> Tensor:
    """[P] bool: True at the encoder's coordinates in ``flat_grad(list(model.parameters()))`` order."""
    enc = {id(p) for p in model.parameter_groups()["encoder"]}
    return torch.cat([torch.full((p.numel(),), id(p) in enc) for p in model.parameters()])


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

    With ``copies`` > 1 the batch is tiled ``copies`` times in one call, so each draw is the mean of that many
    independent estimates (valid because every registered estimator treats datapoints independently when its
    state is frozen in eval mode); the draws stay independent, so their standard error is still honest.
    With ``rescale`` the encoder coordinates are divided by ``estimator.encoder_scale``, putting estimators
    that rescale their encoder gradient (NVIL) back on the ELBO-gradient scale.
    """
    params = list(model.parameters())
    mask = encoder_mask(model)
    scale = torch.where(mask, 1.0 / estimator.encoder_scale, 1.0).to(x.dtype) if rescale else 1.0
    tiled = x.repeat(copies, 1)
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(draws, mask.numel(), dtype=x.dtype)
    for i in range(draws):
        model.zero_grad(set_to_none=True)
        estimator(model, tiled, num_samples=num_samples, generator=gen).surrogate.backward()
        out[i] = flat_grad(params) * scale
    model.zero_grad(set_to_none=True)
    return out


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
    gen = torch.Generator().manual_seed(seed)
    model = GaussianVAE(x_dim=5, z_dim=2, hidden=(), init_decoder_scale=0.8, seed=seed).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    return model, x


def ready(name: str, model: GaussianVAE, x: Tensor, num_samples: int = 3, **options) -> Estimator:
    """An estimator with non-trivial state (baselines warmed up, learned parts perturbed), frozen in eval mode."""
    est = make_estimator(name, **options)
    est.prepare(model, x)
    est.to(x.dtype)
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in est.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    est.train()
    for _ in range(5):
        est(model, x, num_samples=max(num_samples, est.min_samples), generator=gen)
    return est.eval()


def exact_gradient(model: GaussianVAE, x: Tensor) -> Tensor:
    """[P] exact gradient of the negative batch-mean ELBO of a linear-Gaussian model."""
    model.zero_grad(set_to_none=True)
    (-exact_elbo(model, x).mean()).backward()
    grad = flat_grad(list(model.parameters()))
    model.zero_grad(set_to_none=True)
    return grad


def max_z(draws: Tensor, target: Tensor, target_se: Tensor | float = 0.0) -> float:
    """max_i |mean_i - target_i| / se_i over coordinates of [N, P] draws (target's own se added if given)."""
    se = (draws.var(0) / draws.shape[0] + torch.as_tensor(target_se) ** 2).sqrt()
    return float(((draws.mean(0) - target).abs() / se).max())


def log_ratio(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """log(a / b) and its delta-method standard error, from (estimate, standard error) pairs."""
    return math.log(a[0] / b[0]), math.hypot(a[1] / a[0], b[1] / b[0])


# Independent estimates (draws x copies) per family: score-function estimators need far more.
BUDGETS = {"pathwise": (300, 40), "score": (400, 400)}


def budget(name: str) -> tuple[int, int]:
    """(draws, copies) for an estimator: REINFORCE-type estimators get 13x the samples of pathwise ones."""
    return BUDGETS["score"] if name.startswith("reinforce") else BUDGETS["pathwise"]


def verify(names: list[str] | None = None, false_alarm: float = 1e-3, level: float = 0.95) -> pd.DataFrame:
    """One row per estimator: unbiasedness against the exact gradient and encoder variance vs ``reparam``.

    Columns: ``estimator``, ``k_tested``, ``estimates`` (independent estimates averaged), ``rel_error``
    (||ḡ - g*|| / ||g*||), ``max_z``, ``threshold``, ``unbiased`` (max_z < threshold), and for K in (1, 10)
    ``enc_var_ratio_K{k}`` with ``_low``/``_high`` (its interval at ``level``, delta method on the log).
    """
    names = list(names or ESTIMATORS)
    model, x = linear_gaussian()
    exact = exact_gradient(model, x)
    mask = encoder_mask(model)
    z_level = normal_quantile(level)
    reparam_var = {
        k: trace_variance(gradient_draws(model, make_estimator("reparam"), x, k, 600, seed=11)[:, mask])
        for k in (1, 10)
    }
    rows = []
    for name in names:
        k = 3 if ESTIMATORS[name].objective == "elbo" else 1
        draws, copies = budget(name)
        g = gradient_draws(model, ready(name, model, x, k), x, k, draws, copies, seed=1)
        row = {
            "estimator": name,
            "k_tested": k,
            "estimates": draws * copies,
            "rel_error": float((g.mean(0) - exact).norm() / exact.norm()),
            "max_z": max_z(g, exact),
            "threshold": bonferroni_threshold(false_alarm, exact.numel()),
        }
        row["unbiased"] = row["max_z"] < row["threshold"]
        for kv in (1, 10):
            if kv < ESTIMATORS[name].min_samples:
                continue
            est = ready(name, model, x, kv)
            var = trace_variance(gradient_draws(model, est, x, kv, 600, seed=11)[:, mask])
            r, se = log_ratio(var, reparam_var[kv])
            row |= {
                f"enc_var_ratio_K{kv}": math.exp(r),
                f"enc_var_ratio_K{kv}_low": math.exp(r - z_level * se),
                f"enc_var_ratio_K{kv}_high": math.exp(r + z_level * se),
            }
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vaebench.verify", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"estimators (default: all of {', '.join(ESTIMATORS)})"
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in ESTIMATORS]
    if unknown:
        parser.error(f"unknown estimator(s) {', '.join(unknown)}; valid names: {', '.join(ESTIMATORS)}")
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 4):
        print(verify(args.names or None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
