"""The phrases the reading is made of: how a setting is named, a number with its interval, a ratio, whether
two intervals overlap, and the facts of one summary row (diverged runs, SNR at the noise floor).

Every function takes rows of the comparison table completed to :data:`vaebench.measures.schema.SUMMARY`
(every declared column present, NaN where not measured). Two intervals [a⁻, a⁺] and [b⁻, b⁺] *overlap* when
a⁻ ≤ b⁺ and b⁻ ≤ a⁺; the reading says "the intervals do not overlap" only then, and never calls a difference
separated on overlapping 95% intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.analysis.settings import bias_note, truth
from vaebench.estimators import ESTIMATORS
from vaebench.report.formatting import fmt_interval, fmt_number
from vaebench.report.settings import setting_label


def finite_rows_at(summary: pd.DataFrame, k, metric: str) -> pd.DataFrame:
    """The rows at K = ``k`` whose ``metric`` was measured (finite)."""
    return summary[(summary["num_samples"] == k) & np.isfinite(summary[metric])]


def setting_name(row: pd.Series) -> str:
    """The setting's label as inline code, e.g. stl (rqmc) in backticks."""
    return f"`{setting_label(row['estimator'], row['sampler'])}`"


def setting_key(row: pd.Series) -> tuple[str, str, int]:
    """(estimator, sampler, K) of a summary row: the one key order (:data:`vaebench.analysis.settings.KEYS`)."""
    return row["estimator"], row["sampler"], int(row["num_samples"])


def with_interval(row: pd.Series, metric: str, symmetric: bool = False) -> str:
    return fmt_interval(row[metric], row[f"{metric}_low"], row[f"{metric}_high"], symmetric=symmetric)


def overlap(a: pd.Series, b: pd.Series, metric: str) -> bool | None:
    """Whether two rows' intervals of ``metric`` overlap (None when an interval is missing)."""
    lo_a, hi_a, lo_b, hi_b = (r[f"{metric}_{s}"] for r in (a, b) for s in ("low", "high"))
    if not all(v is not None and np.isfinite(v) for v in (lo_a, hi_a, lo_b, hi_b)):
        return None
    return bool(lo_a <= hi_b and lo_b <= hi_a)


def times(ratio: float) -> str:
    """``ratio`` as "2.5×" ("–" when not finite)."""
    return f"{fmt_number(ratio, 2)}×" if np.isfinite(ratio) else "–"


def ratio_text(value: float, low: float, high: float) -> str:
    """``0.60× [0.37, 0.95]``: a ratio with its interval (no brackets without one)."""
    if not np.isfinite(value):
        return "–"
    interval = (
        f" [{fmt_number(low, 2)}, {fmt_number(high, 2)}]" if np.isfinite(low) and np.isfinite(high) else ""
    )
    return f"{fmt_number(value, 2)}×{interval}"


def biased(row) -> bool:
    """Whether the row's estimator declares a bias at its K (``iwae-stl`` at K > 1)."""
    return bool(bias_note(row["estimator"], row["num_samples"]))


def separation(a: pd.Series, b: pd.Series, metric: str) -> str:
    """' (the intervals overlap)', ' (the intervals do not overlap)', or '' when an interval is missing."""
    overlaps = overlap(a, b, metric)
    if overlaps is None:
        return ""
    return " (the intervals overlap)" if overlaps else " (the intervals do not overlap)"


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def setting_names(rows: list, limit: int = 4, k: bool | None = None) -> str:
    """Estimator names (with K when the rows mix K values, or when ``k``), at most ``limit`` then a count.

    Rows are Series or the named tuples of ``DataFrame.itertuples``.
    """
    get = [r if isinstance(r, pd.Series) else r._asdict() for r in rows]
    with_k = k if k is not None else len({int(r["num_samples"]) for r in get}) > 1
    names = [
        f"`{setting_label(r['estimator'], r['sampler'])}`" + (f" K={int(r['num_samples'])}" if with_k else "")
        for r in get
    ]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def power_of_ten(value: float) -> str:
    """1e+06 as "1e6"."""
    return f"{value:.0e}".replace("e+0", "e").replace("e+", "e")


def at_noise_floor(row) -> bool:
    """Whether the row's SNR interval reaches the noise floor (False when unknown)."""
    return truth(row["snr_at_floor"]) is True


def diverged_runs(row: pd.Series) -> int:
    """How many of the setting's training runs diverged (0 when none or not trained)."""
    value = row["diverged"]
    return int(value) if value is not None and np.isfinite(value) else 0


def diverged_note(row: pd.Series) -> str:
    """'; but 1 of 3 of its runs diverged ...' for a setting with diverged runs, else ''."""
    d = diverged_runs(row)
    if not d:
        return ""
    return f" (but {d} of {int(row['runs'])} of its runs diverged and are left out of this mean)"


def is_score_function(name: str) -> bool:
    """Whether the registry declares ``name`` a score-function estimator (``family``)."""
    cls = ESTIMATORS.get(name)
    return cls is not None and cls.family == "score-function"
