r"""S Gaussian VAEs of one architecture as one module: every layer of every seed in one batched product.

Training S seeds of one setting separately runs S small programs whose cost, at the default sizes, is mostly
per-operation overhead (dispatch, autograd, the optimizer's bookkeeping). :class:`StackedGaussianVAE` holds
the S seeds' parameters side by side and runs each layer of all seeds as one batched matrix product,

    h_s^(l+1) = act(h_s^(l) W_s^(l)ᵀ + b_s^(l))   for s = 1..S at once   (``torch.baddbmm`` over [S, rows, in]),

so a step costs one program instead of S. Nothing about the model changes: seed s's rows see only seed s's
weights, so every row's numbers are those of seed s's own :class:`~vaebench.model.GaussianVAE` up to the
rounding of a batched product.

The estimator contract is kept by folding the seed axis into the batch: ``posterior(x)`` takes the S seeds'
minibatches stacked seed-major, x [S·B, D] (rows s·B .. s·B + B - 1 are seed s's), and returns a Normal
[S·B, Z]; ``log_joint(x, z)`` takes z [K, S·B, Z] and returns [K, S·B]. Every estimator whose terms are
per datapoint (each built-in one; the stateful ones have seed-aware forms in
:mod:`vaebench.train.stacking`) runs on it unchanged; its surrogate, a mean over S·B rows, is 1/S of the sum
of the S seeds' surrogates, so S times its gradient is every seed's own gradient, side by side.

Parameters. Each network's parameters live in one flat tensor [S, P] (:class:`StackedMLP`), read as per-layer
views by one ``split`` per call, so the optimizer sees one tensor per network (one fused Adam kernel for all
seeds, elementwise, so each seed's update is its own) and every per-seed figure (gradient norm, a seed's
state, dropping a seed) is one operation on the seed axis, which leads every parameter and buffer here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Normal

from vaebench.errors import VaebenchError
from vaebench.model import GaussianVAE, positive_scale

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class StackedMLP(nn.Module):
    """S copies of one ``nn.Sequential`` of ``nn.Linear`` layers (one activation between them) as one module.

    Args:
        nets: the S networks, the same layer sizes and activation; their parameters are copied.

    Attributes:
        weights: every parameter of every seed, [S, P] (seed s's row: its parameters flattened in the order
            of ``nets[s].named_parameters()``, each weight transposed, [in, out]: the batched product then
            reads it as it lies, and its gradient is written in place; measured 10-20% faster per layer than
            a transposed view of nn.Linear's [out, in]).
    """

    def __init__(self, nets: Sequence[nn.Sequential]):
        super().__init__()
        if not nets:
            raise VaebenchError("StackedMLP needs at least one network")
        first = nets[0]
        self.linear = [i for i, layer in enumerate(first) if isinstance(layer, nn.Linear)]
        others = [layer for layer in first if not isinstance(layer, nn.Linear)]
        if len(self.linear) != len(others) + 1 or any(type(o) is not type(others[0]) for o in others):
            raise VaebenchError("StackedMLP stacks Linear layers with one activation between them")
        self.activation = others[0] if others else None
        self.names = [name for name, _ in first.named_parameters()]
        self.shapes = [p.shape for _, p in first.named_parameters()]
        self.sizes = [p.numel() for _, p in first.named_parameters()]
        rows = []
        for net in nets:
            state = dict(net.named_parameters())
            if [n for n in state] != self.names or any(
                state[n].shape != s for n, s in zip(self.names, self.shapes, strict=True)
            ):
                raise VaebenchError(
                    "StackedMLP needs networks of one architecture (the same layers and sizes)"
                )
            rows.append(self.flatten(state))
        self.weights = nn.Parameter(torch.stack(rows))
        position = {name: i for i, name in enumerate(self.names)}
        self._layers = [
            (position[f"{i}.weight"], position[f"{i}.bias"], self.shapes[position[f"{i}.weight"]])
            for i in self.linear
        ]

    @property
    def seeds(self) -> int:
        """S, the number of stacked copies."""
        return self.weights.shape[0]

    def forward(self, h: Tensor) -> Tensor:
        """h [S, R, in] -> [S, R, out]: seed s's rows through seed s's layers."""
        parts = self.weights.split(self.sizes, dim=1)  # views; one backward node gathers their gradients
        seeds, last = self.seeds, len(self._layers) - 1
        for n, (w, b, shape) in enumerate(self._layers):
            weight = parts[w].view(seeds, shape[1], shape[0])  # [S, in, out]: nn.Linear's weight transposed
            h = torch.baddbmm(parts[b].unsqueeze(1), h, weight)
            if n != last:
                h = self.activation(h)
        return h

    def flatten(self, state: Mapping[str, Tensor]) -> Tensor:
        """A network's named tensors -> its row of ``weights`` [P] (weights transposed)."""
        return torch.cat([_stored(n, state[n].detach()).reshape(-1) for n in self.names])

    def unflatten(self, row: Tensor) -> dict[str, Tensor]:
        """One seed's row of ``weights`` (or of its gradient) [P] -> the network's named tensors."""
        out = {}
        for name, part, shape in zip(self.names, row.split(self.sizes), self.shapes, strict=True):
            stored = (shape[1], shape[0]) if _is_weight(name) else shape
            out[name] = _stored(name, part.reshape(stored))
        return out


def _is_weight(name: str) -> bool:
    return name.endswith(".weight")


def _stored(name: str, tensor: Tensor) -> Tensor:
    """A weight as it is stored ([in, out]) from nn.Linear's [out, in], or back (a transpose either way)."""
    return tensor.T if _is_weight(name) else tensor


class StackedGaussianVAE(nn.Module):
    """S :class:`~vaebench.model.GaussianVAE` s of one architecture, trained as one (see the module docstring).

    Build it on the device it trains on, from models already there: its parameters are copies of theirs.

    Args:
        models: the S models (the same class, sizes, likelihood, decoder scale, activation and floors).

    Raises:
        VaebenchError: no models, a model that is not a GaussianVAE, or models that differ in architecture.
    """

    def __init__(self, models: Sequence[GaussianVAE]):
        super().__init__()
        if not models:
            raise VaebenchError("StackedGaussianVAE needs at least one model")
        first = models[0]
        for model in models:
            if type(model) is not GaussianVAE:
                raise VaebenchError(
                    f"StackedGaussianVAE stacks GaussianVAE models, got {type(model).__name__}"
                )
            if _architecture(model) != _architecture(first):
                raise VaebenchError(
                    f"StackedGaussianVAE needs models of one architecture: {_architecture(model)} "
                    f"differs from {_architecture(first)}"
                )
        self.x_dim, self.z_dim, self.hidden = first.x_dim, first.z_dim, first.hidden
        self.likelihood, self.decoder_scale = first.likelihood, first.decoder_scale
        self.encoder_floor, self.decoder_floor = first.encoder.min_scale, first.decoder.min_scale
        self.encoder = StackedMLP([m.encoder.net for m in models])
        self.decoder = StackedMLP([m.decoder.net for m in models])
        self.learned_scale = hasattr(first.decoder, "raw_scale")
        if self.learned_scale:
            self.raw_scale = nn.Parameter(torch.stack([m.decoder.raw_scale.detach() for m in models]))

    @property
    def seeds(self) -> int:
        """S, the number of stacked models."""
        return self.encoder.seeds

    def posterior(self, x: Tensor) -> Normal:
        """q_φ(z | x) of every seed, for x [S·B, D] stacked seed-major: a Normal with batch shape [S·B, Z]."""
        rows = self._rows(x)
        loc, raw = self.encoder(x.view(self.seeds, rows, self.x_dim)).reshape(x.shape[0], -1).chunk(2, -1)
        return Normal(loc, positive_scale(raw, self.encoder_floor), validate_args=False)

    def prior(self) -> Normal:
        """p(z) = Normal(0, I) with batch shape [Z], on the parameters' device and dtype."""
        zero = self.encoder.weights.new_zeros(self.z_dim)
        return Normal(zero, torch.ones_like(zero), validate_args=False)

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z) for z [..., Z] -> [...]."""
        return -0.5 * z.pow(2).sum(-1) - self.z_dim * _HALF_LOG_2PI

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p_θ(x | z) for x [S·B, D] and z [K, S·B, Z] -> [K, S·B], each row with its seed's decoder."""
        rows = self._rows(x)
        k, s = z.shape[0], self.seeds
        if z.dim() != 3 or z.shape[1:] != (x.shape[0], self.z_dim):
            raise VaebenchError(
                f"z must have shape [K, S·B, Z] = [K, {x.shape[0]}, {self.z_dim}], got {list(z.shape)}"
            )
        # Seed-major rows for the batched product: [K, S, B, Z] -> [S, K·B, Z] (each seed's K·B decoder rows).
        seeded = z.view(k, s, rows, self.z_dim).transpose(0, 1).reshape(s, k * rows, self.z_dim)
        out = self.decoder(seeded).view(s, k, rows, -1)
        data = x.view(s, 1, rows, self.x_dim)
        if self.likelihood == "bernoulli":
            value = -F.binary_cross_entropy_with_logits(out, data.expand_as(out), reduction="none").sum(-1)
        else:
            if self.learned_scale:  # one σ_x per seed and pixel: Σ log σ once per seed, not per row
                scale = positive_scale(self.raw_scale, self.decoder_floor).view(s, 1, 1, -1)
                z_score = (data - out) / scale
                value = -0.5 * z_score.pow(2).sum(-1) - scale.log().sum(-1)
            else:
                loc, raw = out.chunk(2, dim=-1)
                scale = positive_scale(raw, self.decoder_floor)
                value = -(0.5 * ((data - loc) / scale).pow(2) + scale.log()).sum(-1)
            value = value - self.x_dim * _HALF_LOG_2PI
        return value.transpose(0, 1).reshape(k, s * rows)

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p_θ(x, z) for x [S·B, D] and z [K, S·B, Z] -> [K, S·B]."""
        return self.log_likelihood(x, z) + self.log_prior(z)

    def seed_state(self, index: int, grad: bool = False) -> dict[str, Tensor]:
        """Seed ``index``'s ``state_dict`` as its own GaussianVAE names it (copies); ``grad``: its gradients."""

        def value(p: Tensor) -> Tensor:
            if grad and p.grad is None:  # a parameter the backward pass did not reach
                return torch.zeros_like(p[index])
            return (p.grad if grad else p).detach()[index]

        state = {
            f"encoder.net.{k}": v for k, v in self.encoder.unflatten(value(self.encoder.weights)).items()
        }
        if self.learned_scale:
            state["decoder.raw_scale"] = value(self.raw_scale)
        state.update(
            {f"decoder.net.{k}": v for k, v in self.decoder.unflatten(value(self.decoder.weights)).items()}
        )
        return {k: v.clone(memory_format=torch.contiguous_format) for k, v in state.items()}

    def load_seed_state(self, index: int, state: Mapping[str, Tensor]) -> None:
        """Put a GaussianVAE ``state_dict`` into seed ``index``'s parameters."""
        with torch.no_grad():
            for prefix, net in (("encoder.net.", self.encoder), ("decoder.net.", self.decoder)):
                net.weights[index].copy_(net.flatten({name: state[prefix + name] for name in net.names}))
            if self.learned_scale:
                self.raw_scale[index].copy_(state["decoder.raw_scale"])

    def _rows(self, x: Tensor) -> int:
        if x.dim() != 2 or x.shape[-1] != self.x_dim or x.shape[0] % self.seeds:
            raise VaebenchError(
                f"x must have shape [S·B, {self.x_dim}] (the {self.seeds} seeds' minibatches stacked seed-major), "
                f"got {list(x.shape)}"
            )
        return x.shape[0] // self.seeds


def _architecture(model: GaussianVAE) -> tuple:
    activation = [type(m).__name__ for m in model.encoder.net if not isinstance(m, nn.Linear)][:1]
    return (
        model.x_dim,
        model.z_dim,
        model.hidden,
        model.likelihood,
        model.decoder_scale,
        tuple(activation),
        model.encoder.min_scale,
        model.decoder.min_scale,
        str(next(model.parameters()).device),
        next(model.parameters()).dtype,
    )
