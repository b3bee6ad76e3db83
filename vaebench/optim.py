"""The optimizers by name, and the one place an optimizer is built (the fastest implementation torch has).

Training (:mod:`vaebench.train`), the throughput measure and the variance timing all build their optimizer
here, so "step ms" and the learning curves describe the same program; the configuration validates its
``train.optimizer`` key against `OPTIMIZERS`.

Each of them (with its default hyperparameters: no weight decay) moves a parameter by η_t · d_t, where the
direction d_t depends on the gradients alone, never on η (Adam: m̂_t / (√v̂_t + ε); Adamax: m̂_t / u_t;
RMSprop: g_t / (√v_t + ε); SGD: g_t). Stacked slices that differ only in their rate therefore share one
optimizer, each step rescaled to its slice's rate (:mod:`vaebench.train.seeds`); an optimizer added here must
keep that property, or the rate grid no longer equals separate runs (``tests/test_lr_grid.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from vaebench.errors import VaebenchError

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamax": torch.optim.Adamax,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}
"""Optimizers by name (default hyperparameters besides the learning rate)."""


def make_optimizer(
    parameters: Iterable[nn.Parameter], lr: float = 1e-3, name: str = "adam"
) -> tuple[torch.optim.Optimizer, str]:
    """The optimizer ``name`` (a key of `OPTIMIZERS`) with the fastest implementation torch offers here.

    The fused kernel (one pass over every parameter; Adam and SGD on CPU and CUDA since torch 2.4) when this
    optimizer has one for these parameters, else the multi-tensor ``foreach`` version. Same maths, other
    rounding order: a fused and a foreach run agree to float precision, not bit for bit.

    Returns:
        ``(optimizer, label)``, the label ``"<name>-fused"`` or ``"<name>-foreach"`` (it goes into the rows).
    """
    if name not in OPTIMIZERS:
        raise VaebenchError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    parameters = list(parameters)
    cls = OPTIMIZERS[name]
    try:
        return cls(parameters, lr=lr, fused=True), f"{name}-fused"
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this optimizer, device or dtype
        return cls(parameters, lr=lr, foreach=True), f"{name}-foreach"
