"""The one training loop every estimator is trained with, so that learning curves differ only by the estimator.

For a model p_θ(x, z) with encoder q_φ(z|x), each step draws a minibatch x [B, D], asks the estimator for
its surrogate (value = -mean objective, gradient = the estimator's gradient estimate; see
:mod:`vaebench.estimators`) with K latent samples per datapoint, and takes one optimizer step on the model's
parameters and the estimator's own (NVIL's baseline network). Everything else is shared and fixed by
arguments: the model and its initialisation (the caller builds it from its own seed), the data order
(``dataset.batches(..., seed=seed, epoch=e)``), the optimizer, and the latent-noise stream (seeded from
``seed``). The step and the optimizer are :mod:`vaebench.step`'s, the very ones the throughput measure times.

What is recorded, as one tidy row per (step, metric):

- ``train_objective``: the estimator's own objective estimate (ELBO or IWAE_K, see the ``objective``
  column), averaged over the steps since the previous record;
- ``test_elbo``: the plain ELBO of the test set, estimated with the pathwise estimator, ``eval_samples``
  samples per point and a generator reseeded identically at every evaluation, whatever estimator is trained,
  so every curve is on the same scale and differences between evaluations come from the model only.

Every row carries the cost so far: ``grad_evals`` (gradient estimates = backward passes = optimizer steps),
``latent_samples`` (Σ B·K over the steps: latent draws, each one decoder pass; the fair unit when comparing
different K) and ``wall_time_s`` (seconds spent in training steps: estimator, backward and optimizer step;
data loading, evaluation and recording are excluded so the clock measures the estimator's cost).

Divergence: after every backward pass the loss and the norm of all gradients are checked (one read of two
scalars, which also gives the recorded loss). A NaN or Inf, or a loss or gradient norm beyond
`DIVERGENCE_BOUND` (finite but absurd: a huge learning rate once gave test ELBOs of -1e18 that passed as
finite), ends the run *before* that update is applied: the history stops at the step before, and
``final_state`` holds the parameters at which the bad value was seen, finite, but after an out-of-bound loss as
absurd as that loss (summaries leave diverged runs out of their means).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import Tensor, nn

from vaebench import rng
from vaebench.checkpoint import Checkpointer, capture, restore
from vaebench.errors import VaebenchError, check_int
from vaebench.estimators import Estimator, check_num_samples, make_estimator
from vaebench.progress import bar as progress_bar
from vaebench.recording import DEFAULT_EVAL_SAMPLES, Counts, Recorder, cpu_copy, evaluate_elbo

__all__ = ["BUDGET_KEYS", "DIVERGENCE_BOUND", "HISTORY_COLUMNS", "TrainResult", "evaluate_elbo", "train"]
from vaebench.step import OPTIMIZERS, make_optimizer, out_of_bounds, surrogate_of, training_step

BUDGET_KEYS: tuple[str, ...] = ("grad_evals", "latent_samples", "seconds")
"""Units of an equal-budget stop: gradient estimates, latent samples (Σ B·K), or training wall-clock seconds."""

HISTORY_COLUMNS: tuple[str, ...] = (
    "step",
    "epoch",
    "wall_time_s",
    "grad_evals",
    "latent_samples",
    "metric",
    "value",
    "objective",
)
"""Columns of `TrainResult.history`, in order."""

DIVERGENCE_BOUND = 1e10
"""Largest sane |loss| (nats per datapoint) and gradient norm; beyond it a run counts as diverged. At 1e10
float32 no longer resolves a change of 1,000 nats in the loss, so no comparison of estimators survives it,
and no sane setting comes near: a default digits VAE starts at ~7e2 nats, and even 784 pixels at the σ floor
of 1e-3 with unit errors give ~4e8."""

_DEFAULT_EVALS = 20  # evaluations per run when eval_every is not given and the length is known in steps


@dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        history: tidy DataFrame, one row per recorded step per metric, columns `HISTORY_COLUMNS`: ``step``
            (optimizer updates so far), ``epoch`` (fraction of epochs done, float), ``wall_time_s``,
            ``grad_evals``, ``latent_samples``, ``metric`` (``train_objective`` or ``test_elbo``), ``value``,
            ``objective`` (``"elbo"`` or ``"iwae"``: the objective the run trains, on every row; the metric
            name says what each value is, and ``test_elbo`` is always the plain ELBO).
        diverged_step: the update at which the loss or a gradient was NaN/Inf or beyond the divergence bound
            (that update was not applied), or None.
        checkpoints: step -> copy of the model's ``state_dict`` (on the CPU) after that many updates, for the
            steps of ``checkpoint_at`` that the run reached; step 0 is the initialisation.
        final_state: the model's ``state_dict`` (CPU copy) at the end; for a diverged run, the parameters at
            which the bad loss or gradient was seen (finite: the bad update was not applied).
        wall_time_s: training seconds (see the module docstring for what the clock includes).
        steps: optimizer updates done.
        grad_evals: gradient estimates computed and applied.
        latent_samples: Σ B·K over the applied updates.
        stop_reason: ``"steps"``, ``"epochs"``, ``"budget:<key>"`` or ``"diverged"``.
        estimator_checkpoints: step -> the estimator's ``state_dict`` (baselines, running statistics) at the
            same steps as ``checkpoints``.
        estimator_state: the estimator's ``state_dict`` at the end.
    """

    history: pd.DataFrame
    diverged_step: int | None
    checkpoints: dict[int, dict[str, Tensor]]
    final_state: dict[str, Tensor]
    wall_time_s: float
    steps: int = 0
    grad_evals: int = 0
    latent_samples: int = 0
    stop_reason: str = ""
    estimator_checkpoints: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    estimator_state: dict[str, Tensor] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        """Whether the run stopped on a NaN/Inf or out-of-bound loss or gradient."""
        return self.diverged_step is not None


def train(
    model: nn.Module,
    estimator: Estimator | str,
    dataset,
    *,
    num_samples: int,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 100,
    lr: float = 1e-3,
    optimizer: str = "adam",
    seed: int = 0,
    eval_every: int | None = None,
    eval_samples: int = DEFAULT_EVAL_SAMPLES,
    eval_points: int | None = None,
    checkpoint_at: Iterable[int] = (),
    budget: Mapping[str, float] | None = None,
    progress: bool = False,
    device: torch.device | str | None = None,
    drop_last: bool = False,
    divergence_bound: float = DIVERGENCE_BOUND,
    checkpoint: Checkpointer | None = None,
) -> TrainResult:
    """Train ``model`` with ``estimator``'s gradients; everything but the estimator is fixed by the arguments.

    The run ends at the first of: ``steps`` updates, ``epochs`` passes over the training set, the
    ``budget``, or a divergence. At least one of ``steps``, ``epochs``, ``budget`` is required.

    Args:
        model: the model to train in place (e.g. a :class:`~vaebench.model.GaussianVAE`; its initialisation
            comes from its own seed).
        estimator: an estimator instance, or a registered name (built with default options).
        dataset: a :class:`~vaebench.data.Dataset` (``train``, ``test``, ``batches``).
        num_samples: K, latent samples per datapoint per step.
        steps: number of optimizer updates.
        epochs: number of passes over the training set.
        batch_size: datapoints per step.
        lr: learning rate.
        optimizer: a key of `OPTIMIZERS`.
        seed: seeds the data order (``dataset.batches(seed=seed, epoch=e)``), the latent noise and the
            evaluation noise; the same seed gives the same run.
        eval_every: evaluate and record every this many updates (plus at step 0 and at the end). Default:
            once per epoch when ``epochs`` is given, else about 20 records over ``steps`` (or once per epoch
            under a budget alone).
        eval_samples: samples per test point for the test ELBO.
        eval_points: evaluate on the first this many test points (default: all).
        checkpoint_at: steps at which to keep a copy of the model's state (0 = initialisation).
        budget: equal-budget stop, e.g. ``{"grad_evals": 500}``, ``{"latent_samples": 10**6}`` or
            ``{"seconds": 5.0}`` (training wall-clock as defined in the module docstring); the run stops after
            the first update at which a given count is reached. Several keys: the first reached.
        progress: show a tqdm progress bar with the latest test ELBO.
        device: move the model (and data batches) there; default: the model's device.
        drop_last: drop each epoch's final short batch.
        divergence_bound: a step whose |loss| or gradient norm exceeds it (or is NaN/Inf) ends the run as
            diverged, before its update; see `DIVERGENCE_BOUND`.
        checkpoint: continue from its saved state if it has one, and save the run's state to it every so
            often (:mod:`vaebench.checkpoint`): a run stopped and resumed gives the rows of an uninterrupted one.

    Returns:
        The :class:`TrainResult`.

    Raises:
        VaebenchError: a bad argument (named in the message).
    """
    est = make_estimator(estimator) if isinstance(estimator, str) else estimator
    _check_arguments(
        model, est, dataset, num_samples, batch_size, eval_samples, lr, optimizer, divergence_bound
    )
    for name, value in (("steps", steps), ("epochs", epochs), ("eval_every", eval_every)):
        if value is not None:
            check_int(name, value, 0 if name != "eval_every" else 1)
    if eval_points is not None:
        check_int("eval_points", eval_points, 1)
    budget = _check_budget(budget)
    if steps is None and epochs is None and not budget:
        raise VaebenchError("train needs a length: pass steps=, epochs= or budget=")
    checkpoint_at = sorted({int(s) for s in checkpoint_at})
    if any(s < 0 for s in checkpoint_at):
        raise VaebenchError(f"checkpoint_at steps must be >= 0, got {checkpoint_at}")

    # Setup: device, length, evaluation cadence, the estimator's state, the optimizer and the noise.
    device = torch.device(
        device if device is not None else next(iter(model.parameters()), torch.empty(0)).device
    )
    model.to(device)
    per_epoch = _steps_per_epoch(dataset, batch_size, drop_last)
    limits = [s for s in (steps, None if epochs is None else epochs * per_epoch) if s is not None]
    total = min(limits) if limits else None
    if eval_every is None:
        eval_every = per_epoch if (epochs is not None or total is None) else max(1, total // _DEFAULT_EVALS)
    est.prepare(model, dataset.train[:batch_size].to(device))
    est.to(device)
    params = _unique([*model.parameters(), *est.parameters()])
    opt, _ = make_optimizer(params, lr, optimizer)
    train_gen = rng.generator(seed, "train.noise", device=device)
    counts = Counts()
    recorder = Recorder(
        model, est, dataset.test[:eval_points].to(device), seed, eval_samples, per_epoch, counts
    )

    # The loop: one training step per minibatch until a stop; the divergence check before each update.
    model.train()
    est.train()
    bar = progress_bar(total, progress, unit="step", leave=False, desc="train")
    diverged_step, stop_reason, epoch = None, "", 0
    recorded_at = skip = 0
    objects = {"model": model, "estimator": est, "optimizer": opt, "generator": train_gen}
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is None:
        recorder.record()
        recorder.snapshot(checkpoint_at)
    else:  # continue a preempted run where its checkpoint left it
        epoch, skip, recorded_at = recorder.resume(restore(saved, **objects))
    while not stop_reason:
        for batch, x in enumerate(dataset.batches(batch_size, seed=seed, epoch=epoch, drop_last=drop_last)):
            if batch < skip:  # drawn before the checkpoint: the data order's generator replays them
                continue
            stop_reason = _stop_reason(counts, total, steps, budget)
            if stop_reason:
                break
            x = x.to(device, non_blocking=True)
            start = time.perf_counter()
            loss = training_step(opt, surrogate_of(model, est, x, num_samples, train_gen), apply=False)
            # One host read per step: the divergence check must come before the update it would refuse,
            # and the same read brings the loss for the record.
            bad, loss = torch.stack(
                [out_of_bounds(loss, params, divergence_bound).to(loss.dtype), loss]
            ).tolist()
            if bad:
                diverged_step, stop_reason = counts.step + 1, "diverged"
                break
            opt.step()
            counts.wall += time.perf_counter() - start
            counts.step += 1
            counts.samples += x.shape[0] * num_samples
            recorder.window.append(-loss)
            bar.update(1)
            if counts.step % eval_every == 0:
                recorder.record()
                recorded_at = counts.step
                bar.set_postfix(test_elbo=f"{recorder.last_elbo:.2f}", refresh=False)
            recorder.snapshot(checkpoint_at)
            if checkpoint is not None and checkpoint.due():
                where = recorder.position(epoch=epoch, batch=batch + 1, recorded_at=recorded_at)
                checkpoint.save(capture(**objects, progress=where))
        epoch, skip = epoch + 1, 0
    if recorded_at != counts.step:
        recorder.record()
    bar.close()
    model.train()

    return TrainResult(
        history=pd.DataFrame(recorder.rows, columns=list(HISTORY_COLUMNS)),
        diverged_step=diverged_step,
        checkpoints=recorder.checkpoints,
        final_state=cpu_copy(model.state_dict()),
        wall_time_s=counts.wall,
        steps=counts.step,
        grad_evals=counts.step,
        latent_samples=counts.samples,
        stop_reason=stop_reason,
        estimator_checkpoints=recorder.estimator_checkpoints,
        estimator_state=cpu_copy(est.state_dict()),
    )


def _check_arguments(
    model, est, dataset, num_samples, batch_size, eval_samples, lr, optimizer, bound
) -> None:
    """The checks of `train`'s scalar arguments, each error naming the argument."""
    if not isinstance(est, Estimator):
        raise VaebenchError(f"estimator must be an Estimator or a registered name, got {type(est).__name__}")
    check_num_samples(num_samples, est.min_samples, est.name)
    check_int("batch_size", batch_size, 1)
    check_int("eval_samples", eval_samples, 1)
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise VaebenchError(f"lr must be a positive number, got {lr!r}")
    if isinstance(bound, bool) or not (isinstance(bound, int | float) and bound > 0):
        raise VaebenchError(f"divergence_bound must be a positive number, got {bound!r}")
    if optimizer not in OPTIMIZERS:
        raise VaebenchError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
    x_dim = getattr(model, "x_dim", None)
    if x_dim is not None and x_dim != dataset.x_dim:
        raise VaebenchError(
            f"the model's x_dim is {x_dim} but data set {dataset.name!r} has {dataset.x_dim} features; "
            "build the model with x_dim=dataset.x_dim"
        )


def _steps_per_epoch(dataset, batch_size: int, drop_last: bool) -> int:
    n_train = dataset.train.shape[0]
    if n_train == 0:
        raise VaebenchError(f"data set {dataset.name!r} has no training examples")
    per_epoch = n_train // batch_size if drop_last else math.ceil(n_train / batch_size)
    if per_epoch == 0:
        raise VaebenchError(f"batch_size {batch_size} exceeds the {n_train} training examples with drop_last")
    return per_epoch


def _stop_reason(counts: Counts, total: int | None, steps: int | None, budget: dict[str, float]) -> str:
    """Why the run should stop before the next update, or "" to go on."""
    if total is not None and counts.step >= total:
        return "steps" if steps is not None and counts.step >= steps else "epochs"
    reached = {"grad_evals": counts.step, "latent_samples": counts.samples, "seconds": counts.wall}
    for key, limit in budget.items():
        if reached[key] >= limit:
            return f"budget:{key}"
    return ""


def _check_budget(budget: Mapping[str, float] | None) -> dict[str, float]:
    if budget is None:
        return {}
    if not isinstance(budget, Mapping) or not budget:
        raise VaebenchError(
            f"budget must be a non-empty dict such as {{'grad_evals': 1000}} or {{'seconds': 5}}, got {budget!r}"
        )
    out = {}
    for key, value in budget.items():
        if key not in BUDGET_KEYS:
            raise VaebenchError(f"unknown budget key {key!r}; valid: {', '.join(BUDGET_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise VaebenchError(f"budget {key!r} must be a positive number, got {value!r}")
        out[key] = float(value)
    return out


def _unique(params: list[nn.Parameter]) -> list[nn.Parameter]:
    seen: set[int] = set()
    return [p for p in params if not (id(p) in seen or seen.add(id(p)))]
