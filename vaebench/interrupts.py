"""Ctrl-C and ``kill``: SIGINT and SIGTERM become one exception, and a few short writes are made uninterruptible.

A run must leave its folder truthful whenever a signal arrives. Both signals raise :class:`Interrupted` (a
`KeyboardInterrupt`, so library callers and notebooks stop as usual) carrying the signal's number, from which
the command line takes its exit status, 128 + signal (130 for SIGINT, 143 for SIGTERM), the shell's
convention. The few writes that record *what happened* (run.json's final status) run inside
:func:`deferred`, which holds a signal until the write is done instead of abandoning it halfway. SIGKILL
cannot be caught; the folder's atomic writes and unit manifests make it harmless (see
:mod:`vaebench.suite.store`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A run was stopped by a signal (SIGINT or SIGTERM).

    Attributes:
        signum: the signal's number.
    """

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(err: BaseException) -> int:
    """128 + the signal that stopped the run (a plain KeyboardInterrupt is SIGINT): 130 or 143."""
    return 128 + int(getattr(err, "signum", signal.SIGINT))


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def as_interrupts() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (outside the main thread: no change)."""
    if not _main_thread():
        yield
        return

    def raise_interrupted(signum, frame):
        raise Interrupted(signum)

    previous = {s: signal.signal(s, raise_interrupted) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then raise :class:`Interrupted` for the first one that came.

    For short writes that must finish once started (a status record). Outside the main thread: no change.
    """
    if not _main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if held:
        raise Interrupted(held[0])
