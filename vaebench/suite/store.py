"""The results folder on disk: one file per finished unit of work, and the combined CSVs.

Layout of a results folder::

    run.json                          provenance (vaebench.provenance), rewritten at start, end and interrupt
    .lock                             held (fcntl.flock) by the process writing the folder (suite.ownership)
    units/<kind>/<unit>.csv           one finished unit of work (tidy rows)
    units/<kind>/<unit>.json          its manifest: unit, configuration hash, bytes, rows, sha256 (suite.integrity)
    units/<kind>/<unit>.error         a unit that raised: its error, retried by --resume
    units/anchor/checkpoints.pt       the anchor run's checkpoints (for the variance units), + .json
    units/<problem>/<kind>/<unit>.*   the same, per problem, in a run across problems
    variance.csv convergence.csv throughput.csv stl_landing.csv laws.csv quadrature.csv merit.csv noise.csv
                                      the verified units of a kind, concatenated
    across.csv transfer.csv           a run across problems: the conclusions across them (:func:`write_across`)
    summary.csv verdicts.json scaling.csv claims.csv report.md *.png   the report (vaebench.report.writer)

Every write is atomic (:mod:`vaebench.files`): a crash, Ctrl-C or a full disk leaves either the old file or
the new one, never half a file. A unit is finished when its manifest exists and matches its
data file (the manifest is written second); :mod:`vaebench.suite.integrity` checks that.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vaebench import faults, files
from vaebench.analysis.across import across, figure_scores, leaders, transfer, variance_time_scores
from vaebench.estimators import Setting
from vaebench.suite import integrity
from vaebench.suite.units import ANCHOR, Unit, shared

COMBINED = {
    "variance": "variance.csv",
    "convergence": "convergence.csv",
    "throughput": "throughput.csv",
    "landing": "stl_landing.csv",
    "laws": "laws.csv",
    "quadrature": "quadrature.csv",
    "merit": "merit.csv",
    "noise": "noise.csv",
}
"""Kinds of units whose rows are combined into one CSV each, and its file name."""

KINDS = tuple(COMBINED)

PROBLEM_KINDS = ("variance", "convergence", "throughput", "merit", "noise")
"""Kinds whose rows measure the run's problem (the checks' units measure models of their own, which their
``checkpoint`` or ``f`` column names)."""


def temporary_files(out: str | Path) -> list[Path]:
    """Temporary files that a write stopped by a kill left behind (``.<name>.<pid>.tmp``)."""
    out = Path(out)
    return sorted([*out.glob(".*.tmp"), *(out / "units").rglob(".*.tmp")])


def save(unit: Unit, result: pd.DataFrame | dict, out: Path, digest: str, inputs: dict | None = None) -> str:
    """Write a finished unit atomically: its data file, then its manifest; clear any earlier failure record.

    Args:
        unit: the unit.
        result: what :func:`vaebench.suite.execute.execute` returned.
        out: the results folder.
        digest: the configuration's hash (:func:`vaebench.config.config_hash`).
        inputs: what the result depends on ({"anchor": sha256} for a variance unit: the anchor run).

    Returns:
        The SHA-256 of the data file.
    """
    if unit.kind == ANCHOR:
        buffer = io.BytesIO()
        torch.save(result, buffer)
        payload, rows = buffer.getvalue(), len(result["checkpoints"])
    else:
        frame = _with_keys(unit, result)
        payload, rows = frame.to_csv(index=False).encode(), len(frame)
    files.write_bytes(out / unit.path, payload)
    faults.point("saved")
    record = integrity.manifest(unit, payload, rows, digest, inputs)
    files.write_text(out / integrity.manifest_path(unit), record)
    (out / unit.error_path).unlink(missing_ok=True)
    return json.loads(record)["sha256"]


def with_shared(
    kind: str, parts: list[pd.DataFrame], shared: dict[Setting, Setting] | None
) -> list[pd.DataFrame]:
    """A kind's non-empty unit frames, and for the convergence kind the rows of each shared setting: its
    stand-in's, relabelled (see :func:`combine`)."""
    if kind != "convergence" or not shared or not parts:
        return parts
    frame = pd.concat(parts, ignore_index=True)
    sampler = frame["sampler"] if "sampler" in frame else pd.Series("iid", index=frame.index)
    rows = []
    for setting, target in shared.items():
        mine = (frame["estimator"] == target.estimator) & (frame["num_samples"] == target.num_samples)
        copy = frame[mine & (sampler == target.sampler)].copy()
        if copy.empty:
            continue
        copy["estimator"], copy["objective"] = setting.estimator, setting.kind.objective
        copy["trained_as"] = target.estimator
        rows.append(copy)
    return parts + rows


def _with_keys(unit: Unit, frame: pd.DataFrame) -> pd.DataFrame:
    """Make sure every row carries the unit's key columns (estimator, sampler, num_samples, seed)."""
    frame = frame.copy()
    for column, value in reversed(unit.keys.items()):
        if column not in frame:
            frame.insert(0, column, value)
    return frame


def with_problem(kind: str, frame: pd.DataFrame, problem: str) -> pd.DataFrame:
    """``frame`` with its ``problem`` column first, ``problem`` where its units held none (`PROBLEM_KINDS`)."""
    if frame.empty or kind not in PROBLEM_KINDS:
        return frame
    frame = frame if "problem" in frame else frame.assign(problem=problem)
    return frame[["problem", *(c for c in frame.columns if c != "problem")]]


def combine(
    out: str | Path,
    frames: dict[str, list[pd.DataFrame]],
    shared: dict[Setting, Setting] | None = None,
    problem: str = "",
) -> dict[str, pd.DataFrame]:
    """Rewrite each kind's combined CSV from the given verified units' frames and return every kind's frame.

    Every row of the run's measures (`PROBLEM_KINDS`) carries its ``problem``, the first column: a run across
    problems' units hold their own; an ordinary run's rows get ``problem``
    (:func:`vaebench.suite.units.run_problem`).

    A kind without frames gets no file (a stale one is removed): the combined files never hold rows that no
    verified unit holds. ``shared`` (:func:`vaebench.suite.units.shared_settings`): each such setting gets a
    copy of its stand-in's convergence rows under its own name, ``trained_as`` naming whose runs they are.
    """
    out = Path(out)
    combined = {}
    for kind, name in COMBINED.items():
        parts = with_shared(kind, [p for p in frames.get(kind, []) if not p.empty], shared)
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        frame = with_problem(kind, frame, problem)
        if parts:
            files.write_csv(out / name, frame)
        else:
            (out / name).unlink(missing_ok=True)
        combined[kind] = frame
    return combined


def write_across(out: str | Path, combined: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """A run across problems: ``merit.csv`` with each shared setting's rows (its twin's, relabelled, per
    problem), ``across.csv`` and ``transfer.csv`` (:mod:`vaebench.analysis.across`) from the combined tables.

    Returns:
        The tables rewritten or written, by file stem: ``merit``, ``across``, ``transfer``.
    """
    out = Path(out)
    variance, merit = combined["variance"], combined["merit"]
    if variance.empty or merit.empty:
        return {}
    twins = []
    for problem in merit["problem"].unique():
        measured = variance[variance["problem"] == problem]
        pairs = zip(measured["estimator"], measured["num_samples"], strict=True)
        grid = list(
            dict.fromkeys(Setting(e, int(k)) for e, k in pairs)
        )  # in the table's order, not a set's: the
        # twins' rows come out in the same order from every process
        for s, twin in shared(grid).items():
            rows = merit[(merit["problem"] == problem) & (merit["estimator"] == twin.estimator)
                         & (merit["num_samples"] == twin.num_samples)]  # fmt: skip
            twins.append(rows.assign(estimator=s.estimator))
    merit = pd.concat([merit, *twins], ignore_index=True)
    tables = {"merit": merit}
    # a variance of exactly 0 (a control variate that removes all Monte Carlo noise, where log p is quadratic)
    # is floored at the smallest positive double: its log-ratio is then very large, not infinite
    value = variance["work_normalized_var"].clip(lower=np.finfo(float).tiny)
    scores = variance_time_scores(variance.assign(value=value))
    table = across(scores).assign(score="variance_time")
    ranked = merit[merit["ranks"].astype(bool) & merit["value"].notna()]
    if ranked["problem"].nunique() >= 1:
        by_figure = across(figure_scores(ranked), profiles=False).assign(score="ranking_figure")
        table = pd.concat([table, by_figure], ignore_index=True)
    tables["across"] = table
    tables["transfer"] = transfer(scores, leaders(table[table["score"] == "variance_time"], 3))
    for stem, frame in tables.items():
        if not frame.empty:
            files.write_csv(out / f"{stem}.csv", frame)
    return tables
