"""Formatting for report.md: numbers in significant figures, intervals, markdown tables."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd


def _scientific(value: float) -> bool:
    magnitude = abs(value)
    return magnitude != 0 and (magnitude >= 1e5 or magnitude < 1e-3)


def fmt_number(value: float, digits: int = 3, scientific: bool | None = None) -> str:
    """A number in ``digits`` significant figures; scientific notation outside [1e-3, 1e5) (or as told)."""
    if value is None or not np.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    if scientific if scientific is not None else _scientific(value):
        return f"{value:.{digits - 1}e}"
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    return f"{value:.{decimals}f}"


def fmt_interval(value: float, low: float, high: float, digits: int = 3, symmetric: bool = False) -> str:
    """``value ± half`` for symmetric intervals (means), ``value [low, high]`` otherwise (same notation)."""
    if value is None or not np.isfinite(value):
        return "–"
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return fmt_number(value, digits)
    if symmetric:
        half = (high - low) / 2
        decimals = max(0, -math.floor(math.log10(half)) + 1) if half > 0 else 2
        return f"{value:.{decimals}f} ± {half:.{decimals}f}"
    sci = _scientific(value)
    return f"{fmt_number(value, digits, sci)} [{fmt_number(low, 2, sci)}, {fmt_number(high, 2, sci)}]"


def markdown(frame: pd.DataFrame, columns: Sequence[tuple[str, Callable[[pd.Series], str]]]) -> str:
    """A GitHub markdown table: one (header, row -> cell text) pair per column."""
    lines = [
        "| " + " | ".join(h for h, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for _, row in frame.iterrows():
        cells = [str(cell(row)).replace("|", "\\|") for _, cell in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def interval_cell(metric: str, symmetric: bool = False) -> Callable[[pd.Series], str]:
    def cell(row: pd.Series) -> str:
        return fmt_interval(row[metric], row[f"{metric}_low"], row[f"{metric}_high"], symmetric=symmetric)

    return cell
