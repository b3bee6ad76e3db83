"""One measurement: build a training step (:func:`build_step`), time it, and turn the times into a row.

The maths of the figures is in the package docstring (:mod:`vaebench.measures.throughput`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from vaebench import devices, rng
from vaebench.errors import VaebenchError, check_int
from vaebench.estimators import Estimator, make_estimator
from vaebench.measures.schema import HANDWRITTEN, THROUGHPUT, conform
from vaebench.measures.throughput.handwritten import (
    build_handwritten_step,
)
from vaebench.measures.throughput.timing import (
    count_linear_flops,
    device_name,
    matmul_ceiling,
    num_threads,
    summarize_times,
    synchronize,
    time_interleaved,
    track_peak_memory,
)
from vaebench.optim import make_optimizer
from vaebench.provenance import load_average
from vaebench.train.step import surrogate_of, training_step


def variant_label(compiled: bool, amp: bool) -> str:
    """``"eager"``, ``"compiled"``, ``"amp-bf16"`` or ``"compiled+amp-bf16"``: how a row was run."""
    parts = (["compiled"] if compiled else []) + (["amp-bf16"] if amp else [])
    return "+".join(parts) or "eager"


@dataclass(frozen=True)
class StepOptions:
    """How the timed step is built.

    Attributes:
        compile: ``torch.compile`` the forward pass (True: inductor; a string: that backend). Compiled graphs
            take no ``torch.Generator``, so compiled steps draw from torch's global RNG (seeded).
        amp: bf16 autocast around the forward pass (CUDA only).
        optimizer_step: include the optimizer's step.
        lr: the optimizer's learning rate.
    """

    compile: bool | str = False
    amp: bool = False
    optimizer_step: bool = True
    lr: float = 1e-3


ROUNDS = 10
"""Rounds of interleaved timing when :class:`Timing` leaves them to the repeats: at most this many, so that
each round's figure is the median of a block of repeats // rounds steps (5 at the default 50 repeats)."""


@dataclass(frozen=True)
class Timing:
    """How steps are timed: ``repeats`` timed steps after ``warmup`` untimed ones, on ``threads`` CPU threads.

    The repeats are taken in rounds (:func:`~vaebench.measures.throughput.timing.time_interleaved`): R rounds
    of n = repeats // R consecutive steps of each setting, so that steps timed together share each round's
    machine load.

    Attributes:
        repeats: timed steps per setting (the median is over these; rounded down to a multiple of the rounds).
        warmup: untimed steps first (a compiled step has compiled already, in :func:`build_step`; CUDA
            graphs still record in the first calls).
        threads: torch CPU threads for the measurement (None: leave as is); recorded in ``threads``.
        rounds: rounds of interleaved timing (None: min(repeats, `ROUNDS`)).
    """

    repeats: int = 30
    warmup: int = 5
    threads: int | None = None
    rounds: int | None = None

    def __post_init__(self) -> None:
        check_int("repeats", self.repeats, 1)
        check_int("warmup", self.warmup, 0)
        if self.rounds is not None:
            check_int("rounds", self.rounds, 1)
            if self.rounds > self.repeats:
                raise VaebenchError(f"rounds ({self.rounds}) cannot exceed repeats ({self.repeats})")

    @property
    def schedule(self) -> tuple[int, int]:
        """(rounds, timed steps of each setting per round)."""
        rounds = self.rounds if self.rounds is not None else min(self.repeats, ROUNDS)
        return rounds, self.repeats // rounds


def build_step(
    model: nn.Module,
    estimator: Estimator | str,
    x: Tensor,
    num_samples: int,
    *,
    device: str | torch.device | None = None,
    seed: int = 0,
    options: StepOptions = StepOptions(),
) -> tuple[Callable[[], None], dict[str, object]]:
    """One training step as a callable, on deep copies of ``model`` and ``estimator`` moved to ``device``.

    The caller's model and estimator are left as they were. The estimator runs in training mode; stateful
    estimators are prepared with ``x`` before the optimizer is built. One eager step runs here (untimed): it
    counts the linear layers' FLOPs and raises any error (a K the estimator cannot take) before timing starts.
    With ``options.compile`` the first compiled step runs here too, timed alone (``info["compile_s"]``).

    Args:
        model, estimator, x, num_samples: as in :func:`measure_throughput`.
        device: where to run; None: x's device.
        seed: seeds the sampling noise (a ``torch.Generator`` on the device).
        options: compile, autocast, optimizer step and learning rate (:class:`StepOptions`).

    Returns:
        ``(step, info)``: ``step()`` runs one step (it does not synchronize the device); ``info`` holds
        ``estimator`` (the name), ``sampler``, ``flops_per_step``, ``optimizer`` (label), ``objective``, ``device``
        (a ``torch.device``), ``batch_size``, ``num_samples``, ``compiled``, ``amp``, ``compile_s`` (seconds of
        the first compiled step, which compiles it, run and timed here; 0 eager).
    """
    if isinstance(estimator, str):
        estimator = make_estimator(estimator)
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise VaebenchError(
            f"x must be a tensor of shape [B, D], got {getattr(x, 'shape', type(x).__name__)}"
        )
    device = devices.resolve(device, x)
    compile, amp = options.compile, options.amp
    if amp and device.type != "cuda":
        raise VaebenchError(
            "amp=True (bf16 autocast) is measured on CUDA only: most CPUs emulate bf16 matmuls, so the row "
            "would time the emulation; use device='cuda' or amp=False"
        )
    model = copy.deepcopy(model).to(device)
    estimator = copy.deepcopy(estimator).to(device).train()
    x = x.to(device)
    estimator.prepare(model, x, seed=seed)
    optimizer, optimizer_label = make_optimizer([*model.parameters(), *estimator.parameters()], options.lr)
    flops = estimate_flops(model, estimator, x, num_samples, seed=seed)
    generator = rng.generator(seed, "throughput.noise", device=device)

    surrogate = surrogate_of(model, estimator, x, num_samples, None if compile else generator)

    def loss() -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return surrogate()

    forward = _compile(loss, compile) if compile else loss

    def step() -> None:
        training_step(optimizer, forward, apply=options.optimizer_step)

    compile_s = 0.0
    if compile:  # the call that compiles, timed alone: the warm-up and the timed steps then run compiled code
        synchronize(device)
        tick = time.perf_counter()
        step()
        synchronize(device)
        compile_s = time.perf_counter() - tick

    info = {
        "estimator": estimator.name or type(estimator).__name__,
        "sampler": estimator.sampler,
        "flops_per_step": flops,
        "optimizer": optimizer_label if options.optimizer_step else "none",
        "objective": estimator.objective,
        "device": device,
        "batch_size": x.shape[0],
        "num_samples": num_samples,
        "compiled": bool(compile),
        "amp": amp,
        "compile_s": compile_s,
    }
    return step, info


def estimate_flops(
    model: nn.Module, estimator: Estimator, x: Tensor, num_samples: int, *, seed: int = 0
) -> int:
    """Linear-layer FLOPs of one gradient estimate: 3 x the forward FLOPs of one call of ``estimator``.

    :func:`build_step`'s ``flops_per_step`` (the optimizer step's few FLOPs are not counted), and for a caller
    that times estimates rather than steps (the variance harness's benchmark: R estimates cost R times this). The
    forward is one call on ``x`` [B, D] at K = ``num_samples``, counted over the model and the estimator (a
    baseline network is part of the estimate); the backward costs about twice the forward (the gradients of
    each layer's input and of its weight). Nothing is stepped and no ``.grad`` is written.
    """
    generator = rng.generator(seed, "throughput.noise", device=x.device)
    with count_linear_flops(model, estimator) as forward_flops:
        estimator(model, x, num_samples=num_samples, generator=generator)
    return 3 * forward_flops[0]


def measure_throughput(
    model: nn.Module,
    estimator: Estimator | str,
    x: Tensor,
    num_samples: int,
    *,
    device: str | torch.device | None = None,
    seed: int = 0,
    options: StepOptions = StepOptions(),
    timing: Timing = Timing(),
) -> pd.DataFrame:
    """Time the training step of one estimator at one K and batch size.

    The model and estimator are deep-copied onto ``device`` first (:func:`build_step`), so the caller's
    objects are left as they were; the timed steps train the copies, as training would.

    Args:
        model: the VAE (anything with ``posterior`` and ``log_joint``).
        estimator: an :class:`~vaebench.estimators.Estimator` or a registered name.
        x: the batch [B, D]; B is the row's batch size.
        num_samples: K.
        device: where to run; None: x's device. CUDA rows are timed with CUDA events.
        seed: seeds the sampling noise and the bootstrap of the interval.
        options: compile, autocast (the row is labelled; an amp row's ceiling is the bf16 matmul ceiling),
            optimizer step, learning rate (:class:`StepOptions`).
        timing: repeats, warm-up steps and threads (:class:`Timing`).

    Returns:
        One row: ``estimator, sampler, num_samples, batch_size, seed, device, device_type, threads, variant,
        compiled, amp, optimizer, repeats, warmup, status, reason, step_s_median, step_s_p25, step_s_p75, step_s_iqr,
        step_s_min, step_s_low, step_s_high, datapoints_per_s(_low/_high), latent_samples_per_s(_low/_high),
        peak_memory_bytes, memory_baseline_bytes, memory_kind, flops_per_step, achieved_flops,
        matmul_ceiling_flops, ceiling_fraction(_low/_high), objective, timing_group`` ("": timed alone),
        ``rounds, round_steps, round_s`` (the median of each round's block of steps, space-separated seconds),
        ``load_before, load_after`` (the 1-minute load average around the timing), ``compile_s`` (the first,
        compiling call of a compiled step, timed alone before the warm-up; 0 eager).

    Raises:
        VaebenchError: a K this estimator cannot take, bad counts, a device that is not there.
    """
    device = devices.resolve(device, x if isinstance(x, Tensor) else None)
    with num_threads(timing.threads), rng.seeded(seed, "throughput.noise", device=device):
        built = build_step(model, estimator, x, num_samples, device=device, seed=seed, options=options)
    return measure_interleaved([built], seed=seed, timing=timing)


def build_handwritten(
    x: Tensor,
    *,
    hidden: int = 400,
    z_dim: int = 20,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> tuple[Callable[[], object], dict[str, object]]:
    """The hand-written pytorch/examples step on x [B, D] and its ``info``, as :func:`build_step` returns them.

    Its weights come from torch's global RNG seeded from ``seed`` (the recipe's ``nn.Linear`` initialisation);
    one untimed step counts the linear layers' FLOPs. ``optimizer`` is ``"adam-default"`` (the recipe's
    ``optim.Adam(model.parameters(), lr=1e-3)``), ``objective`` is ``"elbo"``, K = 1.
    """
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise VaebenchError(
            f"x must be a tensor of shape [B, D], got {getattr(x, 'shape', type(x).__name__)}"
        )
    device = devices.resolve(device, x)
    with rng.seeded(seed, "throughput.noise", device=device):
        step, model, _ = build_handwritten_step(x.to(device), hidden, z_dim)
        with count_linear_flops(model) as forward_flops:
            step()
    info = {
        "estimator": HANDWRITTEN,
        "flops_per_step": 3 * forward_flops[0],
        "optimizer": "adam-default",
        "objective": "elbo",
        "device": device,
        "batch_size": x.shape[0],
        "num_samples": 1,
        "compiled": False,
        "amp": False,
        "compile_s": 0.0,
    }
    return step, info


def measure_handwritten(
    x: Tensor,
    *,
    hidden: int = 400,
    z_dim: int = 20,
    device: str | torch.device | None = None,
    seed: int = 0,
    timing: Timing = Timing(),
) -> pd.DataFrame:
    """The hand-written row (``estimator="handwritten"``, K = 1): the pytorch/examples step on x [B, D].

    Same columns as :func:`measure_throughput` (see :func:`build_handwritten`).
    """
    with num_threads(timing.threads):
        built = build_handwritten(x, hidden=hidden, z_dim=z_dim, device=device, seed=seed)
    return measure_interleaved([built], seed=seed, timing=timing)


def measure_interleaved(
    built: Sequence[tuple[Callable[[], object], dict[str, object]]],
    *,
    seed: int = 0,
    timing: Timing = Timing(),
    group: str = "",
) -> pd.DataFrame:
    """Time prebuilt steps interleaved, in rounds, and return one row per step.

    The steps are taken round-robin (:func:`~vaebench.measures.throughput.timing.time_interleaved`) so that
    each round's machine load is shared by all of them; each row keeps its own median step time (over all
    its timed steps) and, in ``round_s``, the median of each round's block, from which the analysis forms
    ratios between the rows of one ``timing_group`` with intervals over rounds
    (:mod:`vaebench.analysis.yardstick`). Each step's peak memory is read afterwards, on one more step of it
    alone.

    Args:
        built: ``(step, info)`` pairs as :func:`build_step` or :func:`build_handwritten` return them, all on one
            device.
        seed: seeds torch's global RNG while timing (the hand-written step draws its noise from it) and the
            bootstrap of each row's interval.
        timing: repeats, rounds, warm-up steps and threads (:class:`Timing`).
        group: the ``timing_group`` of the rows ("" for a step timed alone: it forms no ratio).

    Returns:
        One row per step, in the order given, with the columns of :func:`measure_throughput`.
    """
    if not built:
        raise VaebenchError("measure_interleaved needs at least one built step")
    device = built[0][1]["device"]
    if any(info["device"] != device for _, info in built):
        raise VaebenchError("steps timed together must run on one device")
    rounds, per_round = timing.schedule
    with num_threads(timing.threads), rng.seeded(seed, "throughput.noise", device=device):
        # The ceilings first: measured once per process, their half second of warm-up also brings a cold CPU
        # to its sustained clock before the first step is timed.
        ceilings = {amp: matmul_ceiling(device, torch.bfloat16 if amp else torch.float32) for amp in {bool(i["amp"]) for _, i in built}}  # fmt: skip
        load_before = load_average()
        times = time_interleaved([step for step, _ in built], device, rounds, per_round, timing.warmup)
        load_after = load_average()
        memories = []
        for step, _ in built:
            with track_peak_memory(device) as memory:
                step()
            memories.append(memory)
        threads = torch.get_num_threads()
    rows = []
    for i, (_, info) in enumerate(built):
        row = _base_row(info, seed, timing, threads)
        row.update(_figures(times[:, i], info, memories[i], ceilings[bool(info["amp"])]))
        row.update(
            timing_group=group,
            rounds=rounds,
            round_steps=per_round,
            round_s=" ".join(f"{t:.6g}" for t in np.median(times[:, i], axis=1)),
            load_before=load_before,
            load_after=load_after,
            compile_s=info.get("compile_s", 0.0),
        )
        rows.append(row)
    return conform(pd.DataFrame(rows), THROUGHPUT)


# ------------------------------------------------------------------------------------------------- helpers


def _compile(function: Callable, compile: bool | str) -> Callable:
    backend = "inductor" if compile is True else compile
    try:
        return torch.compile(function, backend=backend)
    except Exception as error:  # an unknown backend surfaces as several exception types
        raise VaebenchError(f"torch.compile with backend {backend!r} failed: {error}") from error


def _figures(times: np.ndarray, info: dict, memory: dict, ceiling: float) -> dict:
    """A row's figures from its timed steps [rounds, per_round] (shared by estimators and the hand-written step)."""
    row: dict[str, object] = summarize_times(times.ravel())
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


def _base_row(info: dict, seed: int, timing: Timing, threads: int) -> dict[str, object]:
    device = info["device"]
    rounds, per_round = timing.schedule
    return {
        "estimator": info["estimator"],
        "sampler": info.get("sampler", "iid"),
        "num_samples": info["num_samples"],
        "batch_size": info["batch_size"],
        "seed": seed,
        "device": device_name(device),
        "device_type": device.type,
        "threads": threads,
        "variant": variant_label(info["compiled"], info["amp"]),
        "compiled": info["compiled"],
        "amp": info["amp"],
        "optimizer": info["optimizer"],
        "repeats": rounds * per_round,
        "warmup": timing.warmup,
        "status": "ok",
        "reason": "",
    }
