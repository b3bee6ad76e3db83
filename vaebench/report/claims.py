"""The report's claims section: each published claim with its source, the figure measured, and the verdict.

The rows are :func:`vaebench.analysis.claims.claims_table` (also written as ``claims.csv``), which decides
every verdict; this module only puts them into a table and one sentence of counts (the render half of the
``claims`` pair). A claim the run did not measure says which preset does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.analysis.claims import NOT_MEASURED
from vaebench.report.formatting import fmt_interval, fmt_number, markdown


def _measured(row: pd.Series) -> str:
    value = row["measured"]
    if not np.isfinite(value):
        return "–"
    text = fmt_interval(value, row["measured_low"], row["measured_high"])
    return f"{row['figure']}: {text}"


def _theory(row: pd.Series) -> str:
    if not np.isfinite(row["theory"]):
        return "–"
    tol = row["tolerance"]
    return fmt_number(row["theory"]) + (f" ± {fmt_number(tol)}" if np.isfinite(tol) and tol else "")


def section(claims: pd.DataFrame) -> list[str]:
    """The markdown lines (empty when the run measured none of the claims)."""
    if claims.empty or (claims["verdict"] == NOT_MEASURED).all():
        return []
    counts = claims["verdict"].value_counts()
    measured = len(claims) - int(counts.get(NOT_MEASURED, 0))
    told = ", ".join(f"{n} {word}" for word, n in counts.items() if word != NOT_MEASURED)
    columns = [
        ("claim", lambda r: r["claim"]),
        ("source", lambda r: r["source"]),
        ("where", lambda r: r["where"] if isinstance(r["where"], str) else "–"),
        ("measured", _measured),
        ("theory / published", _theory),
        ("verdict", lambda r: f"**{r['verdict']}**"),
        ("detail", lambda r: r["detail"] if isinstance(r["detail"], str) else ""),
    ]
    return [
        "## Published claims",
        "",
        f"This run measured {measured} of the {len(claims)} claims the suite reproduces ({told}). A verdict "
        "follows the measured interval: *agrees* when it meets the theory's band (or the published direction), "
        "*fails* / *does not agree* when it lies wholly outside, *inconclusive* when it cannot tell, *not "
        "testable here* when the condition the claim needs does not hold at the measured point. A ranking's "
        "row shows the link that decides its verdict, every link in its detail, at this run's budget. The "
        "rows are in `claims.csv`.",
        "",
        markdown(claims, columns),
        "",
    ]
