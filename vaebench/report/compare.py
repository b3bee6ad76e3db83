"""The comparison of two runs as text: a markdown table (or aligned plain text) and the notes beneath it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from vaebench.analysis.settings import setting_label

LABELS: dict[str, str] = {
    "trace_var": "encoder grad variance",
    "decoder_trace_var": "decoder grad variance",
    "snr": "encoder SNR",
    "decoder_snr": "decoder SNR",
    "final_test_elbo": "test ELBO (nats)",
    "test_log_likelihood": "test log p(x) (nats)",
    "step_ratio": "step time / yardstick's",
}
"""How the table names each figure of :data:`vaebench.analysis.compare.FIGURES`."""

HEADERS = ("setting", "figure", "A", "B", "B vs A", "verdict", "how")


def render(
    table: pd.DataFrame,
    only: pd.DataFrame | None = None,
    differences: Sequence[str] = (),
    caveats: Sequence[str] = (),
    *,
    fmt: str = "markdown",
    labels: tuple[str, str] = ("A", "B"),
    level: float = 0.95,
) -> str:
    """The comparison table and its notes (settings in one run only, differences, caveats) as one string.

    Args:
        table: :func:`vaebench.analysis.compare.compare`'s frame.
        only: :func:`~vaebench.analysis.compare.only_in_one`'s frame.
        differences, caveats: phrases of :func:`~vaebench.analysis.compare.differences` and ``caveats``.
        fmt: ``"markdown"`` or ``"text"`` (columns aligned with spaces).
        labels: what A and B are (e.g. the two folders), for the notes.
        level: the level of the table's intervals, for the note that says so.
    """
    if fmt not in ("markdown", "text"):
        raise ValueError(f"fmt must be 'markdown' or 'text', got {fmt!r}")
    rows = [_cells(r) for r in table.itertuples(index=False)]
    lines = [f"A: {labels[0]}", f"B: {labels[1]}", ""]
    if rows:
        lines += _markdown(rows) if fmt == "markdown" else _aligned(rows)
    else:
        lines.append("(no setting measured in both runs)")
    notes = []
    for label, other in (("A", "B"), ("B", "A")):
        part = only[only["only_in"] == label] if only is not None and not only.empty else None
        if part is not None and not part.empty:
            names = ", ".join(_setting(r) for r in part.itertuples(index=False))
            notes.append(f"Only in {label} (not in {other}): {names}.")
    notes += [f"Data or model differ: {d}." for d in differences]
    notes += [f"Note: {c}." for c in caveats]
    notes.append(
        f"Intervals are {level:.0%}: each run's own figure with its interval; 'B vs A' is B / A (×) for "
        "variance, SNR and the step-time ratio (each run's step over its own yardstick's, timed interleaved), "
        "B - A in nats for the test ELBO and log-likelihood (paired by seed where both runs completed the same "
        "seeds, else Welch); the verdict is 'better' or 'worse' only when the interval of the change excludes "
        "no change, and 'not comparable' (no change stated) when the two runs measured the figure at other "
        "parameters (checkpoint, data, model, seeds, step timed), which its 'how' names."
    )
    prefix = "- " if fmt == "markdown" else ""
    return "\n".join([*lines, "", *(prefix + n for n in notes)]) + "\n"


def _setting(row) -> str:
    """B's setting, with the setting of A it is set against when that is another one (``--against``)."""
    own = f"{setting_label(row.estimator, row.sampler)} K={row.num_samples}"
    against = getattr(row, "against", None)
    if not isinstance(against, str) or against == setting_label(row.estimator, row.sampler):
        return own
    return f"{own} vs A's {against}"


def _cells(row) -> list[str]:
    ratio = row.contrast == "B / A"
    change = _interval(row.change, row.change_low, row.change_high, "×" if ratio else "", signed=not ratio)
    return [
        _setting(row),
        LABELS.get(row.figure, row.figure),
        _interval(row.a, row.a_low, row.a_high),
        _interval(row.b, row.b_low, row.b_high),
        change,
        row.verdict,
        row.method,
    ]


def _interval(value: float, low: float, high: float, prefix: str = "", signed: bool = False) -> str:
    if not math.isfinite(value):
        return "-"
    text = prefix + _number(value, signed)
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{_number(low, signed)}, {_number(high, signed)}]"
    return text


def _number(x: float, signed: bool = False) -> str:
    text = f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"
    return f"+{text}" if signed and x > 0 else text


def _markdown(rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    return out + ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]


def _aligned(rows: list[list[str]]) -> list[str]:
    table = [list(HEADERS), *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
