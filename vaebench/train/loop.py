"""The one training loop every estimator is trained with, so that learning curves differ only by the estimator.

For a model p_θ(x, z) with encoder q_φ(z|x), each step draws a minibatch x [B, D], asks the estimator for
its surrogate (value = -mean objective, gradient = the estimator's gradient estimate; see
:mod:`vaebench.estimators`) with K latent samples per datapoint, and takes one optimizer step on the model's
parameters and the estimator's own (NVIL's baseline network). Everything else is shared and fixed by
arguments: the model and its initialisation (the caller builds it from its own seed), the data order
(``dataset.batches(..., seed=seed, epoch=e)``), the optimizer, and the latent-noise stream (seeded from
``seed``). The step (:mod:`vaebench.train.step`) and the optimizer (:mod:`vaebench.optim`) are the very ones the
throughput measure times.

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
`~vaebench.train.spec.DIVERGENCE_BOUND`, ends the run *before* that update is applied: the history stops at the step before, and
``final_state`` holds the parameters at which the bad value was seen, finite, but after an out-of-bound loss as
absurd as that loss (summaries leave diverged runs out of their means).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import Tensor, nn

from vaebench import devices, rng
from vaebench.errors import VaebenchError
from vaebench.estimators import Estimator, Setting
from vaebench.optim import make_optimizer
from vaebench.progress import bar as progress_bar
from vaebench.train.checkpoints import Checkpointer, capture, restore
from vaebench.train.recording import Counts, Recorder, cpu_copy
from vaebench.train.spec import TrainSpec
from vaebench.train.step import out_of_bounds, surrogate_of, training_step

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
            steps of ``spec.keep`` that the run reached; step 0 is the initialisation.
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
    setting: Setting,
    dataset,
    spec: TrainSpec,
    *,
    seed: int = 0,
    estimator: Estimator | None = None,
    checkpoint: Checkpointer | None = None,
) -> TrainResult:
    """Train ``model`` with the gradients of ``setting``'s estimator; everything else is fixed by the arguments.

    The run ends at the first of: ``spec.steps`` updates, ``spec.epochs`` passes over the training set, the
    ``spec.budget``, or a divergence.

    Args:
        model: the model to train in place (e.g. a :class:`~vaebench.model.GaussianVAE`; its initialisation
            comes from its own seed).
        setting: the estimator, its sampler and K (:class:`~vaebench.estimators.Setting`).
        dataset: a :class:`~vaebench.data.Dataset` (``train``, ``test``, ``batches``).
        spec: the loop's settings (:class:`~vaebench.train.spec.TrainSpec`).
        seed: seeds the data order (``dataset.batches(seed=seed, epoch=e)``), the latent noise and the
            evaluation noise; the same seed gives the same run.
        estimator: the estimator instance to train (options or state of your own); default
            ``setting.build()``. It must be the setting's estimator and sampler.
        checkpoint: continue from its saved state if it has one, and save the run's state to it every so
            often (:mod:`vaebench.train.checkpoints`): a run stopped and resumed gives the rows of an
            uninterrupted one.

    Returns:
        The :class:`TrainResult`.

    Raises:
        VaebenchError: an estimator that is not the setting's, or a model that does not fit the data.
    """
    estimator = setting.build() if estimator is None else estimator
    if not isinstance(estimator, Estimator):
        raise VaebenchError(f"estimator must be an Estimator, got {type(estimator).__name__}")
    if (estimator.name or setting.estimator, estimator.sampler) != (setting.estimator, setting.sampler):
        raise VaebenchError(
            f"the estimator given ({estimator.name or type(estimator).__name__}, sampler {estimator.sampler!r}) "
            f"is not the setting's ({setting.estimator}, sampler {setting.sampler!r})"
        )
    x_dim = getattr(model, "x_dim", None)
    if x_dim is not None and x_dim != dataset.x_dim:
        raise VaebenchError(
            f"the model's x_dim is {x_dim} but data set {dataset.name!r} has {dataset.x_dim} features; "
            "build the model with x_dim=dataset.x_dim"
        )
    loop = _Loop(model, estimator, setting.num_samples, dataset, spec, seed)
    return loop.run(checkpoint)


class _Loop:
    """One training run: the setup (device, optimizer, noise, recorder), the steps, and the result."""

    def __init__(self, model, estimator, num_samples, dataset, spec, seed):
        self.model, self.est, self.k, self.data, self.spec, self.seed = (
            model, estimator, num_samples, dataset, spec, seed,
        )  # fmt: skip
        device = devices.resolve(spec.device, like=model)
        model.to(device)
        self.device = device
        self.per_epoch = _steps_per_epoch(dataset, spec.batch_size, spec.drop_last)
        limits = [
            s
            for s in (spec.steps, None if spec.epochs is None else spec.epochs * self.per_epoch)
            if s is not None
        ]
        self.total = min(limits) if limits else None
        self.eval_every = spec.eval_every or (
            self.per_epoch
            if (spec.epochs is not None or self.total is None)
            else max(1, self.total // _DEFAULT_EVALS)
        )
        estimator.prepare(model, dataset.train[: spec.batch_size].to(device), seed=seed)
        estimator.to(device)
        self.params = _unique([*model.parameters(), *estimator.parameters()])
        self.opt, _ = make_optimizer(self.params, spec.lr, spec.optimizer)
        self.noise = rng.generator(seed, "train.noise", device=device)
        self.counts = Counts()
        test = dataset.test[: spec.eval_points].to(device)
        self.recorder = Recorder(model, estimator, test, seed, spec.eval_samples, self.per_epoch, self.counts)
        self.diverged_step: int | None = None

    def run(self, checkpoint: Checkpointer | None) -> TrainResult:
        model, est, recorder = self.model, self.est, self.recorder
        model.train()
        est.train()
        bar = progress_bar(self.total, self.spec.progress, unit="step", leave=False, desc="train")
        objects = {"model": model, "estimator": est, "optimizer": self.opt, "generator": self.noise}
        saved = checkpoint.load() if checkpoint is not None else None
        epoch = skip = recorded_at = 0
        if saved is None:
            recorder.record()
            recorder.snapshot(self.spec.keep)
        else:  # continue a preempted run where its checkpoint left it
            epoch, skip, recorded_at = recorder.resume(restore(saved, **objects))
        stop = ""
        while not stop:
            batches = self.data.batches(
                self.spec.batch_size, seed=self.seed, epoch=epoch, drop_last=self.spec.drop_last
            )
            for batch, x in enumerate(batches):
                if batch < skip:  # drawn before the checkpoint: the data order's generator replays them
                    continue
                stop = self._stop_reason() or self._step(x)
                if stop:
                    break
                bar.update(1)
                if self.counts.step % self.eval_every == 0:
                    recorder.record()
                    recorded_at = self.counts.step
                    bar.set_postfix(test_elbo=f"{recorder.last_elbo:.2f}", refresh=False)
                recorder.snapshot(self.spec.keep)
                if checkpoint is not None and checkpoint.due():
                    where = recorder.position(epoch=epoch, batch=batch + 1, recorded_at=recorded_at)
                    checkpoint.save(capture(**objects, progress=where))
            epoch, skip = epoch + 1, 0
        if recorded_at != self.counts.step:
            recorder.record()
        bar.close()
        model.train()
        return self._result(stop)

    def _step(self, x: Tensor) -> str:
        """One update on minibatch ``x``; "diverged" (the update not applied) or ""."""
        x = x.to(self.device, non_blocking=True)
        start = time.perf_counter()
        surrogate = surrogate_of(self.model, self.est, x, self.k, self.noise)
        loss = training_step(self.opt, surrogate, apply=False)
        # One host read per step: the divergence check must come before the update it would refuse,
        # and the same read brings the loss for the record.
        bad, loss = torch.stack(
            [out_of_bounds(loss, self.params, self.spec.divergence_bound).to(loss.dtype), loss]
        ).tolist()
        if bad:
            self.diverged_step = self.counts.step + 1
            return "diverged"
        self.opt.step()
        counts = self.counts
        counts.wall += time.perf_counter() - start
        counts.step += 1
        counts.samples += x.shape[0] * self.k
        self.recorder.window.append(-loss)
        return ""

    def _stop_reason(self) -> str:
        """Why the run should stop before the next update, or "" to go on."""
        counts, spec = self.counts, self.spec
        if self.total is not None and counts.step >= self.total:
            return "steps" if spec.steps is not None and counts.step >= spec.steps else "epochs"
        reached = {"grad_evals": counts.step, "latent_samples": counts.samples, "seconds": counts.wall}
        for key, limit in (spec.budget or {}).items():
            if reached[key] >= limit:
                return f"budget:{key}"
        return ""

    def _result(self, stop: str) -> TrainResult:
        recorder, counts = self.recorder, self.counts
        return TrainResult(
            history=pd.DataFrame(recorder.rows, columns=list(HISTORY_COLUMNS)),
            diverged_step=self.diverged_step,
            checkpoints=recorder.checkpoints,
            final_state=cpu_copy(self.model.state_dict()),
            wall_time_s=counts.wall,
            steps=counts.step,
            grad_evals=counts.step,
            latent_samples=counts.samples,
            stop_reason=stop,
            estimator_checkpoints=recorder.estimator_checkpoints,
            estimator_state=cpu_copy(self.est.state_dict()),
        )


def _steps_per_epoch(dataset, batch_size: int, drop_last: bool) -> int:
    n_train = dataset.train.shape[0]
    if n_train == 0:
        raise VaebenchError(f"data set {dataset.name!r} has no training examples")
    per_epoch = n_train // batch_size if drop_last else math.ceil(n_train / batch_size)
    if per_epoch == 0:
        raise VaebenchError(f"batch_size {batch_size} exceeds the {n_train} training examples with drop_last")
    return per_epoch


def _unique(params: list[nn.Parameter]) -> list[nn.Parameter]:
    seen: set[int] = set()
    return [p for p in params if not (id(p) in seen or seen.add(id(p)))]
