"""The one training step.

A step, for a model p_θ(x, z) with encoder q_φ(z|x), an estimator with K latent samples and a minibatch
x [B, D], is

    1. clear the gradients;
    2. surrogate s = estimator(model, x, K).surrogate   (value: -mean objective; gradient: the estimator's);
    3. s.backward()                                      (∇_{θ,φ,ψ} s, ψ: the estimator's own parameters);
    4. optimizer.step().

The training loop (:mod:`vaebench.train.loop`) runs it (with a divergence check between 3 and 4) and the
throughput measure times it (`vaebench.measures.throughput.build_step`, which may compile or autocast step
2), so the "step ms" of the throughput table and the wall-clock axis of the learning curves describe the same
program, with the optimizer of :func:`vaebench.optim.make_optimizer`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn


def surrogate_of(
    model: nn.Module, estimator: nn.Module, x: Tensor, num_samples: int, generator: torch.Generator | None
) -> Callable[[], Tensor]:
    """Step 2 as a callable: the estimator's surrogate on ``x`` with K = ``num_samples``, noise from ``generator``."""
    return lambda: estimator(model, x, num_samples=num_samples, generator=generator).surrogate


def training_step(
    optimizer: torch.optim.Optimizer, surrogate: Callable[[], Tensor], apply: bool = True
) -> Tensor:
    """Steps 1-4 (4 only with ``apply``); returns the detached loss, on the device (no host read).

    Args:
        optimizer: from `vaebench.optim.make_optimizer`, over the model's and the estimator's parameters.
        surrogate: step 2, e.g. `surrogate_of` (or a compiled or autocast version of it).
        apply: take the optimizer step; ``False`` leaves the gradients in ``.grad`` for a check first
            (then call ``optimizer.step()``).
    """
    optimizer.zero_grad(set_to_none=True)
    loss = surrogate()
    loss.backward()
    if apply:
        optimizer.step()
    return loss.detach()


def gradient_norm(parameters: Iterable[nn.Parameter]) -> Tensor:
    """The Euclidean norm of all the parameters' gradients, on their device (0 when none has one)."""
    parameters = list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=parameters[0].device)


def out_of_bounds(loss: Tensor, parameters: Iterable[nn.Parameter], bound: float) -> Tensor:
    """A device bool: the loss or the norm of all gradients is NaN, Inf or beyond ``bound`` (no host read)."""
    norm = gradient_norm(parameters).to(device=loss.device, dtype=loss.dtype)
    return ~((loss.abs() <= bound) & (norm <= bound))  # NaN compares False, so it counts as out of bounds
