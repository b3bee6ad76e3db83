"""Run the suite: every unit in order, each saved as it finishes; resumable; interruptible; then the report.

The report is the caller's (``report=``, e.g. :func:`vaebench.report.writer.write_report`): the suite does not
import it, and calls it once the combined CSVs and run.json are written, while it still holds the folder and
handles the signals.

Robustness rules:

- one process per folder: the folder is locked for the run (:mod:`vaebench.suite.ownership`);
- everything that can be checked is checked before the first unit runs: the configuration, the data, and
  the configuration against the data (batch sizes);
- a unit's data file and then its manifest are written atomically the moment the unit finishes
  (:mod:`vaebench.suite.store`), so Ctrl-C or a kill loses at most the unit in progress. ``resume=True``
  skips every *verified* unit and re-runs the others, naming those that were damaged
  (:mod:`vaebench.suite.integrity`); files that belong to no unit are ignored and named;
- resuming checks that the saved configuration (run.json) equals the requested one, naming any difference;
- a unit that raises is recorded (``units/<kind>/<unit>.error``), reported, and retried on resume; the rest
  of the suite carries on. A diverged training run is not an error at all: it is rows with ``diverged``; a
  variance checkpoint the diverged anchor run never reached is a note, not a failure;
- SIGINT or SIGTERM at any moment (:mod:`vaebench.interrupts`), or a write the disk refuses, ends with
  the combined CSVs rebuilt from the verified units, run.json saying ``interrupted`` or ``aborted``, and (for
  a signal) a partial report; a signal during the report leaves run.json ``interrupted``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch

from vaebench import faults, files, interrupts
from vaebench.config import SuiteConfig, to_dict
from vaebench.config.validate import check_data
from vaebench.errors import StorageError, VaebenchError
from vaebench.progress import bar as progress_bar
from vaebench.provenance import collect, git_revision, load_run, machine_load, now
from vaebench.suite import cost, dispatch, integrity, ownership, store, units
from vaebench.suite.context import Context
from vaebench.suite.integrity import DAMAGED, MISSING, UNFINISHED, VERIFIED
from vaebench.suite.probe import check_settings, probe
from vaebench.suite.units import ANCHOR, Unit, shared_settings

Report = Callable[..., object]
"""``report(out, *, units)``: writes the report of a results folder (``units``: what the check found: total,
finished, and the units left out of the tables with why)."""


@dataclass
class SuiteResult:
    """What :func:`run_suite` did.

    Attributes:
        out: the results folder.
        status: ``complete``, ``failed`` (some units raised), ``interrupted`` or ``aborted`` (a write failed).
        total: units in the plan.
        skipped: units already finished (verified) before this invocation (resume).
        done: units finished by this invocation.
        failed: 'kind/unit' -> error message, for units that raised.
        permanent: the failed units whose error will recur on a retry (a configuration problem).
        repaired: 'kind/unit' -> why it was re-run although its file existed (damaged or unfinished).
        strays: files under units/ that belong to no unit of the run (ignored).
        wall_time_s: seconds this invocation took.
    """

    out: Path
    status: str = "running"
    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    permanent: set[str] = field(default_factory=set)
    repaired: dict[str, str] = field(default_factory=dict)
    strays: list[Path] = field(default_factory=list)
    wall_time_s: float = 0.0


def default_out(config: SuiteConfig, root: str | Path = "results") -> Path:
    """``results/<timestamp>-<name>`` (not created; :func:`vaebench.suite.ownership.new_folder` claims it)."""
    return Path(root) / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{config.name}"


def run_suite(
    config: SuiteConfig,
    out: str | Path,
    *,
    resume: bool = False,
    notes: list[str] | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
    argv: list[str] | None = None,
    report: Report | None = None,
    engine=None,
) -> SuiteResult:
    """Run (or resume) the suite described by ``config`` into the folder ``out``.

    Args:
        config: a validated configuration (:func:`vaebench.config.resolve`).
        out: results folder (created if missing).
        resume: continue a run in ``out``: keep its verified units, re-run the others.
        notes: remarks to keep in run.json and the report (e.g. skipped combinations).
        progress: show the progress bar (None: only when stderr is a terminal).
        log: where one line per finished unit goes (default: stderr); pass ``lambda s: None`` to silence.
        warn: where warnings go (damaged units re-run, stray files ignored; default: stderr).
        argv: the command line for run.json (default: sys.argv).
        report: called at the end to write the report (e.g. :func:`vaebench.report.writer.write_report`);
            None: no report.
        engine: where the units run (a `vaebench.suite.ray_engine.RayEngine`); None: this machine, with
            ``config.workers`` worker processes (:mod:`vaebench.suite.dispatch`; one: in this process).

    Returns:
        A :class:`SuiteResult`; status ``failed`` when some units raised (their errors are in ``failed``).

    Raises:
        VaebenchError: the folder holds another run or is in use, a resumed configuration differs, the data
            are missing or do not fit the configuration.
        StorageError: a write was refused (read-only folder, disk full, file-size limit); run.json says
            ``aborted`` where it could still be written.
        KeyboardInterrupt: (:class:`~vaebench.interrupts.Interrupted` for SIGINT/SIGTERM) after saving
            what was finished; run.json says ``interrupted``.
    """
    out = Path(out)
    ctx, plan = preflight(config, out, resume)
    with ownership.hold(out, create=not resume):
        faults.point("start")
        ownership.check_resume(out, config, resume, ctx)
        run = _Run(config, out, ctx, plan, notes or [], argv, log, warn, resume, engine)
        with _threads(config.threads):
            return run.run(progress, report)


def preflight(config: SuiteConfig, out: Path, resume: bool = False) -> tuple[Context, list[Unit]]:
    """Everything checked before the folder is touched: the data, the configuration against the data and the
    memory, the contract probe (:mod:`vaebench.suite.probe`), and the folder (another run's, or a resume whose
    configuration changed). `run_suite` and ``--dry-run`` both call it, so a dry run refuses what a run would.

    Returns:
        The run's context and its plan of units.
    """
    ctx = Context(config, out)
    ctx.dataset  # noqa: B018 -- load now: missing or corrupt data is an error before anything is written
    if not config.problems:  # a run across problems: each problem's data, model and settings are its own
        check_data(config, ctx.dataset)
        check_settings(config)
        cost.check_memory(config, ctx.dataset.x_dim, ctx.device)
        probe(config, ctx)
    plan = units.plan(config)
    if not plan:
        raise VaebenchError(
            "no problem of the configuration can run here: " + "; ".join(units.plan_problems(config)[1])
        )
    ownership.check_resume(out, config, resume, ctx)  # before creating anything; again under the lock
    return ctx, plan


class _Run:
    """One invocation of the suite on a locked folder."""

    def __init__(self, config, out, ctx, plan, notes, argv, log, warn, resume, engine=None):
        self.config, self.out, self.ctx, self.plan, self.argv, self.log = config, out, ctx, plan, argv, log
        self.warn = warn or (lambda line: print(f"vaebench: {line}", file=sys.stderr, flush=True))
        self.digest = ctx.digest
        history = load_run(out) if resume else {}
        self.first_start = history.get("started") or now()
        command = _command(argv)
        # The code this process runs is the code at start: read the revision now, not at each write of
        # run.json (a checkout moved during a long run would otherwise be credited with its results).
        self.git = git_revision(exclude=out)  # the results folder's own edits are not the code's
        # The load before any unit runs and (in write_run_json) when the run ends: the timings' context.
        self.load: dict = {"before": machine_load()}
        self.invocations = [
            *history.get("invocations", []),
            {"started": now(), "command": command, "git": self.git, "load": self.load},
        ]
        self.notes = list(dict.fromkeys([*history.get("notes", []), *notes]))
        self.result = SuiteResult(out=out, total=len(plan))
        self.finished = 0
        self.engine = engine
        self.workers = dispatch.worker_count(config)  # an engine says how many once it has started
        self.invocations[-1]["execution"] = {
            "engine": getattr(engine, "name", "local"),
            "workers": self.workers,
            # timed units ran with no other unit in flight (with one worker, trivially)
            "exclusive": list(dispatch.EXCLUSIVE),
        }

    def write_run_json(self, status: str, ended: str | None = None, error: str | None = None) -> None:
        if ended is not None:
            self.load["after"] = machine_load()
        data = collect(
            to_dict(self.config), device=self.config.device, started=self.first_start, ended=ended,
            status=status, command=_command(self.argv),
            units={"total": self.result.total, "finished": self.finished, "failed": len(self.result.failed)},
            notes=self.notes, git=self.git, load=self.load,
        )  # fmt: skip
        self.invocations[-1].update(ended=ended, status=status)
        data["invocations"] = self.invocations
        data["failed"] = self.result.failed
        sets = {
            u.problem: self.ctx.problem_data(u.problem) for u in self.plan if u.kind == ANCHOR and u.problem
        }
        describe = lambda d: {"name": d.name, "source": d.source, "sha256": d.sha256}  # noqa: E731
        data["data"] = (
            {problem: describe(d) for problem, d in sets.items()} if sets else describe(self.ctx.dataset)
        )
        data["plugins"] = self.ctx.plugins  # what they are, where they came from (vaebench.plugins.record)
        data["inputs"] = self.ctx.inputs  # hashed with the configuration: a resume and a rebuild re-check it
        if error:
            data["error"] = error
        files.write_json(self.out / "run.json", data)

    def record(self, status: str, error: str | None = None) -> None:
        """Write the final status even if a second signal arrives meanwhile; a refused write is let go."""
        with interrupts.deferred(), contextlib.suppress(OSError):
            self.write_run_json(status, now(), error)

    def run(self, progress: bool | None, report: Report | None) -> SuiteResult:
        out, result = self.out, self.result
        start = time.perf_counter()
        interrupt: KeyboardInterrupt | None = None
        storage: StorageError | None = None
        try:
            self.inspect()
            self.write_run_json("running")
            self.loop(progress)
        except KeyboardInterrupt as err:
            interrupt = err
        except OSError as err:
            storage = _storage(err)
        except Exception as err:  # a bug: still leave run.json truthful
            self.record("aborted", f"{type(err).__name__}: {err}")
            raise
        try:
            result.wall_time_s = time.perf_counter() - start
            state = integrity.verify(out, self.plan, self.digest)
            result.failed = integrity.failures(out, self.plan, state)
            self.finished = len(state.keys(VERIFIED))
            result.status = "failed" if result.failed else "complete"
            result.status = "aborted" if storage else result.status
            result.status = "interrupted" if interrupt else result.status
            tables = store.combine(
                out, state.frames(self.plan), shared_settings(self.config), units.run_problem(self.config)
            )
            if self.config.problems:
                store.write_across(out, tables)
            with interrupts.deferred():
                self.write_run_json(result.status, now(), str(storage) if storage else None)
            if report is not None and not storage:
                left_out = state.reasons(MISSING, UNFINISHED, DAMAGED)
                left_out |= {k: f"failed: {why}" for k, why in result.failed.items() if k in left_out}
                report(out, units={"total": result.total, "finished": self.finished, "left_out": left_out})
        except KeyboardInterrupt as err:
            interrupt = interrupt or err
            result.status = "interrupted"
            self.record("interrupted")
        except OSError as err:
            storage = storage or _storage(err)
            if not interrupt:
                result.status = "aborted"
                self.record("aborted", str(storage))
        result.wall_time_s = time.perf_counter() - start
        if interrupt is not None:
            raise interrupt
        if storage is not None:
            raise storage
        return result

    def inspect(self) -> integrity.FolderState:
        """Check the folder's units; clear leftovers of killed writes and stale error records; say what is off."""
        out, result = self.out, self.result
        state = integrity.verify(out, self.plan, self.digest)
        for path in [*store.temporary_files(out), *state.stale_errors]:
            path.unlink(missing_ok=True)
        result.skipped = self.finished = len(state.keys(VERIFIED))
        result.repaired = state.reasons(DAMAGED, UNFINISHED)
        result.strays = state.strays
        if result.repaired:
            self.warn(
                f"re-running {len(result.repaired)} unit(s) whose files are not verified: "
                + integrity.describe(result.repaired)
            )
            self.invocations[-1]["repaired"] = result.repaired
        if state.strays:
            names = [str(p.relative_to(out)) for p in state.strays]
            self.warn(
                f"ignoring {len(names)} file(s) under units/ that belong to no unit of this run: "
                + ", ".join(names[:6])
                + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            )
            self.invocations[-1]["ignored"] = names
        return state

    def loop(self, progress: bool | None) -> None:
        """Every unit not yet verified, in this process (one worker), on worker processes or on an engine, by the
        one loop over units (:func:`vaebench.suite.dispatch.run_pool`); this process saves each as it ends."""
        out, result = self.out, self.result
        pending, scheduler = self.schedule()
        bar, weight = self.progress_bar(pending, progress)

        def say(line: str) -> None:
            if self.log is not None:
                self.log(line)
            elif getattr(bar, "disable", True):
                print(line, file=sys.stderr, flush=True)
            else:
                bar.write(line, file=sys.stderr)

        if result.skipped:
            say(f"resuming {out}: {result.skipped} of {result.total} units already finished")

        def finish(unit: Unit, outcome: dispatch.Outcome | None) -> str | None:
            sha, remark = self.accept(unit, scheduler.anchor(unit), outcome)
            result.done += 1
            bar.update(weight[unit.key])
            seconds = f"{outcome.seconds:.1f}s " if outcome is not None else ""
            say(f"[{result.skipped + result.done}/{result.total}] {unit.label}: {seconds}{remark}".rstrip())
            return sha

        if self.engine is not None:
            pool = self.engine.start(self.config, out, self.ctx.plugins, self.ctx.dataset.sha256)
        elif self.workers > 1:
            pool = dispatch.LocalPool(
                self.config, out, self.workers, self.ctx.plugins, self.ctx.dataset.sha256
            )
        else:
            pool = dispatch.InlinePool(self.ctx)
        self.invocations[-1]["execution"]["workers"] = pool.workers
        try:
            dispatch.run_pool(pool, scheduler, finish, say, start=lambda u: bar.set_postfix_str(u.label))
        finally:
            bar.close()

    def progress_bar(self, pending: list[Unit], enabled: bool | None):
        """One bar over every unit of the plan, starting at the finished ones and advanced by each unit's nominal
        seconds (:func:`vaebench.suite.cost.nominal`), so its ETA covers every unit left; and those seconds."""
        rates = cost.nominal(self.config, len(self.ctx.dataset.test))
        weight = {u.key: cost.seconds(u, self.config, rates) for u in self.plan}
        total = math.fsum(weight.values())
        bar = progress_bar(
            total,
            enabled,
            initial=total - math.fsum(weight[u.key] for u in pending),
            bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
            desc="vaebench",
            dynamic_ncols=True,
        )
        return bar, weight

    def schedule(self) -> tuple[list[Unit], dispatch.Scheduler]:
        """The units still to run, and their scheduler, from the folder as it is now."""
        out = self.out

        def verified(unit: Unit, anchor: str | None) -> bool:
            return integrity.check(out, unit, self.digest, anchor).state == VERIFIED

        anchors = {}
        for head in [u for u in self.plan if u.kind == ANCHOR]:
            verdict = integrity.check(out, head, self.digest)
            if verdict.state == VERIFIED:
                anchors[head.problem] = verdict.sha256
        pending = [u for u in self.plan if not verified(u, anchors.get(u.problem))]
        return pending, dispatch.Scheduler(self.plan, pending, verified, anchors)

    def accept(
        self, unit: Unit, anchor: str | None, outcome: dispatch.Outcome | None
    ) -> tuple[str | None, str]:
        """Save a computed unit, or record why it failed (``outcome`` None: the anchor run did not finish)."""
        out, result = self.out, self.result
        inputs = {ANCHOR: anchor} if unit.kind in units.MEASURED_AT_ANCHOR else None
        if outcome is None or outcome.status == "failed":
            why = self.anchor_problem(unit.problem) if outcome is None else outcome.why
            if outcome is not None and outcome.permanent:
                why += " (this fails the same way every time: fix the configuration)"
                result.permanent.add(unit.key)
            result.failed[unit.key] = why
            detail = "" if outcome is None else "\n\n" + outcome.detail
            files.write_text(out / unit.error_path, f"{why}{detail}")
            return None, f"FAILED ({why})"
        if outcome.status == "skipped":
            value = pd.DataFrame()
            self.notes = list(dict.fromkeys([*self.notes, f"{unit.key}: {outcome.why}"]))
            remark = f"({outcome.why})"
        else:
            value = outcome.value
            remark = _remark(unit, value)
            note = value.attrs.get("note", "") if isinstance(value, pd.DataFrame) else ""
            if note:  # e.g. seeds that could not train as one program and trained one at a time
                self.notes = list(dict.fromkeys([*self.notes, note]))
        sha = store.save(unit, value, out, self.digest, inputs)
        (out / unit.partial_path).unlink(missing_ok=True)  # the unit's saved training state is done with
        self.finished += 1
        return sha, remark

    def anchor_problem(self, problem: str) -> str:
        head = units.anchor_unit(problem)
        key = head.key
        error = self.result.failed.get(key)
        if error is None and (self.out / head.error_path).is_file():
            error = (self.out / head.error_path).read_text().splitlines()[0]
        if error:
            return f"not run: the anchor run ({key}) failed: {error}"
        return f"not run: the anchor run ({key}) has not finished"


def _storage(err: OSError) -> StorageError:
    return err if isinstance(err, StorageError) else StorageError.from_os(err)


def _remark(unit: Unit, frame: pd.DataFrame | dict) -> str:
    """A note on a finished unit worth a glance (a diverged run)."""
    if unit.kind != "convergence" or not isinstance(frame, pd.DataFrame):
        return ""
    if "diverged" in frame and frame["diverged"].astype(bool).any():
        steps = frame["step"].max() if "step" in frame else "?"
        return f"(diverged after step {steps})"
    return ""


def _command(argv: list[str] | None) -> str:
    return " ".join(
        ["python -m vaebench", *argv] if argv is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
    )


@contextlib.contextmanager
def _threads(threads: int):
    """Set torch's CPU thread count for the run (0: leave it), and restore it afterwards."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
