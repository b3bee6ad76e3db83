"""How the report names a setting: its label in plots and sentences, its cell in a table (with † for a bias).

The render half of the setting: its keys, order, sampler default and declared bias are analysis's
(:mod:`vaebench.analysis.settings`); this module only says how a setting is written.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from vaebench.analysis.settings import all_iid, bias_note, setting_label


def estimator_cell(row: pd.Series) -> str:
    """The estimator's name as a table cell, marked † where it declares a bias at this K and ‡ where its
    training runs are another setting's (``trained_as``: the same gradient, draw for draw)."""
    shared = isinstance(row.get("trained_as"), str) and bool(row.get("trained_as"))
    return (
        f"`{row['estimator']}`"
        + (" †" if bias_note(row["estimator"], row["num_samples"]) else "")
        + (" ‡" if shared else "")
    )


def setting_columns(frame: pd.DataFrame) -> list[tuple[str, Callable[[pd.Series], str]]]:
    """The leading markdown columns that name a row: estimator, sampler (unless every row is iid), K."""
    cols: list[tuple[str, Callable[[pd.Series], str]]] = [("estimator", estimator_cell)]
    if not all_iid(frame):
        cols.append(("sampler", lambda r: str(r["sampler"])))
    return [*cols, ("K", lambda r: str(int(r["num_samples"])))]


__all__ = ["estimator_cell", "setting_columns", "setting_label"]
