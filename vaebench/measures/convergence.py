r"""ELBO convergence: the learning curve, final test ELBO and test log-likelihood of one training run.

Lower gradient variance matters only if it buys faster or better learning. One measurement trains a model
(built by the caller from the run's seed, so every estimator of a seed starts from the same initialisation)
with the shared loop of :mod:`vaebench.train`, then reports the model-quality number papers report: the test
log-likelihood estimated by importance sampling with the encoder as proposal
(:func:`vaebench.train.estimate_log_likelihood`; Burda et al. 2015, section 5, k = 5000). On the ``synthetic``
data set the exact log p(x) of the generating model is known, so the gap to it is reported too; for a
linear-Gaussian model the model's own exact log p_θ(x) is known as well, which isolates the bound's gap from
the model's misfit.

Results follow the suite's data contract: tidy long-form frames with ``estimator``, ``sampler``,
``num_samples``, ``seed`` on every row (:data:`vaebench.measures.schema.CONVERGENCE`); the means over seeds
with their intervals are analysis (:mod:`vaebench.analysis.convergence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from torch import nn

from vaebench import devices, rng
from vaebench.errors import check_int
from vaebench.estimators import Estimator, Setting
from vaebench.exact import exact_log_marginal
from vaebench.measures.latents import active_units
from vaebench.measures.schema import CONVERGENCE, conform
from vaebench.train import (
    DEFAULT_LL_SAMPLES,
    Checkpointer,
    TrainSpec,
    estimate_log_likelihood,
    evaluate_elbo,
    train,
    train_seeds,
)

FINAL_METRICS: tuple[str, ...] = (
    "final_test_elbo",
    "test_log_likelihood",
    "exact_log_likelihood",
    "ll_gap",
    "model_log_likelihood",
    "bound_gap",
    "active_units",
    "valid_elbo",
)
"""End-of-run metrics: final test ELBO; the IS estimate of log p(x); on ``synthetic`` the data's exact log p(x)
and its gap to the estimate (exact - estimate); for linear-Gaussian models the model's exact log p_θ(x) and the
bound's gap to it: means over test points, in nats per datapoint. And the number of active latent units on the
same points (Burda et al. 2015; :mod:`vaebench.measures.latents`). With a validation split
(:meth:`~vaebench.data.Dataset.with_validation`), the final ELBO of its first ``points`` examples: what a
step-size grid selects on (:mod:`vaebench.analysis.selection`), the test set never read to choose."""

UNIT_COLUMNS: tuple[str, ...] = tuple(c for c in CONVERGENCE.measured if c not in ("trained_as", "lr"))
"""Columns of a `measure_convergence` frame, in order (``trained_as`` is added where the suite combines the
units: :func:`vaebench.suite.store.combine`; ``lr`` by `measure_convergence_seeds` when it trains a grid)."""


@dataclass(frozen=True)
class LogLikelihood:
    """How the final test log-likelihood is estimated.

    Attributes:
        samples: importance samples k per test point; 0 skips it (and the exact rows).
        points: the first this many test points (None: all); the final test ELBO uses the same points.
    """

    samples: int = DEFAULT_LL_SAMPLES
    points: int | None = None

    def __post_init__(self) -> None:
        check_int("ll_samples", self.samples, 0, "0 skips the log-likelihood")
        if self.points is not None:
            check_int("ll_points", self.points, 1)


def measure_convergence(
    model: nn.Module,
    setting: Setting,
    dataset,
    spec: TrainSpec,
    *,
    seed: int = 0,
    likelihood: LogLikelihood = LogLikelihood(),
    estimator: Estimator | None = None,
    checkpoint: Checkpointer | None = None,
) -> pd.DataFrame:
    """One training run of ``setting``: train ``model``, then measure it on the test set.

    Self-contained and deterministic given its arguments, so a caller can run many in any order and save
    each as it finishes.

    Args:
        model: a fresh model (built from ``seed`` by the caller, so all settings of a seed share it).
        setting: the estimator, sampler and K.
        dataset: a :class:`~vaebench.data.Dataset`.
        spec: the training loop's settings.
        seed: seeds the data order and all noise (`vaebench.train.train`).
        likelihood: the final test log-likelihood's samples and test points.
        estimator: the estimator instance (default: ``setting.build()``).
        checkpoint: the run's preemption checkpoint (:mod:`vaebench.train.checkpoints`).

    Returns:
        Tidy frame, columns `UNIT_COLUMNS`: the training history (``train_objective``, ``test_elbo``) plus
        one row per `FINAL_METRICS` entry that applies, at the final step; ``diverged`` and ``compile_s``
        (seconds of the steps that compiled, 0 for an eager run) are the same on every row of the run.
    """
    estimator = setting.build() if estimator is None else estimator
    result = train(model, setting, dataset, spec, seed=seed, estimator=estimator, checkpoint=checkpoint)
    return _run_frame(result, model, setting, estimator, dataset, spec, seed, likelihood)


def measure_convergence_seeds(
    models: Sequence[nn.Module],
    setting: Setting,
    dataset,
    spec: TrainSpec,
    *,
    seeds: Sequence[int],
    likelihood: LogLikelihood = LogLikelihood(),
    checkpoint: Checkpointer | None = None,
    lrs: Sequence[float] | None = None,
) -> tuple[pd.DataFrame, str]:
    """The training runs of ``setting`` on several seeds, trained as one program where they stack
    (:func:`vaebench.train.train_seeds`), each measured as :func:`measure_convergence` measures its own run.

    Args:
        lrs: with a step-size grid, each run's learning rate (slice i is seed ``seeds[i]`` at ``lrs[i]``);
            the frame then has an ``lr`` column after ``seed``.

    Returns:
        The runs' frames concatenated in order (each equal to its own run's to float precision; with
        ``compile`` each run's ``compile_s`` is its share of the one compilation of the stacked step), and the
        note of :func:`~vaebench.train.train_seeds` when the runs trained one at a time ("" when they stacked).
    """
    estimators = [setting.build() for _ in seeds]
    results = train_seeds(
        models, setting, dataset, spec, seeds=seeds, estimators=estimators, checkpoint=checkpoint, lrs=lrs
    )
    frames = [
        _run_frame(result, model, setting, estimator, dataset, spec, seed, likelihood)
        for result, model, estimator, seed in zip(results, models, estimators, seeds, strict=True)
    ]
    if lrs is not None:
        frames = [f.assign(lr=float(lr)) for f, lr in zip(frames, lrs, strict=True)]
        frames = [conform(f[[*UNIT_COLUMNS[:4], "lr", *UNIT_COLUMNS[4:]]], CONVERGENCE) for f in frames]
    return pd.concat(frames, ignore_index=True), results[0].note


def _run_frame(result, model, setting, estimator, dataset, spec, seed, likelihood) -> pd.DataFrame:
    """One trained run's history and final metrics as the convergence unit's tidy rows."""
    history = result.history
    last = history.iloc[-1]
    final = final_metrics(model, dataset, seed, spec.eval_samples, likelihood)
    final_rows = pd.DataFrame(
        {
            "step": int(last["step"]),
            "epoch": float(last["epoch"]),
            "wall_time_s": result.wall_time_s,
            "grad_evals": result.grad_evals,
            "latent_samples": result.latent_samples,
            "metric": list(final),
            "value": list(final.values()),
            "objective": estimator.objective,
        }
    )
    frame = pd.concat([history, final_rows], ignore_index=True)
    frame.insert(0, "seed", seed)
    frame.insert(0, "num_samples", setting.num_samples)
    frame.insert(0, "sampler", setting.sampler)
    frame.insert(0, "estimator", setting.estimator)
    frame["diverged"] = result.diverged
    frame["compile_s"] = result.compile_time_s  # the run's (its share, for seeds compiled as one program)
    return conform(frame[list(UNIT_COLUMNS)], CONVERGENCE)


def final_metrics(
    model: nn.Module, dataset, seed: int, eval_samples: int, likelihood: LogLikelihood
) -> dict[str, float]:
    """The `FINAL_METRICS` that apply to a trained model, as means over the first ``likelihood.points``."""
    x = dataset.test[: likelihood.points].to(devices.resolve(None, like=model))
    gen = rng.generator(seed, "eval.elbo", device=x.device)
    final = {
        "final_test_elbo": evaluate_elbo(model, x, num_samples=eval_samples, generator=gen).mean().item()
    }
    if x.shape[0] > 1:
        final["active_units"] = active_units(model, x)
    valid = getattr(dataset, "valid", None)
    if valid is not None:
        v = valid[: likelihood.points].to(x.device)
        gen = rng.generator(seed, "eval.valid", device=x.device)
        final["valid_elbo"] = evaluate_elbo(model, v, num_samples=eval_samples, generator=gen).mean().item()
    if not likelihood.samples:
        return final
    gen = rng.generator(seed, "eval.log_likelihood", device=x.device)
    estimate = estimate_log_likelihood(model, x, likelihood.samples, generator=gen).double()
    final["test_log_likelihood"] = estimate.mean().item()
    if dataset.truth is not None:
        exact = dataset.exact_log_marginal(x.cpu()).to(estimate.device)
        final["exact_log_likelihood"] = exact.mean().item()
        final["ll_gap"] = (exact - estimate).mean().item()
    if getattr(model, "is_linear_gaussian", False):
        own = exact_log_marginal(model, x.double()).to(estimate.device)
        final["model_log_likelihood"] = own.mean().item()
        final["bound_gap"] = (own - estimate).mean().item()
    return final


__all__ = ["FINAL_METRICS", "UNIT_COLUMNS", "LogLikelihood", "final_metrics", "measure_convergence"]
