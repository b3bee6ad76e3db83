r"""The tiled engine: R per-replicate gradients from one forward/backward pass over R x K x B rows.

One call of the estimator on the batch tiled R times, x̃ = [x; x; ...; x] [R·B, D], and one backward pass.
Estimators draw independent noise per row and, in eval mode, treat datapoints independently (every registered
one does: baselines are per datapoint or frozen scalars), so rows r·B..(r+1)·B-1 carry replicate r exactly;
the surrogate being a mean over R·B rows, replicate r's gradient is R times its rows' share.

Forward hooks keep each linear layer's input a; backward gives the gradient δ of its output; with both viewed
as [R, rows of r, ·], one batched matmul per layer gives the per-replicate weight gradients δ_rᵀ a_r, written
straight into the sample, and a sum the bias gradients (the per-example-gradient identity of Goodfellow 2015,
arXiv:1510.01799, summed per replicate). The summed weight gradients of an ordinary backward pass are never
formed. Two savings on top:

- the encoder sees the same x in every replicate, so it runs once on B rows; q's parameters are tiled as
  leaves, and their R cotangents go back through the encoder in one batched backward (``is_grads_batched``),
  whose weight gradients are one wide matmul [R·out, B] @ [B, in] per layer;
- parameters every row uses identically (the learned decoder scale σ_x of
  :class:`~vaebench.model.GaussianVAE`) are widened to one copy per row, their row gradients summed per
  replicate and pulled back through the parameter's map.

Hooks see a parameter only through its layer's forward pass. :func:`tiled_is_exact` checks, on two
replicates, that the engine reproduces the ordinary gradient, so an estimator that reads a weight directly
(the closed-form ELBO does) falls back to ``vmap`` instead of losing part of its gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from vaebench.errors import VaebenchError
from vaebench.estimators import Estimator
from vaebench.measures.variance.layout import Layout, layout
from vaebench.model import Decoder, positive_scale


def tileable(model: nn.Module, lay: Layout | None = None) -> bool:
    """Whether the ``tiled`` engine covers every trainable parameter of ``model``."""
    lay = lay or layout(model)
    covered = {id(p) for m in _linears(model) for p in (m.weight, m.bias) if p is not None}
    covered |= {id(rule.param) for rule in _broadcast_rules(model)}
    return all(id(p) in covered for p in lay.params)


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
    tiled(model, estimator, x, num_samples, dest, lay, gen)
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


def tiled(model, estimator, x, num_samples, dest, lay, gen) -> None:
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
            if not output[rule.index].requires_grad:  # a frozen parameter: nothing to measure
                return output
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
