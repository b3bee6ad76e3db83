"""How a run trains: its length, batches, optimizer, evaluation cadence and device, checked once when built.

A :class:`TrainSpec` holds everything of the training loop that is neither the model, the setting (estimator,
sampler, K), the data nor the seed; :func:`vaebench.train.train` takes one. The suite builds it from the
configuration's ``[train]`` table (:meth:`TrainSpec.from_config`).

Divergence: a step whose loss or gradient norm is NaN, Inf or beyond `DIVERGENCE_BOUND` (finite but absurd: a
huge learning rate once gave test ELBOs of -1e18 that passed as finite) ends the run before its update. The
host reads the check every ``check_every`` steps (:mod:`vaebench.train.divergence`); the run is the same.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from vaebench.config import LR_SCHEDULES, TrainConfig
from vaebench.errors import VaebenchError, check_int
from vaebench.optim import OPTIMIZERS
from vaebench.train.evaluation import DEFAULT_EVAL_SAMPLES

BUDGET_KEYS: tuple[str, ...] = ("grad_evals", "latent_samples", "seconds")
"""Units of an equal-budget stop: gradient estimates, latent samples (Σ B·K), or training wall-clock seconds."""

DIVERGENCE_BOUND = 1e10
"""Largest sane |loss| (nats per datapoint) and gradient norm; beyond it a run counts as diverged. At 1e10
float32 no longer resolves a change of 1,000 nats in the loss, so no comparison of estimators survives it,
and no sane setting comes near: a default digits VAE starts at ~7e2 nats, and even 784 pixels at the σ floor
of 1e-3 with unit errors give ~4e8."""


@dataclass(frozen=True)
class TrainSpec:
    """The loop's settings (see the module docstring). At least one of ``steps``, ``epochs``, ``budget``.

    Attributes:
        steps: number of optimizer updates.
        epochs: number of passes over the training set.
        budget: equal-budget stop, e.g. ``{"grad_evals": 500}``, ``{"latent_samples": 10**6}`` or
            ``{"seconds": 5.0}`` (training wall-clock); the run stops after the first update at which a given
            count is reached. Several keys: the first reached.
        batch_size: datapoints per step.
        lr: learning rate (the first step's, under a schedule).
        lr_schedule: a key of `LR_SCHEDULES`; ``cosine`` needs a length in steps or epochs.
        optimizer: a key of `vaebench.optim.OPTIMIZERS`.
        eval_every: evaluate and record every this many updates (plus at step 0 and at the end). Default:
            once per epoch when ``epochs`` is given, else about 20 records over ``steps`` (or once per epoch
            under a budget alone).
        eval_samples: samples per test point for the test ELBO.
        eval_points: evaluate on the first this many test points (default: all).
        keep: steps at which to keep a copy of the model's and the estimator's state (0: initialisation).
        drop_last: drop each epoch's final short batch.
        divergence_bound: a step whose |loss| or gradient norm exceeds it (or is NaN/Inf) ends the run as
            diverged, before its update; see `DIVERGENCE_BOUND`.
        check_every: steps between two host reads of the divergence check. 1 (default): every step, before
            its update; N > 1: the check is latched on the device, no update after the first bad step is
            applied, and the run is cut back to that step when it is read (the same results, without a
            device synchronisation per step: for GPUs; :mod:`vaebench.train.divergence`).
        compile: ``torch.compile`` the step's estimator and model (forward and backward): True for inductor
            (``mode="reduce-overhead"``, CUDA graphs, on CUDA), a string for that backend (``"aot_eager"``:
            no code generation). Compile time is reported apart (`TrainResult.compile_time_s`); the noise
            is drawn outside the compiled region from the same generator, so the run equals an eager one
            to float precision.
        device: where to train (:func:`vaebench.devices.resolve`); default: the model's device.
        progress: show a tqdm progress bar with the latest test ELBO.

    Raises:
        VaebenchError: a bad value, named in the message.
    """

    steps: int | None = None
    epochs: int | None = None
    budget: Mapping[str, float] | None = None
    batch_size: int = 100
    lr: float = 1e-3
    lr_schedule: str = "constant"
    optimizer: str = "adam"
    eval_every: int | None = None
    eval_samples: int = DEFAULT_EVAL_SAMPLES
    eval_points: int | None = None
    keep: Iterable[int] = field(default=())
    drop_last: bool = False
    divergence_bound: float = DIVERGENCE_BOUND
    check_every: int = 1
    compile: bool | str = False
    device: str | torch.device | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "epochs", "eval_every", "eval_points"):
            value = getattr(self, name)
            if value is not None:
                check_int(name, value, 0 if name in ("steps", "epochs") else 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("eval_samples", self.eval_samples, 1)
        check_int("check_every", self.check_every, 1)
        if not isinstance(self.compile, bool | str) or self.compile == "":
            raise VaebenchError(
                f"compile must be True, False or a torch.compile backend name, got {self.compile!r}"
            )
        lr, bound = self.lr, self.divergence_bound
        if isinstance(lr, bool) or not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
            raise VaebenchError(f"lr must be a positive number, got {lr!r}")
        if isinstance(bound, bool) or not (isinstance(bound, int | float) and bound > 0):
            raise VaebenchError(f"divergence_bound must be a positive number, got {bound!r}")
        if self.optimizer not in OPTIMIZERS:
            raise VaebenchError(
                f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}"
            )
        object.__setattr__(self, "budget", _checked_budget(self.budget) or None)
        if self.steps is None and self.epochs is None and not self.budget:
            raise VaebenchError("training needs a length: give steps, epochs or budget")
        if self.lr_schedule not in LR_SCHEDULES:
            raise VaebenchError(
                f"unknown lr_schedule {self.lr_schedule!r}; choose one of: {', '.join(LR_SCHEDULES)}"
            )
        if self.lr_schedule != "constant" and self.steps is None and self.epochs is None:
            raise VaebenchError(
                f"lr_schedule {self.lr_schedule!r} decays over the run's length: give steps or epochs, "
                "not a budget alone"
            )
        keep = tuple(sorted({int(s) for s in self.keep}))
        if any(s < 0 for s in keep):
            raise VaebenchError(f"keep (steps at which to keep the state) must be >= 0, got {list(keep)}")
        object.__setattr__(self, "keep", keep)

    @classmethod
    def from_config(
        cls, config: TrainConfig, device: str | torch.device | None = None, keep: Iterable[int] = ()
    ) -> TrainSpec:
        """The spec of the suite's ``[train]`` table (its log-likelihood keys belong to the measure)."""
        return cls(
            steps=config.steps,
            batch_size=config.batch_size,
            lr=config.lr,
            lr_schedule=config.lr_schedule,
            optimizer=config.optimizer,
            compile=config.compile,
            check_every=config.check_every,
            eval_every=config.eval_every,
            eval_samples=config.eval_samples,
            eval_points=config.eval_points or None,
            keep=keep,
            device=device,
        )


def learning_rate(spec: TrainSpec, step: int, total: int) -> float:
    """The learning rate of update ``step`` (0 for the first) of a run of ``total`` updates (`LR_SCHEDULES`)."""
    if spec.lr_schedule == "constant" or total <= 0:
        return spec.lr
    return spec.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def _checked_budget(budget: Mapping[str, float] | None) -> dict[str, float]:
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
