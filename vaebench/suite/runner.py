"""Run the suite: every unit in order, each saved as it finishes; resumable; interruptible; then the report.

Robustness rules:

- a unit's file is written atomically the moment the unit finishes (:mod:`vaebench.suite.store`), so Ctrl-C
  or a kill loses at most the unit in progress, and ``resume=True`` skips every unit whose file exists;
- resuming checks that the saved configuration (run.json) equals the requested one, naming any difference;
- a unit that raises is recorded (``units/<kind>/<unit>.error``), reported, and retried on resume; the rest
  of the suite carries on. A diverged training run is not an error at all: it is rows with ``diverged``;
- on Ctrl-C the combined CSVs and a partial report are still written, and run.json says ``interrupted``.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from vaebench.config import SuiteConfig, differences, from_dict, to_dict
from vaebench.errors import VaebenchError
from vaebench.provenance import collect, now, read_json, write_json
from vaebench.suite import store, units
from vaebench.suite.units import Context, Unit


@dataclass
class SuiteResult:
    """What :func:`run_suite` did.

    Attributes:
        out: the results folder.
        status: ``complete``, ``interrupted`` or ``failed`` (some units raised).
        total: units in the plan.
        skipped: units already finished before this invocation (resume).
        done: units finished by this invocation.
        failed: 'kind/unit' -> error message, for units that raised.
        wall_time_s: seconds this invocation took.
    """

    out: Path
    status: str = "running"
    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0


def default_out(config: SuiteConfig, root: str | Path = "results") -> Path:
    """``results/<timestamp>-<name>``."""
    return Path(root) / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{config.name}"


def saved_config(out: str | Path) -> SuiteConfig:
    """The configuration a results folder was run with (from its run.json)."""
    path = Path(out) / "run.json"
    if not path.is_file():
        raise VaebenchError(f"{str(out)!r} has no run.json: nothing to resume or report there")
    try:
        return from_dict(read_json(path)["config"])
    except (KeyError, ValueError) as err:
        raise VaebenchError(f"{path}: not a vaebench run.json ({err})") from None


def check_resume(out: Path, config: SuiteConfig, resume: bool) -> None:
    """Refuse to mix two runs in one folder; on resume, require the same configuration."""
    if not (out / "run.json").is_file():
        if resume:
            raise VaebenchError(
                f"--resume: {str(out)!r} holds no run to resume (no run.json); drop --resume to start one"
            )
        if out.is_dir() and any(out.iterdir()):
            raise VaebenchError(f"{str(out)!r} exists and is not empty; choose another --out")
        return
    if not resume:
        raise VaebenchError(
            f"{str(out)!r} already holds a run; pass --resume to continue it, or choose another --out"
        )
    saved = saved_config(out)
    diffs = differences(saved, config)
    if diffs:
        raise VaebenchError(
            f"--resume: the configuration differs from the one saved in {out / 'run.json'}: "
            + "; ".join(diffs)
            + " (resume with the same options, or pass only --resume --out to reuse the saved ones)"
        )


def run_suite(
    config: SuiteConfig,
    out: str | Path,
    *,
    resume: bool = False,
    notes: list[str] | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    argv: list[str] | None = None,
    report: bool = True,
) -> SuiteResult:
    """Run (or resume) the suite described by ``config`` into the folder ``out``.

    Args:
        config: a validated configuration (:func:`vaebench.config.resolve`).
        out: results folder (created).
        resume: continue a run in ``out``, skipping its finished units.
        notes: remarks to keep in run.json and the report (e.g. skipped combinations).
        progress: show the progress bar (None: only when stderr is a terminal).
        log: where one line per finished unit goes (default: stderr); pass ``lambda s: None`` to silence.
        argv: the command line for run.json (default: sys.argv).
        report: write summary.csv, report.md and the plots at the end.

    Returns:
        A :class:`SuiteResult`; status ``failed`` when some units raised (their errors are in ``failed``).

    Raises:
        VaebenchError: the folder holds another run, or a resumed configuration differs; missing data.
        KeyboardInterrupt: after saving what was finished (run.json says ``interrupted``).
    """
    out = Path(out)
    check_resume(out, config, resume)
    ctx = Context(config, out)
    ctx.dataset  # noqa: B018 -- load now: missing data is an error before anything is written
    plan = units.plan(config, test_points=len(ctx.dataset.test))
    todo = [u for u in plan if not (out / u.path).is_file()]
    result = SuiteResult(out=out, total=len(plan), skipped=len(plan) - len(todo))
    history = read_json(out / "run.json") if resume else {}
    first_start = history.get("started") or now()
    invocations = [*history.get("invocations", []), {"started": now(), "command": _command(argv)}]
    notes = list(dict.fromkeys([*history.get("notes", []), *(notes or [])]))

    def write_run_json(status: str, ended: str | None = None) -> None:
        data = collect(
            to_dict(config), device=config.device, started=first_start, ended=ended, status=status,
            command=_command(argv),
            units={"total": result.total, "finished": _finished(out, plan), "failed": len(result.failed)},
            notes=notes,
        )  # fmt: skip
        invocations[-1].update(ended=ended, status=status)
        data["invocations"] = invocations
        data["failed"] = {**store.failures(out), **result.failed}
        write_json(out / "run.json", data)

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with _threads(config.threads):
        write_run_json("running")
        bar = _bar(plan, todo, progress)

        def say(line: str) -> None:
            if log is not None:
                log(line)
            elif getattr(bar, "disable", True):
                print(line, file=sys.stderr, flush=True)
            else:
                bar.write(line, file=sys.stderr)

        if result.skipped:
            say(f"resuming {out}: {result.skipped} of {result.total} units already finished")
        try:
            for unit in todo:
                bar.set_postfix_str(unit.label, refresh=True)
                tick = time.perf_counter()
                try:
                    units.save(unit, units.execute(unit, ctx), out)
                    remark = _remark(unit, out)
                except Exception as err:  # a unit's bug or numerical failure must not lose the others
                    why = f"{type(err).__name__}: {err}"
                    result.failed[f"{unit.kind}/{unit.name}"] = why
                    store.write_text(out / unit.error_path, f"{why}\n\n{traceback.format_exc()}")
                    remark = f"FAILED ({why})"
                result.done += 1
                bar.update(unit.weight)
                seconds = time.perf_counter() - tick
                say(
                    f"[{result.skipped + result.done}/{result.total}] {unit.label}: {seconds:.1f}s {remark}".rstrip()
                )
            result.status = "failed" if result.failed else "complete"
        except KeyboardInterrupt:
            result.status = "interrupted"
            raise
        finally:
            bar.close()
            result.wall_time_s = time.perf_counter() - start
            result.failed = {**store.failures(out), **result.failed}
            status = result.status if result.status != "running" else "failed"
            try:
                store.combine(out)
                write_run_json(status, now())
                if report:
                    from vaebench.report.writer import write_report

                    write_report(out)
            except KeyboardInterrupt:
                pass
    return result


def _remark(unit: Unit, out: Path) -> str:
    """A note on a finished unit worth a glance (a diverged run)."""
    if unit.kind != "convergence":
        return ""
    frame = store.read_csv(out / unit.path)
    if "diverged" in frame and frame["diverged"].astype(bool).any():
        steps = frame["step"].max() if "step" in frame else "?"
        return f"(diverged after step {steps})"
    return ""


def _finished(out: Path, plan: list[Unit]) -> int:
    return sum((out / u.path).is_file() for u in plan)


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


class _Quiet:
    def update(self, n: float = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(plan: list[Unit], todo: list[Unit], progress: bool | None):
    """One bar over the whole suite, advanced by unit weights, so its ETA covers every remaining unit."""
    if progress is False:
        return _Quiet()
    from tqdm.auto import tqdm

    total = units.total_weight(plan)
    bar = tqdm(
        total=total,
        initial=total - units.total_weight(todo),
        file=sys.stderr,
        disable=None if progress is None else not progress,
        bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
        desc="vaebench",
        dynamic_ncols=True,
    )
    return bar
