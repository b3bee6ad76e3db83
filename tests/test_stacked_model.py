"""The stacked model is S GaussianVAEs side by side: every seed's rows get exactly its own model's numbers."""

from __future__ import annotations

import pytest
import torch

from vaebench import rng
from vaebench.errors import VaebenchError
from vaebench.estimators import make_estimator, standard_normal
from vaebench.model import GaussianVAE
from vaebench.train.stacked_model import StackedGaussianVAE

S, B, D, Z, K = 3, 4, 10, 3, 5
ARCHITECTURES = {
    "tanh-200": {"hidden": (20,)},
    "linear-gaussian": {"hidden": ()},
    "two-layers-bernoulli-relu": {"hidden": (7, 5), "likelihood": "bernoulli", "activation": "relu"},
    "network-scale-elu": {"hidden": (6,), "decoder_scale": "network", "activation": "elu"},
}


def data():
    gen = rng.generator(0, "checks.batch")
    return torch.rand(S, B, D, generator=gen), torch.randn(K, S, B, Z, generator=gen)


@pytest.mark.parametrize("options", ARCHITECTURES.values(), ids=ARCHITECTURES)
def test_each_seeds_rows_get_its_own_models_posterior_and_log_joint(options):
    models = [GaussianVAE(D, Z, seed=s, **options) for s in range(S)]
    stacked = StackedGaussianVAE(models)
    x, z = data()
    q = stacked.posterior(x.reshape(S * B, D))
    log_joint = stacked.log_joint(x.reshape(S * B, D), z.reshape(K, S * B, Z)).view(K, S, B)
    for s, model in enumerate(models):
        own = model.posterior(x[s])
        torch.testing.assert_close(q.loc.view(S, B, Z)[s], own.loc, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(q.scale.view(S, B, Z)[s], own.scale, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(log_joint[:, s], model.log_joint(x[s], z[:, s]), rtol=1e-5, atol=1e-4)


def test_a_seeds_state_and_gradients_read_back_under_its_own_models_names():
    models = [GaussianVAE(D, Z, hidden=(6,), seed=s) for s in range(S)]
    stacked = StackedGaussianVAE(models)
    x, z = data()
    stacked.log_joint(x.reshape(S * B, D), z.reshape(K, S * B, Z)).sum().backward()
    for s, model in enumerate(models):
        state = stacked.seed_state(s)
        assert list(state) == list(model.state_dict())
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        model.log_joint(x[s], z[:, s]).sum().backward()
        grads = stacked.seed_state(s, grad=True)
        for name, p in model.named_parameters():
            if name.startswith("encoder"):  # log_joint does not reach the encoder
                assert p.grad is None and not grads[name].any()
            else:
                torch.testing.assert_close(grads[name], p.grad, rtol=1e-5, atol=1e-5)
    other = GaussianVAE(D, Z, hidden=(6,), seed=7).state_dict()
    stacked.load_seed_state(1, other)
    assert all(torch.equal(stacked.seed_state(1)[k], v) for k, v in other.items())
    assert all(torch.equal(stacked.seed_state(0)[k], v) for k, v in models[0].state_dict().items())


def test_one_flat_parameter_per_network_with_the_seed_axis_first():
    stacked = StackedGaussianVAE([GaussianVAE(D, Z, hidden=(6,), seed=s) for s in range(S)])
    shapes = {name: tuple(p.shape) for name, p in stacked.named_parameters()}
    assert shapes == {
        "encoder.weights": (S, D * 6 + 6 + 6 * 2 * Z + 2 * Z),
        "decoder.weights": (S, Z * 6 + 6 + 6 * D + D),
        "raw_scale": (S, D),
    }


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([GaussianVAE(D, Z, hidden=(6,)), GaussianVAE(D, Z, hidden=(7,))], "one architecture"),
        ([GaussianVAE(D, Z), GaussianVAE(D, Z, activation="relu")], "one architecture"),
        ([], "at least one model"),
    ],
)
def test_models_that_do_not_stack_are_refused_by_name(models, message):
    with pytest.raises(VaebenchError, match=message):
        StackedGaussianVAE(models)
    with pytest.raises(VaebenchError, match="x must have shape"):
        StackedGaussianVAE([GaussianVAE(D, Z)] * 2).posterior(torch.zeros(3, D))


@pytest.mark.parametrize("sampler", ["iid", "antithetic", "rqmc"])
def test_an_estimator_given_its_noise_computes_what_it_draws_from_the_generator(sampler):
    model, x = GaussianVAE(D, Z, hidden=(6,)), torch.rand(B, D)
    estimator = make_estimator("stl", sampler=sampler)
    drawn = estimator(model, x, num_samples=4, generator=rng.generator(0, "train.noise")).surrogate
    eps = standard_normal(sampler, 4, (B, Z), rng.generator(0, "train.noise"))
    given = estimator(model, x, num_samples=4, generator=eps).surrogate
    assert torch.equal(drawn, given)
    with pytest.raises(VaebenchError, match=r"drawn noise must have shape \[K, B, Z\] = \[4, 4, 3\]"):
        estimator(model, x, num_samples=4, generator=eps[:, :2])
