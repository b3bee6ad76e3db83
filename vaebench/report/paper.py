"""The comparison table for a paper: LaTeX (booktabs, through pandas' Styler), markdown or CSV.

One row per setting (estimator, sampler where not every row is iid, K), one column per figure of the summary
(:data:`DEFAULT_COLUMNS`, those measured), each cell the figure with its interval: ``value [low, high]``
(``intervals="range"``), ``value ± h`` (``"pm"``: h the half-width, or ``+a/-b`` where the interval is not
symmetric to the shown precision) or the value alone (``"none"``). Numbers are rounded once, to ``digits``
significant figures (:func:`vaebench.report.formatting.fmt_number`). The headers and which way is better come
from the data dictionary (:mod:`vaebench.measures.dictionary`).

**Bold** marks, in each column and at each K, the best estimate among the unbiased settings (the direction
is the dictionary's; a setting whose estimator declares a bias at that K is never marked). It is the best
point estimate, not a test: whether it is separated from the next is the verdicts' question (``verdicts.json``,
the report's bottom line), and the LaTeX caption says so. The CSV carries the unrounded numbers.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from vaebench.analysis.folder import Results
from vaebench.analysis.settings import all_iid, bias_note, order_estimators
from vaebench.errors import VaebenchError
from vaebench.measures.dictionary import HIGHER, LOWER, describe
from vaebench.measures.schema import SUMMARY, complete
from vaebench.report.formatting import fmt_number

DEFAULT_COLUMNS = ("trace_var", "snr", "final_test_elbo", "test_log_likelihood", "step_ms", "compute_ratio")
"""The summary's figures a paper's table shows by default (those the run measured)."""

FORMATS = ("latex", "markdown", "csv")
INTERVALS = ("range", "pm", "none")
DIGITS = 3
"""Significant figures of every number in the table (set once, here or by ``digits``)."""


def paper_frame(results: Results, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The rows and columns of the table, unrounded: the setting keys, then each figure with its bounds.

    Raises:
        VaebenchError: the folder has no summary.csv, or a requested column is not a figure of the summary.
    """
    if results.summary.empty:
        raise VaebenchError(
            f"{results.folder} has no summary.csv (no report was written); write it with: "
            f"python -m vaebench report {results.folder}"
        )
    summary = order_estimators(complete(results.summary, SUMMARY))
    wanted = list(columns) if columns else [c for c in DEFAULT_COLUMNS if summary[c].notna().any()]
    bad = [c for c in wanted if c not in SUMMARY.figures]
    if bad:
        raise VaebenchError(
            f"not a figure of the summary table: {', '.join(bad)}; choose among {', '.join(SUMMARY.figures)}"
        )
    keys = ["estimator", *([] if all_iid(summary) else ["sampler"]), "num_samples"]
    return summary[[*keys, *[c for f in wanted for c in (f, f"{f}_low", f"{f}_high")]]].reset_index(drop=True)


def best(frame: pd.DataFrame, column: str) -> pd.Series:
    """[rows] bool: the best estimate of ``column`` at each K among unbiased settings (False where no direction)."""
    better = describe(column).better
    marked = pd.Series(False, index=frame.index)
    if better not in (LOWER, HIGHER):
        return marked
    unbiased = ~frame.apply(lambda r: bool(bias_note(r["estimator"], r["num_samples"])), axis=1)
    for _, rows in frame[unbiased & frame[column].notna()].groupby("num_samples"):
        target = rows[column].min() if better == LOWER else rows[column].max()
        marked |= frame.index.isin(rows.index[rows[column] == target])
    return marked


def cell(
    value: float, low: float, high: float, intervals: str = "range", digits: int = DIGITS, tex: bool = False
) -> str:
    """One figure with its interval (``value [low, high]``, ``value ± h`` or ``value +a/-b``); "–" where nothing
    was measured. The bounds and half-widths take the value's notation (scientific outside [1e-3, 1e5));
    ``tex``: as LaTeX, the numbers in math mode (a true minus sign, ``\\times 10^{n}``)."""
    if value is None or not np.isfinite(value):
        return "--" if tex else "–"
    sci = value != 0 and not 1e-3 <= abs(value) < 1e5

    def num(x: float, d: int = digits) -> str:
        text = fmt_number(x, d, sci)
        return _EXPONENT.sub(lambda m: rf"{m[1]}\times 10^{{{int(m[2])}}}", text) if tex else text

    inline = (lambda text: f"${text}$") if tex else (lambda text: text)
    if intervals == "none" or not (np.isfinite(low) and np.isfinite(high)):
        return inline(num(value))
    if intervals == "range":
        return f"{inline(num(value))} [{inline(num(low))}, {inline(num(high))}]"
    up, down = num(high - value, 2), num(value - low, 2)
    if up == down:
        return inline(f"{num(value)} \\pm {up}") if tex else f"{num(value)} ± {up}"
    return inline(f"{{{num(value)}}}^{{+{up}}}_{{-{down}}}") if tex else f"{num(value)} +{up}/-{down}"


_EXPONENT = re.compile(r"([-+]?\d+(?:\.\d+)?)e([-+]\d+)")


def _cells(
    frame: pd.DataFrame, figures: list[str], intervals: str, digits: int, tex: bool = False
) -> pd.DataFrame:
    out = frame[[c for c in frame if c not in _bounds(figures)]].astype(object).copy()
    out["num_samples"] = frame["num_samples"].astype(int).astype(str)
    for f in figures:
        out[f] = [
            cell(r[f], r[f"{f}_low"], r[f"{f}_high"], intervals, digits, tex) for _, r in frame.iterrows()
        ]
    return out


def _bounds(figures: list[str]) -> list[str]:
    return [c for f in figures for c in (f"{f}_low", f"{f}_high")]


def _figures(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame if f"{c}_low" in frame]


def _header(column: str) -> str:
    entry = describe(column)
    return f"{entry.header} ({entry.unit})" if entry.unit == "nats" else entry.header


def to_markdown(frame: pd.DataFrame, intervals: str = "range", digits: int = DIGITS) -> str:
    """The table as GitHub markdown, the best of each column at each K in bold."""
    figures = _figures(frame)
    cells = _cells(frame, figures, intervals, digits)
    for f in figures:
        cells.loc[best(frame, f), f] = "**" + cells.loc[best(frame, f), f] + "**"
    heads = [_header(c) for c in cells]
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in cells.to_numpy()]
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def tex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (names, headers)."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def to_latex(
    frame: pd.DataFrame,
    intervals: str = "range",
    digits: int = DIGITS,
    caption: str | None = None,
    label: str = "tab:vaebench",
) -> str:
    """The table as a booktabs ``table`` environment (needs ``\\usepackage{booktabs}``), best in bold."""
    figures = _figures(frame)
    cells = _cells(frame, figures, intervals, digits, tex=True)
    cells["estimator"] = [
        tex_escape(n) + (r"$^\dagger$" if bias_note(n, k) else "")
        for n, k in zip(frame["estimator"], frame["num_samples"], strict=True)
    ]
    if "sampler" in cells:
        cells["sampler"] = cells["sampler"].map(tex_escape)
    cells.columns = [tex_escape(_header(c)) for c in cells.columns]
    keys = len(cells.columns) - len(figures)
    styler = Styler(cells, uuid_len=0).hide(axis="index")
    for f, head in zip(figures, cells.columns[keys:], strict=True):
        bold = np.where(best(frame, f), "bfseries:--wrap;boldmath:--wrap;", "")  # text and maths
        styler = styler.apply(lambda col, bold=bold: bold, subset=[head])
    biased = any(bias_note(n, k) for n, k in zip(frame["estimator"], frame["num_samples"], strict=True))
    caption = caption or (
        f"Intervals at level {_level(frame)}. Bold: the best estimate of each column at each K among unbiased "
        "settings (not a test: the verdicts say which differences are separated)."
        + (r" $^\dagger$: a biased estimator at this K." if biased else "")
    )
    return styler.to_latex(
        hrules=True, column_format="l" * keys + "r" * len(figures), caption=caption, label=label,
        position="htbp", position_float="centering",
    )  # fmt: skip


def _level(frame: pd.DataFrame) -> str:
    level = frame.attrs.get("level", 0.95)
    return f"{100 * level:g}\\%"


def to_csv(frame: pd.DataFrame) -> str:
    """The table's numbers, unrounded, as CSV."""
    return frame.to_csv(index=False)


def render(
    results: Results,
    fmt: str = "latex",
    *,
    columns: tuple[str, ...] | None = None,
    intervals: str = "range",
    digits: int = DIGITS,
) -> str:
    """The comparison table of ``results`` as ``fmt`` (one of `FORMATS`)."""
    if fmt not in FORMATS or intervals not in INTERVALS or not (1 <= digits <= 10):
        raise VaebenchError(
            f"table: format {fmt!r}, intervals {intervals!r}, digits {digits}: the formats are "
            f"{', '.join(FORMATS)}, the intervals {', '.join(INTERVALS)}, digits from 1 to 10"
        )
    frame = paper_frame(results, columns)
    frame.attrs["level"] = results.level if math.isfinite(results.level) else 0.95
    if fmt == "csv":
        return to_csv(frame)
    if fmt == "markdown":
        return to_markdown(frame, intervals, digits)
    return to_latex(frame, intervals, digits)


__all__ = ["DEFAULT_COLUMNS", "DIGITS", "FORMATS", "INTERVALS", "best", "cell", "paper_frame", "render",
           "tex_escape", "to_csv", "to_latex", "to_markdown"]  # fmt: skip
