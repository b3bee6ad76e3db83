"""The one loop over units (:func:`run_pool`): which unit may start when, where it is computed, and what comes
back to the driver.

The driver (the process that holds the results folder's lock, :mod:`vaebench.suite.ownership`) stays the one
writer of the folder: a pool only *computes* a unit (:func:`compute`) and returns its rows, or why it failed,
as an :class:`Outcome`; the driver saves it (`vaebench.suite.store.save`: data file, then manifest). A pool is
this process (:class:`InlinePool`, one worker), worker processes of this machine (:class:`LocalPool`) or Ray
(:mod:`vaebench.suite.ray_engine`): the loop, the rules below, resume, manifests, the lock and the signals'
exit statuses are the same for all three. A Ctrl-C or ``kill`` of the driver stops the workers, saves nothing
half-done and loses only the units in flight.

Scheduling rules (:class:`Scheduler`), the same for every pool:

- units start in plan order, as many at once as there are workers;
- a variance (or noise) unit starts only once the anchor run it is measured at, its problem's in a run across
  problems, has finished (its checkpoints are read from the folder); if the anchor run failed, the units
  measured at it fail at once, saying why;
- a throughput unit needs the machine to itself: it starts only when nothing else is in flight, and nothing
  starts while it runs (recorded in run.json as ``exclusive``).

Every unit is deterministic given its own arguments (explicit seeds, one torch thread per worker by default),
so the rows do not depend on how many workers there are, nor on which one ran which unit.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import torch

from vaebench import faults
from vaebench.config import SuiteConfig
from vaebench.errors import VaebenchError
from vaebench.plugins import registry
from vaebench.provenance import usable_cores
from vaebench.suite import execute
from vaebench.suite.context import Context
from vaebench.suite.units import ANCHOR, MEASURED_AT_ANCHOR, Skipped, Unit

EXCLUSIVE = ("throughput",)
"""Kinds of units timed on the machine: they run with no other unit in flight."""

RETRIES = 1
"""Times a unit whose worker process died (killed, out of memory) is started again before it counts as failed."""


@dataclass
class Outcome:
    """What computing one unit gave.

    Attributes:
        status: ``done`` (``value`` holds its rows, or the anchor run's checkpoints), ``skipped`` (``why``: a
            reason that would recur, saved as a unit without rows) or ``failed`` (``why``, ``detail``: the
            traceback).
        value: the unit's result (``done``).
        why: one line (``skipped``, ``failed``).
        detail: the traceback of a failure ('' when there is none worth showing).
        permanent: the failure is a configuration problem that a retry would repeat.
        seconds: how long the computation took.
    """

    status: str
    value: Any = None
    why: str = ""
    detail: str = ""
    permanent: bool = False
    seconds: float = 0.0


def compute(unit: Unit, ctx: Context) -> Outcome:
    """Compute one unit, turning its exceptions into an :class:`Outcome` (a KeyboardInterrupt still propagates)."""
    tick = time.perf_counter()
    try:
        outcome = Outcome("done", execute.execute(unit, ctx))
    except Skipped as why:
        outcome = Outcome("skipped", why=str(why))
    except Exception as err:  # a unit's bug or numerical failure must not lose the others
        why, detail = f"{type(err).__name__}: {err}", traceback.format_exc()
        outcome = Outcome("failed", why=why, detail=detail, permanent=isinstance(err, VaebenchError))
    outcome.seconds = time.perf_counter() - tick
    return outcome


def worker_count(config: SuiteConfig) -> int:
    """``config.workers``, or for 0 as many workers as the usable cores hold units of ``config.threads`` threads
    (one for ``threads = 0``, torch's default of all cores)."""
    if config.workers:
        return config.workers
    cores = usable_cores()
    return max(1, cores // config.threads) if config.threads else 1


class Scheduler:
    """Which pending unit may start now (see the module's rules).

    Args:
        plan: the run's units in plan order.
        pending: the units still to run, in plan order.
        check: ``check(unit, anchor_sha)`` -> True when the unit is already verified in the folder (a variance
            unit measured at an anchor run identical to the one just re-made need not run again).
        anchors: problem ("" outside a run across problems) -> the SHA-256 of its finished anchor run's unit.
    """

    def __init__(self, plan: list[Unit], pending: list[Unit], check, anchors: dict[str, str] | None = None):
        self.order = {u.key: i for i, u in enumerate(plan)}
        self.pending = list(pending)
        self.check = check
        self.anchors = dict(anchors or {})
        self.in_flight: list[Unit] = []
        self.anchor_pending = {u.problem for u in pending if u.kind == ANCHOR}

    def anchor(self, unit: Unit) -> str | None:
        """The SHA-256 of the finished anchor run ``unit`` is measured at (its problem's), or None."""
        return self.anchors.get(unit.problem)

    def next(self) -> Unit | None:
        """The next unit to start, removed from the pending list; None when none may start now."""
        if any(u.kind in EXCLUSIVE for u in self.in_flight):
            return None
        for unit in list(self.pending):
            if unit.kind in MEASURED_AT_ANCHOR and unit.problem in self.anchor_pending:
                continue
            if unit.kind in MEASURED_AT_ANCHOR and self.check(unit, self.anchor(unit)):
                self.pending.remove(unit)  # verified at the (re-made, identical) anchor run
                continue
            if unit.kind in EXCLUSIVE and (
                self.in_flight or any(u.kind not in EXCLUSIVE for u in self.pending)
            ):
                return None
            self.pending.remove(unit)
            self.in_flight.append(unit)
            return unit
        return None

    def finished(self, unit: Unit, sha: str | None) -> None:
        """Mark ``unit`` finished (``sha``: its data's SHA-256, None if it failed)."""
        self.in_flight.remove(unit)
        if unit.kind == ANCHOR:
            self.anchor_pending.discard(unit.problem)
            self.anchors[unit.problem] = sha

    def again(self, unit: Unit) -> None:
        """Put a unit in flight back among the pending ones (its worker died), in its place in the plan."""
        self.in_flight.remove(unit)
        self.pending = sorted([*self.pending, unit], key=lambda u: self.order[u.key])

    @property
    def done(self) -> bool:
        return not self.pending and not self.in_flight


# ------------------------------------------------------------------------------------------------ pools


class InlinePool:
    """One worker: this process, which computes a unit when it is submitted (the driver's context and data)."""

    workers = 1

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def submit(self, unit: Unit) -> Future:
        future: Future = Future()
        future.set_result(compute(unit, self.ctx))  # a KeyboardInterrupt propagates, as in the driver
        return future

    def restart(self) -> None:
        pass

    def close(self) -> None:
        pass


_ctx: Context | None = None


def _init_worker(config: SuiteConfig, out: str, parent: int, plugins: list, data_sha256: str | None) -> None:
    """Set up one worker process: the driver's plugins (the same code: :func:`vaebench.plugins.registry.reload`), its
    own context (data loaded once, refused if the file changed), its thread count, no Ctrl-C of its own."""
    global _ctx
    # Ctrl-C reaches the whole process group: the driver decides what happens, the worker is stopped by it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if config.threads:
        torch.set_num_threads(config.threads)
    registry.reload(plugins)
    _ctx = Context(config, out, data_sha256)
    threading.Thread(target=_orphan_watch, args=(parent,), daemon=True).start()


def _orphan_watch(parent: int) -> None:
    """End this worker when its driver is gone (killed with SIGKILL, which it cannot pass on)."""
    while _alive(parent):
        time.sleep(1.0)
    os._exit(1)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a killed driver whose parent has not reaped it yet is a zombie, which counts as gone
    (its workers must exit: they hold its output pipes, which its parent may be waiting on)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal test alone


def _compute_in_worker(unit: Unit) -> Outcome:
    assert _ctx is not None, "worker not initialised"
    faults.point("worker")
    return compute(unit, _ctx)


class LocalPool:
    """``workers`` processes of this machine (started by a fork server: one clean process that imported torch
    once, forked per worker, never a fork of the driver's threads)."""

    def __init__(
        self, config: SuiteConfig, out, workers: int, plugins: list = (), data_sha256: str | None = None
    ):
        self.config, self.out, self.workers = config, str(out), workers
        self.plugins, self.data_sha256 = list(plugins), data_sha256
        self.executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(["vaebench.suite.dispatch", "vaebench.suite.execute"])
        return ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_init_worker,
            initargs=(self.config, self.out, os.getpid(), self.plugins, self.data_sha256),
        )  # fmt: skip

    def submit(self, unit: Unit) -> Future:
        return self.executor.submit(_compute_in_worker, unit)

    def restart(self) -> None:
        """A worker died and took the pool with it: stop what is left and start a fresh pool."""
        self.close()
        self.executor = self._start()

    def close(self) -> None:
        """Stop the workers now, finished or not (their units in flight are lost, never half-saved)."""
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        self.executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)


def run_pool(pool, scheduler: Scheduler, finish, say, start=None) -> None:
    """Run every unit of ``scheduler`` on ``pool``, saving each as it ends.

    Args:
        pool: :class:`InlinePool`, :class:`LocalPool` or a Ray engine's: has ``workers``,
            ``submit(unit) -> Future`` of an :class:`Outcome`, ``restart()`` and ``close()``.
        scheduler: the units to run and the rules of when each may start.
        finish: ``finish(unit, outcome) -> sha or None``: the driver saves the unit or records its failure.
        say: where a line about a worker that died goes.
        start: called with each unit as it starts (the progress bar's label), or None.
    """
    futures: dict[Future, Unit] = {}
    tries: dict[str, int] = {}
    try:
        while not scheduler.done:
            while len(futures) < pool.workers:
                unit = scheduler.next()
                if unit is None:
                    break
                faults.point("unit")
                if start is not None:
                    start(unit)
                if unit.kind in MEASURED_AT_ANCHOR and scheduler.anchor(unit) is None:
                    scheduler.finished(unit, finish(unit, None))  # the anchor run failed: nothing to measure
                    continue
                try:
                    futures[pool.submit(unit)] = unit
                except BrokenProcessPool:
                    # a worker died after the last wait: the units it broke come out of the next one
                    scheduler.again(unit)
                    if not futures:
                        pool.restart()
                        continue
                    break
            if not futures:
                if scheduler.done:
                    break
                raise RuntimeError(f"no unit can start: {[u.key for u in scheduler.pending]}")  # a bug
            ready, _ = wait(futures, return_when=FIRST_COMPLETED)
            broken: list[Unit] = []
            for future in ready:
                unit = futures.pop(future)
                try:
                    outcome = future.result()
                except (BrokenProcessPool, *getattr(pool, "worker_errors", ())) as err:
                    broken.append(unit)
                    tries[unit.key] = tries.get(unit.key, 0) + 1
                    if tries[unit.key] > RETRIES:
                        outcome = Outcome(
                            "failed", why=f"its worker process died ({err}), {tries[unit.key]} times"
                        )
                    else:
                        say(
                            f"{unit.label}: its worker process died ({type(err).__name__}); starting it again"
                        )
                        scheduler.again(unit)
                        continue
                scheduler.finished(unit, finish(unit, outcome))
            if broken and isinstance(pool, LocalPool):
                # a dead worker breaks the whole local pool: the other units in flight start again too
                for future in list(futures):
                    scheduler.again(futures.pop(future))
                pool.restart()
    finally:
        pool.close()
