"""The comparison table as markdown: the columns a reader compares settings by, each with its interval.

The table itself is analysis (:func:`vaebench.analysis.summaries.summary_table`, written whole as
``summary.csv``); this module only picks its columns and renders them. What each column means, and the marks
(†: biased at this K; ‡: trained as another setting), is the README's "Reading the report",
not repeated in every report. Number formatting and the markdown primitives live in
:mod:`vaebench.report.formatting`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.measures.dictionary import header
from vaebench.measures.schema import SUMMARY, SUMMARY_FIGURES, complete
from vaebench.report.formatting import fmt_number, interval_cell, markdown
from vaebench.report.settings import setting_columns

SUMMARY_COLUMNS: list[tuple[str, str, bool]] = [
    # (column of summary.csv, its header from the data dictionary, symmetric interval)
    (column, header(column), symmetric)
    for column, symmetric in (
        ("trace_var", False),
        ("test_log_likelihood", True),
        ("compile_s", False),
        ("step_ms", False),
        ("step_ratio", False),
        ("work_normalized_var", False),
        ("compute_ratio", False),
    )
]
"""The comparison table's columns and their headers in report.md (:func:`vaebench.measures.dictionary.header`):
the figures the bottom line's questions rank. The rest of ``summary.csv`` (the SNR and its noise floor, the
test ELBO and its rise, the objective, the training seconds, every interval bound) is read there."""


def summary_markdown(summary: pd.DataFrame) -> str:
    """The comparison table as markdown (only the columns that were measured); "" for a run of checks only
    (the scaling preset), which compares no settings."""
    if summary.empty:
        return ""
    summary = complete(summary, SUMMARY)  # columns not measured are NaN: left out below
    cols = setting_columns(summary)
    for column, head, symmetric in shown_columns(summary):
        cell = interval_cell(column, symmetric) if column in SUMMARY_FIGURES else _number_cell(column)
        cols.append((head, cell))
    if summary["diverged"].fillna(0).any():
        cols.append(
            (
                "diverged",
                lambda r: f"{int(r['diverged'])}/{int(r['runs'])}" if np.isfinite(r["runs"]) else "–",
            )
        )
    return markdown(summary, cols)


def _number_cell(column: str):
    return lambda row: fmt_number(row[column])


def shown_columns(summary: pd.DataFrame) -> list[tuple[str, str, bool]]:
    """The columns of `SUMMARY_COLUMNS` the table shows: those measured, the compile seconds only where a run
    compiled, and the absolute step time and the work-normalised variance only where no interleaved ratio
    replaces them (results folders from before interleaved timing)."""
    shown = [c for c in SUMMARY_COLUMNS if summary[c[0]].notna().any()]
    if not (summary["compile_s"].fillna(0) > 0).any():  # eager runs: a column of zeros says nothing
        shown = [c for c in shown if c[0] != "compile_s"]
    if summary["step_ratio"].notna().any():
        shown = [c for c in shown if c[0] != "step_ms"]
    if summary["compute_ratio"].notna().any():
        shown = [c for c in shown if c[0] != "work_normalized_var"]
    return shown
