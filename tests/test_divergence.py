"""The divergence check read every N steps gives the run of the check read every step: the same diverged step,
rows, kept and final states, estimator state; the bad update is never applied, whatever the optimizer.

The bad steps are made as in ``tests/test_training.py``: an estimator whose loss (or only its gradient) turns
NaN, or absurd but finite, from a given call on. Nothing here is statistical.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from vaebench.data import load_dataset
from vaebench.estimators import ReinforceMovingAverage, Reparam, Setting
from vaebench.model import GaussianVAE
from vaebench.optim import make_optimizer
from vaebench.train import Checkpointer, TrainSpec, train, train_seeds
from vaebench.train.divergence import Latch, UpdateGuard

AT = 8  # the call (= step) at which the estimators below go bad


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def bad_output(out, model, at_call: int, calls: int, where: str):
    """The estimator's output, made bad from call ``at_call`` on in the way ``where`` says."""
    if calls < at_call:
        return out
    weight = model.decoder.net[0].weight
    if where == "loss":
        return type(out)(out.surrogate * math.nan, out.elbo, out.objective)
    if where == "huge loss":
        return type(out)(out.surrogate * 1e15, out.elbo, out.objective)
    if where == "huge gradient":
        return type(out)(
            out.surrogate + 1e14 * (weight.sum() - weight.sum().detach()), out.elbo, out.objective
        )
    # d sqrt(u)/du at u = 0 is inf, times 0: a NaN gradient under a finite loss
    return type(out)(out.surrogate + torch.sqrt(0 * weight.sum()), out.elbo, out.objective)


class Exploding(Reparam):
    def __init__(self, where: str):
        super().__init__()
        self.where, self.calls = where, 0

    def estimate(self, model, x, num_samples, generator):
        self.calls += 1
        return bad_output(
            super().estimate(model, x, num_samples, generator), model, AT, self.calls, self.where
        )


class ExplodingBaseline(ReinforceMovingAverage):
    """A moving-average baseline that keeps moving in the steps after the bad one (unless they are undone)."""

    def __init__(self, where: str):
        super().__init__()
        self.where, self.calls = where, 0

    def estimate(self, model, x, num_samples, generator):
        self.calls += 1
        return bad_output(
            super().estimate(model, x, num_samples, generator), model, AT, self.calls, self.where
        )


def run(digits, estimator, check_every: int, optimizer: str = "adam", device: str | None = None):
    spec = TrainSpec(
        steps=30,
        eval_every=5,
        keep=(0, 5, 7, 10),
        check_every=check_every,
        optimizer=optimizer,
        device=device,
    )
    setting = Setting("reinforce-ma" if isinstance(estimator, ReinforceMovingAverage) else "reparam", 1)
    return train(GaussianVAE(64, 4, hidden=(16,), seed=3), setting, digits, spec, seed=3, estimator=estimator)


def assert_same(latched, every) -> None:
    assert (latched.diverged_step, latched.steps, latched.latent_samples, latched.stop_reason) == (
        every.diverged_step,
        every.steps,
        every.latent_samples,
        every.stop_reason,
    )
    pd.testing.assert_frame_equal(
        latched.history.drop(columns="wall_time_s"), every.history.drop(columns="wall_time_s")
    )
    assert latched.checkpoints.keys() == every.checkpoints.keys()
    for step, state in every.checkpoints.items():
        assert all(torch.equal(latched.checkpoints[step][k], v) for k, v in state.items())
    assert all(torch.equal(latched.final_state[k], v) for k, v in every.final_state.items())
    for k, v in every.estimator_state.items():
        assert torch.equal(latched.estimator_state[k], v) or (
            v.isnan().all() and latched.estimator_state[k].isnan().all()
        )


@pytest.mark.parametrize("where", ["loss", "gradient", "huge loss", "huge gradient"])
@pytest.mark.parametrize("check_every", [3, 25])
def test_a_latched_check_gives_the_run_of_a_check_at_every_step(digits, where, check_every):
    every = run(digits, Exploding(where), 1)
    latched = run(digits, Exploding(where), check_every)
    assert every.diverged_step == AT and every.steps == AT - 1
    assert latched.checkpoints.keys() == {0, 5, 7}  # not 10: that step came after the bad one
    assert_same(latched, every)
    assert all(torch.isfinite(v).all() for v in latched.final_state.values())


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "sgd"])
def test_the_bad_update_is_not_applied_by_any_optimizer(digits, optimizer):
    # adam and sgd are fused (the latch goes in as found_inf), rmsprop is not (parameters copied back)
    assert_same(
        run(digits, Exploding("gradient"), 4, optimizer), run(digits, Exploding("gradient"), 1, optimizer)
    )


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_an_estimators_state_stops_where_the_check_at_every_step_leaves_it(digits, where):
    every = run(digits, ExplodingBaseline(where), 1)
    latched = run(digits, ExplodingBaseline(where), 6)
    assert every.diverged_step == AT
    assert_same(latched, every)
    assert int(latched.estimator_state["steps"]) == AT + 1  # prepared (1), then one update per forward pass


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_on_cuda_the_latch_gives_the_run_of_a_check_at_every_step(digits, where):
    # what the latch is for: on a GPU the flags stay on the device between reads
    every = run(digits, ExplodingBaseline(where), 1, device="cuda")
    latched = run(digits, ExplodingBaseline(where), 6, device="cuda")
    assert every.diverged_step == AT
    assert_same(latched, every)


def test_a_run_that_does_not_diverge_is_unchanged_by_the_latch(digits):
    assert_same(run(digits, Reparam(), 7), run(digits, Reparam(), 1))


def test_the_latch_keeps_the_first_bad_step_of_each_seed():
    latch = Latch(3, torch.device("cpu"))
    for step, bad in enumerate([[0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], start=1):
        before = latch.observe(
            torch.tensor(bad, dtype=torch.bool), step, torch.tensor([1.0, 2.0, 3.0]) * step
        )
        assert before.tolist() == [step > 3, step > 2, False]
    first, losses = latch.read()
    assert first == [3, 2, 0] and losses == [
        [1.0, 2.0, 3.0],
        [2.0, 4.0, 6.0],
        [3.0, 6.0, 9.0],
        [4.0, 8.0, 12.0],
    ]
    assert latch.read()[1] == []  # the losses are read once


def test_a_guarded_update_leaves_frozen_seeds_as_they_were():
    p = torch.nn.Parameter(torch.ones(3, 2))
    optimizer, _ = make_optimizer([p], lr=0.1)
    guard = UpdateGuard(optimizer, [p], seed_axis=True)  # stacked: a where over the seed axis
    p.grad = torch.tensor([[1.0, 1.0], [math.nan, 1.0], [1.0, 1.0]])
    guard.step(torch.tensor([False, True, False]))
    assert p[1].tolist() == [1.0, 1.0] and (p[[0, 2]] < 1).all()


class EveryThirdStep(Checkpointer):
    """Due at every third step; stops the run (like a kill) right after its n-th save."""

    def __init__(self, path, n: int):
        super().__init__(path, every_s=0.0)
        self.n, self.asked = n, 0

    def due(self) -> bool:
        self.asked += 1
        return self.asked % 3 == 0

    def save(self, state) -> None:
        super().save(state)
        if self.saves == self.n:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stacked", [False, True])
def test_a_latched_run_resumed_from_its_checkpoint_equals_an_uninterrupted_one(tmp_path, digits, stacked):
    spec = TrainSpec(steps=20, eval_every=10, check_every=7)  # saves at steps 3, 6, 9 fall between reads
    setting = Setting("reinforce-ma", 2)

    def run_with(checkpoint):
        if stacked:
            models = [GaussianVAE(64, 4, hidden=(16,), seed=s) for s in (0, 1)]
            return train_seeds(models, setting, digits, spec, seeds=[0, 1], checkpoint=checkpoint)
        return [train(GaussianVAE(64, 4, hidden=(16,), seed=0), setting, digits, spec, checkpoint=checkpoint)]

    whole = run_with(None)
    path = tmp_path / "unit.pt"
    with pytest.raises(KeyboardInterrupt):
        run_with(EveryThirdStep(path, 3))
    resumed = run_with(Checkpointer(path, every_s=1e9))
    for a, b in zip(resumed, whole, strict=True):
        pd.testing.assert_frame_equal(
            a.history.drop(columns="wall_time_s"), b.history.drop(columns="wall_time_s")
        )
        assert all(torch.equal(a.final_state[k], v) for k, v in b.final_state.items())
