"""What names one row of a table: the setting, an estimator with its sampler at one K; and flag cells.

A frame that names no sampler (one built by hand) drew independent samples: its rows count as ``iid``
(:func:`with_sampler`). A setting where its estimator declares a bias (``iwae-stl`` for
K > 1) has a non-empty :func:`bias_note`; the report marks such rows with †.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.estimators import ESTIMATORS, SAMPLERS
from vaebench.measures.schema import HANDWRITTEN, SAMPLER

KEYS = ["estimator", "sampler", "num_samples"]
"""The key columns of one setting, in the one order every setting key (a tuple) follows."""


def setting_label(name: str, sampler: str | None = "iid") -> str:
    """The one label of a setting in plots, sentences and verdicts: ``name`` for iid draws, else
    ``name (sampler)``; the hand-written pytorch/examples step is "hand-written step"."""
    if name == HANDWRITTEN:
        return "hand-written step"
    return f"{name} ({sampler})" if isinstance(sampler, str) and sampler != "iid" else name


def with_sampler(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """``frame`` with a ``sampler`` on every row: a row that names none drew iid samples.

    For frames of any measure, or derived from one (curves, pivots): the default is the one
    :data:`vaebench.measures.schema.SAMPLER` declares.
    """
    if frame is None or frame.empty:
        return frame
    if "sampler" not in frame:  # the one optional key column; frames of a measure are `complete`d instead
        return frame.assign(sampler=SAMPLER.default)
    filled = frame["sampler"].fillna(SAMPLER.default)
    return frame.assign(sampler=filled) if frame["sampler"].isna().any() else frame


def order_estimators(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by registry order of the estimator, then sampler (as in `SAMPLERS`), then K."""
    rank = {name: i for i, name in enumerate(ESTIMATORS)}
    samplers = {name: i for i, name in enumerate(SAMPLERS)}
    frame = with_sampler(frame)
    key = frame["estimator"].map(lambda n: rank.get(n, len(rank)))
    second = frame["sampler"].map(lambda s: samplers.get(s, len(samplers)))
    return (
        frame.assign(_rank=key, _sampler=second)
        .sort_values(["_rank", "estimator", "_sampler", "num_samples"])
        .drop(columns=["_rank", "_sampler"])
        .reset_index(drop=True)
    )


def all_iid(frame: pd.DataFrame) -> bool:
    """Whether every row drew independent samples (then the tables need no sampler column)."""
    return frame.empty or bool((with_sampler(frame)["sampler"] == "iid").all())


def bias_note(name: str, k) -> str:
    """The bias an estimator declares at this K ("" when it is unbiased there, or unknown): its ``bias`` where
    its default form says it is biased at K (:meth:`~vaebench.estimators.Estimator.biased_at`: most at K > 1
    only, reweighted wake-sleep's encoder at every K)."""
    cls = ESTIMATORS.get(name)
    if cls is None or not cls.bias or k is None:
        return ""
    try:
        biased = cls().biased_at(int(k))
    except Exception:  # a plugin's class that needs arguments: the declared rule of the base class
        biased = int(k) > 1
    return cls.bias if biased else ""


def truth(value) -> bool | None:
    """A flag column's cell as True, False or None (unknown): it may hold bools, numpy bools, 0/1 or NaN."""
    if value is None or isinstance(value, str):
        return None
    try:
        return None if np.isnan(value) else bool(value)
    except TypeError:
        return None


SAME_TO_ROUNDING = 1e-5
"""Relative difference below which two figures count as the same number: float32 arithmetic that takes two
routes to one gradient (STL and DReG at K = 1, VarGrad and the leave-one-out baseline) differs by about 1e-7."""


def same_figures(a, b) -> bool:
    """Whether two sequences of figures agree to rounding (`SAME_TO_ROUNDING`), every one finite."""
    return all(
        np.isfinite(x) and np.isfinite(y) and abs(x - y) <= SAME_TO_ROUNDING * max(abs(x), abs(y))
        for x, y in zip(a, b, strict=True)
    )


def identical_settings(
    frame: pd.DataFrame, columns: list[str], at: tuple[str, ...] = ("num_samples",)
) -> list[tuple[tuple[str, str], tuple[str, str], list[tuple], list[tuple]]]:
    """Pairs of settings whose rows hold the same values of ``columns`` (to rounding) at some positions.

    Two estimators that compute the same gradient on the same draws (``iwae`` and ``reparam`` at K = 1,
    ``vargrad`` and ``reinforce-loo``) give the same numbers to rounding (:func:`same_figures`); a plot draws
    one over the other.

    Args:
        frame: rows keyed by ``estimator``, ``sampler`` and the ``at`` columns (e.g. K, or K and step).
        columns: the figures compared (all must be equal and finite).
        at: the columns that name a position within a setting's rows.

    Returns:
        ``(first, second, equal, both)`` for each pair of (estimator, sampler) with at least one equal
        position, ``first`` before ``second`` in the frame's order: the positions (tuples of ``at`` values)
        where they are equal and those where both have rows.
    """
    frame = with_sampler(frame)
    if frame is None or frame.empty:
        return []
    series = {}
    for (name, sampler), g in frame.groupby(["estimator", "sampler"], sort=False):
        values = g.set_index(list(at))[columns]
        series[(name, sampler)] = {
            (key if isinstance(key, tuple) else (key,)): tuple(row) for key, row in values.iterrows()
        }
    found = []
    names = list(series)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = [p for p in series[a] if p in series[b]]
            equal = [p for p in both if same_figures(series[a][p], series[b][p])]
            if equal:
                found.append((a, b, equal, both))
    return found
