r"""The ``gaussian-toy`` data set: the points of Rainforth et al. 2018's Gaussian toy (Section 4).

    μ ~ N(0, I_D),   z_n ~ N(μ, I),   x_n | z_n ~ N(z_n, I),   so   p(x) = N(x; μ, 2 I)

with D = 20 and N = 1024 points per split. The data are a linear-Gaussian model in the synthetic set's form
(W = I, b = μ, noise 1), so the data set carries its exact log p(x) as a
:class:`~vaebench.data.synthetic.LinearGaussianTruth`; the model that goes with it is
:class:`vaebench.toy.GaussianToy` and its built checkpoint :func:`vaebench.toy.toy_checkpoint`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vaebench import rng
from vaebench.data.synthetic import LinearGaussianTruth

TOY_DIM = 20  # D (Rainforth et al. 2018); vaebench.toy.TOY_DIM is the same number
TOY_POINTS = 1024  # N per split (Rainforth et al. 2018)


def draw_gaussian_toy(
    seed: int, dim: int = TOY_DIM, points: int = TOY_POINTS
) -> tuple[Tensor, Tensor, LinearGaussianTruth]:
    """μ from stream ``data.toy_truth`` of ``seed``, then each split's points from ``data.toy_sample``.

    Returns:
        train [points, dim] and test [points, dim] float32, and the truth (W = I, b = μ, noise std 1).
    """
    mu = torch.randn(dim, generator=rng.generator(seed, "data.toy_truth"), dtype=torch.float64)
    splits = []
    for index in (0, 1):  # 0 train, 1 test: independent draws of the same model
        gen = rng.generator(seed, "data.toy_sample", index)
        z = mu + torch.randn(points, dim, generator=gen, dtype=torch.float64)
        splits.append((z + torch.randn(points, dim, generator=gen, dtype=torch.float64)).to(torch.float32))
    truth = LinearGaussianTruth(
        weight=torch.eye(dim, dtype=torch.float64), bias=mu, noise_std=torch.ones(dim, dtype=torch.float64)
    )
    return splits[0], splits[1], truth
