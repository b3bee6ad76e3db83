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
absurd as that loss (summaries leave diverged runs out of their means). With ``spec.check_every`` > 1 the check
is latched on the device and read every so many steps, with the same outcome (:mod:`vaebench.train.divergence`).

The loop itself is :mod:`vaebench.train.run`, shared with :func:`vaebench.train.train_seeds`, which trains the S
seeds of one setting as one program (:mod:`vaebench.train.seeds`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from torch import Tensor, nn

from vaebench import devices
from vaebench.errors import VaebenchError
from vaebench.estimators import Estimator, Setting
from vaebench.train.checkpoints import Checkpointer
from vaebench.train.program import SeedProgram
from vaebench.train.recording import Counts, Recorder
from vaebench.train.run import Lane, Run, Schedule
from vaebench.train.spec import TrainSpec

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
        compile_time_s: seconds of the steps that compiled (``spec.compile``), kept out of ``wall_time_s``;
            for seeds trained together, each seed's share.
        seeds_stacked: how many seeds were trained as one program with this one (1: on its own); its
            ``wall_time_s`` is then its share of the stacked steps (elapsed / seeds in the step).
        note: why seeds asked to train together trained one at a time ("" otherwise).
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
    compile_time_s: float = 0.0
    seeds_stacked: int = 1
    note: str = ""

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
    check_run(model, setting, estimator, dataset)
    device = devices.resolve(spec.device, like=model)
    program = SeedProgram(model, estimator, setting.num_samples, dataset, spec, seed, device)
    lane = new_lane(seed, model, estimator, dataset, spec, program.test)
    (lane,) = Run(program, [lane], dataset, spec, setting.num_samples).run(checkpoint)
    return result_of(lane)


def check_run(model: nn.Module, setting: Setting, estimator: Estimator, dataset) -> None:
    """Raise a `VaebenchError` for an estimator that is not the setting's or a model that does not fit the data."""
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


def new_lane(
    seed: int, model: nn.Module, estimator: Estimator, dataset, spec: TrainSpec, test: Tensor
) -> Lane:
    """A seed's lane of a run: empty counts and a recorder of its model, estimator and test points."""
    per_epoch = Schedule.of(dataset, spec).per_epoch
    return Lane(seed, Recorder(model, estimator, test, seed, spec.eval_samples, per_epoch, Counts()))


def result_of(lane: Lane, seeds_stacked: int = 1, note: str = "") -> TrainResult:
    """The `TrainResult` of an ended lane."""
    recorder, counts = lane.recorder, lane.counts
    return TrainResult(
        history=pd.DataFrame(recorder.rows, columns=list(HISTORY_COLUMNS)),
        diverged_step=lane.diverged_step,
        checkpoints=recorder.checkpoints,
        final_state=lane.final_state,
        wall_time_s=counts.wall,
        steps=counts.step,
        grad_evals=counts.step,
        latent_samples=counts.samples,
        stop_reason=lane.stop,
        estimator_checkpoints=recorder.estimator_checkpoints,
        estimator_state=lane.estimator_state,
        compile_time_s=counts.compile,
        seeds_stacked=seeds_stacked,
        note=note,
    )
