"""The one training step and the optimizer choice shared by training and the throughput measure."""

import pytest
import torch

from vaebench.errors import VaebenchError
from vaebench.estimators import make_estimator
from vaebench.model import GaussianVAE
from vaebench.optim import make_optimizer
from vaebench.train.step import out_of_bounds, surrogate_of, training_step


def test_make_optimizer_prefers_fused_and_falls_back_to_foreach():
    p = [torch.nn.Parameter(torch.zeros(3))]
    assert make_optimizer(p, 1e-3, "adam")[1] == "adam-fused"
    assert make_optimizer(p, 1e-3, "rmsprop")[1] == "rmsprop-foreach"  # torch has no fused RMSprop
    with pytest.raises(VaebenchError, match="unknown optimizer 'adamw'"):
        make_optimizer(p, 1e-3, "adamw")


def test_a_step_without_apply_leaves_the_parameters_and_the_gradients_for_a_check():
    model = GaussianVAE(x_dim=5, z_dim=2, hidden=(4,), seed=0)
    x = torch.rand(3, 5, generator=torch.Generator().manual_seed(0))
    opt, _ = make_optimizer(model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    surrogate = surrogate_of(model, make_estimator("reparam"), x, 2, torch.Generator().manual_seed(1))
    loss = training_step(opt, surrogate, apply=False)
    assert loss.ndim == 0 and not loss.requires_grad
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert all(p.grad is not None for p in model.parameters())
    assert not out_of_bounds(loss, model.parameters(), 1e10)
    training_step(opt, surrogate)
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_out_of_bounds_catches_nan_inf_and_absurd_values():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    assert not out_of_bounds(torch.tensor(1.0), [p], 10.0)
    assert out_of_bounds(torch.tensor(1.0), [p], 4.0)  # gradient norm 5
    assert out_of_bounds(torch.tensor(float("nan")), [p], 10.0)
    assert out_of_bounds(torch.tensor(-20.0), [p], 10.0)
    p.grad = torch.tensor([float("inf"), 0.0])
    assert out_of_bounds(torch.tensor(1.0), [p], 10.0)
