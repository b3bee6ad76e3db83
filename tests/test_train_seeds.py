"""Seeds trained as one program equal seeds trained apart: curves, final and kept states, estimator state,
divergence and resumption, per estimator family; what cannot stack trains one seed at a time, with a note.

Every comparison is against separately trained `train` runs of the same seeds, to float tolerance (the stacked
step's batched products round differently from the single step's; measured differences are ~1e-7 relative).
Nothing here is statistical.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from vaebench.data import load_dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, ReinforceMovingAverage, Reparam, Setting, log_density
from vaebench.model import GaussianVAE
from vaebench.train import Checkpointer, TrainSpec, stacking_problem, train, train_seeds

SEEDS = [0, 1, 2]
FAMILIES = {  # every family, both stateful estimators, estimators drawing M·K or 4·K normals a call
    "pathwise": [
        ("reparam", 1),
        ("stl", 2),
        ("reparam-cv", 2),
        ("reparam-analytic-kl", 1),
        ("quadratic-cv", 2),
    ],
    "score-function": [
        ("reinforce", 1),
        ("reinforce-loo", 2),
        ("reinforce-ma", 2),
        ("reinforce-nvil", 1),
        ("vargrad", 2),
    ],
    "importance-weighted": [
        ("iwae", 3),
        ("dreg", 3),
        ("iwae-stl", 2),
        ("vimco", 3),
        ("miwae", 2),
        ("renyi", 2),
    ],
    "measure-valued": [("mvd", 1)],  # 4 normals per sample and coordinate: draws other than [K, B, Z]
    "other": [("rws", 2), ("tail-adaptive", 2)],
}
CASES = [pytest.param(n, k, id=f"{family}-{n}-K{k}") for family, cases in FAMILIES.items() for n, k in cases]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def vae(seed: int, cls=GaussianVAE) -> GaussianVAE:
    return cls(64, 4, hidden=(16,), seed=seed)


def spec(**options) -> TrainSpec:
    return TrainSpec(**{"steps": 20, "eval_every": 5, "keep": (0, 10, 10**6), **options})


def assert_same_run(stacked, own) -> None:
    """Two results of one seed agree: rows (but the clock), stops, kept and final states, estimator state."""
    a, b = (r.history.drop(columns="wall_time_s") for r in (stacked, own))
    pd.testing.assert_frame_equal(a.drop(columns="value"), b.drop(columns="value"))
    torch.testing.assert_close(
        torch.tensor(a["value"].to_numpy()), torch.tensor(b["value"].to_numpy()), rtol=1e-5, atol=1e-4
    )
    assert (stacked.steps, stacked.latent_samples, stacked.stop_reason, stacked.diverged_step) == (
        own.steps,
        own.latent_samples,
        own.stop_reason,
        own.diverged_step,
    )
    assert stacked.checkpoints.keys() == own.checkpoints.keys() == stacked.estimator_checkpoints.keys()
    for states in ("checkpoints", "estimator_checkpoints"):
        for step, state in getattr(own, states).items():
            torch.testing.assert_close(getattr(stacked, states)[step], state, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stacked.final_state, own.final_state, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stacked.estimator_state, own.estimator_state, rtol=1e-4, atol=1e-5)


def apart(digits, setting, train_spec, estimators=None, cls=GaussianVAE):
    return [
        train(
            vae(s, cls),
            setting,
            digits,
            train_spec,
            seed=s,
            estimator=None if estimators is None else estimators[i],
        )
        for i, s in enumerate(SEEDS)
    ]


@pytest.mark.parametrize(("name", "k"), CASES)
def test_each_seed_equals_its_own_run(digits, name, k):
    setting = Setting(name, k)
    models = [vae(s) for s in SEEDS]
    results = train_seeds(models, setting, digits, spec(), seeds=SEEDS)
    for result, own, model in zip(results, apart(digits, setting, spec()), models, strict=True):
        assert result.seeds_stacked == 3 and result.note == ""
        assert_same_run(result, own)
        torch.testing.assert_close(model.state_dict(), own.final_state, rtol=1e-4, atol=1e-5)  # in place


def test_a_sampler_and_a_latched_check_stack_too(digits):
    setting = Setting("stl", 4, "rqmc")
    results = train_seeds([vae(s) for s in SEEDS], setting, digits, spec(check_every=3), seeds=SEEDS)
    for result, own in zip(results, apart(digits, setting, spec()), strict=True):
        assert_same_run(result, own)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("name", "k"), [("reparam", 1), ("reinforce-ma", 2), ("dreg", 3), ("mvd", 1)])
def test_on_cuda_each_seed_equals_its_own_run(digits, name, k):
    setting, on_cuda = Setting(name, k), spec(device="cuda")
    results = train_seeds([vae(s) for s in SEEDS], setting, digits, on_cuda, seeds=SEEDS)
    for result, own in zip(results, apart(digits, setting, on_cuda), strict=True):
        assert result.seeds_stacked == 3 and result.note == ""
        assert_same_run(result, own)


def test_the_clock_is_shared_fairly(digits):
    results = train_seeds([vae(s) for s in SEEDS], Setting("reparam", 1), digits, spec(), seeds=SEEDS)
    walls = {r.wall_time_s for r in results}
    assert len(walls) == 1 and walls.pop() > 0  # every seed did the same work: equal shares of every step
    assert all(r.compile_time_s == 0 for r in results)


class Poisoned(Reparam):
    """Reparam whose objective is NaN on the rows equal to one training point: the seed that meets it diverges."""

    def __init__(self, point: torch.Tensor, where: str = "loss"):
        super().__init__()
        self.point, self.where = point, where

    def _output(self, objective, score=None):
        hit = (self.x == self.point.to(self.x)).all(-1)
        if self.where == "loss":
            objective = torch.where(hit, torch.nan, objective)
        else:  # a sane loss, a huge gradient on those rows only
            objective = objective + hit * 1e14 * (objective - objective.detach())
        return super()._output(objective, score)

    def estimate(self, model, x, num_samples, generator):
        self.x = x
        return super().estimate(model, x, num_samples, generator)


def first_meeting(digits, seed: int, index: int, steps: int, batch: int = 100) -> int | None:
    """The step (1-based) at which training point ``index`` is in seed ``seed``'s minibatch, within ``steps``."""
    point = digits.train[index]
    for step, x in enumerate(digits.batches(batch, seed=seed, epoch=0), start=1):
        if step > steps:
            return None
        if (x == point).all(-1).any():
            return step
    return None


@pytest.fixture(scope="module")
def poison(digits):
    """A training point that seed 1 meets at a step in [4, 12] and seeds 0 and 2 never within 14 steps."""
    for index in range(digits.train.shape[0]):
        met = [first_meeting(digits, s, index, 14) for s in SEEDS]
        if met[1] is not None and 4 <= met[1] <= 12 and met[0] is None and met[2] is None:
            return digits.train[index], met[1]
    raise AssertionError("no such point")


@pytest.mark.parametrize("where", ["loss", "gradient"])
@pytest.mark.parametrize("check_every", [1, 5])
def test_a_seed_that_diverges_stops_and_the_others_go_on(digits, poison, where, check_every):
    point, step = poison
    setting, train_spec = Setting("reparam", 1), spec(steps=14, check_every=check_every)
    estimators = [Poisoned(point, where) for _ in SEEDS]
    results = train_seeds(
        [vae(s) for s in SEEDS], setting, digits, train_spec, seeds=SEEDS, estimators=estimators
    )
    owns = apart(digits, setting, spec(steps=14), [Poisoned(point, where) for _ in SEEDS])
    assert [r.diverged_step for r in results] == [None, step, None]
    assert results[1].steps == step - 1 and results[0].steps == results[2].steps == 14
    for result, own in zip(results, owns, strict=True):
        assert result.seeds_stacked == 3
        assert_same_run(result, own)


class StopAfter(Checkpointer):
    """Saves at every step and stops the run (like a kill) right after its n-th save."""

    def __init__(self, path: Path, n: int):
        super().__init__(path, every_s=0.0)
        self.n = n

    def save(self, state) -> None:
        super().save(state)
        if self.saves == self.n:
            raise KeyboardInterrupt


@pytest.mark.parametrize("name", ["reinforce-ma", "poisoned"])
def test_a_stacked_run_stopped_and_resumed_equals_an_uninterrupted_one(tmp_path, digits, poison, name):
    # reinforce-ma: estimator state, dynamic binarization, batches of 500 across epochs; poisoned: seed 1
    # diverges before the stop, so the checkpoint holds its final result and a stack of two.
    point, step = poison
    if name == "reinforce-ma":
        data, setting, stop = (
            load_dataset("digits", binarize="dynamic", dequantize=False),
            Setting(name, 2),
            7,
        )
        train_spec = spec(steps=11, batch_size=500, eval_every=4, keep=(0, 6, 11))
    else:
        data, setting, stop, train_spec = digits, Setting("reparam", 2), step + 1, spec(steps=14)
    likelihood = "bernoulli" if name == "reinforce-ma" else "gaussian"

    def run(checkpoint):
        models = [GaussianVAE(64, 4, hidden=(16,), likelihood=likelihood, seed=s) for s in SEEDS]
        estimators = None if name == "reinforce-ma" else [Poisoned(point) for _ in SEEDS]
        return train_seeds(
            models, setting, data, train_spec, seeds=SEEDS, estimators=estimators, checkpoint=checkpoint
        )

    whole = run(None)
    path = tmp_path / "unit.pt"
    with pytest.raises(KeyboardInterrupt):
        run(StopAfter(path, stop))
    alive = [seed for seed, _ in Checkpointer(path, 0.0).load()["alive"]]
    assert alive == (SEEDS if name == "reinforce-ma" else [0, 2])
    resumed = run(Checkpointer(path, 0.0))
    for a, b in zip(resumed, whole, strict=True):
        assert_same_run(a, b)
    assert whole[1].diverged == (name == "poisoned")


def test_what_cannot_stack_says_why(digits):
    class Mine(GaussianVAE):
        pass

    class MyBaseline(ReinforceMovingAverage):
        pass

    assert stacking_problem(vae(0), Setting("reinforce-nvil", 1)) == ""
    assert "no batched form" in stacking_problem(vae(0, Mine), Setting("reparam", 1))
    assert "keeps state" in stacking_problem(vae(0), Setting("reinforce-ma", 1), MyBaseline())
    assert all(not stacking_problem(vae(0), Setting(n, ESTIMATORS[n].min_samples)) for n in ESTIMATORS)


def test_a_model_without_a_batched_form_trains_one_seed_at_a_time(digits):
    class Mine(GaussianVAE):
        pass

    setting = Setting("reparam", 1)
    results = train_seeds([vae(s, Mine) for s in SEEDS], setting, digits, spec(), seeds=SEEDS)
    for result, own in zip(results, apart(digits, setting, spec(), cls=Mine), strict=True):
        assert result.seeds_stacked == 1 and "no batched form" in result.note
        assert_same_run(result, own)


class Mixing(Reparam):
    """Weights each datapoint's gradient by a softmax over the whole batch: it mixes every seed's rows."""

    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        f = (model.log_joint(x, z) - log_density(q, z)).mean(0)
        weights = torch.softmax(f.detach() / 10, 0) * f.shape[0]
        return self._output(f.detach(), weights * f)  # the value of the ELBO, a reweighted gradient


def test_an_estimator_that_mixes_datapoints_is_caught_at_the_first_step(digits):
    setting = Setting("reparam", 1)
    results = train_seeds(
        [vae(s) for s in SEEDS],
        setting,
        digits,
        spec(steps=3),
        seeds=SEEDS,
        estimators=[Mixing() for _ in SEEDS],
    )
    owns = apart(digits, setting, spec(steps=3), [Mixing() for _ in SEEDS])
    for result, own in zip(results, owns, strict=True):
        assert result.seeds_stacked == 1 and "mixes datapoints" in result.note
        assert_same_run(result, own)


def test_seeds_and_models_must_pair_up(digits):
    setting = Setting("reparam", 1)
    with pytest.raises(VaebenchError, match="one model per seed"):
        train_seeds([vae(0)], setting, digits, spec(), seeds=[0, 1])
    with pytest.raises(VaebenchError, match="distinct seeds"):
        train_seeds([vae(0), vae(0)], setting, digits, spec(), seeds=[0, 0])
    one = Reparam()
    with pytest.raises(VaebenchError, match="one estimator instance per seed"):
        train_seeds([vae(0), vae(1)], setting, digits, spec(), seeds=[0, 1], estimators=[one, one])


def test_freed_memory_is_kept_once_per_process_where_glibc_allows():
    import platform

    from vaebench.train.malloc import keep_freed_memory

    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is expected and keep_freed_memory() is expected
