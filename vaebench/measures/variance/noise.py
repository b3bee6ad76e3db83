r"""Monte Carlo noise versus minibatch noise of one gradient estimate.

`decompose_noise` splits the variance of one gradient estimate on a random minibatch x by the law of
total variance,

    tr Cov[g] = E_x[ tr Cov[g | x] ] + tr Cov_x[ E[g | x] ]      (Monte Carlo part + minibatch part)

estimated from R replicates on each of M minibatches: the Monte Carlo part is the mean over batches of the
within-batch trace variance T_j; the minibatch part is the trace of the covariance of the batch means ḡ_j,
minus mean_j T_j / R_j, the Monte Carlo noise that each ḡ_j still carries (so it is unbiased, and may come
out slightly negative when the minibatch part is small). Intervals: percentile bootstrap over batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError, check_int
from vaebench.estimators import Estimator, check_num_samples
from vaebench.measures.variance.engines import gradient_sample, resolve_method
from vaebench.measures.variance.layout import layout
from vaebench.measures.variance.summary import finite_rows, resample_counts
from vaebench.stats import percentile_interval

NOISE_FIGURES = ("mc_var", "minibatch_var", "total_var", "mc_fraction")
"""Figures of `decompose_noise`, each with ``_low``/``_high``."""


def decompose_noise(
    model: nn.Module,
    estimator: Estimator,
    batches: Sequence[Tensor],
    num_samples: int,
    replicates: int,
    *,
    seed: int = 0,
    chunk_size: int | None = None,
    level: float = 0.95,
    method: str = "batched",
    resamples: int = 1000,
) -> pd.DataFrame:
    """Monte Carlo noise and minibatch noise of one gradient estimate, by the law of total variance.

    Args:
        model: the model at the parameters to measure.
        estimator: the estimator (warmed up if stateful; measured in eval mode, its mode restored after).
        batches: M >= 2 minibatches [B, D] drawn from the data (at least 10 for useful intervals).
        num_samples: K.
        replicates: R >= 2 independent estimates per minibatch.
        seed: seeds the noise (each batch its own stream) and the bootstrap.
        chunk_size, level, method, resamples, timing_repeats: as in ``measure_variance``.

    Returns:
        One row per group with ``mc_var`` (E_x tr Cov[g|x]), ``minibatch_var`` (tr Cov_x E[g|x]),
        ``total_var`` (their sum) and ``mc_fraction``, each with ``_low``/``_high`` (bootstrap over batches),
        plus ``estimator, objective, num_samples, seed, num_batches, batch_size, replicates, nan_fraction``.
    """
    batches = list(batches)
    if len(batches) < 2:
        raise VaebenchError(
            f"decompose_noise needs at least 2 minibatches to see minibatch noise, got {len(batches)}"
        )
    check_int("replicates", replicates, 2, "two replicates are the fewest that estimate a variance")
    name = estimator.name or type(estimator).__name__
    check_num_samples(num_samples, estimator.min_samples, name, estimator.min_samples_reason)
    lay = layout(model)
    resolve_method(model, lay, method)  # a bad method fails before any work
    was_training = estimator.training
    estimator.eval()
    trace = {g: [] for g in lay.groups}  # T_j
    means = {g: [] for g in lay.groups}  # ḡ_j
    used = []
    try:
        for j, x in enumerate(batches):
            sample = gradient_sample(
                model,
                estimator,
                x,
                num_samples,
                replicates,
                seed=seed,
                index=(j,),
                chunk_size=chunk_size,
                method=method,
            )
            keep = finite_rows(sample)
            used.append(int(keep.sum()))
            if used[-1] < 2:
                continue
            for group in lay.groups:
                g = sample.flat(group)[keep].double()
                mean = g.mean(0)
                trace[group].append(float((g - mean).pow(2).sum()) / (used[-1] - 1))
                means[group].append(mean)
    finally:
        estimator.train(was_training)
    ok = [n for n in used if n >= 2]
    counts = resample_counts(len(ok), resamples, seed) if len(ok) >= 2 else None
    rows = []
    for group in lay.groups:
        row = {
            "estimator": name,
            "objective": estimator.objective,
            "num_samples": num_samples,
            "seed": seed,
            "group": group,
            "num_batches": len(ok),
            "batch_size": batches[0].shape[0],
            "replicates": replicates,
            "nan_fraction": 1 - sum(used) / (replicates * len(batches)),
        }
        row |= _decompose(trace[group], means[group], ok, counts, level)
        rows.append(row)
    return pd.DataFrame(rows)


def _decompose(trace: list[float], means: list[Tensor], used: list[int], counts, level: float) -> dict:
    out = {}
    if counts is None:
        for f in NOISE_FIGURES:
            out[f] = out[f"{f}_low"] = out[f"{f}_high"] = float("nan")
        return out
    m = len(trace)
    t = torch.tensor(trace, dtype=torch.float64)
    t_over_n = t / torch.tensor(used, dtype=torch.float64)
    centred = torch.stack(means)
    centred = centred - centred.mean(0)
    gram = centred @ centred.T
    w = torch.from_numpy(counts)
    between = (w @ gram.diagonal() - ((w @ gram) * w).sum(1) / m) / (m - 1)
    draws = {"mc_var": (w @ t) / m}
    draws["minibatch_var"] = between - (w @ t_over_n) / m
    draws["total_var"] = draws["mc_var"] + draws["minibatch_var"]
    draws["mc_fraction"] = draws["mc_var"] / draws["total_var"]
    out["mc_var"] = float(t.mean())
    out["minibatch_var"] = float(gram.diagonal().sum()) / (m - 1) - float(t_over_n.mean())
    out["total_var"] = out["mc_var"] + out["minibatch_var"]
    out["mc_fraction"] = out["mc_var"] / out["total_var"] if out["total_var"] else float("nan")
    for f in NOISE_FIGURES:
        out[f"{f}_low"], out[f"{f}_high"] = percentile_interval(draws[f].numpy(), level)
    return out
