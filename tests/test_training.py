"""The shared training loop: it learns, its records are complete and consistent, it is deterministic, it stops
on divergence and on an equal budget, and it rejects bad arguments with a message that names them.

Statistical check: "the ELBO improved" is a one-sided paired z-test over the test points (the per-point
ELBO before and after training, with the same evaluation noise) at false-alarm rate FALSE_ALARM.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaebench import rng
from vaebench.data import load_dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import Estimator, Reparam, Setting
from vaebench.model import GaussianVAE
from vaebench.stats import normal_quantile
from vaebench.train import HISTORY_COLUMNS, TrainSpec, evaluate_elbo, train

FALSE_ALARM = 1e-3
BATCH = 100


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def fit(model, estimator, dataset, *, num_samples, seed=0, checkpoint_at=(), **spec):
    """`train` with its setting and spec spelled out here; ``estimator``: a name, or a Reparam of the tests'."""
    instance = estimator if isinstance(estimator, Estimator) else None
    setting = Setting(estimator if instance is None else "reparam", num_samples)
    return train(
        model, setting, dataset, TrainSpec(keep=checkpoint_at, **spec), seed=seed, estimator=instance
    )


def small_vae(dataset, seed=0):
    return GaussianVAE(dataset.x_dim, 4, hidden=(32,), seed=seed)


def per_point_elbo(dataset, state, seed):
    model = small_vae(dataset)
    model.load_state_dict(state)
    gen = rng.generator(seed, "eval.elbo")
    return evaluate_elbo(model, dataset.test, num_samples=10, generator=gen)


@pytest.fixture(scope="module")
def two_runs(digits):
    runs = {}
    for name in ("reparam", "reinforce-loo"):
        runs[name] = fit(
            small_vae(digits),
            name,
            digits,
            num_samples=2,
            steps=60,
            batch_size=BATCH,
            lr=3e-3,
            seed=1,
            eval_every=20,
            checkpoint_at=(0, 20, 10**6),
        )
    return runs


@pytest.mark.parametrize("name", ["reparam", "reinforce-loo"])
def test_two_estimators_improve_the_test_elbo_on_digits(digits, two_runs, name):
    result = two_runs[name]
    before = per_point_elbo(digits, result.checkpoints[0], seed=1)
    after = per_point_elbo(digits, result.final_state, seed=1)
    gain = (after - before).double()
    z = gain.mean() / (gain.std() / math.sqrt(gain.numel()))
    assert z > normal_quantile(1 - 2 * FALSE_ALARM)  # one-sided at FALSE_ALARM
    # The history's own test ELBO tells the same story, evaluated with the same noise.
    elbo = result.history.query("metric == 'test_elbo'").set_index("step")["value"]
    assert elbo.loc[60] == pytest.approx(after.mean().item(), rel=1e-5)
    assert elbo.loc[0] == pytest.approx(before.mean().item(), rel=1e-5)


@pytest.mark.parametrize("name", ["reparam", "reinforce-loo"])
def test_records_are_complete_and_consistent(digits, two_runs, name):
    result = two_runs[name]
    h = result.history
    assert list(h.columns) == list(HISTORY_COLUMNS)
    assert not h.isna().any().any()
    assert result.steps == result.grad_evals == 60 and result.stop_reason == "steps"
    assert not result.diverged and result.diverged_step is None
    assert sorted(h.loc[h.metric == "test_elbo", "step"]) == [0, 20, 40, 60]
    assert sorted(h.loc[h.metric == "train_objective", "step"]) == [20, 40, 60]
    assert set(h["objective"]) == {"elbo"}
    # Costs: grad_evals = steps; latent samples = Σ B·K over the actual batch sizes; epochs = steps / batches.
    sizes = [len(b) for e in range(5) for b in digits.batches(BATCH, seed=1, epoch=e)][:60]
    per_epoch = math.ceil(digits.train.shape[0] / BATCH)
    for step, row in h.groupby("step").first().iterrows():
        assert row.grad_evals == step
        assert row.latent_samples == 2 * sum(sizes[:step])
        assert row.epoch == pytest.approx(step / per_epoch)
    wall = h.groupby("step")["wall_time_s"].first().sort_index().to_numpy()
    assert wall[0] == 0 and np.all(np.diff(wall) >= 0) and wall[-1] == pytest.approx(result.wall_time_s)
    # Checkpoints: only the steps reached, as CPU copies; step 0 is the initialisation.
    assert sorted(result.checkpoints) == [0, 20] and sorted(result.estimator_checkpoints) == [0, 20]
    init = small_vae(digits).state_dict()
    assert all(torch.equal(init[k], v) for k, v in result.checkpoints[0].items())
    assert not all(torch.equal(result.checkpoints[20][k], v) for k, v in result.final_state.items())


def test_same_seed_same_run_and_estimators_share_initialisation(digits, two_runs):
    again = fit(small_vae(digits), "reparam", digits, num_samples=2, steps=60, lr=3e-3, seed=1, eval_every=20)
    first = two_runs["reparam"]
    assert again.history.drop(columns="wall_time_s").equals(first.history.drop(columns="wall_time_s"))
    assert all(torch.equal(first.final_state[k], v) for k, v in again.final_state.items())
    # Two estimators, one seed: the same initial model, hence the same step-0 test ELBO.
    step0 = [
        r.history.query("step == 0 and metric == 'test_elbo'")["value"].item() for r in two_runs.values()
    ]
    assert step0[0] == step0[1]


def test_epochs_and_default_evaluation_schedule(digits):
    result = fit(small_vae(digits), "reparam", digits, num_samples=1, epochs=2, batch_size=500)
    assert result.steps == 6 and result.stop_reason == "epochs"  # 1437 images: 3 batches of <= 500 per epoch
    assert sorted(result.history.query("metric == 'test_elbo'")["step"]) == [0, 3, 6]


class Exploding(Reparam):
    """Reparam whose loss (or only its gradient) turns NaN, or absurd but finite, at a given call."""

    def __init__(self, at: int, where: str):
        super().__init__()
        self.at, self.where, self.calls = at, where, 0

    def estimate(self, model, x, num_samples, generator):
        out = super().estimate(model, x, num_samples, generator)
        self.calls += 1
        if self.calls < self.at:
            return out
        if self.where == "loss":
            return type(out)(out.surrogate * math.nan, out.elbo, out.objective)
        weight = model.decoder.net[0].weight
        if self.where == "huge loss":  # ~-1e18 nats: finite, as a huge learning rate once produced
            return type(out)(out.surrogate * 1e15, out.elbo, out.objective)
        if self.where == "huge gradient":  # the loss is sane, the gradient 1e14 per coordinate
            shift = 1e14 * (weight.sum() - weight.sum().detach())
            return type(out)(out.surrogate + shift, out.elbo, out.objective)
        # d sqrt(u)/du at u = 0 is inf, times 0: a NaN gradient under a finite loss (sqrt(0) = 0).
        return type(out)(out.surrogate + torch.sqrt(0 * weight.sum()), out.elbo, out.objective)


@pytest.mark.parametrize("where", ["loss", "gradient", "huge loss", "huge gradient"])
def test_divergence_stops_the_run_before_the_bad_update(digits, where):
    result = fit(
        small_vae(digits),
        Exploding(8, where),
        digits,
        num_samples=1,
        steps=50,
        eval_every=5,
        checkpoint_at=[7],
    )
    assert result.diverged and result.diverged_step == 8 and result.stop_reason == "diverged"
    assert result.steps == 7 and result.history["step"].max() == 7
    assert result.history["value"].notna().all()
    # The bad update was not applied: the final state is the finite state after step 7.
    assert all(torch.isfinite(v).all() for v in result.final_state.values())
    assert all(torch.equal(result.checkpoints[7][k], v) for k, v in result.final_state.items())


def test_the_divergence_bound_is_an_argument(digits):
    # This small VAE starts near -70 nats: with a bound of 10 the very first step counts as diverged.
    result = fit(small_vae(digits), "reparam", digits, num_samples=1, steps=5, divergence_bound=10.0)
    assert result.diverged_step == 1 and result.steps == 0
    assert not fit(small_vae(digits), "reparam", digits, num_samples=1, steps=5).diverged
    with pytest.raises(VaebenchError, match="divergence_bound must be a positive number"):
        fit(small_vae(digits), "reparam", digits, num_samples=1, steps=5, divergence_bound=0)


@pytest.mark.parametrize(
    ("budget", "reason", "steps"),
    [({"grad_evals": 7}, "budget:grad_evals", 7), ({"latent_samples": 2500}, "budget:latent_samples", 3)],
)
def test_equal_budget_stops(digits, budget, reason, steps):
    # K = 5, batch 200: 1,000 latent samples per step, so 2,500 are reached at the end of step 3.
    k = 5 if "latent_samples" in budget else 1
    result = fit(small_vae(digits), "reparam", digits, num_samples=k, batch_size=200, budget=budget)
    assert result.stop_reason == reason
    assert result.steps == steps
    assert result.history["step"].max() == steps


def test_wall_clock_budget_stops_after_the_first_step_that_reaches_it(digits):
    result = fit(small_vae(digits), "reparam", digits, num_samples=1, steps=1000, budget={"seconds": 1e-9})
    assert result.stop_reason == "budget:seconds" and result.steps == 1


def test_learned_baseline_is_trained_with_the_model(digits):
    result = fit(small_vae(digits), "reinforce-nvil", digits, num_samples=1, steps=5, checkpoint_at=[0])
    before, after = result.estimator_checkpoints[0], result.estimator_state
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith("baseline_net"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs a length"),
        ({"steps": 5, "budget": {"flops": 1}}, "unknown budget key 'flops'"),
        ({"steps": 5, "budget": {"seconds": -1}}, "budget 'seconds' must be a positive number"),
        ({"steps": 5, "optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'"),
        ({"steps": 5, "lr": 0.0}, "lr must be a positive number"),
        ({"steps": -1}, "steps must be an integer"),
        ({"steps": 5, "eval_every": 0}, "eval_every must be an integer >= 1"),
        ({"steps": 5, "checkpoint_at": [-1]}, "keep"),
    ],
)
def test_bad_arguments_are_named(digits, kwargs, message):
    with pytest.raises(VaebenchError, match=message):
        fit(small_vae(digits), "reparam", digits, num_samples=1, **kwargs)


def test_model_and_data_must_agree_and_k_must_suit_the_estimator(digits):
    with pytest.raises(VaebenchError, match="x_dim is 10 but data set 'digits' has 64"):
        fit(GaussianVAE(10, 2), "reparam", digits, num_samples=1, steps=1)
    with pytest.raises(VaebenchError, match="reinforce-loo needs K >= 2"):
        fit(small_vae(digits), "reinforce-loo", digits, num_samples=1, steps=1)
    with pytest.raises(VaebenchError, match="unknown estimator"):
        fit(small_vae(digits), "nope", digits, num_samples=1, steps=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda(digits):
    result = fit(small_vae(digits), "dreg", digits, num_samples=3, steps=10, device="cuda")
    assert result.steps == 10 and not result.diverged
    assert all(v.device.type == "cpu" for v in result.final_state.values())
