"""The results API: ``vaebench.load(folder)`` reads a results folder into one `Results` object.

    >>> import vaebench
    >>> res = vaebench.load("results/reference/default")
    >>> res.summary[["estimator", "num_samples", "trace_var", "final_test_elbo"]]
    >>> vaebench.header("trace_var"), vaebench.describe("trace_var").direction
    ('encoder grad variance', 'lower is better')

The folder is read through the same integrity checks as ``python -m vaebench report``
(:func:`vaebench.suite.rebuild.verified_tables`): with ``units/``, only the units whose data match their
manifests are read, and a damaged unit is an error that names it; without (a committed reference folder), the
combined CSVs are checked to be vaebench's tables. Nothing is written. The tables the report derives
(``summary.csv``, ``claims.csv``, ``budget.csv``, ``verdicts.json``, and the across-problem ``across.csv``
where a study made one) are read as the report wrote them; a folder whose report was never written has them
empty (``python -m vaebench report DIR`` writes them). Every column is described once in the data dictionary
(:mod:`vaebench.measures.dictionary`, the README's "Data dictionary"); the figures of the report are functions
of a `Results` (:mod:`vaebench.report.plots`).
"""

from __future__ import annotations

from pathlib import Path

from vaebench.analysis.folder import Results, results
from vaebench.measures.dictionary import COLUMNS, describe, header
from vaebench.suite.rebuild import verified_tables


def load(folder: str | Path) -> Results:
    """Read a results folder: its tidy tables, verdicts and provenance (see the module docstring).

    Raises:
        VaebenchError: not a results folder, damaged units (named), or files that are not vaebench's.
    """
    run, frames = verified_tables(folder)
    return results(folder, run, frames)


__all__ = ["COLUMNS", "Results", "describe", "header", "load"]
