"""``python -m vaebench report DIR``: rebuild a folder's combined tables from its verified units only, then its
report (the caller's ``report``, e.g. :func:`vaebench.report.writer.write_report`; the suite does not import it).

A folder written by a run has ``units/``: every unit is checked against its manifest
(:mod:`vaebench.suite.integrity`). A damaged unit, or a unit missing from a run that run.json says completed,
stops the rebuild before anything is written, so the published report is never replaced by one with other
numbers; ``--resume`` is the repair. Units that are merely not finished (an interrupted run) are left out of a
partial report that names them, and stray files are named and ignored. A folder without ``units/`` (the
committed reference folder keeps only the combined CSVs) is reported from its CSVs, which are checked to be
vaebench tables.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from vaebench.analysis import folder
from vaebench.config import config_hash
from vaebench.errors import VaebenchError
from vaebench.provenance import load_run
from vaebench.suite import integrity, ownership, store
from vaebench.suite.integrity import DAMAGED, MISSING, UNFINISHED, VERIFIED
from vaebench.suite.units import plan, run_problem, shared_settings

KILLED = "killed"
"""The status a report gives a run whose run.json still says ``running`` while nobody holds its folder."""


def rebuild(out: str | Path, report: Callable[..., Path], warn: Callable[[str], None] | None = None) -> Path:
    """Rebuild ``out``'s combined CSVs (from verified units), then call ``report``; return what it returns.

    ``report(out, units=..., status=...)`` is called while the folder is held, with what the check found
    (``units``: total, finished, left out; None for a folder without ``units/``) and ``status`` (`KILLED` for
    a run whose process died, else None).

    Raises:
        VaebenchError: not a results folder, in use by another process, damaged units (named), or CSVs and
            run.json that are not vaebench's.
        StorageError: the folder cannot be written.
    """
    warn = warn or (lambda line: print(f"vaebench: {line}", file=sys.stderr, flush=True))
    out = Path(out)
    if not out.is_dir():
        raise VaebenchError(f"{str(out)!r} is not a folder")
    if not any((out / name).is_file() for name in store.COMBINED.values()) and not (out / "units").is_dir():
        raise VaebenchError(
            f"{str(out)!r} holds no results (no units/ and no variance/convergence/throughput.csv)"
        )
    with ownership.hold(out, create=False):
        units = _verified_units(out, warn) if (out / "units").is_dir() else None
        # we hold the lock, so no run is writing here: a run.json that says "running" outlived its process
        killed = load_run(out).get("status") == "running"
        return report(out, units=units, status=KILLED if killed else None)


def _verified_units(out: Path, warn: Callable[[str], None]) -> dict:
    """Check the units, refuse a damaged folder, rebuild the combined CSVs; the counts for the report."""
    config = ownership.saved_config(out)
    units = plan(config)
    state = integrity.verify(out, units, config_hash(config, load_run(out).get("inputs")))
    damaged = state.reasons(DAMAGED)
    left_out = state.reasons(MISSING, UNFINISHED)
    if load_run(out).get("status") == "complete":
        damaged |= {k: f"{why}, though run.json says the run completed" for k, why in left_out.items()}
    if damaged:
        raise VaebenchError(
            f"{len(damaged)} unit(s) of {out} are damaged, so the report was left as it was: "
            f"{integrity.describe(damaged)}; re-run them with: python -m vaebench run --resume --out {out}"
        )
    if not state.has_manifests and state.keys(UNFINISHED):
        raise VaebenchError(
            f"{out / 'units'} holds unit files without manifests (from an older vaebench, or a run stopped "
            f"before its first unit was recorded), which cannot be verified; redo them with: "
            f"python -m vaebench run --resume --out {out}"
        )
    if state.strays:
        names = ", ".join(str(p.relative_to(out)) for p in state.strays[:6])
        more = f" and {len(state.strays) - 6} more" if len(state.strays) > 6 else ""
        warn(
            f"ignoring {len(state.strays)} file(s) under units/ that belong to no unit of this run: {names}{more}"
        )
    failed = integrity.failures(out, units, state)
    left_out = {k: f"failed: {failed[k]}" if k in failed else why for k, why in left_out.items()}
    tables = store.combine(out, state.frames(units), shared_settings(config), run_problem(config))
    if config.problems:
        store.write_across(out, tables)
    return {"total": len(units), "finished": len(state.keys(VERIFIED)), "left_out": left_out}


def verified_tables(out: str | Path) -> tuple[dict, dict[str, pd.DataFrame]]:
    """A folder's run.json and tables, read (never written) through the same checks as the report's rebuild:
    with ``units/``, the verified units' rows (a damaged unit refuses, naming it); without, the combined CSVs
    (:func:`vaebench.analysis.folder.load`). For ``compare``.

    Raises:
        VaebenchError: not a results folder, damaged units, or tables that are not vaebench's.
    """
    out = Path(out)
    if not out.is_dir():
        raise VaebenchError(f"{str(out)!r} is not a folder")
    if not (out / "units").is_dir():
        if not any((out / name).is_file() for name in store.COMBINED.values()):
            raise VaebenchError(
                f"{str(out)!r} holds no results (no units/ and no variance/convergence/throughput.csv)"
            )
        return folder.load(out)
    config = ownership.saved_config(out)
    units = plan(config)
    run = load_run(out)
    state = integrity.verify(out, units, config_hash(config, run.get("inputs")))
    damaged = state.reasons(DAMAGED)
    if damaged:
        raise VaebenchError(
            f"{len(damaged)} unit(s) of {out} are damaged, so it cannot be compared: {integrity.describe(damaged)}; "
            f"re-run them with: python -m vaebench run --resume --out {out}"
        )
    parts = state.frames(units)
    tables = {}
    for kind in folder.KINDS:
        rows = store.with_shared(
            kind, [p for p in parts.get(kind, []) if not p.empty], shared_settings(config)
        )
        frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
        frame = store.with_problem(kind, frame, run_problem(config))
        tables[kind] = folder.checked(frame, kind, out / "units" / kind)
    return run, tables
