"""One seed's training program: its model, estimator, optimizer and noise, and the step that `train` runs.

A *program* is what the loop (:mod:`vaebench.train.run`) steps: it holds the objects one or several seeds
train with, and answers the loop's questions in the loop's terms (per seed, on the device). This one trains
one seed, as :func:`vaebench.train.train` always has: step 2 of :mod:`vaebench.train.step` with the run's
``train.noise`` generator, or with its noise drawn outside a compiled surrogate
(:mod:`vaebench.train.compiled`). :class:`~vaebench.train.seeds.StackedProgram` is its S-seed counterpart.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaebench import rng
from vaebench.errors import VaebenchError
from vaebench.estimators import Estimator
from vaebench.optim import make_optimizer
from vaebench.train.checkpoints import capture, restore
from vaebench.train.compiled import CompiledSurrogate
from vaebench.train.divergence import StateGuard, UpdateGuard
from vaebench.train.evaluation import evaluate_elbo
from vaebench.train.malloc import keep_freed_memory
from vaebench.train.spec import TrainSpec
from vaebench.train.stacking import draw_noise
from vaebench.train.step import gradient_norm, surrogate_of, training_step


class SeedProgram:
    """The training program of one seed (see the module docstring).

    Args:
        model: the model, trained in place (moved to ``device``).
        estimator: the setting's estimator (prepared here on the first batch of the training set).
        num_samples: K.
        dataset: the data set (its first batch prepares the estimator; its test set is evaluated).
        spec: the loop's settings.
        seed: the run's seed.
        device: where it trains.
    """

    stacked = False

    def __init__(self, model, estimator: Estimator, num_samples, dataset, spec: TrainSpec, seed, device):
        self.model, self.est, self.k, self.spec, self.device = model, estimator, num_samples, spec, device
        keep_freed_memory()  # a step's activations reused, not faulted in afresh (vaebench.train.malloc)
        self.seeds = [seed]
        model.to(device)
        estimator.prepare(model, dataset.train[: spec.batch_size].to(device), seed=seed)
        estimator.to(device)
        self.params = unique([*model.parameters(), *estimator.parameters()])
        self.opt, _ = make_optimizer(self.params, spec.lr, spec.optimizer)
        self.noise = rng.generator(seed, "train.noise", device=device)
        self.test = dataset.test[: spec.eval_points].to(device)
        self.compiled = None
        if spec.compile:
            if getattr(model, "z_dim", None) is None:
                raise VaebenchError(
                    f"compile needs the model's latent dimension z_dim (to draw the noise outside the "
                    f"compiled step); {type(model).__name__} has none: train with compile=False"
                )
            self.compiled = CompiledSurrogate(model, estimator, num_samples, spec.compile, device)
        self.compiling = False  # whether the last step compiled
        self.excluded = 0.0  # seconds of the last step that were not training (none here)
        self.update_guard: UpdateGuard | None = None
        self.state_guard: StateGuard | None = None
        if spec.check_every > 1:
            self.update_guard = UpdateGuard(self.opt, self.params, seed_axis=False)
            self.state_guard = StateGuard(estimator, seed_axis=False)

    def train_mode(self) -> None:
        self.model.train()
        self.est.train()

    def batch(self, xs: list[Tensor]) -> Tensor:
        """The step's minibatch on the device (untimed: data loading)."""
        return xs[0].to(self.device, non_blocking=True)

    def forward_backward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Steps 1-3 (gradients in ``.grad``): the loss [1] and the norm of all gradients [1], on the device."""
        if self.state_guard is not None:
            self.state_guard.save()
        loss = training_step(self.opt, self._surrogate(x), apply=False)
        return loss.view(1), gradient_norm(self.params).view(1)

    def _surrogate(self, x: Tensor):
        if self.compiled is None:
            return surrogate_of(self.model, self.est, x, self.k, self.noise)
        like = self.params[0]
        eps = draw_noise([self.noise], self.est.sampler, self.k, (x.shape[0], self.model.z_dim), like)
        self.compiling = self.compiled.compiles(x, eps)
        return lambda: self.compiled(x, eps)[0]

    def update(self, frozen: Tensor | None) -> None:
        """Step 4: the optimizer's step (``frozen``: the latched flags, whose seed it leaves as it was)."""
        if frozen is None:
            self.opt.step()
        else:
            self.update_guard.step(frozen)

    def restore_state(self, frozen_before: Tensor) -> None:
        """Latched check: put back the estimator's state if the seed was frozen before this step."""
        self.state_guard.restore(frozen_before)

    @torch.no_grad()
    def evaluate(self) -> list[float]:
        """The test ELBO (the noise of stream ``eval.elbo``, the same at every evaluation)."""
        gen = rng.generator(self.seeds[0], "eval.elbo", device=self.test.device)
        elbo = evaluate_elbo(self.model, self.test, num_samples=self.spec.eval_samples, generator=gen)
        return [elbo.mean().item()]

    def evaluate_one(self, position: int) -> float:
        return self.evaluate()[0]

    def states(self, position: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The model's and the estimator's ``state_dict``."""
        return self.model.state_dict(), self.est.state_dict()

    def drop(self, positions: list[int]) -> None:
        """Nothing to drop: a single seed's run ends with its seed."""

    def _objects(self) -> dict:
        return {"model": self.model, "estimator": self.est, "optimizer": self.opt, "generator": self.noise}

    def capture(self, lanes, epoch: int, batch: int) -> dict:
        """The run's state between two steps (:func:`vaebench.train.checkpoints.capture`)."""
        (lane,) = lanes
        where = lane.recorder.position(epoch=epoch, batch=batch, recorded_at=lane.recorded_at)
        return capture(**self._objects(), progress=where)

    def restore(self, saved: dict, lanes) -> tuple[int, int] | None:
        """Continue from a captured state: (epoch, batch to start at), or None if it is not one of this kind."""
        if saved.get("kind") is not None:  # another program's (seeds trained together)
            return None
        (lane,) = lanes
        epoch, skip, lane.recorded_at = lane.recorder.resume(restore(saved, **self._objects()))
        return epoch, skip


def unique(params: list[nn.Parameter]) -> list[nn.Parameter]:
    """``params`` without repeats (a parameter shared by the model and the estimator counts once)."""
    seen: set[int] = set()
    return [p for p in params if not (id(p) in seen or seen.add(id(p)))]
