"""The seed's Gaussian VAE: the one model every estimator in the suite is measured on.

Generative model, with prior and likelihood as in the lecture notes (Kingma & Welling 2014):

    p(z)        = Normal(z; 0, I)                                  z in R^Z
    p_θ(x | z)  = Normal(x; μ_x(z), σ_x(z))    (likelihood="gaussian")
                = Bernoulli(x; sigmoid(ℓ(z)))  (likelihood="bernoulli", for binarized images)

Inference model (the encoder NN_φ):

    q_φ(z | x)  = Normal(z; μ_z(x), diag σ_z(x)^2)

Positive scales come from the map  σ = softplus(s) + σ_min : smooth, with gradient sigmoid(s) that never
vanishes for large s (unlike exp, it never overflows either), and the floor σ_min keeps log σ finite when a
pixel is constant across the data set (the borders of the digits are).

With ``hidden=()`` both maps are affine and, with a learned per-dimension σ_x, the model is linear-Gaussian:
its ELBO and log p(x) have closed forms (see :mod:`vaebench.exact`), which is how the estimators are proven
unbiased.

Estimators see the model only through :meth:`GaussianVAE.posterior` and :meth:`GaussianVAE.log_joint` (plus
:meth:`prior` and :meth:`log_likelihood` for closed-form KL), all vectorised over the K samples: a user's own
model with these methods works unchanged.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import MultivariateNormal, Normal

from vaebench import rng
from vaebench.errors import VaebenchError

LIKELIHOODS = ("gaussian", "bernoulli")
DECODER_SCALES = ("learned", "network")
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus, "elu": nn.ELU}
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def positive_scale(raw: Tensor, floor: float) -> Tensor:
    """Map an unconstrained tensor to a scale: softplus(raw) + floor."""
    return F.softplus(raw) + floor


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


def _mlp(sizes: Sequence[int], activation: str) -> nn.Sequential:
    """Affine layers of the given sizes with the activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """NN_φ: x [B, D] -> (μ_z, σ_z), each [B, Z]. One network, its last layer split in two halves."""

    def __init__(self, x_dim: int, z_dim: int, hidden: Sequence[int], activation: str, min_scale: float):
        super().__init__()
        self.net = _mlp([x_dim, *hidden, 2 * z_dim], activation)
        self.min_scale = min_scale

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        loc, raw_scale = self.net(x).chunk(2, dim=-1)
        return loc, positive_scale(raw_scale, self.min_scale)


class Decoder(nn.Module):
    """NN_θ: z [..., Z] -> likelihood parameters over x [..., D].

    Gaussian: (μ_x, σ_x); σ_x is one learned value per dimension (``scale="learned"``, broadcast over samples)
    or a second network output (``scale="network"``). Bernoulli: logits ℓ(z), returned as (ℓ, None).
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden: Sequence[int],
        activation: str,
        likelihood: str,
        scale: str,
        min_scale: float,
        init_scale: float,
    ):
        super().__init__()
        self.likelihood = likelihood
        self.scale = scale
        self.min_scale = min_scale
        network_scale = likelihood == "gaussian" and scale == "network"
        self.net = _mlp([z_dim, *hidden, x_dim * (2 if network_scale else 1)], activation)
        if likelihood == "gaussian" and scale == "learned":
            raw = _inverse_softplus(max(init_scale - min_scale, 1e-6))
            self.raw_scale = nn.Parameter(torch.full((x_dim,), raw))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.net(z)
        if self.likelihood == "bernoulli":
            return out, None
        if self.scale == "network":
            loc, raw = out.chunk(2, dim=-1)
            return loc, positive_scale(raw, self.min_scale)
        return out, positive_scale(self.raw_scale, self.min_scale)

    def shared_outputs(self) -> list[tuple[int, nn.Parameter, Callable[[Tensor], Tensor]]]:
        """Outputs computed from a parameter alone, the same for every row (an optional protocol).

        Each entry ``(index, param, fn)`` says ``forward(z)[index] = fn(param)`` broadcast over the rows, with
        ``fn`` elementwise. The tiled variance engine
        (:func:`~vaebench.measures.variance.tiled.tiled`) reads it to give each row its own copy of that
        output and so its own gradient for ``param``; a module without the method, or whose every
        parameter sits in an ``nn.Linear``, needs nothing. Here: the learned σ_x = softplus(raw) + floor.
        """
        if self.likelihood != "gaussian" or self.scale != "learned":
            return []
        return [(1, self.raw_scale, lambda raw, floor=self.min_scale: positive_scale(raw, floor))]


class GaussianVAE(nn.Module):
    """The seed's VAE: Gaussian prior and posterior, Gaussian or Bernoulli likelihood.

    Args:
        x_dim: data dimension D.
        z_dim: latent dimension Z.
        hidden: widths of the hidden layers, shared by encoder and (reversed) decoder; ``()`` gives
            affine maps, the linear-Gaussian model with exact answers.
        likelihood: ``"gaussian"`` (the seed's p(x|z) = Normal(x; μ_x, σ_x)) or ``"bernoulli"`` (logits).
        decoder_scale: for the Gaussian likelihood, ``"learned"`` (one σ_x per dimension) or ``"network"``
            (σ_x(z) from the decoder).
        activation: hidden-layer nonlinearity, one of ``tanh``, ``relu``, ``softplus``, ``elu``.
        min_scale: floor σ_min added to every positive scale (encoder and decoder).
        init_decoder_scale: initial value of a learned σ_x.
        seed: seeds the initial parameters (PyTorch's default layer initialisation, drawn from a forked
            generator so torch's global random state is left untouched); the same seed gives the same model.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden: Sequence[int] = (200,),
        likelihood: str = "gaussian",
        decoder_scale: str = "learned",
        activation: str = "tanh",
        min_scale: float = 1e-3,
        init_decoder_scale: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        for name, value in (("x_dim", x_dim), ("z_dim", z_dim)):
            if not isinstance(value, int) or value < 1:
                raise VaebenchError(f"{name} must be a positive integer, got {value!r}")
        hidden = tuple(hidden)
        if any(not isinstance(h, int) or h < 1 for h in hidden):
            raise VaebenchError(f"hidden must hold positive integer widths, got {hidden!r}")
        _check_choice("likelihood", likelihood, LIKELIHOODS)
        _check_choice("decoder_scale", decoder_scale, DECODER_SCALES)
        _check_choice("activation", activation, tuple(ACTIVATIONS))
        if not min_scale > 0:
            raise VaebenchError(f"min_scale must be > 0 (it keeps log σ finite), got {min_scale!r}")
        self.x_dim, self.z_dim, self.hidden = x_dim, z_dim, hidden
        self.likelihood = likelihood
        self.decoder_scale = decoder_scale
        with rng.seeded(seed, "init.model"):
            self.encoder = Encoder(x_dim, z_dim, hidden, activation, min_scale)
            self.decoder = Decoder(
                x_dim,
                z_dim,
                hidden[::-1],
                activation,
                likelihood,
                decoder_scale,
                min_scale,
                init_decoder_scale,
            )
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    @property
    def is_linear_gaussian(self) -> bool:
        """True when the ELBO and log p(x) have closed forms (affine maps, learned per-dimension σ_x)."""
        return not self.hidden and self.likelihood == "gaussian" and self.decoder_scale == "learned"

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by role: ``encoder`` (φ) and ``decoder`` (θ, σ_x included)."""
        return {"encoder": list(self.encoder.parameters()), "decoder": list(self.decoder.parameters())}

    def posterior(self, x: Tensor) -> Normal:
        """q_φ(z | x) for x [B, D]: a Normal with batch shape [B, Z]."""
        self._check_x(x)
        loc, scale = self.encoder(x)
        return Normal(loc, scale, validate_args=False)

    def prior(self) -> Normal:
        """p(z) = Normal(0, I) with batch shape [Z], on the model's device and dtype."""
        zero = self._zero.expand(self.z_dim)
        return Normal(zero, torch.ones_like(zero), validate_args=False)

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z) for z [..., Z] -> [...]."""
        return -0.5 * z.pow(2).sum(-1) - self.z_dim * _HALF_LOG_2PI

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p_θ(x | z) for x [B, D] and z [K, B, Z] -> [K, B]."""
        self._check_x(x)
        self._check_z(x, z)
        loc, scale = self.decoder(z)
        if self.likelihood == "bernoulli":
            # -BCE with logits, stable for large |ℓ|; grey-level x in [0, 1] is allowed (the pytorch recipe).
            return -F.binary_cross_entropy_with_logits(loc, x.expand_as(loc), reduction="none").sum(-1)
        log_scale = scale.log()
        z_score = (x - loc) / scale
        return -(0.5 * z_score.pow(2) + log_scale).sum(-1) - self.x_dim * _HALF_LOG_2PI

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p_θ(x, z) = log p_θ(x | z) + log p(z) for x [B, D] and z [K, B, Z] -> [K, B]."""
        return self.log_likelihood(x, z) + self.log_prior(z)

    def exact_posterior(self, x: Tensor) -> MultivariateNormal | None:
        """p_θ(z | x) where it has a closed form (an optional method of the contract), else None.

        For the linear-Gaussian model (:attr:`is_linear_gaussian`), p(x|z) = N(W z + b, D) with D = diag σ_x²:
        p(z | x) = N(Σ Wᵀ D⁻¹ (x - b), Σ) with Σ = (I + Wᵀ D⁻¹ W)⁻¹, a full covariance (batch shape [B], event
        [Z]) that the encoder's diagonal q can match only when Wᵀ D⁻¹ W is diagonal. Used for the exact
        KL(q ‖ p(z|x)) of the variance rows (:func:`vaebench.exact.kl_to_posterior`).
        """
        if not self.is_linear_gaussian:
            return None
        self._check_x(x)
        layer = self.decoder.net[0]
        variance = positive_scale(self.decoder.raw_scale, self.decoder.min_scale).square()
        scaled = layer.weight / variance[:, None]  # D⁻¹ W, [D, Z]
        precision = torch.eye(self.z_dim, dtype=x.dtype, device=x.device) + layer.weight.T @ scaled
        mean = torch.linalg.solve(precision, ((x - layer.bias) @ scaled).T).T  # Σ Wᵀ D⁻¹ (x - b), [B, Z]
        return MultivariateNormal(mean, precision_matrix=precision, validate_args=False)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Mean of p(x | z = μ_z(x)) for x [B, D] -> [B, D]; for plots."""
        loc, _ = self.decoder(self.posterior(x).loc)
        return torch.sigmoid(loc) if self.likelihood == "bernoulli" else loc

    def _check_x(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[-1] != self.x_dim:
            raise VaebenchError(
                f"x must have shape [B, {self.x_dim}] (batch, data dimension), got {list(x.shape)}; "
                "flatten images to vectors and check the model's x_dim matches the data"
            )

    def _check_z(self, x: Tensor, z: Tensor) -> None:
        if z.dim() != 3 or z.shape[1:] != (x.shape[0], self.z_dim):
            raise VaebenchError(
                f"z must have shape [K, B, Z] = [K, {x.shape[0]}, {self.z_dim}], got {list(z.shape)}"
            )


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise VaebenchError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
