"""What a training step costs: time, datapoints/s, latent samples/s, peak memory and achieved FLOP/s.

A *step* is what training does: the estimator's forward pass, ``surrogate.backward()`` and an Adam step over
the model's and the estimator's parameters. Timing follows nanoGPT's ``bench.py``: a few warm-up steps
(allocator caches, lazy initialisation, ``torch.compile``), then ``repeats`` steps timed one by one with the
device synchronized before every clock read (CUDA events on a GPU, ``time.perf_counter`` on the CPU). The
figure is the median step time, with its quartiles and a 95% bootstrap interval; throughputs are B / t and
K·B / t.

Achieved fraction of the matrix-multiply ceiling (nanoGPT's ``estimate_mfu``, with a *measured* ceiling so CPU
and GPU read alike). The FLOPs of a step are counted analytically for the linear layers: an ``nn.Linear(n, m)``
applied to R rows costs 2·R·n·m FLOPs forward and about twice that backward (the gradients of its input and
of its weight), so

    flops_per_step = 3 · Σ_layers 2 · R_layer · n_in · n_out,

with the rows R_layer seen on one recorded forward pass (B for the encoder and an estimator's baseline network,
K·B for the decoder, 2·K·B for DReG, which decodes z and its detached copy). The ceiling is the FLOP/s of a
large square matmul timed in the same process, cached per (device, dtype, threads, size), so

    ceiling_fraction = flops_per_step / step_s_median / matmul_ceiling_flops.

Everything else in a step (elementwise maths, the optimizer, Python overhead) is the gap between that fraction
and 1. The reference row (``estimator="reference"``) is the plain hand-written VAE step of the pytorch/examples
recipe, so that the suite's own overhead is measured in the same run.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, Estimator, make_estimator
from vaebench.stats import bootstrap_interval

_CEILING_CACHE: dict[tuple[str, torch.dtype, int, int], float] = {}
_PROC_STATUS = "/proc/self/status"
_PROC_CLEAR_REFS = "/proc/self/clear_refs"


# --------------------------------------------------------------------------------------------------- devices


def resolve_device(device: str | torch.device | None, fallback: Tensor | None = None) -> torch.device:
    """The device to measure on: ``device``, else ``fallback``'s device, else the CPU.

    Raises:
        VaebenchError: a CUDA device was asked for and none is available.
    """
    if device is None:
        return fallback.device if fallback is not None else torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise VaebenchError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VaebenchError("device 'cuda' asked for but torch sees no CUDA GPU; use device='cpu'")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def device_name(device: torch.device) -> str:
    """``"cpu"`` or the CUDA device's marketing name (e.g. ``"NVIDIA H100 80GB HBM3"``)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (a no-op on the CPU, where kernels run synchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def num_threads(threads: int | None):
    """Run the block with ``torch.set_num_threads(threads)``, restoring the previous count (None: unchanged)."""
    if threads is None:
        yield
        return
    if not isinstance(threads, int) or threads < 1:
        raise VaebenchError(f"threads must be a positive integer or None, got {threads!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ----------------------------------------------------------------------------------------------------- timing


def time_steps(step: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> np.ndarray:
    """Seconds taken by each of ``repeats`` calls of ``step`` after ``warmup`` untimed calls. -> [repeats]

    On CUDA each step is bracketed by CUDA events (device time, no host sync inside the loop); on the CPU by
    ``time.perf_counter``.
    """
    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(repeats)
        ]
        for start, end in events:
            start.record()
            step()
            end.record()
        synchronize(device)
        return np.array([start.elapsed_time(end) / 1e3 for start, end in events])
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        step()
        times[i] = time.perf_counter() - start
    return times


def summarize_times(times: np.ndarray, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Median, quartiles, minimum and a bootstrap interval for the median of step times [N] (seconds)."""
    times = np.asarray(times, dtype=float)
    p25, median, p75 = np.quantile(times, [0.25, 0.5, 0.75])
    if len(times) > 1:
        low, high = bootstrap_interval(np.median, times, level=level, seed=seed)
    else:
        low = high = float("nan")
    return {
        "step_s_median": float(median),
        "step_s_p25": float(p25),
        "step_s_p75": float(p75),
        "step_s_iqr": float(p75 - p25),
        "step_s_min": float(times.min()),
        "step_s_low": low,
        "step_s_high": high,
    }


def matmul_ceiling(
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    size: int | None = None,
    repeats: int = 5,
) -> float:
    """Measured matrix-multiply ceiling in FLOP/s: the best of ``repeats`` timed [size, size] @ [size, size].

    Cached per (device, dtype, torch threads, size) for the life of the process, so every row of a run shares
    one ceiling. ``size`` defaults to 1024 on the CPU (2 GFLOP a product) and 8192 on CUDA.
    """
    device = resolve_device(device)
    size = size or (8192 if device.type == "cuda" else 1024)
    key = (str(device), dtype, torch.get_num_threads(), size)
    if key not in _CEILING_CACHE:
        generator = torch.Generator(device).manual_seed(0)
        a = torch.randn(size, size, generator=generator, device=device).to(dtype)
        b = torch.randn(size, size, generator=generator, device=device).to(dtype)
        out = torch.empty(size, size, device=device, dtype=dtype)
        times = time_steps(lambda: torch.mm(a, b, out=out), device, repeats=repeats, warmup=2)
        _CEILING_CACHE[key] = 2.0 * size**3 / float(times.min())
    return _CEILING_CACHE[key]


# ------------------------------------------------------------------------------------------------------ FLOPs


@contextlib.contextmanager
def count_linear_flops(*modules: nn.Module):
    """Record the forward FLOPs of every ``nn.Linear`` inside ``modules`` while the block runs.

    Yields a one-element list whose item is the running total: 2 · rows · in_features · out_features per call,
    rows being every leading dimension of the input (so [K, B, D] inputs count K·B rows).
    """
    total = [0]

    def hook(layer: nn.Linear, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        rows = inputs[0].numel() // layer.in_features
        total[0] += 2 * rows * layer.in_features * layer.out_features

    handles = [
        layer.register_forward_hook(hook)
        for module in modules
        for layer in module.modules()
        if isinstance(layer, nn.Linear)
    ]
    try:
        yield total
    finally:
        for handle in handles:
            handle.remove()


# ----------------------------------------------------------------------------------------------------- memory


def _read_rss(field: str = "VmHWM") -> int | None:
    """A memory field of /proc/self/status in bytes (VmHWM: peak resident set, VmRSS: current); None elsewhere."""
    try:
        with open(_PROC_STATUS) as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident set (Linux >= 4.0, ``clear_refs`` value 5); True if it worked."""
    try:
        with open(_PROC_CLEAR_REFS, "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def track_peak_memory(device: torch.device):
    """Peak memory while the block runs; yields a dict filled on exit with ``bytes``, ``baseline`` and ``kind``.

    CUDA: ``torch.cuda.max_memory_allocated`` after a reset (``"cuda_max_allocated"``, tensors only). CPU on
    Linux: the peak resident set of the whole process after resetting the high-water mark (``"rss_peak"``,
    including Python and torch themselves); where it cannot be reset, the lifetime peak
    (``"rss_peak_lifetime"``); NaN and ``"unavailable"`` without /proc or ``resource``. ``baseline`` is the
    same measure's current value on entry (allocated CUDA memory, resident set), so ``bytes - baseline`` is
    what the block added.
    """
    result: dict[str, object] = {"bytes": float("nan"), "baseline": float("nan"), "kind": "unavailable"}
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        result["baseline"] = int(torch.cuda.memory_allocated(device))
        yield result
        synchronize(device)
        result.update(bytes=int(torch.cuda.max_memory_allocated(device)), kind="cuda_max_allocated")
        return
    was_reset = _reset_peak_rss()
    current = _read_rss("VmRSS")
    if current is not None:
        result["baseline"] = current
    yield result
    peak = _read_rss("VmHWM")
    if peak is not None:
        result.update(bytes=peak, kind="rss_peak" if was_reset else "rss_peak_lifetime")
        return
    with contextlib.suppress(ImportError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result.update(bytes=peak * (1 if sys.platform == "darwin" else 1024), kind="rss_peak_lifetime")


# ----------------------------------------------------------------------------------------------- the step


def make_optimizer(parameters: Iterable[nn.Parameter], device: torch.device, lr: float = 1e-3):
    """Adam with the fastest implementation torch offers on ``device``; returns (optimizer, label).

    The fused kernel (one pass over all parameters) exists on CPU and CUDA since torch 2.4; otherwise the
    ``foreach`` (multi-tensor) version. The label names which was used.
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


def _compile(function: Callable, compile: bool | str) -> Callable:
    backend = "inductor" if compile is True else compile
    try:
        return torch.compile(function, backend=backend)
    except Exception as error:  # backend lookup errors come in several types
        raise VaebenchError(f"torch.compile with backend {backend!r} failed: {error}") from error


def _check_counts(repeats: int, warmup: int) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise VaebenchError(f"repeats must be a positive integer, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise VaebenchError(f"warmup must be a non-negative integer, got {warmup!r}")


def _measure(
    step: Callable[[], object],
    *,
    device: torch.device,
    repeats: int,
    warmup: int,
    flops: int,
    batch_size: int,
    num_samples: int,
    amp: bool,
    seed: int,
) -> dict[str, object]:
    """Time ``step`` and turn the times into the row's figures (shared by estimators and the reference)."""
    with track_peak_memory(device) as memory:
        times = time_steps(step, device, repeats, warmup)
    row: dict[str, object] = summarize_times(times, seed=seed)
    ceiling = matmul_ceiling(device, torch.bfloat16 if amp else torch.float32)
    median, low, high = row["step_s_median"], row["step_s_low"], row["step_s_high"]
    for name, work in (("datapoints_per_s", batch_size), ("latent_samples_per_s", batch_size * num_samples)):
        row[name], row[f"{name}_low"], row[f"{name}_high"] = work / median, work / high, work / low
    achieved = flops / median
    row.update(
        peak_memory_bytes=memory["bytes"],
        memory_baseline_bytes=memory["baseline"],
        memory_kind=memory["kind"],
        flops_per_step=int(flops),
        achieved_flops=achieved,
        matmul_ceiling_flops=ceiling,
        ceiling_fraction=achieved / ceiling,
        ceiling_fraction_low=flops / high / ceiling,
        ceiling_fraction_high=flops / low / ceiling,
    )
    return row


def _base_row(
    estimator: str,
    num_samples: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    compiled: bool,
    amp: bool,
    optimizer: str,
    repeats: int,
    warmup: int,
) -> dict[str, object]:
    return {
        "estimator": estimator,
        "num_samples": num_samples,
        "batch_size": batch_size,
        "seed": seed,
        "device": device_name(device),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "variant": variant_label(compiled, amp),
        "compiled": compiled,
        "amp": amp,
        "optimizer": optimizer,
        "repeats": repeats,
        "warmup": warmup,
        "status": "ok",
        "reason": "",
    }


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

    The model and estimator are deep-copied onto ``device`` first, so the caller's objects are left as they
    were (the timed steps do train the copies). The estimator runs in training mode, as in training.

    Args:
        model: the VAE (anything with ``posterior`` and ``log_joint``).
        estimator: an :class:`~vaebench.estimators.Estimator` or a registered name.
        x: the batch [B, D]; B is the batch size of the row.
        num_samples: K.
        repeats: timed steps (the median is over these).
        warmup: untimed steps first (include enough for ``torch.compile`` to finish compiling).
        device: where to run; None: x's device. CUDA rows are timed with CUDA events.
        compile: ``torch.compile`` the forward pass: True (inductor) or a backend name; the row is labelled.
        amp: run the forward pass under bf16 autocast (CUDA only); the row is labelled and its ceiling is
            the bf16 matmul ceiling.
        optimizer_step: include the Adam step (False: forward and backward only).
        threads: torch CPU threads for the measurement (None: leave as is); recorded in ``threads``.
        seed: seeds the sampling noise and the bootstrap of the interval.
        lr: Adam's learning rate.

    Returns:
        One row: ``estimator, num_samples, batch_size, seed, device, device_type, threads, variant, compiled,
        amp, optimizer, repeats, warmup, status, reason, step_s_median, step_s_p25, step_s_p75, step_s_iqr,
        step_s_min, step_s_low, step_s_high, datapoints_per_s(_low/_high), latent_samples_per_s(_low/_high),
        peak_memory_bytes, memory_baseline_bytes, memory_kind, flops_per_step, achieved_flops, matmul_ceiling_flops,
        ceiling_fraction(_low/_high), objective``.

    Raises:
        VaebenchError: bad K for this estimator, bad counts, a device that is not there.
    """
    _check_counts(repeats, warmup)
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
    with num_threads(threads), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # the global RNG feeds only compiled steps (see below); forked, so restored
        model = copy.deepcopy(model).to(device)
        estimator = copy.deepcopy(estimator).to(device).train()
        x = x.to(device)
        estimator.prepare(model, x)
        parameters = [*model.parameters(), *estimator.parameters()]
        optimizer, optimizer_label = make_optimizer(parameters, device, lr)
        generator = torch.Generator(device).manual_seed(seed)
        # One eager pass records the linear layers' FLOPs (and raises any bad-K error before timing).
        with count_linear_flops(model, estimator) as forward_flops:
            estimator(model, x, num_samples=num_samples, generator=generator).surrogate.backward()
        optimizer.zero_grad(set_to_none=True)

        def loss() -> Tensor:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                # Compiled graphs take no torch.Generator argument: they draw from the (forked, seeded) global RNG.
                return estimator(
                    model, x, num_samples=num_samples, generator=None if compile else generator
                ).surrogate

        forward = _compile(loss, compile) if compile else loss

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            forward().backward()
            if optimizer_step:
                optimizer.step()

        row = _base_row(
            estimator.name or type(estimator).__name__,
            num_samples,
            x.shape[0],
            seed,
            device,
            bool(compile),
            amp,
            optimizer_label if optimizer_step else "none",
            repeats,
            warmup,
        )
        row.update(
            _measure(
                step,
                device=device,
                repeats=repeats,
                warmup=warmup,
                flops=3 * forward_flops[0],
                batch_size=x.shape[0],
                num_samples=num_samples,
                amp=amp,
                seed=seed,
            )
        )
        row["objective"] = estimator.objective
    return pd.DataFrame([row])


# ------------------------------------------------------------------------------------------- the reference


class ReferenceVAE(nn.Module):
    """The pytorch/examples VAE (``vae/main.py``), written out as a practitioner would: no suite code.

    fc1 x_dim->hidden, fc21/fc22 hidden->z_dim (mean, log-variance), fc3 z_dim->hidden, fc4 hidden->x_dim,
    ReLU, sigmoid output; the defaults are the recipe's 784-400-20.
    """

    def __init__(self, x_dim: int = 784, hidden: int = 400, z_dim: int = 20):
        super().__init__()
        self.x_dim = x_dim
        self.fc1 = nn.Linear(x_dim, hidden)
        self.fc21 = nn.Linear(hidden, z_dim)
        self.fc22 = nn.Linear(hidden, z_dim)
        self.fc3 = nn.Linear(z_dim, hidden)
        self.fc4 = nn.Linear(hidden, x_dim)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z: Tensor) -> Tensor:
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x.view(-1, self.x_dim))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def reference_loss(recon_x: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """The recipe's loss: summed binary cross-entropy plus the analytic KL(q || N(0, I)) (Kingma & Welling, App. B)."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, recon_x.shape[-1]), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def reference_step(model: ReferenceVAE, optimizer: torch.optim.Optimizer, x: Tensor) -> float:
    """One training step exactly as the recipe's ``train`` loop does it; returns the loss (``loss.item()``)."""
    optimizer.zero_grad()
    recon_batch, mu, logvar = model(x)
    loss = reference_loss(recon_batch, x, mu, logvar)
    loss.backward()
    value = loss.item()
    optimizer.step()
    return value


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
    """The reference row (``estimator="reference"``, K = 1): the recipe's step on x [B, D], its default Adam.

    Same columns as :func:`measure_throughput`; ``optimizer`` is ``"adam-default"`` (the recipe's
    ``optim.Adam(model.parameters(), lr=1e-3)``), ``objective`` is ``"elbo"``.
    """
    _check_counts(repeats, warmup)
    device = resolve_device(device, x)
    if x.dim() != 2:
        raise VaebenchError(f"x must have shape [B, D], got {list(x.shape)}")
    with num_threads(threads), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = ReferenceVAE(x.shape[1], hidden, z_dim).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = x.to(device)
        with count_linear_flops(model) as forward_flops:
            model(x)
        row = _base_row(
            "reference", 1, x.shape[0], seed, device, False, False, "adam-default", repeats, warmup
        )
        row.update(
            _measure(
                lambda: reference_step(model, optimizer, x),
                device=device,
                repeats=repeats,
                warmup=warmup,
                flops=3 * forward_flops[0],
                batch_size=x.shape[0],
                num_samples=1,
                amp=False,
                seed=seed,
            )
        )
        row["objective"] = "elbo"
    return pd.DataFrame([row])


# ----------------------------------------------------------------------------------------------- the study


def _skipped_row(
    name: str, num_samples: int, batch_size: int, seed: int, device, variant, reason: str
) -> dict:
    compiled, amp = variant
    row = _base_row(name, num_samples, batch_size, seed, device, compiled, amp, "", 0, 0)
    row.update(status="skipped", reason=reason)
    return row


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
        its ``min_samples``, e.g. reinforce-loo at K = 1) is a row with ``status="skipped"``, the reason, and
        NaN figures.
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
    variants = [(False, False)]
    if compile:
        variants.append((compile, False))
    if amp and device.type == "cuda":
        variants += [(False, True)] + ([(compile, True)] if compile else [])
    rows: list[dict] = []
    for batch_size in batch_sizes:
        batch = x[:batch_size]
        model = model_factory()
        common = {"repeats": repeats, "warmup": warmup, "device": device, "threads": threads, "seed": seed}
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
                rows.append(_skipped_row("reference", 1, batch_size, seed, device, (False, False), why))
        for name in estimators:
            minimum = ESTIMATORS[name].min_samples
            for num_samples, (compiled, use_amp) in itertools.product(samples, variants):
                label = f"{name} K={num_samples} B={batch_size} {variant_label(bool(compiled), use_amp)}"
                if num_samples < minimum:
                    why = f"{name} needs K >= {minimum}"
                    rows.append(
                        _skipped_row(
                            name, num_samples, batch_size, seed, device, (bool(compiled), use_amp), why
                        )
                    )
                    continue
                if progress:
                    progress(label)
                frame = measure_throughput(
                    model, make_estimator(name), batch, num_samples, compile=compiled, amp=use_amp, **common
                )
                rows += frame.to_dict("records")
    return pd.DataFrame(rows)


__all__ = [
    "ReferenceVAE",
    "count_linear_flops",
    "matmul_ceiling",
    "measure_reference",
    "measure_throughput",
    "reference_loss",
    "reference_step",
    "throughput_study",
    "time_steps",
    "track_peak_memory",
]
