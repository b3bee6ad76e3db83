"""The report of a results folder: its analysis tables, ``verdicts.json``, the plots, and ``report.md``.

This module reads the folder (:func:`load`), has :mod:`vaebench.analysis` turn the measures' tables into the
analysis files (``summary.csv``, ``budget.csv``, ``variance_by_checkpoint.csv``, ``verdicts.json``,
``claims.csv``, ``scaling.csv``), draws the plots and writes report.md (:mod:`vaebench.report.document`) from
those files' contents only: every number the report shows is in one of them. It never trains, samples or
measures, and it does not import the suite.

Everything is rebuilt from the folder's CSVs and run.json, so ``python -m vaebench report DIR`` reproduces it,
and a partial run (interrupted, or with failed units) gets a partial report that says so.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vaebench import faults, files
from vaebench.analysis import budget, claims, folder, selection, summaries, verdicts
from vaebench.config import CHECKPOINTS, SuiteConfig, from_dict
from vaebench.errors import VaebenchError
from vaebench.measures import schema
from vaebench.report import plots, scaling
from vaebench.report.document import render, resolved_likelihood
from vaebench.report.plots import FIGURES

_FIX = folder.FIX


def write_report(
    out: str | Path, level: float = 0.95, *, units: dict | None = None, status: str | None = None
) -> Path:
    """Write summary.csv, budget.csv, the PNG plots and report.md into ``out`` from its CSVs; return report.md's path.

    Args:
        out: the results folder.
        level: confidence level of the intervals.
        units: what the folder's check found, overriding run.json's counts: ``total``, ``finished`` and
            ``left_out`` ('kind/unit' -> why its rows are not in the tables).
        status: overrides run.json's status (a killed run's run.json still says ``running``).

    Every file is written atomically, report.md last, so an interrupted report leaves each file whole (old or
    new) and ``python -m vaebench report`` rebuilds it. ``verdicts.json`` holds the bottom line's verdicts
    (:func:`vaebench.analysis.verdicts.records`).
    """
    out = Path(out)
    run, frames = folder.load(out)
    try:
        config = from_dict(run["config"]) if isinstance(run.get("config"), dict) else SuiteConfig()
    except VaebenchError as err:
        raise VaebenchError(f"{out / 'run.json'}: {err}") from None
    if units is not None:
        run = {**run, "units": {**run.get("units", {}), **units}}
    if status is not None:
        run = {**run, "status": status}
    checkpoint = _summary_checkpoint(frames["variance"], config)
    grid = frames["convergence"]  # with a step-size grid, every rate's runs; the readers below get the chosen
    frames = {**frames, "convergence": selection.tuned_rows(grid)}
    summary = summaries.summary_table(
        frames["variance"],
        grid,
        _estimator_rows(frames["throughput"]),
        checkpoint=checkpoint,
        batch_size=config.throughput.batch_size,
        schedule=config.train.lr_schedule,
    )
    files.write_csv(out / "summary.csv", summary)
    at_budget = budget.budget(frames["convergence"], frames["throughput"], level=level)
    if not frames["convergence"].empty:
        files.write_csv(out / "budget.csv", at_budget)
    by_checkpoint = _variance_by_checkpoint(frames["variance"], config)
    if not by_checkpoint.empty:
        files.write_csv(out / "variance_by_checkpoint.csv", by_checkpoint)
    faults.point("report")
    found = verdicts.verdicts(
        summary, frames["convergence"], frames["throughput"], checkpoint=checkpoint, level=level
    )
    document = verdicts_json(found, run, level)
    tuning = None
    if grid is not frames["convergence"]:  # the verdicts at the shared rate, beside the tuned ones
        shared = selection.shared_rows(grid, config.train.lr)
        at_shared = summaries.summary_table(
            frames["variance"], shared, _estimator_rows(frames["throughput"]), checkpoint=checkpoint,
            batch_size=config.throughput.batch_size, schedule=config.train.lr_schedule,
        )  # fmt: skip
        found_shared = verdicts.verdicts(
            at_shared, shared, frames["throughput"], checkpoint=checkpoint, level=level
        )
        document["verdicts_at_shared_lr"] = verdicts.records(found_shared)
        tuning = document["changed_by_tuning"] = verdicts.changes(
            document["verdicts_at_shared_lr"], document["verdicts"]
        )
    files.write_json(out / "verdicts.json", document)
    read = folder.Results(
        out, run, frames["variance"], frames["convergence"], frames["throughput"], summary=summary
    )
    figures = plots.write_figures(read, out)
    laws, scaling_plots = scaling.write_scaling(out, frames["variance"], checkpoint, frames["laws"])
    landing = _read_landing(out)
    evidence = claims.Evidence(
        laws, landing, frames["quadrature"], summary, frames["convergence"], data=config.data.name,
        likelihood=resolved_likelihood(config), variance=frames["variance"],
    )  # fmt: skip
    claimed = claims.claims_table(evidence)
    files.write_csv(out / "claims.csv", claimed)
    text = render(
        run, config, summary, frames, figures, checkpoint=checkpoint, records=document["verdicts"],
        claims=claimed, laws=laws, scaling_plots=scaling_plots, tuning=tuning,
        written=[p.name for p in out.iterdir() if p.is_file()],
    )  # fmt: skip
    path = out / "report.md"
    files.write_text(path, text)
    return path


def verdicts_json(found: list, run: dict, level: float) -> dict:
    """The content of verdicts.json: the verdicts as plain data, with what they were computed from."""
    return {
        "level": level,
        "started": run.get("started"),
        "status": run.get("status"),
        "questions": list(verdicts.QUESTIONS),
        "verdicts": verdicts.records(found),
    }


def _read_landing(out: Path) -> pd.DataFrame:
    """The STL check's rows, as its unit wrote them (:mod:`vaebench.checks.landing`); empty when not run."""
    path = out / "stl_landing.csv"
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, OSError) as err:
        raise VaebenchError(f"{path} is not a readable CSV ({type(err).__name__}); {_FIX}") from None


def _estimator_rows(throughput: pd.DataFrame) -> pd.DataFrame:
    """The throughput rows of estimators (not the hand-written pytorch/examples step)."""
    if throughput.empty:
        return throughput
    return throughput[throughput["estimator"] != schema.HANDWRITTEN]


def _variance_by_checkpoint(variance: pd.DataFrame, config: SuiteConfig) -> pd.DataFrame:
    """:func:`vaebench.analysis.summaries.variance_by_checkpoint` (empty with fewer than two checkpoints: the
    comparison table has the one)."""
    if variance.empty or variance.loc[variance["status"] == "ok", "checkpoint"].nunique() < 2:
        return pd.DataFrame()
    return summaries.variance_by_checkpoint(variance, checkpoints=config.variance.checkpoints)


def _summary_checkpoint(variance: pd.DataFrame, config: SuiteConfig) -> str | None:
    if variance.empty:
        return None
    measured = set(variance.loc[variance["status"] == "ok", "checkpoint"])
    wanted = config.variance.summary_checkpoint
    if wanted in measured:
        return wanted
    ordered = [c for c in CHECKPOINTS if c in measured]  # an interrupted run: the latest one measured
    return ordered[-1] if ordered else None


__all__ = ["FIGURES", "verdicts_json", "write_report"]
