"""What a training step costs: time, datapoints/s, latent samples/s, peak memory and achieved FLOP/s.

A *step* is what training does: the estimator's forward pass, ``surrogate.backward()`` and an Adam step over
the model's and the estimator's parameters (:func:`build_step`; the benchmarks in ``benchmarks/`` time the
same callable). :func:`measure_throughput` warms up, times ``repeats`` steps one by one with the device
synchronized (CUDA events on a GPU), and reports the median step time with its quartiles and a 95% bootstrap
interval; throughputs are B / t and K·B / t.

Achieved fraction of the matrix-multiply ceiling (nanoGPT's ``estimate_mfu``, with a *measured* ceiling so CPU
and GPU read alike). The FLOPs of a step are counted analytically for the linear layers: an ``nn.Linear(n, m)``
applied to R rows costs 2·R·n·m FLOPs forward and about twice that backward (the gradients of its input and
of its weight), so

    flops_per_step = 3 · Σ_layers 2 · R_layer · n_in · n_out,

with the rows R_layer seen on one recorded forward pass (B for the encoder and an estimator's baseline network,
K·B for the decoder, 2·K·B for DReG, which decodes z and its detached copy). The ceiling is the FLOP/s of a
large square matmul timed in the same process (:func:`~vaebench.measures.throughput.timing.matmul_ceiling`), so

    ceiling_fraction = flops_per_step / step_s_median / matmul_ceiling_flops.

Everything else in a step (elementwise maths, the optimizer, Python overhead) is the gap between that fraction
and 1. The reference row (``estimator="reference"``, :mod:`~vaebench.measures.throughput.reference`) is the
plain hand-written pytorch/examples VAE step, measured in the same run, so the suite's own overhead shows.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Callable, Iterable, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, Estimator, make_estimator
from vaebench.measures.throughput.reference import (
    ReferenceVAE,
    build_reference_step,
    reference_loss,
    reference_step,
)
from vaebench.measures.throughput.timing import (
    count_linear_flops,
    device_name,
    matmul_ceiling,
    num_threads,
    resolve_device,
    summarize_times,
    synchronize,
    time_steps,
    track_peak_memory,
)

__all__ = [
    "ReferenceVAE",
    "build_reference_step",
    "build_step",
    "count_linear_flops",
    "make_optimizer",
    "matmul_ceiling",
    "measure_reference",
    "measure_throughput",
    "reference_loss",
    "reference_step",
    "summarize_times",
    "synchronize",
    "throughput_study",
    "time_steps",
    "track_peak_memory",
    "variant_label",
]


def make_optimizer(parameters: Iterable[nn.Parameter], lr: float = 1e-3) -> tuple[torch.optim.Adam, str]:
    """Adam with the fastest implementation torch offers for these parameters; returns (optimizer, label).

    The fused kernel (one pass over every parameter, CPU and CUDA since torch 2.4) when available, else the
    multi-tensor ``foreach`` version. The label (``"adam-fused"`` or ``"adam-foreach"``) goes into the row.
    """
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True), "adam-fused"
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(parameters, lr=lr, foreach=True), "adam-foreach"


def variant_label(compiled: bool, amp: bool) -> str:
    """``"eager"``, ``"compiled"``, ``"amp-bf16"`` or ``"compiled+amp-bf16"``: how a row was run."""
    parts = (["compiled"] if compiled else []) + (["amp-bf16"] if amp else [])
    return "+".join(parts) or "eager"


def build_step(
    model: nn.Module,
    estimator: Estimator | str,
    x: Tensor,
    num_samples: int,
    *,
    device: str | torch.device | None = None,
    compile: bool | str = False,
    amp: bool = False,
    optimizer_step: bool = True,
    seed: int = 0,
    lr: float = 1e-3,
) -> tuple[Callable[[], None], dict[str, object]]:
    """One training step as a callable, on deep copies of ``model`` and ``estimator`` moved to ``device``.

    The caller's model and estimator are left as they were. The estimator runs in training mode; stateful
    estimators are prepared with ``x`` before the optimizer is built. One eager step runs here (untimed): it
    counts the linear layers' FLOPs and raises any error (a K the estimator cannot take) before timing starts.

    Args:
        model, estimator, x, num_samples: as in :func:`measure_throughput`.
        device: where to run; None: x's device.
        compile: ``torch.compile`` the forward pass (True: inductor; a string: that backend). Compiled graphs
            take no ``torch.Generator``, so compiled steps draw from torch's global RNG.
        amp: bf16 autocast around the forward pass (CUDA only).
        optimizer_step: include the Adam step.
        seed: seeds the sampling noise (a ``torch.Generator`` on the device).
        lr: Adam's learning rate.

    Returns:
        ``(step, info)``: ``step()`` runs one step (it does not synchronize the device); ``info`` holds
        ``estimator`` (the name), ``flops_per_step``, ``optimizer`` (label), ``objective``, ``device``
        (a ``torch.device``), ``batch_size``, ``num_samples``, ``compiled``, ``amp``.
    """
    if isinstance(estimator, str):
        estimator = make_estimator(estimator)
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise VaebenchError(
            f"x must be a tensor of shape [B, D], got {getattr(x, 'shape', type(x).__name__)}"
        )
    device = resolve_device(device, x)
    if amp and device.type != "cuda":
        raise VaebenchError(
            "amp=True (bf16 autocast) is measured on CUDA only: most CPUs emulate bf16 matmuls, so the row "
            "would time the emulation; use device='cuda' or amp=False"
        )
    model = copy.deepcopy(model).to(device)
    estimator = copy.deepcopy(estimator).to(device).train()
    x = x.to(device)
    estimator.prepare(model, x)
    optimizer, optimizer_label = make_optimizer([*model.parameters(), *estimator.parameters()], lr)
    generator = torch.Generator(device).manual_seed(seed)
    with count_linear_flops(model, estimator) as forward_flops:
        estimator(model, x, num_samples=num_samples, generator=generator).surrogate.backward()
    optimizer.zero_grad(set_to_none=True)

    def loss() -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = estimator(model, x, num_samples=num_samples, generator=None if compile else generator)
        return out.surrogate

    forward = _compile(loss, compile) if compile else loss

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward().backward()
        if optimizer_step:
            optimizer.step()

    info = {
        "estimator": estimator.name or type(estimator).__name__,
        "flops_per_step": 3 * forward_flops[0],
        "optimizer": optimizer_label if optimizer_step else "none",
        "objective": estimator.objective,
        "device": device,
        "batch_size": x.shape[0],
        "num_samples": num_samples,
        "compiled": bool(compile),
        "amp": amp,
    }
    return step, info


def measure_throughput(
    model: nn.Module,
    estimator: Estimator | str,
    x: Tensor,
    num_samples: int,
    *,
    repeats: int = 30,
    warmup: int = 5,
    device: str | torch.device | None = None,
    compile: bool | str = False,
    amp: bool = False,
    optimizer_step: bool = True,
    threads: int | None = None,
    seed: int = 0,
    lr: float = 1e-3,
) -> pd.DataFrame:
    """Time the training step of one estimator at one K and batch size.

    The model and estimator are deep-copied onto ``device`` first (:func:`build_step`), so the caller's
    objects are left as they were; the timed steps train the copies, as training would.

    Args:
        model: the VAE (anything with ``posterior`` and ``log_joint``).
        estimator: an :class:`~vaebench.estimators.Estimator` or a registered name.
        x: the batch [B, D]; B is the row's batch size.
        num_samples: K.
        repeats: timed steps (the median is over these).
        warmup: untimed steps first (enough for ``torch.compile`` to finish compiling).
        device: where to run; None: x's device. CUDA rows are timed with CUDA events.
        compile: ``torch.compile`` the forward pass: True (inductor) or a backend name; the row is labelled.
        amp: bf16 autocast around the forward pass (CUDA only); the row is labelled and its ceiling is the bf16
            matmul ceiling.
        optimizer_step: include the Adam step (False: forward and backward only).
        threads: torch CPU threads for the measurement (None: leave as is); recorded in ``threads``.
        seed: seeds the sampling noise and the bootstrap of the interval.
        lr: Adam's learning rate.

    Returns:
        One row: ``estimator, num_samples, batch_size, seed, device, device_type, threads, variant, compiled,
        amp, optimizer, repeats, warmup, status, reason, step_s_median, step_s_p25, step_s_p75, step_s_iqr,
        step_s_min, step_s_low, step_s_high, datapoints_per_s(_low/_high), latent_samples_per_s(_low/_high),
        peak_memory_bytes, memory_baseline_bytes, memory_kind, flops_per_step, achieved_flops,
        matmul_ceiling_flops, ceiling_fraction(_low/_high), objective``.

    Raises:
        VaebenchError: a K this estimator cannot take, bad counts, a device that is not there.
    """
    _check_counts(repeats, warmup)
    device = resolve_device(device, x if isinstance(x, Tensor) else None)
    with num_threads(threads), _forked_rng(device, seed):
        step, info = build_step(
            model,
            estimator,
            x,
            num_samples,
            device=device,
            compile=compile,
            amp=amp,
            optimizer_step=optimizer_step,
            seed=seed,
            lr=lr,
        )
        row = _base_row(info, seed, repeats, warmup)
        row.update(_measure(step, info, repeats=repeats, warmup=warmup, seed=seed))
    return pd.DataFrame([row])


def measure_reference(
    x: Tensor,
    *,
    hidden: int = 400,
    z_dim: int = 20,
    repeats: int = 30,
    warmup: int = 5,
    device: str | torch.device | None = None,
    threads: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The reference row (``estimator="reference"``, K = 1): the pytorch/examples step on x [B, D].

    Same columns as :func:`measure_throughput`; ``optimizer`` is ``"adam-default"`` (the recipe's
    ``optim.Adam(model.parameters(), lr=1e-3)``), ``objective`` is ``"elbo"``.
    """
    _check_counts(repeats, warmup)
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise VaebenchError(
            f"x must be a tensor of shape [B, D], got {getattr(x, 'shape', type(x).__name__)}"
        )
    device = resolve_device(device, x)
    with num_threads(threads), _forked_rng(device, seed):
        step, model, _ = build_reference_step(x.to(device), hidden, z_dim)
        with count_linear_flops(model) as forward_flops:
            step()
        info = {
            "estimator": "reference",
            "flops_per_step": 3 * forward_flops[0],
            "optimizer": "adam-default",
            "objective": "elbo",
            "device": device,
            "batch_size": x.shape[0],
            "num_samples": 1,
            "compiled": False,
            "amp": False,
        }
        row = _base_row(info, seed, repeats, warmup)
        row.update(_measure(step, info, repeats=repeats, warmup=warmup, seed=seed))
    return pd.DataFrame([row])


def throughput_study(
    model_factory: Callable[[], nn.Module],
    estimators: Sequence[str],
    samples: Sequence[int],
    batch_sizes: Sequence[int],
    x: Tensor,
    *,
    device: str | torch.device | None = None,
    repeats: int = 30,
    warmup: int = 5,
    compile: bool | str = False,
    amp: bool = False,
    reference: bool = True,
    threads: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Throughput of every estimator x K x batch size (plus labelled compiled / bf16 rows, and the reference).

    Args:
        model_factory: builds a fresh model (called once per batch size).
        estimators: registered names.
        samples: the K values.
        batch_sizes: each B takes the first B rows of ``x``.
        x: data [N, D] with N >= max(batch_sizes).
        device, repeats, warmup, threads, seed: as in :func:`measure_throughput`.
        compile: besides the eager rows, add ``torch.compile``d rows (True or a backend name).
        amp: besides the fp32 rows, add bf16-autocast rows (on CUDA only; ignored on the CPU).
        reference: add the hand-written reference row per batch size (for one-hidden-layer models).
        progress: called with a short label before each measurement (e.g. ``tqdm.write``).

    Returns:
        The rows of :func:`measure_throughput`, concatenated. A combination an estimator cannot run (K below
        its ``min_samples``, e.g. reinforce-loo at K = 1) is a row with ``status="skipped"``, the reason in
        ``reason``, and NaN figures.
    """
    unknown = [name for name in estimators if name not in ESTIMATORS]
    if unknown:
        raise VaebenchError(
            f"unknown estimator(s) {', '.join(unknown)}; valid names: {', '.join(ESTIMATORS)}"
        )
    if not batch_sizes or max(batch_sizes) > x.shape[0]:
        raise VaebenchError(
            f"batch sizes {list(batch_sizes)} need at least {max(batch_sizes, default=1)} rows of x, "
            f"got {x.shape[0]}; pass more data or smaller batch sizes"
        )
    device = resolve_device(device, x)
    variants: list[tuple[bool | str, bool]] = [(False, False)]
    if compile:
        variants.append((compile, False))
    if amp and device.type == "cuda":
        variants += [(False, True)] + ([(compile, True)] if compile else [])
    common = {"repeats": repeats, "warmup": warmup, "device": device, "threads": threads, "seed": seed}
    rows: list[dict] = []
    for batch_size in batch_sizes:
        batch = x[:batch_size]
        model = model_factory()
        if reference:
            hidden = getattr(model, "hidden", None)
            if hidden is not None and len(hidden) == 1:
                if progress:
                    progress(f"reference B={batch_size}")
                rows += measure_reference(batch, hidden=hidden[0], z_dim=model.z_dim, **common).to_dict(
                    "records"
                )
            else:
                why = f"the reference is the one-hidden-layer pytorch/examples VAE; this model has hidden={hidden!r}"
                rows.append(_skipped_row("reference", 1, batch_size, seed, device, False, False, why))
        for name in estimators:
            minimum = ESTIMATORS[name].min_samples
            for num_samples, (compiled, use_amp) in itertools.product(samples, variants):
                if num_samples < minimum:
                    why = f"{name} needs K >= {minimum}"
                    rows.append(
                        _skipped_row(name, num_samples, batch_size, seed, device, compiled, use_amp, why)
                    )
                    continue
                if progress:
                    progress(
                        f"{name} K={num_samples} B={batch_size} {variant_label(bool(compiled), use_amp)}"
                    )
                frame = measure_throughput(
                    model, make_estimator(name), batch, num_samples, compile=compiled, amp=use_amp, **common
                )
                rows += frame.to_dict("records")
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------- helpers


def _compile(function: Callable, compile: bool | str) -> Callable:
    backend = "inductor" if compile is True else compile
    try:
        return torch.compile(function, backend=backend)
    except Exception as error:  # an unknown backend surfaces as several exception types
        raise VaebenchError(f"torch.compile with backend {backend!r} failed: {error}") from error


def _check_counts(repeats: int, warmup: int) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise VaebenchError(f"repeats must be a positive integer, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise VaebenchError(f"warmup must be a non-negative integer, got {warmup!r}")


@contextlib.contextmanager
def _forked_rng(device: torch.device, seed: int):
    """Fork torch's global RNG (restored on exit) and seed it: model init and compiled steps draw from it."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _measure(step: Callable[[], object], info: dict, *, repeats: int, warmup: int, seed: int) -> dict:
    """Time ``step`` and turn the times into the row's figures (shared by estimators and the reference)."""
    device = info["device"]
    with track_peak_memory(device) as memory:
        times = time_steps(step, device, repeats, warmup)
    row: dict[str, object] = summarize_times(times, seed=seed)
    ceiling = matmul_ceiling(device, torch.bfloat16 if info["amp"] else torch.float32)
    median, low, high = row["step_s_median"], row["step_s_low"], row["step_s_high"]
    batch_size, flops = info["batch_size"], info["flops_per_step"]
    for name, work in (
        ("datapoints_per_s", batch_size),
        ("latent_samples_per_s", batch_size * info["num_samples"]),
    ):
        row[name], row[f"{name}_low"], row[f"{name}_high"] = work / median, work / high, work / low
    row.update(
        peak_memory_bytes=memory["bytes"],
        memory_baseline_bytes=memory["baseline"],
        memory_kind=memory["kind"],
        flops_per_step=int(flops),
        achieved_flops=flops / median,
        matmul_ceiling_flops=ceiling,
        ceiling_fraction=flops / median / ceiling,
        ceiling_fraction_low=flops / high / ceiling,
        ceiling_fraction_high=flops / low / ceiling,
        objective=info["objective"],
    )
    return row


def _base_row(info: dict, seed: int, repeats: int, warmup: int) -> dict[str, object]:
    device = info["device"]
    return {
        "estimator": info["estimator"],
        "num_samples": info["num_samples"],
        "batch_size": info["batch_size"],
        "seed": seed,
        "device": device_name(device),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "variant": variant_label(info["compiled"], info["amp"]),
        "compiled": info["compiled"],
        "amp": info["amp"],
        "optimizer": info["optimizer"],
        "repeats": repeats,
        "warmup": warmup,
        "status": "ok",
        "reason": "",
    }


def _skipped_row(
    name, num_samples, batch_size, seed, device, compiled, amp, reason: str
) -> dict[str, object]:
    info = {
        "estimator": name,
        "num_samples": num_samples,
        "batch_size": batch_size,
        "device": device,
        "compiled": bool(compiled),
        "amp": amp,
        "optimizer": "",
    }
    row = _base_row(info, seed, 0, 0)
    row.update(status="skipped", reason=reason)
    return row
