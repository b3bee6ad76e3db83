"""Seeds that are what they say: stateful estimators draw their initial state from the caller's seed."""

from __future__ import annotations

import pytest
import torch

from vaebench.checks.exact_gradients import linear_gaussian
from vaebench.checks.landing import exact_posterior_model, stl_landing
from vaebench.errors import VaebenchError
from vaebench.estimators import make_estimator
from vaebench.measures.variance import warm_up


def state(est) -> list[torch.Tensor]:
    return [t.detach().clone() for t in (*est.buffers(), *est.parameters())]


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(s, t) for s, t in zip(a, b, strict=True))


@pytest.mark.parametrize("name", ["reinforce-ma", "reinforce-nvil"])
def test_the_initial_state_follows_the_seed_given_to_prepare(name):
    model, x = linear_gaussian()

    def prepared(seed):
        est = make_estimator(name)
        est.prepare(model, x, seed=seed)
        return state(est)

    one = prepared(1)
    assert not same(one, prepared(2))  # independent runs, independent initial statistics (and NVIL's b_ψ)
    assert same(one, prepared(1))


@pytest.mark.parametrize("name", ["reinforce-ma", "reinforce-nvil"])
def test_an_explicit_seed_option_wins_and_none_means_zero(name):
    model, x = linear_gaussian()
    explicit = make_estimator(name, seed=1)
    explicit.prepare(model, x, seed=2)
    caller = make_estimator(name)
    caller.prepare(model, x, seed=1)
    assert same(state(explicit), state(caller))
    old = make_estimator(name, seed=0)
    old.prepare(model, x)
    default = make_estimator(name)
    default.prepare(model, x)
    assert same(state(old), state(default))
    with pytest.raises(VaebenchError, match="non-negative integer"):
        make_estimator(name).prepare(model, x, seed=-1)


def test_warm_up_seeds_the_initial_state():
    model, x = linear_gaussian()
    a, b = (warm_up(make_estimator("reinforce-ma"), model, x, num_samples=2, calls=0, seed=s) for s in (3, 4))
    assert a.baseline != b.baseline
    again = warm_up(make_estimator("reinforce-ma"), model, x, num_samples=2, calls=0, seed=3)
    assert a.baseline == again.baseline


def test_the_landing_check_draws_from_named_streams():
    model, other = exact_posterior_model(seed=0), exact_posterior_model(seed=1)
    assert not torch.equal(model.decoder.net[0].bias, other.decoder.net[0].bias)
    frame = stl_landing(replicates=5, batch_size=4, steps=(1.0, 0.0))
    assert frame.equals(stl_landing(replicates=5, batch_size=4, steps=(1.0, 0.0)))
