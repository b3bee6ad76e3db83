"""The throughput study: every estimator x K x batch size, plus labelled variants and the reference row."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, make_estimator
from vaebench.measures.throughput.measure import (
    _base_row,
    measure_reference,
    measure_throughput,
    variant_label,
)
from vaebench.measures.throughput.timing import resolve_device


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
