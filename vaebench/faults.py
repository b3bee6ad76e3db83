"""Test scaffolding, not a feature: deterministic fault injection at named points of a run.

The fault-injection tests (``tests/test_faults.py``) must stop a run at an exact place (between a unit's data
file and its manifest, in the middle of the report, ...) without racing a timer. Setting the environment
variable ``VAEBENCH_TEST_FAULT`` to ``POINT[#N]:SIGNAL`` (several separated by commas) makes the process send
itself ``SIGNAL`` (``SIGINT``, ``SIGTERM`` or ``SIGKILL``) the N-th time (default: the first) it reaches
``POINT`` in one command; the signal is real, so what follows is exactly what a user's Ctrl-C, ``kill`` or
``kill -9`` at that moment would cause. Without the variable :func:`point` costs one dictionary lookup.

With ``VAEBENCH_TEST_FAULT_ONCE`` set to a folder, a fault fires in the first process that reaches its point
and in no other (it creates ``<folder>/<point>`` exclusively): a worker process killed once, not every worker.

Points: ``main`` (the command line starts, before the heavy imports), ``start`` (the results folder is
claimed, before run.json is written), ``unit`` (before a unit runs), ``saved`` (a unit's data file is written,
its manifest not yet), ``worker`` (a worker process starts computing a unit), ``checkpointed`` (a training unit saved its
state, `vaebench.train.checkpoints`), ``report`` (summary.csv is written, the plots and report.md not yet).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "VAEBENCH_TEST_FAULT"
ONCE = "VAEBENCH_TEST_FAULT_ONCE"

_reached: Counter[str] = Counter()


def reset() -> None:
    """Count the points from zero again (called when a command starts)."""
    _reached.clear()


def point(name: str) -> None:
    """Mark that the run reached ``name``; send the signal that ``VAEBENCH_TEST_FAULT`` asks for here, if any."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    _reached[name] += 1
    for item in spec.split(","):
        where, _, signame = item.strip().partition(":")
        label, _, nth = where.partition("#")
        if label == name and _reached[name] == int(nth or 1) and _first(name):
            os.kill(os.getpid(), getattr(signal, signame or "SIGINT"))


def _first(name: str) -> bool:
    """True unless ``VAEBENCH_TEST_FAULT_ONCE`` says another process fired this point already."""
    folder = os.environ.get(ONCE)
    if not folder:
        return True
    try:
        os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
