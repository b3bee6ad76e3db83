"""The recording side of the training loop: the test ELBO, the cost so far, the history rows and kept states.

`vaebench.train.loop.train` owns the loop; this module owns what the loop writes down, so that a unit
checkpoint (:mod:`vaebench.train.checkpoints`) can save and restore it as one `Recorder.position`. The test ELBO
is the plain ELBO of the test set estimated with the pathwise estimator and a generator reseeded identically
at every evaluation (stream ``eval.elbo`` of :mod:`vaebench.rng`), whatever estimator is trained, so every
learning curve is on one scale and two evaluations differ only by the model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
from torch import Tensor, nn

from vaebench import rng
from vaebench.estimators import Estimator
from vaebench.train.evaluation import evaluate_elbo


@dataclass
class Counts:
    """The cost so far: optimizer updates, training seconds, latent samples (Σ B·K), compile seconds."""

    step: int = 0
    wall: float = 0.0
    samples: int = 0
    compile: float = 0.0


@dataclass
class Recorder:
    """The recording side of `train`: history rows (train objective, test ELBO) and checkpoints."""

    model: nn.Module
    estimator: Estimator
    test: Tensor
    seed: int
    eval_samples: int
    per_epoch: int
    counts: Counts
    rows: list[tuple] = field(default_factory=list)
    window: list[float] = field(default_factory=list)  # -loss of the steps since the last record
    checkpoints: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    estimator_checkpoints: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    last_elbo: float = float("nan")

    def record(self) -> None:
        """Rows at the current step: the mean train objective since the last record, and the test ELBO."""
        gen = rng.generator(self.seed, "eval.elbo", device=self.test.device)  # the same noise every time
        elbo = (
            evaluate_elbo(self.model, self.test, num_samples=self.eval_samples, generator=gen).mean().item()
        )
        self.record_elbo(elbo)

    def record_elbo(self, elbo: float) -> None:
        """`record` with the test ELBO evaluated elsewhere (seeds stacked evaluate theirs at once)."""
        c = self.counts
        cost = (c.step, c.step / self.per_epoch, c.wall, c.step, c.samples)
        if self.window:
            self.rows.append(
                (*cost, "train_objective", float(np.mean(self.window)), self.estimator.objective)
            )
            self.window.clear()
        self.rows.append((*cost, "test_elbo", elbo, self.estimator.objective))
        self.last_elbo = elbo

    def position(self, *, epoch: int, batch: int, recorded_at: int) -> dict:
        """Everything recorded so far and where the loop stands: the ``progress`` of a unit checkpoint."""
        return {
            "counts": asdict(self.counts),
            "rows": self.rows,
            "window": self.window,
            "kept": self.checkpoints,
            "kept_estimator": self.estimator_checkpoints,
            "last_elbo": self.last_elbo,
            "epoch": epoch,
            "batch": batch,
            "recorded_at": recorded_at,
        }

    def resume(self, saved: dict) -> tuple[int, int, int]:
        """Take back a `position`; return the loop's (epoch, batch to start at, step of the last record)."""
        for name, value in saved["counts"].items():
            setattr(self.counts, name, value)
        self.rows.extend(saved["rows"])
        self.window.extend(saved["window"])
        self.checkpoints.update(saved["kept"])
        self.estimator_checkpoints.update(saved["kept_estimator"])
        self.last_elbo = saved["last_elbo"]
        return saved["epoch"], saved["batch"], saved["recorded_at"]

    def snapshot(self, at: list[int]) -> None:
        """Copy the model's and the estimator's state to the CPU if the current step is in ``at``."""
        if self.counts.step in at:
            self.keep(self.model.state_dict(), self.estimator.state_dict())

    def keep(self, model_state: Mapping[str, Tensor], estimator_state: Mapping[str, Tensor]) -> None:
        """Keep CPU copies of these states as the current step's (`snapshot` with the states given)."""
        self.checkpoints[self.counts.step] = cpu_copy(model_state)
        self.estimator_checkpoints[self.counts.step] = cpu_copy(estimator_state)


def cpu_copy(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {
        k: v.detach().to("cpu", copy=True) if isinstance(v, Tensor) else copy.deepcopy(v)
        for k, v in state.items()
    }
