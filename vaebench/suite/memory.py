"""Whether a run's largest step fits in memory, checked before the first unit.

A training step at K draws K latent samples for each of B datapoints and runs the decoder on all of them, so its
activations grow as K x B; the variance measure's replicates and the throughput steps do the same. A K that
cannot fit must be refused at once with a message, not found out after minutes of swapping (the memory of the
machine is the limit: an out-of-memory kill loses the unit, and on a shared machine worse).

The estimate (:func:`step_bytes`) counts, per latent draw and datapoint, the decoder's activations (its input
z, every hidden layer before and after the nonlinearity, the likelihood's parameters and the per-dimension
log-density terms) in float32, `FACTOR` times over (forward values kept for the backward pass, their
gradients, the backward pass's temporaries, and an estimator's own K x B work: VIMCO's leave-one-out
baselines). Measured on the default digits model at K = 1000, batch 100 (growth of the peak resident memory
over one step): reparam 509 MB, iwae 540 MB, dreg 583 MB, vimco 1124 MB, against an estimate of 1144 MB. A
plugin's model is not estimated (its shapes are its own).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vaebench.config import SuiteConfig
from vaebench.errors import VaebenchError

FACTOR = 5
"""Forward activations, their gradients, the backward pass's temporaries and an estimator's own work."""

HEADROOM = 0.8
"""Share of the available memory a step may take."""


def _batch(config: SuiteConfig) -> int:
    sizes = [config.train.batch_size] if config.train.enabled or config.variance.enabled else []
    sizes += [config.variance.batch_size] if config.variance.enabled else []
    sizes += [config.throughput.batch_size] if config.throughput.enabled else []
    return max(sizes, default=0)


def step_bytes(config: SuiteConfig, x_dim: int, num_samples: int) -> int | None:
    """Estimated peak bytes of one step at ``num_samples`` draws per datapoint; None for a plugin's model."""
    m = config.model
    if m.name == "gaussian-toy":
        per_draw = 6 * x_dim
    elif m.name == "gaussian-vae":
        per_draw = m.z_dim + 2 * sum(m.hidden) + 3 * x_dim
    else:
        return None
    return FACTOR * 4 * num_samples * _batch(config) * per_draw


def available_bytes(device: torch.device) -> int | None:
    """Memory a run can take on ``device``: the free CUDA memory, or the host's MemAvailable (None if unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(config: SuiteConfig, x_dim: int, device: torch.device) -> None:
    """Refuse a run whose largest K would not fit (see the module docstring).

    Raises:
        VaebenchError: naming K, the estimate, what is available and how to fix it.
    """
    if not config.samples:
        return
    k = max(config.samples)
    need = step_bytes(config, x_dim, k)
    have = available_bytes(device)
    if need is None or have is None or need <= HEADROOM * have:
        return
    fits = max(1, int(HEADROOM * have // max(1, need // k)))
    raise VaebenchError(
        f"samples K={k} would need about {need / 2**30:.1f} GiB per step on {device} (batch {_batch(config)}, "
        f"{x_dim} data dimensions) and {have / 2**30:.1f} GiB is available; choose K <= {fits}, or a smaller "
        "batch size"
    )
