"""The report's claims section: the published claims the run measured, each with its source, the figure
measured and the verdict, and one line on the others.

The rows are :func:`vaebench.analysis.claims.claims_table` (also written as ``claims.csv``), which decides
every verdict; this module only puts them into a table (the render half of the ``claims`` pair). Every
report that states claims (the one of a run, the one across problems) takes its section from here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.analysis.claims import NOT_MEASURED
from vaebench.report.formatting import fmt_interval, fmt_number, markdown

COLUMNS = ("claim", "source", "where", "measured", "theory / published", "verdict")
"""The table's columns (``claims.csv`` has each row's ``detail`` too)."""


def _measured(row: pd.Series) -> str:
    if not np.isfinite(row["measured"]):
        return "–"
    return f"{row['figure']}: {fmt_interval(row['measured'], row['measured_low'], row['measured_high'])}"


def _theory(row: pd.Series) -> str:
    if not np.isfinite(row["theory"]):
        return "–"
    tol = row["tolerance"]
    return fmt_number(row["theory"]) + (f" ± {fmt_number(tol)}" if np.isfinite(tol) and tol else "")


CELLS = {
    "claim": lambda r: r["claim"],
    "source": lambda r: r["source"],
    "where": lambda r: r["where"] if isinstance(r["where"], str) else "–",
    "measured": _measured,
    "theory / published": _theory,
    "verdict": lambda r: f"**{r['verdict']}**",
}


def section(claims: pd.DataFrame, columns: tuple[str, ...] = COLUMNS) -> list[str]:
    """The markdown lines: the measured claims as a table of ``columns`` (of `COLUMNS`), then one line naming
    how the others are measured; empty when there are no claims."""
    if claims.empty:
        return []
    rest = claims[claims["verdict"] == NOT_MEASURED]
    measured = claims.drop(index=rest.index)
    md = ["## Published claims", ""]
    if not measured.empty:
        md += [markdown(measured, [(c, CELLS[c]) for c in columns]), ""]
    if not rest.empty:
        how = "; ".join(dict.fromkeys(rest["detail"].fillna("").astype(str)))
        which = f"The other {len(rest)} of the {len(claims)}" if len(measured) else f"All {len(claims)}"
        md += [f"{which} claims are not measured in this run: {how}.", ""]
    return md
