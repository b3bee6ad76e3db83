"""Deprecated: the training loop is :mod:`vaebench.train` (``train(model, setting, dataset, spec)``).

This module keeps, for one release, the former ``train(model, estimator, dataset, *, num_samples, steps=...)``
and the names it exported; each use warns with a `DeprecationWarning` that says what to call instead.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from vaebench.estimators import ESTIMATORS, Estimator, Setting, make_estimator
from vaebench.train import DIVERGENCE_BOUND, TrainResult, TrainSpec
from vaebench.train import train as _train

_MOVED = {
    "BUDGET_KEYS": "vaebench.train",
    "DIVERGENCE_BOUND": "vaebench.train",
    "HISTORY_COLUMNS": "vaebench.train",
    "TrainResult": "vaebench.train",
    "evaluate_elbo": "vaebench.train",
    "DEFAULT_EVAL_SAMPLES": "vaebench.train",
    "OPTIMIZERS": "vaebench.optim",
    "make_optimizer": "vaebench.optim",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"vaebench.training.{name} is deprecated; import it from {_MOVED[name]}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'vaebench.training' has no attribute {name!r}")


def train(
    model: nn.Module,
    estimator: Estimator | str,
    dataset,
    *,
    num_samples: int,
    seed: int = 0,
    checkpoint_at: Iterable[int] = (),
    budget: Mapping[str, float] | None = None,
    progress: bool = False,
    checkpoint=None,
    divergence_bound: float = DIVERGENCE_BOUND,
    **spec,
) -> TrainResult:
    """Deprecated: ``vaebench.train.train(model, Setting(name, K, sampler), dataset, TrainSpec(...))``.

    Takes the former arguments (``steps``, ``epochs``, ``batch_size``, ``lr``, ``optimizer``, ``eval_every``,
    ``eval_samples``, ``eval_points``, ``device``, ``drop_last`` go to `TrainSpec`) and warns.
    """
    warnings.warn(
        "vaebench.training.train is deprecated; call vaebench.train.train(model, Setting(estimator, K, "
        "sampler), dataset, TrainSpec(steps=...)) instead",
        DeprecationWarning,
        stacklevel=2,
    )
    est = make_estimator(estimator) if isinstance(estimator, str) else estimator
    name = est.name or next((n for n, cls in ESTIMATORS.items() if type(est) is cls), "")
    setting = Setting(name, num_samples, est.sampler)
    plan = TrainSpec(
        keep=checkpoint_at, budget=budget, divergence_bound=divergence_bound, progress=progress, **spec
    )
    return _train(model, setting, dataset, plan, seed=seed, estimator=est, checkpoint=checkpoint)
