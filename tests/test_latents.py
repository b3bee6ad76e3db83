"""Active latent units (Burda et al. 2015): a unit is active when its posterior mean varies over the data."""

from __future__ import annotations

import pytest
import torch

from vaebench.data import load_dataset
from vaebench.errors import VaebenchError
from vaebench.measures.latents import ACTIVE_THRESHOLD, active_units, activity
from vaebench.model import GaussianVAE
from vaebench.toy import toy_checkpoint


def test_a_unit_whose_mean_ignores_x_is_inactive():
    model = GaussianVAE(6, 4, hidden=(), seed=0).double()
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        model.encoder.net[0].weight[:4].copy_(torch.eye(4, 6, dtype=torch.float64))  # μ_u = x_u for u < 4
        model.encoder.net[0].weight[1].mul_(0.05)  # A_1 = 0.05² Var(x_1) ≈ 0.0025: below 1e-2
        model.encoder.net[0].weight[3].zero_()  # μ_3 constant: A_3 = 0
    a = activity(model, x)
    assert a[3] == 0 and a[1] < ACTIVE_THRESHOLD < min(a[0], a[2])
    assert active_units(model, x) == 2
    assert active_units(model, x, threshold=1e-4) == 3
    with pytest.raises(VaebenchError, match="two datapoints"):
        activity(model, x[:1])


def test_every_unit_of_the_toy_is_active():
    """q's mean is x/2 + μ̂/2: A_u ≈ Var(x_u)/4 = 1/2 for all 20 units."""
    data = load_dataset("gaussian-toy")
    a = activity(toy_checkpoint(data), data.test)
    assert active_units(toy_checkpoint(data), data.test) == 20
    assert (
        (a - 0.5).abs() < 0.15
    ).all()  # 1024 points: the variance's sd is about 0.022 (false alarm ~1e-11)
