r"""Many independent gradient estimates at fixed parameters: the replicate matrix G [R, P].

Every figure of the variance measure is a statistic of G, whose row r is the gradient of one call of the
estimator on the same minibatch x [B, D] with fresh noise. G is kept as one block [R, numel] per parameter
(no concatenated copy), in the order of :func:`layout` (encoder first). Three engines compute it, with equal
results in distribution:

``naive``
    R calls of the estimator, one backward pass each: the reference, and what users write by hand.
``tiled`` (the fast route, for models built of ``nn.Linear`` layers)
    One call of the estimator on the batch tiled R times, x̃ = [x; x; ...; x] [R·B, D], and one backward pass.
    Estimators draw independent noise per row and, in eval mode, treat datapoints independently (every
    registered one does: baselines are per datapoint or frozen scalars), so rows r·B..(r+1)·B-1 carry
    replicate r exactly; the surrogate being a mean over R·B rows, replicate r's gradient is R times its rows'
    share. Forward hooks keep each linear layer's input a; backward gives the gradient δ of its output; with
    both viewed as [R, rows of r, ·] one batched matmul per layer gives the per-replicate weight gradients
    δ_rᵀ a_r, written straight into G, and a sum the bias gradients (the per-example-gradient identity of
    Goodfellow 2015, arXiv:1510.01799, summed per replicate). The summed weight gradients of an ordinary
    backward pass are never formed. Two savings on top: the encoder sees the same x in every replicate, so it
    runs once on B rows and q's parameters are tiled as leaves whose R cotangents go back through the encoder
    in one batched backward (``is_grads_batched``); and parameters every row uses identically (the learned
    decoder scale σ_x of :class:`~vaebench.model.GaussianVAE`) are widened to one copy per row, their row
    gradients summed per replicate and pulled back through the parameter's map.
``vmap`` (the generic fallback, any model)
    ``torch.func.vmap(grad(functional_call(...)), randomness="different")`` over replicates; the noise comes
    from torch's global generator inside a forked RNG state, so the caller's random state is untouched.

``batched`` picks ``tiled`` when every trainable parameter is covered and ``vmap`` otherwise. Replicates are
processed ``chunk_size`` at a time, which bounds the working memory (about chunk x K x B rows of
activations); G itself takes R x P numbers. Encoder blocks are divided by ``estimator.encoder_scale`` (NVIL
divides its encoder gradient by a known factor), so every estimator is on the ELBO-gradient scale. Rows are
gradients of the surrogate loss, i.e. of the *negative* objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from vaebench.errors import VaebenchError
from vaebench.estimators import Estimator
from vaebench.model import Decoder, positive_scale

METHODS = ("batched", "tiled", "vmap", "naive")
"""Valid ``method`` values: ``batched`` = ``tiled`` when the model allows it, else ``vmap``."""

ROW_BUDGET = 65_536  # latent rows (chunk x K x B) per tiled pass: ~0.5 GB of activations for 784-400-20


@dataclass(frozen=True)
class Layout:
    """How the parameters are ordered and grouped.

    Attributes:
        params: the trainable parameters (encoder first for a GaussianVAE).
        groups: group name -> indices into ``params``; always has ``all``.
        encoder: indices of the encoder's parameters (those NVIL rescales).
    """

    params: list[nn.Parameter]
    groups: dict[str, list[int]]
    encoder: list[int]

    @property
    def size(self) -> int:
        return sum(p.numel() for p in self.params)


def layout(model: nn.Module) -> Layout:
    """The order of ``model``'s trainable parameters and its groups (``encoder``, ``decoder``, ``all``).

    Models without ``parameter_groups()`` get the single group ``all``.
    """
    named = model.parameter_groups() if hasattr(model, "parameter_groups") else {}
    params: list[nn.Parameter] = []
    groups: dict[str, list[int]] = {}
    for name, group in named.items():
        mine = [p for p in group if p.requires_grad and all(p is not q for q in params)]
        groups[name] = list(range(len(params), len(params) + len(mine)))
        params += mine
    params += [p for p in model.parameters() if p.requires_grad and all(p is not q for q in params)]
    if not params:
        raise VaebenchError("the model has no trainable parameters: there is no gradient to measure")
    groups["all"] = list(range(len(params)))
    return Layout(params, groups, groups.get("encoder", []))


@dataclass(frozen=True)
class GradientSample:
    """R independent gradient estimates, one block [R, numel] per parameter of ``layout``."""

    blocks: list[Tensor]
    layout: Layout
    method: str = ""  # the engine that computed it: tiled, vmap or naive

    @property
    def replicates(self) -> int:
        return self.blocks[0].shape[0]

    def group(self, name: str) -> list[Tensor]:
        """The blocks of one group."""
        return [self.blocks[i] for i in self.layout.groups[name]]

    def flat(self, group: str = "all") -> Tensor:
        """[R, P_group] concatenated (a copy)."""
        return torch.cat(self.group(group), dim=1)


def gradient_sample(
    model: nn.Module,
    estimator: Estimator,
    x: Tensor,
    num_samples: int,
    replicates: int,
    *,
    seed: int = 0,
    chunk_size: int | None = None,
    method: str = "batched",
    rescale: bool = True,
) -> GradientSample:
    """R independent gradient estimates of the surrogate at fixed parameters, on the same batch.

    Args:
        model: the model (a GaussianVAE or anything with ``posterior`` and ``log_joint``).
        estimator: the estimator, used as it is (put it in eval mode first; see ``warm_up``).
        x: the minibatch [B, D].
        num_samples: K.
        replicates: R, the number of independent estimates.
        seed: seeds the noise; the same seed gives the same sample for a given method and chunk size.
        chunk_size: replicates per pass (default: as many as keep chunk x K x B under `ROW_BUDGET`).
        method: one of `METHODS`.
        rescale: divide the encoder's blocks by ``estimator.encoder_scale``.

    Returns:
        The :class:`GradientSample`, blocks in x's dtype and on its device.
    """
    if not isinstance(replicates, int) or isinstance(replicates, bool) or replicates < 1:
        raise VaebenchError(f"replicates must be a positive integer, got {replicates!r}")
    lay = layout(model)
    requested, method = method, resolve_method(model, lay, method)
    if method == "tiled" and not tiled_is_exact(model, estimator, x, num_samples, lay):
        if requested == "tiled":
            raise VaebenchError(
                "method='tiled' does not reproduce this estimator's gradient: it uses parameters outside the "
                "forward pass of their nn.Linear layers (as the closed-form ELBO does); use method='vmap'"
            )
        method = "vmap"
    chunk = default_chunk(replicates, num_samples, x.shape[0]) if chunk_size is None else chunk_size
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise VaebenchError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    blocks = [torch.empty(replicates, p.numel(), dtype=x.dtype, device=x.device) for p in lay.params]
    starts = range(0, replicates, chunk)
    if method == "vmap":
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            for start in starts:
                dest = [b[start : start + chunk] for b in blocks]
                _vmap(model, estimator, x, num_samples, dest, lay)
    else:
        gen = torch.Generator(device=x.device).manual_seed(seed)
        engine = _tiled if method == "tiled" else _naive
        for start in starts:
            engine(model, estimator, x, num_samples, [b[start : start + chunk] for b in blocks], lay, gen)
    if rescale and estimator.encoder_scale != 1.0:
        for i in lay.encoder:
            blocks[i].div_(estimator.encoder_scale)
    return GradientSample(blocks, lay, method)


def replicate_gradients(
    model: nn.Module, estimator: Estimator, x: Tensor, num_samples: int, replicates: int, **options
) -> Tensor:
    """G [R, P]: :func:`gradient_sample` concatenated over parameters (options as there)."""
    return gradient_sample(model, estimator, x, num_samples, replicates, **options).flat()


def resolve_method(model: nn.Module, lay: Layout, method: str) -> str:
    """The engine ``method`` runs on this model: ``batched`` becomes ``tiled`` where possible, else ``vmap``."""
    if method not in METHODS:
        raise VaebenchError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "batched":
        return "tiled" if tileable(model, lay) else "vmap"
    if method == "tiled" and not tileable(model, lay):
        raise VaebenchError(
            "method='tiled' needs every trainable parameter inside an nn.Linear (or GaussianVAE's learned "
            "decoder scale); use method='vmap' for this model"
        )
    return method


def tiled_is_exact(model: nn.Module, estimator: Estimator, x: Tensor, num_samples: int, lay: Layout) -> bool:
    """Probe the tiled engine on two replicates: do they average to the ordinary gradient of the same call?

    The hooks see parameters only through their layers' forward passes; an estimator or model that reads a
    weight directly (the closed-form ELBO of :mod:`vaebench.exact` does) would silently lose that part of the
    gradient. Same noise for both calls (a cloned generator state), so the check is exact up to rounding.
    """
    n = 2
    gen = torch.Generator(device=x.device).manual_seed(0)
    state = gen.get_state()
    dest = [torch.empty(n, p.numel(), dtype=x.dtype, device=x.device) for p in lay.params]
    _tiled(model, estimator, x, num_samples, dest, lay, gen)
    gen.set_state(state)
    out = estimator(model, x.repeat(n, 1), num_samples=num_samples, generator=gen)
    grads = torch.autograd.grad(out.surrogate, lay.params, allow_unused=True)
    expected = [
        torch.zeros_like(p) if g is None else g.detach() for p, g in zip(lay.params, grads, strict=True)
    ]
    scale = max(float(torch.nan_to_num(e).norm()) for e in expected)
    tol = 1e-3 if x.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-8
    for block, e in zip(dest, expected, strict=True):
        got, want = torch.nan_to_num(block.mean(0)), torch.nan_to_num(e.reshape(-1))
        if float((got - want).norm()) > tol * (float(want.norm()) + 1e-3 * scale) + 1e-30:
            return False
    return True


def default_chunk(replicates: int, num_samples: int, batch_size: int) -> int:
    """Replicates per pass so that chunk x K x B stays under `ROW_BUDGET`."""
    return max(1, min(replicates, ROW_BUDGET // max(1, num_samples * batch_size)))


def tileable(model: nn.Module, lay: Layout | None = None) -> bool:
    """Whether the ``tiled`` engine covers every trainable parameter of ``model``."""
    lay = lay or layout(model)
    covered = {id(p) for m in _linears(model) for p in (m.weight, m.bias) if p is not None}
    covered |= {id(rule.param) for rule in _broadcast_rules(model)}
    return all(id(p) in covered for p in lay.params)


def _naive(model, estimator, x, num_samples, dest, lay, gen) -> None:
    for r in range(dest[0].shape[0]):
        out = estimator(model, x, num_samples=num_samples, generator=gen)
        grads = torch.autograd.grad(out.surrogate, lay.params, allow_unused=True)
        for block, g in zip(dest, grads, strict=True):
            block[r] = 0.0 if g is None else g.reshape(-1)


@dataclass(frozen=True)
class _BroadcastRule:
    """A parameter that a module turns into one tensor shared by every row: ``output[index] = fn(param)``."""

    module: nn.Module
    index: int
    param: nn.Parameter
    fn: Callable[[Tensor], Tensor]


def _broadcast_rules(model: nn.Module) -> list[_BroadcastRule]:
    rules = []
    for module in model.modules():
        if isinstance(module, Decoder) and hasattr(module, "raw_scale") and module.likelihood == "gaussian":
            floor = module.min_scale
            rules.append(_BroadcastRule(module, 1, module.raw_scale, lambda p, f=floor: positive_scale(p, f)))
    return rules


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


class _Writer:
    """Writes per-replicate gradients into the destination blocks; a second write to a block adds."""

    def __init__(self, dest: list[Tensor], lay: Layout):
        self.dest, self.n = dest, dest[0].shape[0]
        self.index = {id(p): i for i, p in enumerate(lay.params)}
        self.written: set[int] = set()

    def block(self, param: Tensor) -> Tensor | None:
        """The destination [n, numel] of ``param``, or None for a parameter not measured."""
        i = self.index.get(id(param))
        return None if i is None else self.dest[i]

    def put(self, param: Tensor, compute: Callable[[Tensor | None], Tensor]) -> None:
        """``compute(out)`` returns the [n, ...] gradients, writing them into ``out`` when it is given."""
        i = self.index.get(id(param))
        if i is None:  # a layer outside the measured parameters (frozen)
            return
        block = self.dest[i]
        if i in self.written:
            block.add_(compute(None).reshape(self.n, -1))
        else:
            result = compute(block.view(self.n, *param.shape))
            if result.data_ptr() != block.data_ptr():
                block.copy_(result.reshape(self.n, -1))
            self.written.add(i)

    def finish(self) -> None:
        for i, block in enumerate(self.dest):
            if i not in self.written:
                block.zero_()


def _record_linears(model: nn.Module, calls: list) -> list:
    def keep(module, inputs, output):
        if output.requires_grad:
            calls.append((module, inputs[0].detach(), output))

    return [m.register_forward_hook(keep) for m in _linears(model)]


def _tiled(model, estimator, x, num_samples, dest, lay, gen) -> None:
    n, batch = dest[0].shape[0], x.shape[0]
    rows = n * batch
    write = _Writer(dest, lay)

    # 1. The encoder, once on the B rows of x (it is the same in every replicate).
    enc_calls: list = []
    handles = _record_linears(model, enc_calls)
    try:
        with torch.enable_grad():
            q = model.posterior(x)
    finally:
        for h in handles:
            h.remove()
    leaves = [t.detach().repeat(n, 1).requires_grad_() for t in (q.loc, q.scale)]
    proxy = _Proxy(model, Normal(*leaves, validate_args=False), rows)

    # 2. The estimator on the tiled batch, seeing q's parameters as leaves; the decoder runs on every row.
    dec_calls: list = []
    widened: list[tuple[_BroadcastRule, Tensor]] = []

    def widen(rule):
        def hook(module, inputs, output):
            wide = output[rule.index].expand(output[0].shape)  # one copy per row keeps rows' gradients apart
            widened.append((rule, wide))
            return (*output[: rule.index], wide, *output[rule.index + 1 :])

        return hook

    handles = _record_linears(model, dec_calls)
    handles += [rule.module.register_forward_hook(widen(rule)) for rule in _broadcast_rules(model)]
    try:
        surrogate = estimator(proxy, x.repeat(n, 1), num_samples=num_samples, generator=gen).surrogate
    finally:
        for h in handles:
            h.remove()
    targets = [*leaves, *(o for _, _, o in dec_calls), *(w for _, w in widened)]
    # The surrogate is a mean over n·B rows: replicate r's own surrogate has n times its rows' share.
    grads = list(torch.autograd.grad(surrogate * n, targets, allow_unused=True))
    leaf_grads = [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads[:2], strict=True)]
    dec_grads, wide_grads = grads[2 : 2 + len(dec_calls)], grads[2 + len(dec_calls) :]

    for (module, a, _), d in zip(dec_calls, dec_grads, strict=True):
        if d is not None:
            _check_rows(a, rows)
            a, d = (
                _per_replicate(a, n, batch),
                _per_replicate(d, n, batch),
            )  # [n, rows_r, in], [n, rows_r, out]
            write.put(module.weight, lambda out, a=a, d=d: torch.bmm(d.transpose(1, 2), a, out=out))
            if module.bias is not None:
                write.put(module.bias, lambda out, d=d: torch.sum(d, 1, out=out))
    for (rule, _), g in zip(widened, wide_grads, strict=True):
        if g is not None:
            _check_rows(g, rows)
            _, vjp = torch.func.vjp(rule.fn, rule.param.detach())
            shared = _per_replicate(g, n, batch).sum(1)
            write.put(rule.param, lambda out, s=shared, vjp=vjp: torch.vmap(vjp)(s)[0])

    # 3. The n cotangents of q's parameters back through the encoder in one batched backward pass.
    enc_calls = [c for c in enc_calls if c[2].requires_grad]
    if enc_calls:
        cotangents = tuple(g.reshape(n, batch, -1) for g in leaf_grads)
        deltas = torch.autograd.grad(
            (q.loc, q.scale),
            [o for _, _, o in enc_calls],
            grad_outputs=cotangents,
            is_grads_batched=True,
            allow_unused=True,
        )
        for (module, a, _), d in zip(enc_calls, deltas, strict=True):
            if d is None:
                continue
            if a.dim() != 2 or a.shape[0] != batch:
                raise VaebenchError(
                    f"method='tiled' expects encoder layer inputs of shape [B, features], got {list(a.shape)}; "
                    "use method='vmap' for this model"
                )
            out_f = d.shape[-1]
            # Every replicate shares the input a: one wide matmul [n·out, B] @ [B, in] for all of them.
            wide = d.transpose(1, 2).reshape(n * out_f, batch)
            write.put(module.weight, lambda out, w=wide, a=a: torch.mm(w, a, out=_flat2(out)))
            if module.bias is not None:
                write.put(module.bias, lambda out, d=d: torch.sum(d, 1, out=out))
    write.finish()


def _flat2(out: Tensor | None) -> Tensor | None:
    """[n, out, in] destination viewed as [n·out, in] for one wide matmul."""
    return None if out is None else out.view(-1, out.shape[-1])


class _Proxy:
    """The model as the estimator sees it: q(z|x) of the tiled rows comes from one shared encoder pass."""

    def __init__(self, model: nn.Module, q: Normal, rows: int):
        self._model, self._q, self._rows = model, q, rows

    def posterior(self, x: Tensor) -> Normal:
        if x.shape[0] != self._rows:
            raise VaebenchError(
                f"method='tiled' expects the estimator to ask for q(z|x) of the {self._rows} tiled rows, got "
                f"{x.shape[0]}; use method='vmap' for this estimator"
            )
        return self._q

    def __getattr__(self, name):
        return getattr(self._model, name)


def _per_replicate(t: Tensor, n: int, batch: int) -> Tensor:
    """[..., n·B, F] with replicate-major rows -> [n, (...)·B, F]."""
    features = t.shape[-1]
    t = t.reshape(-1, n, batch, features)
    if t.shape[0] == 1:
        return t[0]
    return t.transpose(0, 1).reshape(n, -1, features)


def _check_rows(t: Tensor, rows: int) -> None:
    if t.dim() < 2 or t.shape[-2] != rows:
        raise VaebenchError(
            f"method='tiled' expects decoder activations of shape [..., rows, features] with rows = "
            f"replicates x batch = {rows}, got {list(t.shape)}; use method='vmap' for this model"
        )


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
