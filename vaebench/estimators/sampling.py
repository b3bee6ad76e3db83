r"""Samplers: how the standard normal noise ε [K, B, Z] of z = μ + σ ⊙ ε is drawn.

Every estimator draws ε ~ N(0, I) and sets z = μ_φ(x) + σ_φ(x) ⊙ ε. A sampler may make the K draws of one
datapoint dependent, as long as each ε_k alone stays N(0, I): then any estimator that is an *average of
per-sample terms* (reparam, STL, the closed-form-KL and control-variate variants, REINFORCE with a baseline
that does not depend on this call's samples) stays unbiased by linearity of expectation, and only its variance
changes. Estimators that compare a sample with the others (leave-one-out baselines, VIMCO, VarGrad) or whose
objective is itself defined over independent samples (the IWAE bound) would be biased; they accept only
``"iid"`` and say why (their class attribute ``iid_only``).

``iid``
    K independent standard normals per datapoint: plain Monte Carlo (the same numbers as ``torch.randn``).
``antithetic``
    K/2 independent draws and their negatives, [ε_1..ε_{K/2}, -ε_1..-ε_{K/2}] (K even). Each ε_k is N(0, I);
    the odd part of the integrand cancels within each pair, so for a gradient that is nearly linear in ε
    the variance falls far below that of K independent draws (it rises for an even integrand).
``rqmc``
    Randomized quasi-Monte Carlo (Buchholz, Wenzel & Mandt 2018, arXiv:1807.01604): the first K points of the
    Sobol sequence in Z dimensions (Joe & Kuo direction numbers, via ``torch.quasirandom.SobolEngine``),
    scrambled by Owen's nested uniform scramble (Owen 1995; 1997), mapped through the normal inverse CDF,
    u -> Φ⁻¹(u). Every datapoint gets its own scramble, drawn from the call's generator, so each point is
    uniform on [0, 1)^Z (unbiased), datapoints and calls are independent (also replicates of the variance
    engines that stack them as rows), and the same generator state gives the same points. For smooth
    integrands the variance of a scrambled net falls like O(K^{-3} (log K)^{Z-1}) instead of O(1/K)
    (Owen 1997), and it is never more than a constant times that of Monte Carlo.

The scramble. With K <= 2^m, the first 2^m Sobol points have m binary digits per coordinate and, in every
coordinate, all differ in them (each one-dimensional projection is a (0, m, 1)-net). Owen's scramble flips
digit i of a coordinate by a random bit chosen by the i-1 digits above it: m levels of one bit per node of a
binary tree (2^m - 1 bits per datapoint and dimension). Deeper digits sit below distinct nodes for distinct
points, so their flips make them independent uniform bits: u = (a ⊕ flips + U) / 2^m with U ~ U[0, 1). This
is the exact nested uniform scramble, vectorised over datapoints with one gather. (``SobolEngine(scramble=True)``
draws one linear matrix scramble per engine from its own seed: one engine per datapoint and call costs many
times a whole reparam step; one engine over B·Z
dimensions would give datapoints different, later Sobol coordinates and hit its 21,201-dimension cap once the
variance engine stacks replicates x B rows.) Φ⁻¹ is taken in float64 with u clamped to [2^-53, 1 - 2^-53],
which only moves points that lie within 2^-53 of an end (probability ~1e-16).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor
from torch.quasirandom import SobolEngine

from vaebench.errors import VaebenchError

SAMPLERS: dict[str, str] = {
    "iid": "independent standard normals (plain Monte Carlo)",
    "antithetic": "antithetic pairs (eps, -eps); K even",
    "rqmc": "randomized QMC: Sobol points with Owen's scramble, per datapoint, through the normal inverse CDF",
}
"""Sampler name -> one line, for ``python -m vaebench list`` and error messages."""

_EDGE = 2.0**-53  # u is clamped to [_EDGE, 1 - _EDGE] before Φ⁻¹


def check_sampler(sampler: str, num_samples: int) -> None:
    """Raise a clear error when ``sampler`` cannot draw K = ``num_samples`` points (antithetic needs even K)."""
    if sampler not in SAMPLERS:
        raise VaebenchError(f"unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
    if sampler == "antithetic" and num_samples % 2:
        raise VaebenchError(
            f"sampler 'antithetic' pairs each draw eps with -eps and needs an even K, got K={num_samples}; "
            "use an even K or sampler='iid'"
        )


class NoiseSource:
    """Where the standard normals of a call come from when no single ``torch.Generator`` can give them.

    Passed as an estimator's ``generator``, it is asked for every draw :func:`standard_normal` makes (every
    estimator draws through :meth:`~vaebench.estimators.Estimator.sample`): seeds trained as one program
    (:class:`vaebench.train.stacking.SeedNoise`) give each seed's rows the draws of that seed's own generator.
    """

    def standard_normal(
        self, sampler: str, num_samples: int, shape: tuple[int, ...], dtype: torch.dtype, device
    ) -> Tensor:
        """ε [K, *shape], as :func:`standard_normal` would draw it with this source's generators."""
        raise NotImplementedError


def standard_normal(
    sampler: str,
    num_samples: int,
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | NoiseSource | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """ε [K, *shape], each ε_k ~ N(0, I), the K draws of each row of ``shape[:-1]`` as ``sampler`` makes them.

    Args:
        sampler: a key of `SAMPLERS`.
        num_samples: K.
        shape: the shape of one draw, [..., Z] (rows, then the latent dimension).
        generator: the source of all randomness (torch's global generator when None, or a `NoiseSource`).
        dtype, device: of the result.
    """
    check_sampler(sampler, num_samples)
    if isinstance(generator, NoiseSource):
        return generator.standard_normal(sampler, num_samples, tuple(shape), dtype=dtype, device=device)
    if sampler == "iid":
        return torch.randn((num_samples, *shape), generator=generator, dtype=dtype, device=device)
    if sampler == "antithetic":
        half = torch.randn((num_samples // 2, *shape), generator=generator, dtype=dtype, device=device)
        return torch.cat([half, -half])
    *rows, dim = shape
    u = scrambled_sobol(num_samples, math.prod(rows), dim, generator, device=device)
    eps = torch.special.ndtri(u.clamp(_EDGE, 1 - _EDGE))
    return eps.reshape(num_samples, *shape).to(dtype)


def scrambled_sobol(
    num_points: int,
    rows: int,
    dim: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The first K Sobol points in ``dim`` dimensions, scrambled independently for each row: [K, rows, dim].

    Owen's nested uniform scramble (see the module docstring), float64 in [0, 1); each point is uniform on
    [0, 1)^dim and rows are independent. For K = 2^m, every row's points are a scrambled (t, m, dim)-net: in
    each coordinate exactly one point falls in each interval [j/K, (j+1)/K).
    """
    m = (num_points - 1).bit_length()  # K <= 2^m
    net = _sobol_digits(dim, m).to(device)[:num_points].T  # [dim, K] integers a < 2^m
    size = 2**m
    if m:
        flips = torch.randint(0, 2, (rows, dim, size - 1), generator=generator, device=device)
        levels = torch.arange(m, device=device)[:, None, None]  # digit l, most significant first
        nodes = (2**levels - 1) + (net[None] >> (m - levels))  # the node above digit l: [m, dim, K]
        index = nodes.permute(1, 0, 2).reshape(1, dim, m * num_points).expand(rows, -1, -1)
        bits = flips.gather(2, index).reshape(rows, dim, m, num_points)
        weights = (2 ** (m - 1 - levels)).reshape(1, 1, m, 1)
        digits = net[None] ^ (bits * weights).sum(2)  # [rows, dim, K]
    else:
        digits = torch.zeros(rows, dim, num_points, dtype=torch.long, device=device)
    trailing = torch.rand((rows, dim, num_points), generator=generator, dtype=torch.float64, device=device)
    return ((digits + trailing) / size).permute(2, 0, 1)


@functools.lru_cache(maxsize=32)
def _sobol_digits(dim: int, m: int) -> Tensor:
    """The first 2^m points of the unscrambled Sobol sequence in ``dim`` dimensions, times 2^m: [2^m, dim] int64."""
    if dim > SobolEngine.MAXDIM:
        raise VaebenchError(
            f"sampler 'rqmc' supports latent dimensions up to {SobolEngine.MAXDIM} (Sobol direction numbers), "
            f"got Z={dim}; use sampler='iid'"
        )
    points = SobolEngine(dim, scramble=False).draw(2**m, dtype=torch.float64) * 2**m
    digits = points.round().long()
    if not torch.equal(digits.double(), points):  # the first 2^m points have m binary digits
        raise AssertionError("Sobol points with more than m digits")
    return digits
