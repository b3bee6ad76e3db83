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

Options multiply the work of a draw: an estimator evaluates the decoder `evaluations_per_draw` times per latent
sample (``miwae``/``piwae``: its M groups; ``mvd``: 4Z points), so the largest step is the largest K x that
factor over the run's settings. The parameters with their gradients and Adam's two moments (4 floats each)
are added: on very wide data the decoder's last layer alone can exceed the memory.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch

from vaebench.config import SuiteConfig
from vaebench.errors import VaebenchError
from vaebench.estimators import Estimator, MeasureValued, runnable

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


def evaluations_per_draw(estimator: Estimator, z_dim: int) -> int:
    """How many decoder evaluations an estimator makes per latent sample: M groups, MVD's 4Z points, else 1."""
    if isinstance(estimator, MeasureValued):
        return 4 * z_dim
    groups = getattr(estimator, "groups", 1)
    return groups if isinstance(groups, int) and groups >= 1 else 1


def parameter_bytes(config: SuiteConfig, x_dim: int) -> int:
    """Bytes of the seed VAE's parameters, their gradients and Adam's two moments, for every seed (0 otherwise)."""
    m = config.model
    if m.name != "gaussian-vae":
        return 0
    layers = [x_dim, *m.hidden, 2 * m.z_dim], [m.z_dim, *reversed(m.hidden), 2 * x_dim]
    count = sum(a * b for dims in layers for a, b in itertools.pairwise(dims))
    return 4 * 4 * count * max(1, len(config.seeds))


def check_memory(config: SuiteConfig, x_dim: int, device: torch.device) -> None:
    """Refuse a run whose largest step would not fit (see the module docstring).

    Raises:
        VaebenchError: naming the setting, the estimate, what is available and how to fix it.
    """
    if not config.samples:
        return
    settings = runnable(config.estimators, config.samples, config.samplers)
    z_dim = config.model.z_dim
    worst, k, name = max(
        [
            (s.num_samples * evaluations_per_draw(s.build(), z_dim), s.num_samples, s.estimator)
            for s in settings
        ]
        or [(max(config.samples), max(config.samples), "")]
    )
    per_step = step_bytes(config, x_dim, worst)
    have = available_bytes(device)
    if per_step is None or have is None:
        return
    need = per_step + parameter_bytes(config, x_dim)
    if need <= HEADROOM * have:
        return
    least = step_bytes(config, x_dim, 1) + parameter_bytes(config, x_dim)
    if least > HEADROOM * have:
        raise VaebenchError(
            f"the model on {x_dim}-dimensional data would need about {least / 2**30:.1f} GiB even at K=1 (its "
            f"parameters with their gradients and Adam's moments: {parameter_bytes(config, x_dim) / 2**30:.1f} "
            f"GiB) and {have / 2**30:.1f} GiB is available on {device}; use fewer data dimensions, narrower "
            "hidden layers or a smaller batch size"
        )
    if worst == k:
        what, fix = f"samples K={k}", f"choose K <= {max(1, int(HEADROOM * have // max(1, per_step // k)))}"
    else:
        what = f"{name} at K={k} ({worst // k} decoder evaluations per sample: {worst} per datapoint)"
        fix = f"drop {name}, or its options that multiply the work, or choose a smaller K"
    raise VaebenchError(
        f"{what} would need about {need / 2**30:.1f} GiB per step on {device} (batch {_batch(config)}, "
        f"{x_dim} data dimensions) and {have / 2**30:.1f} GiB is available; {fix}, or a smaller batch size"
    )
