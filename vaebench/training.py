"""The one training loop every estimator is trained with, so that learning curves differ only by the estimator.

For a model p_θ(x, z) with encoder q_φ(z|x), each step draws a minibatch x [B, D], asks the estimator for
its surrogate (value = -mean objective, gradient = the estimator's gradient estimate; see
:mod:`vaebench.estimators`) with K latent samples per datapoint, and takes one optimizer step on the model's
parameters and the estimator's own (NVIL's baseline network). Everything else is shared and fixed by
arguments: the model and its initialisation (the caller builds it from its own seed), the data order
(``dataset.batches(..., seed=seed, epoch=e)``), the optimizer, and the latent-noise stream (seeded from
``seed``).

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

import copy
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from vaebench.checkpoint import Checkpointer, capture, restore
from vaebench.errors import VaebenchError
from vaebench.estimators import Estimator, Reparam, check_num_samples, make_estimator

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamax": torch.optim.Adamax,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}
"""Optimizers `train` accepts by name (default hyperparameters besides the learning rate)."""

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

DEFAULT_EVAL_SAMPLES = 10  # samples per test point for the test ELBO: its MC error is tiny next to the gaps
_EVAL_CHUNK = 1024  # test points per evaluation pass, so memory stays bounded on large test sets
_DEFAULT_EVALS = 20  # evaluations per run when eval_every is not given and the length is known in steps
STREAMS: dict[str, int] = {"train": 101, "eval": 102}
"""Random streams of the seed (see `seeded_generator`): latent noise of training, noise of the test ELBO. The
data order has its own, inside vaebench.data; other measures pick numbers outside these."""


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


def seeded_generator(seed: int, stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` for one independent stream of ``seed`` (numpy SeedSequence hashing)."""
    state = np.random.SeedSequence([seed, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))


@torch.no_grad()
def evaluate_elbo(
    model: nn.Module,
    x: Tensor,
    *,
    num_samples: int = DEFAULT_EVAL_SAMPLES,
    generator: torch.Generator | None = None,
    chunk: int = _EVAL_CHUNK,
) -> Tensor:
    """Plain ELBO per datapoint, each the mean of ``num_samples`` pathwise draws; no gradients.

    Args:
        model: anything with ``posterior`` and ``log_joint``.
        x: data [N, D].
        num_samples: samples per datapoint.
        generator: the noise (a generator on x's device), or None for torch's global one.
        chunk: datapoints per pass.

    Returns:
        ELBO estimates [N].
    """
    reparam = Reparam()
    out = [reparam(model, part, num_samples=num_samples, generator=generator).elbo for part in x.split(chunk)]
    return torch.cat(out)


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
    if not isinstance(est, Estimator):
        raise VaebenchError(f"estimator must be an Estimator or a registered name, got {type(est).__name__}")
    check_num_samples(num_samples, est.min_samples, est.name)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("eval_samples", eval_samples)
    for name, value in (("steps", steps), ("epochs", epochs), ("eval_every", eval_every)):
        if value is not None:
            _check_positive_int(name, value, minimum=0 if name != "eval_every" else 1)
    if eval_points is not None:
        _check_positive_int("eval_points", eval_points)
    budget = _check_budget(budget)
    if steps is None and epochs is None and not budget:
        raise VaebenchError("train needs a length: pass steps=, epochs= or budget=")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise VaebenchError(f"lr must be a positive number, got {lr!r}")
    if isinstance(divergence_bound, bool) or not (
        isinstance(divergence_bound, int | float) and divergence_bound > 0
    ):
        raise VaebenchError(f"divergence_bound must be a positive number, got {divergence_bound!r}")
    if optimizer not in OPTIMIZERS:
        raise VaebenchError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
    x_dim = getattr(model, "x_dim", None)
    if x_dim is not None and x_dim != dataset.x_dim:
        raise VaebenchError(
            f"the model's x_dim is {x_dim} but data set {dataset.name!r} has {dataset.x_dim} features; "
            "build the model with x_dim=dataset.x_dim"
        )
    checkpoint_at = sorted({int(s) for s in checkpoint_at})
    if any(s < 0 for s in checkpoint_at):
        raise VaebenchError(f"checkpoint_at steps must be >= 0, got {checkpoint_at}")

    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    device = torch.device(device)
    model.to(device)
    n_train = dataset.train.shape[0]
    if n_train == 0:
        raise VaebenchError(f"data set {dataset.name!r} has no training examples")
    per_epoch = n_train // batch_size if drop_last else math.ceil(n_train / batch_size)
    if per_epoch == 0:
        raise VaebenchError(f"batch_size {batch_size} exceeds the {n_train} training examples with drop_last")
    limits = [s for s in (steps, None if epochs is None else epochs * per_epoch) if s is not None]
    total = min(limits) if limits else None
    if eval_every is None:
        eval_every = per_epoch if (epochs is not None or total is None) else max(1, total // _DEFAULT_EVALS)

    test = dataset.test[:eval_points].to(device)
    est.prepare(model, dataset.train[:batch_size].to(device))
    est.to(device)
    params = _unique([*model.parameters(), *est.parameters()])
    opt = OPTIMIZERS[optimizer](params, lr=lr)
    train_gen = seeded_generator(seed, STREAMS["train"], device)

    rows: list[tuple] = []
    checkpoints: dict[int, dict[str, Tensor]] = {}
    est_checkpoints: dict[int, dict[str, Tensor]] = {}
    state = {"step": 0, "wall": 0.0, "samples": 0}
    window: list[float] = []
    last_elbo = [float("nan")]

    def record() -> None:
        step = state["step"]
        cost = (step, step / per_epoch, state["wall"], step, state["samples"])
        if window:
            rows.append((*cost, "train_objective", float(np.mean(window)), est.objective))
            window.clear()
        gen = seeded_generator(seed, STREAMS["eval"], device)
        elbo = evaluate_elbo(model, test, num_samples=eval_samples, generator=gen).mean().item()
        rows.append((*cost, "test_elbo", elbo, est.objective))
        last_elbo[0] = elbo

    def snapshot() -> None:
        if state["step"] in checkpoint_at:
            checkpoints[state["step"]] = _cpu_copy(model.state_dict())
            est_checkpoints[state["step"]] = _cpu_copy(est.state_dict())

    model.train()
    est.train()
    bar = _progress_bar(total, progress)
    diverged_step, stop_reason, epoch = None, "", 0
    recorded_at = skip = 0
    objects = {"model": model, "estimator": est, "optimizer": opt, "generator": train_gen}
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is None:
        record()
        snapshot()
    else:  # continue a preempted run where its checkpoint left it
        run = restore(saved, **objects)
        state.update(run["state"])
        rows.extend(run["rows"])
        window.extend(run["window"])
        checkpoints.update(run["kept"])
        est_checkpoints.update(run["kept_estimator"])
        epoch, skip, recorded_at, last_elbo[0] = (
            run[k] for k in ("epoch", "batch", "recorded_at", "last_elbo")
        )
    while not stop_reason:
        for batch, x in enumerate(dataset.batches(batch_size, seed=seed, epoch=epoch, drop_last=drop_last)):
            if batch < skip:  # drawn before the checkpoint: the data order's generator replays them
                continue
            stop_reason = _stop_reason(state, total, steps, budget)
            if stop_reason:
                break
            x = x.to(device, non_blocking=True)
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            out = est(model, x, num_samples=num_samples, generator=train_gen)
            out.surrogate.backward()
            # One read per step: the loss for the record and a divergence check of every gradient.
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=device)
            loss = out.surrogate.detach()
            loss, grad_norm = torch.stack([loss, norm.to(device=loss.device, dtype=loss.dtype)]).tolist()
            if not (abs(loss) <= divergence_bound and grad_norm <= divergence_bound):  # False for NaN too
                diverged_step, stop_reason = state["step"] + 1, "diverged"
                break
            opt.step()
            state["wall"] += time.perf_counter() - start
            state["step"] += 1
            state["samples"] += x.shape[0] * num_samples
            window.append(-loss)
            bar.update(1)
            if state["step"] % eval_every == 0:
                record()
                recorded_at = state["step"]
                bar.set_postfix(test_elbo=f"{last_elbo[0]:.2f}", refresh=False)
            snapshot()
            if checkpoint is not None and checkpoint.due():
                where = {"state": state, "rows": rows, "window": window, "kept": checkpoints,
                         "kept_estimator": est_checkpoints, "epoch": epoch, "batch": batch + 1,
                         "recorded_at": recorded_at, "last_elbo": last_elbo[0]}  # fmt: skip
                checkpoint.save(capture(**objects, progress=where))
        epoch, skip = epoch + 1, 0
    if recorded_at != state["step"]:
        record()
    bar.close()
    model.train()

    history = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    return TrainResult(
        history=history,
        diverged_step=diverged_step,
        checkpoints=checkpoints,
        final_state=_cpu_copy(model.state_dict()),
        wall_time_s=state["wall"],
        steps=state["step"],
        grad_evals=state["step"],
        latent_samples=state["samples"],
        stop_reason=stop_reason,
        estimator_checkpoints=est_checkpoints,
        estimator_state=_cpu_copy(est.state_dict()),
    )


def _stop_reason(state: dict, total: int | None, steps: int | None, budget: dict[str, float]) -> str:
    """Why the run should stop before the next update, or "" to go on."""
    if total is not None and state["step"] >= total:
        return "steps" if steps is not None and state["step"] >= steps else "epochs"
    counts = {"grad_evals": state["step"], "latent_samples": state["samples"], "seconds": state["wall"]}
    for key, limit in budget.items():
        if counts[key] >= limit:
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


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise VaebenchError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _unique(params: list[nn.Parameter]) -> list[nn.Parameter]:
    seen: set[int] = set()
    return [p for p in params if not (id(p) in seen or seen.add(id(p)))]


def _cpu_copy(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {
        k: v.detach().to("cpu", copy=True) if isinstance(v, Tensor) else copy.deepcopy(v)
        for k, v in state.items()
    }


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int | None, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm  # imported here: only runs that ask for a bar pay for the import

    return tqdm(total=total, unit="step", leave=False, desc="train")
