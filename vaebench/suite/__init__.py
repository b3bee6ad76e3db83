"""The suite: units of work (:mod:`.units`), their files on disk (:mod:`.store`, :mod:`.integrity`), the lock
on a results folder (:mod:`.ownership`), signals (:mod:`.interrupts`), the runner (:mod:`.runner`) and the
rebuild of a folder's report (:mod:`.rebuild`); :mod:`.faults` is test scaffolding.

``run_suite(config, out, resume=...)`` runs every unit of a configuration into a results folder, saving each
as it finishes, so an interrupted run resumes where it stopped; see :mod:`vaebench.suite.runner`. The names
below are imported on first use, so the command line can install its signal handlers before torch loads.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SuiteResult": "runner",
    "default_out": "runner",
    "run_suite": "runner",
    "saved_config": "ownership",
    "Unit": "units",
    "plan": "units",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vaebench.suite.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vaebench.suite' has no attribute {name!r}")
