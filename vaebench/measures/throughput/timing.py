"""Clocks, ceilings, FLOP counts and memory peaks: the instruments the throughput measure reads.

Timing follows nanoGPT's ``bench.py``: warm up, synchronize the device before reading a clock (CUDA events on
a GPU), repeat, report the median. The matrix-multiply ceiling is *measured* (the best of a few large square
products), so a fraction of it means the same on a laptop CPU and a data-centre GPU.

Competing steps are timed **interleaved** (:func:`time_interleaved`), as the benchmarks compare steps within
one session: R rounds, each taking every step in turn for a block of n calls, the order rotated by one from
round to round. A load that slows the machine for seconds (another process, a clock that drops) then slows
every step of a round alike, and the ratio of two steps' times within a round cancels it:

    t_{r,a} / t_{r,b} = (λ_r τ_a) / (λ_r τ_b) = τ_a / τ_b,

for a load factor λ_r that is constant over a round. Steps timed one after the other for a whole unit each
see different λ, so a busy minute could reverse which is faster.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from vaebench import devices, rng
from vaebench.errors import VaebenchError
from vaebench.stats import median_interval

_CEILING_CACHE: dict[tuple[str, torch.dtype, int, int], float] = {}
_PROC_STATUS = "/proc/self/status"
_PROC_CLEAR_REFS = "/proc/self/clear_refs"


# --------------------------------------------------------------------------------------------------- devices


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


def time_interleaved(
    steps: Sequence[Callable[[], object]], device: torch.device, rounds: int, per_round: int, warmup: int
) -> np.ndarray:
    """Seconds of every timed call of each step, the steps taken round-robin. -> [rounds, S, per_round]

    First ``warmup`` untimed calls of each step, interleaved the same way. Then in round r the S steps run in
    the order r, r+1, ..., S-1, 0, ..., r-1 (a rotation, so that no step always follows the same one or
    always opens a round), each for ``per_round`` consecutive timed calls. On CUDA each call is bracketed by
    CUDA events and the device synchronized once per round; on the CPU by ``time.perf_counter``.

    Args:
        steps: the prebuilt steps (each a callable that runs one training step).
        device: where they run.
        rounds: R >= 1 rounds.
        per_round: n >= 1 timed calls of each step per round.
        warmup: untimed calls of each step before the first round.
    """
    for name, value, low in (("rounds", rounds, 1), ("per_round", per_round, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or value < low:
            raise VaebenchError(f"{name} must be an integer >= {low}, got {value!r}")
    count = len(steps)
    if count == 0:
        raise VaebenchError("time_interleaved needs at least one step")
    for _ in range(warmup):
        for step in steps:
            step()
    synchronize(device)
    times = np.empty((rounds, count, per_round))
    for r in range(rounds):
        order = [(r + i) % count for i in range(count)]
        if device.type == "cuda":
            events = {}
            for s in order:
                events[s] = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(per_round)]  # fmt: skip
                for start, end in events[s]:
                    start.record()
                    steps[s]()
                    end.record()
            synchronize(device)
            for s, pairs in events.items():
                times[r, s] = [start.elapsed_time(end) / 1e3 for start, end in pairs]
            continue
        for s in order:
            for i in range(per_round):
                start = time.perf_counter()
                steps[s]()
                times[r, s, i] = time.perf_counter() - start
    return times


def summarize_times(times: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Median, quartiles, minimum and the exact order-statistic interval of the median of step times [N]
    (seconds; :func:`vaebench.stats.median_interval`, NaN for fewer than 6 steps at 95%)."""
    times = np.asarray(times, dtype=float)
    p25, median, p75 = np.quantile(times, [0.25, 0.5, 0.75])
    low, high = median_interval(times, level)
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
    repeats: int = 10,
    warmup_s: float = 0.5,
) -> float:
    """Measured matrix-multiply ceiling in FLOP/s: the best of ``repeats`` timed [size, size] @ [size, size].

    The products run for ``warmup_s`` seconds first: a CPU (or a virtual one) reaches its sustained clock and
    wakes its second core only after a few hundred milliseconds of work, and a ceiling taken cold reads about
    half of it. Cached per (device, dtype, torch threads, size) for the life of the process, so every row of a
    run shares one ceiling. ``size`` defaults to 1024 on the CPU (2 GFLOP a product) and 8192 on CUDA.
    """
    device = devices.resolve(device)
    size = size or (8192 if device.type == "cuda" else 1024)
    key = (str(device), dtype, torch.get_num_threads(), size)
    if key not in _CEILING_CACHE:
        generator = rng.generator(0, "throughput.matmul", device=device)
        a = torch.randn(size, size, generator=generator, device=device).to(dtype)
        b = torch.randn(size, size, generator=generator, device=device).to(dtype)
        out = torch.empty(size, size, device=device, dtype=dtype)
        product = lambda: torch.mm(a, b, out=out)  # noqa: E731
        warm_until = time.perf_counter() + warmup_s
        while True:
            product()
            synchronize(device)
            if time.perf_counter() >= warm_until:
                break
        times = time_steps(product, device, repeats=repeats, warmup=1)
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
