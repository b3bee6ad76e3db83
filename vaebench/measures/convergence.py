r"""ELBO convergence: learning curves, final test ELBO and test log-likelihood, per estimator, K and seed.

Lower gradient variance matters only if it buys faster or better learning. One unit of this measure trains a
fresh model (built by ``model_factory(seed)``, so every estimator starts from the same initialisation) with
the shared loop of :mod:`vaebench.training`, then reports the model-quality number papers report: the test
log-likelihood estimated by importance sampling with the encoder as proposal (Burda et al. 2015, section 5):

    log p(x) ≥ L_k(x) = E[log (1/k) Σ_{i=1..k} p(x, z_i) / q(z_i | x)],   z_i ~ q(z | x),

a lower bound in expectation that increases with k and tends to log p(x) (Burda et al. 2015, Theorem 1); the
suite uses k = 5000, the paper's choice. On the ``synthetic`` data set the exact log p(x) of the generating
model is known, so the gap to it is reported too; for a linear-Gaussian model the model's own exact
log p_θ(x) is known as well, which isolates the bound's gap from the model's misfit.

Results follow the suite's data contract: tidy long-form frames with ``estimator``, ``num_samples``, ``seed``
on every row; :func:`summarize_convergence` gives the mean over seeds with a Student-t interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from vaebench import rng
from vaebench.errors import VaebenchError
from vaebench.estimators import log_density, make_estimator, sample_posterior
from vaebench.exact import exact_log_marginal
from vaebench.measures.latents import active_units
from vaebench.measures.schema import CONVERGENCE, conform
from vaebench.model import GaussianVAE
from vaebench.stats import mean_interval
from vaebench.training import (
    DEFAULT_EVAL_SAMPLES,
    evaluate_elbo,
    train,
)

FINAL_METRICS: tuple[str, ...] = (
    "final_test_elbo",
    "test_log_likelihood",
    "exact_log_likelihood",
    "ll_gap",
    "model_log_likelihood",
    "bound_gap",
    "active_units",
)
"""End-of-run metrics: final test ELBO; the IS estimate of log p(x); on ``synthetic`` the data's exact log p(x)
and its gap to the estimate (exact - estimate); for linear-Gaussian models the model's exact log p_θ(x) and the
bound's gap to it: means over test points, in nats per datapoint. And the number of active latent units on the
same points (Burda et al. 2015; :mod:`vaebench.measures.latents`)."""

UNIT_COLUMNS: tuple[str, ...] = CONVERGENCE.columns
"""Columns of a `measure_convergence` frame, in order."""

DEFAULT_LL_SAMPLES = 5000  # importance samples per test point (Burda et al. 2015)
# Floats in the widest activation of one chunk: on a CPU about the cache (4 MiB in float32; measured ~2x
# faster than 16 MiB chunks), on a GPU large enough to fill the device.
_MAX_ELEMENTS = {"cpu": 1 << 20, "cuda": 1 << 24}


@torch.no_grad()
def estimate_log_likelihood(
    model: nn.Module,
    x: Tensor,
    k: int = DEFAULT_LL_SAMPLES,
    *,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Importance-sampled log p(x) per datapoint with the encoder as proposal (the IW bound L_k).

    log p̂(x) = logsumexp_i [log p(x, z_i) - log q(z_i | x)] - log k,  z_i ~ q(z | x), i = 1..k. The k
    samples are drawn in chunks and combined by a logsumexp over the chunks' logsumexps (exact, not an
    approximation), so memory stays bounded whatever k.

    Args:
        model: anything with ``posterior`` and ``log_joint`` (a :class:`~vaebench.model.GaussianVAE`).
        x: data [B, D].
        k: importance samples per datapoint.
        chunk_size: samples per chunk; default: as many as keep the widest activation [chunk, B', width]
            under about 1M floats on a CPU, 16M on a GPU (the datapoints are split too when B alone exceeds it).
        generator: the noise (a generator on x's device), or None for torch's global generator.

    Returns:
        log p̂(x) [B]; below log p(x) in expectation, the gap shrinking as k grows.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise VaebenchError(f"k (importance samples) must be a positive integer, got {k!r}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise VaebenchError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if x.dim() != 2:
        raise VaebenchError(f"x must have shape [B, D], got {list(x.shape)}")
    width = _widest_layer(model, x.shape[-1])
    budget = _MAX_ELEMENTS.get(x.device.type, _MAX_ELEMENTS["cpu"])
    points = max(1, budget // width)
    out = []
    for part in x.split(points):
        q = model.posterior(part)
        step = chunk_size or max(1, budget // (part.shape[0] * width))
        partial = []
        for start in range(0, k, step):
            z = sample_posterior(q, min(step, k - start), generator)
            partial.append(torch.logsumexp(model.log_joint(part, z) - log_density(q, z), 0))
        out.append(torch.logsumexp(torch.stack(partial), 0) - math.log(k))
    return torch.cat(out)


def measure_convergence(
    model_factory: Callable[[int], nn.Module],
    estimator_name: str,
    dataset,
    *,
    num_samples: int,
    seed: int,
    estimator_options: Mapping | None = None,
    ll_samples: int = DEFAULT_LL_SAMPLES,
    ll_points: int | None = None,
    **train_options,
) -> pd.DataFrame:
    """One (estimator, K, seed) unit: train a fresh model, then measure it on the test set.

    Self-contained and deterministic given its arguments, so a caller can run units in any order and save
    each as it finishes.

    Args:
        model_factory: ``seed -> model``; called with ``seed``, so all estimators share an initialisation.
        estimator_name: a registered estimator name.
        dataset: a :class:`~vaebench.data.Dataset`.
        num_samples: K, latent samples per datapoint per step.
        seed: seeds the model, data order and all noise.
        estimator_options: options for :func:`~vaebench.estimators.make_estimator`.
        ll_samples: importance samples k of the test log-likelihood; 0 skips it (and the exact rows).
        ll_points: measure the final metrics on the first this many test points (default: all).
        **train_options: passed to :func:`~vaebench.training.train` (``steps``, ``epochs``, ``batch_size``,
            ``lr``, ``optimizer``, ``eval_every``, ``eval_samples``, ``budget``, ``progress``, ``device``...).

    Returns:
        Tidy frame, columns `UNIT_COLUMNS`: the training history (``train_objective``, ``test_elbo``) plus
        one row per `FINAL_METRICS` entry that applies, at the final step; ``diverged`` is the same on
        every row of the unit.
    """
    for reserved in ("num_samples", "seed", "checkpoint_at"):
        if reserved in train_options:
            raise VaebenchError(f"measure_convergence takes no train option {reserved!r} here")
    if isinstance(ll_samples, bool) or not isinstance(ll_samples, int) or ll_samples < 0:
        raise VaebenchError(
            f"ll_samples must be an integer >= 0 (0 skips the log-likelihood), got {ll_samples!r}"
        )
    model = model_factory(seed)
    estimator = make_estimator(estimator_name, **dict(estimator_options or {}))
    result = train(model, estimator, dataset, num_samples=num_samples, seed=seed, **train_options)

    history = result.history
    last = history.iloc[-1]
    x = dataset.test[:ll_points].to(_device_of(model))
    eval_samples = train_options.get("eval_samples", DEFAULT_EVAL_SAMPLES)
    final = {
        "final_test_elbo": evaluate_elbo(
            model, x, num_samples=eval_samples, generator=rng.generator(seed, "eval.elbo", device=x.device)
        )
        .mean()
        .item()
    }
    if x.shape[0] > 1:
        final["active_units"] = active_units(model, x)
    if ll_samples:
        gen = rng.generator(seed, "eval.log_likelihood", device=x.device)
        estimate = estimate_log_likelihood(model, x, ll_samples, generator=gen).double()
        final["test_log_likelihood"] = estimate.mean().item()
        if dataset.truth is not None:
            exact = dataset.exact_log_marginal(x.cpu()).to(estimate.device)
            final["exact_log_likelihood"] = exact.mean().item()
            final["ll_gap"] = (exact - estimate).mean().item()
        if getattr(model, "is_linear_gaussian", False):
            own = exact_log_marginal(model, x.double()).to(estimate.device)
            final["model_log_likelihood"] = own.mean().item()
            final["bound_gap"] = (own - estimate).mean().item()
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
    frame.insert(0, "num_samples", num_samples)
    frame.insert(0, "sampler", estimator.sampler)
    frame.insert(0, "estimator", estimator_name)
    frame["diverged"] = result.diverged
    return conform(frame[list(UNIT_COLUMNS)], CONVERGENCE)


def summarize_convergence(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean over seeds of each final metric per (estimator, sampler, K), with a Student-t interval.

    Diverged runs are counted (``n_diverged``) and left out of the mean: their final numbers describe a
    model frozen at an arbitrary step. The interval needs at least two completed seeds (NaN otherwise).

    Args:
        df: frames of `measure_convergence`, concatenated.
        level: confidence level of the interval.

    Returns:
        Tidy frame with columns estimator, sampler (when ``df`` has one: frames written before samplers
        existed have none), num_samples, objective, metric, value, value_low, value_high, n_seeds (completed
        runs), n_diverged, wall_time_s (mean training seconds of the completed runs).
    """
    _require_columns(df, ("estimator", "num_samples", "seed", "metric", "value", "diverged", "objective"))
    setting = setting_keys(df)
    runs = df.groupby([*setting, "seed"], sort=False)["diverged"].any()
    diverged = runs.groupby(level=list(range(len(setting))), sort=False).sum()
    diverged = dict(zip(diverged.index, diverged.to_numpy(), strict=True))  # setting tuple -> diverged runs
    rows = []
    final = df[df["metric"].isin(FINAL_METRICS)]
    for key, part in final.groupby([*setting, "objective", "metric"], sort=False):
        *values_of_setting, objective, metric = key
        done = part[~part["diverged"]]
        values = done["value"].to_numpy(dtype=float)
        low, high = mean_interval(values, level) if len(values) else (np.nan, np.nan)
        rows.append(
            {
                **dict(zip(setting, values_of_setting, strict=True)),
                "objective": objective,
                "metric": metric,
                "value": values.mean() if len(values) else np.nan,
                "value_low": float(low),
                "value_high": float(high),
                "n_seeds": len(values),
                "n_diverged": int(diverged[tuple(values_of_setting)]),
                "wall_time_s": done["wall_time_s"].mean() if len(values) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def summarize_curves(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Learning curves over seeds: per (estimator, sampler, K, metric, step) the mean and a Student-t band.

    Runs are aligned by step (the same ``eval_every`` gives the same steps); a run that stopped early
    (divergence, a wall-clock budget) contributes up to its last step, and ``n_seeds`` says how many did.

    Args:
        df: frames of `measure_convergence`, concatenated.
        level: confidence level of the band.

    Returns:
        Tidy frame: estimator, sampler (when ``df`` has one), num_samples, objective, metric, step, value,
        value_low, value_high, n_seeds, and the mean cost columns epoch, wall_time_s, grad_evals,
        latent_samples.
    """
    _require_columns(df, [c for c in UNIT_COLUMNS if c != "sampler"])
    curves = df[~df["metric"].isin(FINAL_METRICS)]
    rows = []
    keys = [*setting_keys(df), "objective", "metric", "step"]
    for key, part in curves.groupby(keys, sort=True):
        values = part["value"].to_numpy(dtype=float)
        low, high = mean_interval(values, level)
        row = dict(zip(keys, key, strict=True))
        row.update(value=values.mean(), value_low=float(low), value_high=float(high), n_seeds=len(values))
        row.update({c: part[c].mean() for c in ("epoch", "wall_time_s", "grad_evals", "latent_samples")})
        rows.append(row)
    return pd.DataFrame(rows)


def setting_keys(df: pd.DataFrame) -> list[str]:
    """The columns that name one setting: estimator, sampler (if the frame has it), K."""
    return [c for c in ("estimator", "sampler", "num_samples") if c in df]


# The pytorch/examples VAE recipe, as a regression check of the whole pipeline.

PYTORCH_EXAMPLES_MNIST_TEST_LOSS = 105.56
"""Test loss (mean -ELBO per test image, nats) of the pytorch/examples VAE after 10 epochs on MNIST."""


@dataclass(frozen=True)
class Recipe:
    """A complete training setup: data, model, estimator and training options.

    Attributes:
        name: a label for reports.
        dataset: data set name for :func:`~vaebench.data.load_dataset`.
        dataset_options: its preprocessing options.
        model_options: :class:`~vaebench.model.GaussianVAE` options besides x_dim and seed.
        estimator: registered estimator name.
        num_samples: K.
        train_options: options for :func:`~vaebench.training.train`.
        reference_test_loss: the published test loss (mean -ELBO per test image), when there is one.
    """

    name: str
    dataset: str
    dataset_options: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    estimator: str = "reparam"
    num_samples: int = 1
    train_options: dict = field(default_factory=dict)
    reference_test_loss: float | None = None

    def model_factory(self, x_dim: int) -> Callable[[int], GaussianVAE]:
        """``seed -> GaussianVAE`` for data of dimension ``x_dim``."""
        return lambda seed: GaussianVAE(x_dim, seed=seed, **self.model_options)


def pytorch_examples_recipe(dataset: str = "mnist", epochs: int = 10) -> Recipe:
    """The VAE of pytorch/examples (``vae/main.py``): the suite's end-to-end regression check.

    784-400-20 with ReLU, a Bernoulli decoder on grey-level pixels in [0, 1] (not binarized), loss = summed
    BCE + analytic KL per image (= -ELBO, the ``reparam-analytic-kl`` estimator at K = 1), Adam with learning
    rate 1e-3, batch 128, 10 epochs, PyTorch's default layer initialisation. On MNIST it reaches test loss
    `PYTORCH_EXAMPLES_MNIST_TEST_LOSS` (mean -ELBO per test image); the test loss here is the same quantity,
    ``-final_test_elbo``.

    Differences that do not change the model class: the encoder is one 784-400-40 network whose last layer
    gives (μ, raw scale) with σ = softplus(raw) + 1e-3, where pytorch/examples has two 400-20 heads (fc21,
    fc22) giving μ and log σ² (the same layer widths and parameter count); the loss here is the batch mean,
    not the batch sum (Adam is invariant to that scale up to its ε); the test ELBO averages 10 samples per
    image instead of 1 (the same expectation, less noise).

    Args:
        dataset: ``"mnist"`` (the published figure) or ``"fashion-mnist"`` (the suite's own reference in
            ``results/reference/``); any other name of :data:`~vaebench.data.DATASETS` works too.
        epochs: training epochs (10 in the recipe).

    Returns:
        The :class:`Recipe`.
    """
    return Recipe(
        name=f"pytorch-examples-vae-{dataset}",
        dataset=dataset,
        dataset_options={"binarize": None, "dequantize": False},
        model_options={"z_dim": 20, "hidden": (400,), "likelihood": "bernoulli", "activation": "relu"},
        estimator="reparam-analytic-kl",
        num_samples=1,
        train_options={"epochs": epochs, "batch_size": 128, "lr": 1e-3, "optimizer": "adam"},
        reference_test_loss=PYTORCH_EXAMPLES_MNIST_TEST_LOSS if dataset == "mnist" and epochs == 10 else None,
    )


def run_recipe(
    recipe: Recipe, *, root=None, seed: int = 0, ll_samples: int = 0, **train_overrides
) -> pd.DataFrame:
    """Load the recipe's data, train with it and measure, as one `measure_convergence` unit.

    Args:
        recipe: from e.g. :func:`pytorch_examples_recipe`.
        root: folder of the IDX files (``load_dataset``'s ``root``).
        seed: the unit's seed.
        ll_samples: importance samples of the test log-likelihood (0, the default, skips it: k = 5000 on
            10,000 28x28 test images is slow on a CPU).
        **train_overrides: replace or add train options (e.g. ``progress=True``, ``device="cuda"``).

    Returns:
        The unit's frame; the recipe's test loss is ``-value`` of its ``final_test_elbo`` row.
    """
    from vaebench.data import load_dataset

    data = load_dataset(recipe.dataset, root, seed=seed, **recipe.dataset_options)
    options = {**recipe.train_options, **train_overrides}
    return measure_convergence(
        recipe.model_factory(data.x_dim),
        recipe.estimator,
        data,
        num_samples=recipe.num_samples,
        seed=seed,
        ll_samples=ll_samples,
        **options,
    )


def _widest_layer(model: nn.Module, x_dim: int) -> int:
    z_dim = getattr(model, "z_dim", 0)
    return max(x_dim, 2 * z_dim, *getattr(model, "hidden", ()))


def _device_of(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def _require_columns(df: pd.DataFrame, columns) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise VaebenchError(f"expected a measure_convergence frame; missing column(s): {', '.join(missing)}")
