r"""Many independent gradient estimates at fixed parameters: the replicate sample G [R, P].

Every figure of the variance measure is a statistic of G, whose row r is the gradient of one call of the
estimator on the same minibatch x [B, D] with fresh noise. G is one array [R, P] whose column ranges are the
blocks [R, numel] of the parameters, in the order of :func:`~vaebench.measures.variance.layout.layout`
(encoder first). Three engines compute it, with equal results in distribution:

``naive``
    R calls of the estimator, one backward pass each: the plain loop users write by hand, which the
    others are checked against.
``tiled`` (the fast route, for models built of ``nn.Linear`` layers)
    A few passes over n x K x B rows with per-replicate gradients from per-layer batched matmuls; see
    :mod:`vaebench.measures.variance.tiled`.
``vmap`` (the generic fallback, any model)
    ``torch.func.vmap(grad(functional_call(...)), randomness="different")`` over replicates; the noise comes
    from torch's global generator inside a forked RNG state, so the caller's random state is untouched.

``batched`` picks ``tiled`` when every trainable parameter is covered and its first pass (two replicates)
reproduces autograd's ordinary gradient of the same call, and ``vmap`` otherwise. Replicates are processed a
chunk at a time, which bounds the working memory (about chunk x K x B rows of activations); the chunk is
chosen by device: small on a CPU, where activations that stay in cache run several times faster, large on a
GPU. G itself takes R x P numbers.
Encoder blocks are divided by ``estimator.encoder_scale`` (NVIL divides its encoder gradient by a known
factor), so every estimator is on the ELBO-gradient scale. Rows are gradients of the surrogate loss, i.e. of
the *negative* objective.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaebench import devices, rng
from vaebench.errors import VaebenchError
from vaebench.estimators import Estimator
from vaebench.measures.variance.layout import METHODS, Engine, GradientSample, Layout, layout
from vaebench.measures.variance.tiled import CPU_BUDGET, tileable, tiled

ROW_BUDGET = 65_536  # latent rows (chunk x K x B) per vmap or naive pass on a GPU


def gradient_sample(
    model: nn.Module,
    estimator: Estimator,
    x: Tensor,
    num_samples: int,
    replicates: int,
    *,
    seed: int = 0,
    index: tuple[int, ...] = (),
    engine: Engine = Engine(),
) -> GradientSample:
    """R independent gradient estimates of the surrogate at fixed parameters, on the same batch.

    Args:
        model: the model (a GaussianVAE or anything with ``posterior`` and ``log_joint``).
        estimator: the estimator, used as it is (put it in eval mode first; see ``warm_up``).
        x: the minibatch [B, D].
        num_samples: K.
        replicates: R, the number of independent estimates.
        seed: seeds the noise (stream ``variance.replicates`` of :mod:`vaebench.rng`); the same seed gives
            the same sample for a given method and chunk size.
        index: the sub-stream, e.g. ``(j,)`` for the j-th minibatch of a noise decomposition.
        engine: the method, replicates per pass, and what the sample keeps
            (:class:`~vaebench.measures.variance.layout.Engine`).

    Returns:
        The :class:`GradientSample`, blocks in x's dtype and on its device.
    """
    if not isinstance(replicates, int) or isinstance(replicates, bool) or replicates < 1:
        raise VaebenchError(f"replicates must be a positive integer, got {replicates!r}")
    lay = layout(model)
    requested, method = engine.method, resolve_method(model, lay, engine.method)
    chunk_size = engine.chunk_size
    chunk = chunk_size or default_chunk(replicates, num_samples, x.shape[0], x.device, _widest(model, x))
    data = torch.empty(replicates, lay.size, dtype=x.dtype, device=x.device)
    blocks = list(data.split([p.numel() for p in lay.params], dim=1))  # column ranges of one array
    starts = range(0, replicates, chunk)
    factors = None
    if method == "tiled":
        gen = rng.generator(seed, "variance.replicates", *index, device=x.device)
        factors = {} if engine.factored else None
        if not tiled(model, estimator, x, num_samples, blocks, gen, chunk_size, factors):
            factors = None
            if requested == "tiled":
                raise VaebenchError(
                    "method='tiled' does not reproduce this estimator's gradient: it uses parameters outside "
                    "the forward pass of their nn.Linear layers (as the closed-form ELBO does); use "
                    "method='vmap'"
                )
            method = "vmap"
    if method == "vmap":
        with rng.seeded(seed, "variance.replicates", *index, device=x.device):
            for start in starts:
                dest = [b[start : start + chunk] for b in blocks]
                _vmap(model, estimator, x, num_samples, dest, lay)
    elif method == "naive":
        gen = rng.generator(seed, "variance.replicates", *index, device=x.device)
        for start in starts:
            _naive(model, estimator, x, num_samples, [b[start : start + chunk] for b in blocks], lay, gen)
    factors = (factors or {}) if method == "tiled" else {}
    if engine.rescale and estimator.encoder_scale != 1.0:
        for i in lay.encoder:
            (factors[i][1] if i in factors else blocks[i]).div_(estimator.encoder_scale)
    return GradientSample(blocks, lay, method, data, factors)


def replicate_gradients(
    model: nn.Module, estimator: Estimator, x: Tensor, num_samples: int, replicates: int, **options
) -> Tensor:
    """G [R, P]: :func:`gradient_sample` concatenated over parameters (``options``: its keyword arguments)."""
    return gradient_sample(model, estimator, x, num_samples, replicates, **options).flat()


def resolve_method(model: nn.Module, lay: Layout, method: str) -> str:
    """The engine ``method`` runs on this model: ``batched`` becomes ``tiled`` where possible, else ``vmap``."""
    if method not in METHODS:
        raise VaebenchError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "batched":
        return "tiled" if tileable(model, lay) else "vmap"
    if method == "tiled" and not tileable(model, lay):
        raise VaebenchError(
            "method='tiled' needs every trainable parameter inside an nn.Linear or declared by its module's "
            "shared_outputs() (as GaussianVAE's learned decoder scale is); use method='vmap' for this model"
        )
    return method


def default_chunk(
    replicates: int, num_samples: int, batch_size: int, device: torch.device | str = "cpu", width: int = 1
) -> int:
    """Replicates per pass of the vmap and naive engines, chosen by device (the tiled engine sizes its passes
    by the activations it records).

    On a GPU, as many as keep chunk x K x B under `ROW_BUDGET` rows: large passes keep it busy. On a CPU, as
    many as keep one activation (chunk x K x B rows x ``width``, the widest layer) under `CPU_BUDGET`
    numbers: a pass whose activations fall out of the cache runs at memory speed, and tensors of tens of MB
    are fresh pages from the operating system at every call.
    """
    device = devices.resolve(device)
    rows = ROW_BUDGET if device.type != "cpu" else max(1, CPU_BUDGET // max(1, width))
    return max(1, min(replicates, rows // max(1, num_samples * batch_size)))


def _widest(model: nn.Module, x: Tensor) -> int:
    """The widest activation a row carries through the model's linear layers (or the data's dimension)."""
    widths = [x.shape[-1]]
    for m in model.modules():
        if isinstance(m, nn.Linear):
            widths += [m.in_features, m.out_features]
    return max(widths)


def _naive(model, estimator, x, num_samples, dest, lay, gen) -> None:
    for r in range(dest[0].shape[0]):
        out = estimator(model, x, num_samples=num_samples, generator=gen)
        grads = torch.autograd.grad(out.surrogate, lay.params, allow_unused=True)
        for block, g in zip(dest, grads, strict=True):
            block[r] = 0.0 if g is None else g.reshape(-1)


class _Surrogate(nn.Module):
    """The estimator's surrogate as a module of the model's parameters, for ``torch.func.functional_call``."""

    def __init__(self, model: nn.Module, estimator: Estimator, num_samples: int):
        super().__init__()
        self.model, self.estimator, self.num_samples = model, estimator, num_samples

    def forward(self, x: Tensor) -> Tensor:
        return self.estimator(self.model, x, num_samples=self.num_samples).surrogate


def _vmap(model, estimator, x, num_samples, dest, lay) -> None:
    n = dest[0].shape[0]
    wrapper = _Surrogate(model, estimator, num_samples)
    names = {id(p): f"model.{name}" for name, p in model.named_parameters()}
    params = {names[id(p)]: p.detach() for p in lay.params}

    def loss(params, x, _index):
        return torch.func.functional_call(wrapper, params, (x,))

    index = torch.arange(n, device=x.device)  # vmap needs one batched input; the noise differs per index
    grads = torch.vmap(torch.func.grad(loss), in_dims=(None, None, 0), randomness="different")(
        params, x, index
    )
    for block, p in zip(dest, lay.params, strict=True):
        block.copy_(grads[names[id(p)]].reshape(n, -1))
