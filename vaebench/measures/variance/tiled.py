r"""The tiled engine: R per-replicate gradients from a few forward/backward passes over n x K x B rows each.

A pass over n replicates is one call of the estimator on the batch tiled n times, x̃ = [x; x; ...; x]
[n·B, D], and one backward pass. Estimators draw independent noise per row and, in eval mode, treat datapoints
independently (every registered one does: baselines are per datapoint or frozen scalars), so rows
r·B..(r+1)·B-1 carry replicate r exactly; the surrogate being a mean over n·B rows, replicate r's gradient is n
times its rows' share.

Forward hooks keep each linear layer's input a; backward gives the gradient δ of its output; with both viewed
as [L, n, rows of r, ·] (L: leading sample dimensions such as K), batched matmuls give the per-replicate weight
gradients Σ_l δ_{l,r}ᵀ a_{l,r}, written straight into the sample, and sums the bias gradients (the
per-example-gradient identity of Goodfellow 2015, arXiv:1510.01799, summed per replicate). The summed weight
gradients of an ordinary backward pass are never formed, nor any copy of the activations. Savings on top:

- the encoder sees the same x in every replicate: it runs on the B rows of x, and the output of its first
  linear layer (reading x) is expanded, without a copy, to [n, B, ·]; its product is computed once per pass,
  everything after it carries the replicates apart, and that layer's weight gradients are one batched
  product against the shared input;
- parameters every row uses identically (the learned decoder scale σ_x of
  :class:`~vaebench.model.GaussianVAE`) are widened to one copy per row, their row gradients summed per
  replicate and multiplied by the map's elementwise derivative.

A pass's working memory is its activations, about n x K x B rows: after a first pass of two replicates, the
passes take as many replicates as keep the largest activation under a budget chosen by device (a few MB on a
CPU, to stay in cache and avoid fresh pages from the operating system at every call; hundreds of MB on a GPU,
to keep it busy; see :mod:`~vaebench.measures.variance.engines`).

Hooks see a parameter only through its layer's forward pass. With ``check``, the first pass also asks
autograd for its ordinary gradient and compares it with the sum of its replicates' gradients, so an estimator
that reads a weight directly (the closed-form ELBO does) falls back to ``vmap`` instead of losing part of its
gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from vaebench.errors import VaebenchError
from vaebench.measures.variance.layout import Layout, layout

CPU_BUDGET = 1 << 20  # numbers in a pass's largest activation on a CPU: ~4 MB in float32, in cache
GPU_BUDGET = 1 << 26  # the same on a GPU: ~256 MB in float32, passes large enough to keep it busy
CHECK_REPLICATES = 2  # replicates of the first pass, whose summed gradient is checked against autograd's
NARROW = 32  # layers with fewer inputs than this (and more outputs) get their weight gradients as aᵀd


def tileable(model: nn.Module, lay: Layout | None = None) -> bool:
    """Whether the ``tiled`` engine covers every trainable parameter of ``model``."""
    lay = lay or layout(model)
    covered = {id(p) for m in _linears(model) for p in (m.weight, m.bias) if p is not None}
    covered |= {id(rule.param) for rule in _broadcast_rules(model)}
    return all(id(p) in covered for p in lay.params)


@dataclass(frozen=True)
class _BroadcastRule:
    """A parameter that a module turns into one tensor shared by every row: ``output[index] = fn(param)``.

    ``fn`` acts elementwise, so a row gradient g pulls back to the parameter as g ⊙ fn'(param).
    """

    module: nn.Module
    index: int
    param: nn.Parameter
    fn: Callable[[Tensor], Tensor]

    def derivative(self) -> Tensor:
        """fn'(param), coordinate by coordinate."""
        with torch.enable_grad():
            param = self.param.detach().requires_grad_()
            value = self.fn(param)
            (grad,) = torch.autograd.grad(value, param, torch.ones_like(value))
        return grad


def _broadcast_rules(model: nn.Module) -> list[_BroadcastRule]:
    """The rules the model's modules declare through their optional ``shared_outputs()`` method (see
    :meth:`vaebench.model.Decoder.shared_outputs`): the engine asks the model, it does not know its classes."""
    rules = []
    for module in model.modules():
        declare = getattr(module, "shared_outputs", None)
        if callable(declare):
            rules += [_BroadcastRule(module, index, param, fn) for index, param, fn in declare()]
    return rules


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


class _Writer:
    """Writes per-replicate gradients into destination blocks; a second write to a block in a pass adds."""

    def __init__(self, dest: list[Tensor], index: dict[int, int]):
        self.dest, self.index, self.n = dest, index, dest[0].shape[0]
        self.written: set[int] = set()

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


@contextmanager
def _recording(modules: list[nn.Module], calls: list):
    """Keep (module, input, output) of every call of ``modules`` whose output needs a gradient."""

    def keep(module, inputs, output):
        if output.requires_grad:
            calls.append((module, inputs[0].detach(), output))

    handles = [m.register_forward_hook(keep) for m in modules]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _widening(rules: list[_BroadcastRule], widened: list):
    """Replace each rule's shared output by an expanded copy per row, kept in ``widened``."""

    def hook_for(rule):
        def hook(module, inputs, output):
            if not output[rule.index].requires_grad:  # a frozen parameter: nothing to measure
                return output
            wide = output[rule.index].expand(output[0].shape)  # one copy per row keeps rows' gradients apart
            widened.append((rule, wide))
            return (*output[: rule.index], wide, *output[rule.index + 1 :])

        return hook

    handles = [rule.module.register_forward_hook(hook_for(rule)) for rule in rules]
    try:
        yield widened
    finally:
        for h in handles:
            h.remove()


def tiled(
    model,
    estimator,
    x,
    num_samples,
    dest,
    gen,
    chunk_size: int | None = None,
    factors: dict | None = None,
) -> bool:
    """Fill ``dest`` (one block [R, numel] per parameter of ``layout(model)``) with R per-replicate gradients.

    The first pass (of `CHECK_REPLICATES` replicates) also asks autograd for the ordinary gradient of its
    surrogate, which is the sum of its replicates' gradients: hooks see a parameter only through its layer's
    forward pass, so an estimator or model that reads a weight directly (the closed-form ELBO of
    :mod:`vaebench.exact` does) would silently lose that part. The check costs one small extra pass, no extra
    estimator call, and is exact up to rounding (same noise, same graph).

    Args:
        model, estimator, x, num_samples: as in :func:`~vaebench.measures.variance.engines.gradient_sample`.
        dest: the destination blocks, in the order of the layout's parameters.
        gen: the generator the estimator draws its noise from, pass after pass.
        chunk_size: replicates per pass; default: after the first pass, as many as keep the largest activation
            a pass records (the estimator's own sample dimensions included: DReG runs the decoder on 2K
            samples) under `CPU_BUDGET` numbers on a CPU, `GPU_BUDGET` on a GPU.
        factors: a dict to fill with the weights of layers whose input is the same in every replicate (the
            encoder's first) and that run once per pass: index -> (a [B, in], δ [R, B, out]), in place of
            their blocks (see :class:`~vaebench.measures.variance.layout.GradientSample`); None: none.

    Returns:
        False if the check failed (``dest`` is then incomplete), else True.
    """
    lay = layout(model)
    budget = CPU_BUDGET if x.device.type == "cpu" else GPU_BUDGET
    replicates, batch = dest[0].shape[0], x.shape[0]
    index = {id(p): i for i, p in enumerate(lay.params)}
    linears, rules = _linears(model), _broadcast_rules(model)
    derivatives = {id(rule): rule.derivative() for rule in rules}
    chunk = None if chunk_size is None else min(chunk_size, replicates)
    first = min(CHECK_REPLICATES, replicates)
    start, tiled_x = 0, x.repeat(first, 1)
    while start < replicates:
        n = first if start == 0 else min(chunk, replicates - start)
        end, rows = start + n, n * batch
        if start > 0 and tiled_x.shape[0] < rows:
            tiled_x = x.repeat(chunk, 1)
        calls: list = []
        widened: list = []
        proxy = _Proxy(model, x, n, linears)
        with _recording(linears, calls), _widening(rules, widened):
            surrogate = estimator(proxy, tiled_x[:rows], num_samples=num_samples, generator=gen).surrogate
        targets = [*(o for _, _, o in calls), *(w for _, w in widened)]
        checking = start == 0
        # The surrogate is a mean over n·B rows: replicate r's own surrogate has n times its rows' share.
        grads = torch.autograd.grad(
            surrogate * n, [*targets, *(lay.params if checking else ())], allow_unused=True
        )
        write = _Writer([b[start:end] for b in dest], index)
        shared = [
            a.dim() == 2 and a.shape[0] == batch and d is not None and d.shape[:-1] == (n, batch)
            for (_, a, _), d in zip(calls, grads, strict=False)
        ]
        if factors is not None and start == 0:
            _choose_factors(factors, calls, shared, grads, index, replicates)
        for (module, a, _), d, is_shared in zip(calls, grads[: len(calls)], shared, strict=True):
            if d is None:
                continue
            i = index.get(id(module.weight))
            if is_shared and factors and i in factors:
                factors[i][1][start:end] = d.reshape(n, batch, -1)
                write.written.add(i)
                a4, d4 = None, d.unsqueeze(0)
            elif is_shared:
                # A layer of the encoder that reads x (or what only x determines): its input a [B, in] is the
                # same in every replicate, so the product runs against a broadcast a, with no copies.
                a4, d4 = a.expand(1, n, batch, a.shape[-1]), d.unsqueeze(0)
                write.put(module.weight, lambda out, a4=a4, d4=d4: _weight_grads(d4, a4, out))
            else:
                _check_rows(a, n, batch)
                a4, d4 = _split_rows(a, n, batch), _split_rows(d, n, batch)  # [L, n, B, in], [L, n, B, out]
                write.put(module.weight, lambda out, a4=a4, d4=d4: _weight_grads(d4, a4, out))
            if module.bias is not None:
                write.put(module.bias, lambda out, d4=d4: torch.sum(d4, (0, 2), out=out))
        for (rule, _), g in zip(widened, grads[len(calls) : len(targets)], strict=True):
            if g is not None:
                _check_rows(g, n, batch)
                shared = _split_rows(g, n, batch).sum((0, 2))  # [n, *param]: each replicate's rows summed
                deriv = derivatives[id(rule)]
                write.put(rule.param, lambda out, s=shared, f=deriv: torch.mul(s, f, out=out))
        for i in set(range(len(dest))) - write.written:  # parameters this surrogate does not depend on
            write.dest[i].zero_()
        if checking:
            sums = [
                (factors[i][1][start:end].sum(0).T @ factors[i][0]).reshape(-1)
                if factors and i in factors
                else block.sum(0)
                for i, block in enumerate(write.dest)
            ]
            if not _sums_match(sums, grads[len(targets) :], lay):
                return False
        if chunk is None:  # size the passes after the first by what it recorded
            largest = max((t.numel() for _, a, o in calls for t in (a, o)), default=rows) // n
            chunk = max(1, min(replicates, budget // max(1, largest)))
        start = end
    return True


def _choose_factors(factors, calls, shared, grads, index, replicates) -> None:
    """Keep as factors the weights of shared-input layers that run once per pass (a second call would add a
    second pair of factors: such a layer gets its block) and whose factors pay (`factors_pay`)."""
    runs: dict[int, int] = {}
    for module, _, _ in calls:
        runs[id(module)] = runs.get(id(module), 0) + 1
    for (module, a, _), d, is_shared in zip(calls, grads, shared, strict=False):
        i = index.get(id(module.weight))
        if is_shared and i is not None and runs[id(module)] == 1 and factors_pay(*a.shape, replicates):
            factors[i] = (a, d.new_empty(replicates, a.shape[0], d.shape[-1]))


def factors_pay(batch: int, in_features: int, replicates: int) -> bool:
    """Whether a shared-input layer's Gram matrix costs less from its factors, n B (B + n) out multiply-adds,
    than from its gradients, n² out in (the 784-400-20 VAE's first layer: 2.7x less; digits' 64-input one:
    3x more, so it keeps its block)."""
    return batch * (batch + replicates) < replicates * in_features


def _sums_match(sums: list[Tensor], grads: tuple[Tensor | None, ...], lay: Layout) -> bool:
    """Whether the replicates' gradients, summed ([numel] each), are autograd's ordinary gradient."""
    expected = [
        torch.zeros_like(p) if g is None else g.detach() for p, g in zip(lay.params, grads, strict=True)
    ]
    scale = max(float(torch.nan_to_num(e).norm()) for e in expected)
    tol = 1e-3 if sums[0].dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-8
    for total, e in zip(sums, expected, strict=True):
        got, want = torch.nan_to_num(total), torch.nan_to_num(e.reshape(-1))
        if float((got - want).norm()) > tol * (float(want.norm()) + 1e-3 * scale) + 1e-30:
            return False
    return True


def _split_rows(t: Tensor, n: int, batch: int) -> Tensor:
    """[..., n·B, F] or [..., n, B, F], replicate-major -> [L, n, B, F] (a view when ``t`` is contiguous)."""
    return t.reshape(-1, n, batch, t.shape[-1])


def _weight_grads(d: Tensor, a: Tensor, out: Tensor | None) -> Tensor:
    """Σ_l d[l, r]ᵀ a[l, r] for every replicate r: d [L, n, B, out], a [L, n, B, in] -> [n, out, in].

    BLAS is slow when the product's inner output dimension is narrow (a [200, B] @ [B, 8] runs at a fifth of
    the speed of its transpose on a CPU), so a layer with few inputs (under `NARROW`) and more outputs is
    computed as aᵀd and transposed into place (a strided copy: too dear to pay for wider layers).
    """
    lead, n, _, out_f = d.shape
    in_f = a.shape[-1]
    if out is None:
        out = d.new_empty(n, out_f, in_f)
    if in_f >= min(out_f, NARROW):
        torch.bmm(d[0].transpose(1, 2), a[0], out=out)
        for j in range(1, lead):
            out.baddbmm_(d[j].transpose(1, 2), a[j])
        return out
    flipped = torch.bmm(a[0].transpose(1, 2), d[0])  # [n, in, out]
    for j in range(1, lead):
        flipped.baddbmm_(a[j].transpose(1, 2), d[j])
    return out.copy_(flipped.transpose(1, 2))


class _Proxy:
    """The model as the estimator sees it: q(z|x) of the n tiled copies of x from one encoder pass on x.

    The encoder runs on the B rows of x, and each linear layer's output that is still [B, out] (the first
    layer, reading x) is expanded to [n, B, out]: its product is computed once, and everything after it carries
    the n replicates apart, so the backward pass gives each its own gradient at every encoder layer.
    """

    def __init__(self, model: nn.Module, x: Tensor, n: int, linears: list[nn.Linear]):
        self._model, self._x, self._n, self._linears = model, x, n, linears

    def posterior(self, x: Tensor) -> Normal:
        n, batch = self._n, self._x.shape[0]
        if x.shape[0] != n * batch:
            raise VaebenchError(
                f"method='tiled' expects the estimator to ask for q(z|x) of the {n * batch} tiled rows, got "
                f"{x.shape[0]}; use method='vmap' for this estimator"
            )

        def expand(module, inputs, output):
            if output.dim() == 2 and output.shape[0] == batch:
                return output.expand(n, *output.shape)
            return output

        # Prepended: it runs before the recording hook, which then keeps the expanded output.
        handles = [m.register_forward_hook(expand, prepend=True) for m in self._linears]
        try:
            q = self._model.posterior(self._x)
        finally:
            for h in handles:
                h.remove()
        loc, scale = (t.expand(n, *t.shape) if t.dim() == 2 else t for t in (q.loc, q.scale))
        if loc.shape[:2] != (n, batch):
            raise VaebenchError(
                f"method='tiled' expects q(z|x) with batch shape [B, Z], got {list(q.loc.shape)}; "
                "use method='vmap' for this model"
            )
        return Normal(loc.reshape(n * batch, -1), scale.reshape(n * batch, -1), validate_args=False)

    def __getattr__(self, name):
        return getattr(self._model, name)


def _check_rows(t: Tensor, n: int, batch: int) -> None:
    """``t`` must be [..., n·B, F] (the decoder's rows) or [..., n, B, F] (the encoder's), replicate-major."""
    if not (t.dim() >= 2 and t.shape[-2] == n * batch) and not (
        t.dim() >= 3 and t.shape[-3:-1] == (n, batch)
    ):
        raise VaebenchError(
            f"method='tiled' expects activations of shape [..., rows, features] with rows = replicates x batch "
            f"= {n * batch}, got {list(t.shape)}; use method='vmap' for this model"
        )
