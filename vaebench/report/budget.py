"""The reading's lines at equal budget: per K, who is ahead at equal compute, at equal steps, and how soon
each setting reaches a common target test ELBO.

The numbers are :func:`vaebench.analysis.budget.budget`'s (``budget.csv``); here they are only put in words.
Against the best of each budget, a setting is named *behind* only when its difference, paired by seed,
excludes 0 (*separated*); the others are named *not separated* from it. Biased settings (``†``) are named
apart and never ranked. Compute is counted in yardstick-step equivalents (steps x the interleaved step-time
ratio), which a busy machine does not move; training seconds are never a budget here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.analysis.budget import MARGIN
from vaebench.analysis.settings import truth
from vaebench.report.formatting import fmt_interval, fmt_number
from vaebench.report.settings import setting_label

COMPUTE_NOTE = (
    "Compute is counted in steps of the K's yardstick setting: each setting's steps x its step time over the "
    "yardstick's, timed interleaved, so a load over the whole machine cancels; a difference is called separated "
    "only if it stays so with the step-time ratios at either end of their intervals."
)

UNCONVERGED_NOTE = (
    "Some curves had not converged: these comparisons hold at the budgets stated, not for converged models."
)


def at_equal_budget(frame: pd.DataFrame | None, summary: pd.DataFrame | None = None) -> list[str]:
    """The lines for every K with at least two unbiased settings (empty without a budget frame).

    Args:
        frame: :func:`vaebench.analysis.budget.budget`.
        summary: the comparison table, for whether the curves had levelled off (a note when they had not).
    """
    if frame is None or frame.empty:
        return []
    lines = []
    for k in sorted(frame["num_samples"].unique()):
        rows = frame[frame["num_samples"] == k]
        for name, what in (("compute", "compute"), ("steps", "steps")):
            part = rows[rows["budget"] == name]
            if _ranked(part) >= 2 and _split(part)[0] is not None:
                lines.append(_equal(part, what, k))
        target = rows[rows["budget"] == "target"]
        if _ranked(target[target["figure"] == "steps_to_target"]) >= 2:
            lines.append(_target(target, k))
    if not lines:
        return []
    if (frame["budget"] == "compute").any():
        lines.append(COMPUTE_NOTE)
    if (
        summary is not None
        and "converged" in summary
        and any(truth(v) is False for v in summary["converged"])
    ):
        lines.append(UNCONVERGED_NOTE)
    return lines


def _ranked(part: pd.DataFrame) -> int:
    """How many unbiased settings of ``part`` have a figure."""
    return int((np.isfinite(part["value"].astype(float)) & (part["biased"].fillna("") == "")).sum())


def _equal(part: pd.DataFrame, what: str, k) -> str:
    """'At equal compute, K=1 (1500 yardstick steps, ...): the best is `stl`, ...' (``part`` has a reference)."""
    at = part["budget_value"].iloc[0]
    budget = f"{at:.0f} yardstick steps, the shortest run's" if what == "compute" else (
        f"step {at:.0f}, the shortest run's last"
    )  # fmt: skip
    best, others, biased = _split(part)
    head = (
        f"At equal {what}, K={int(k)} ({budget}; each test ELBO interpolated on its own curve): the best is "
        f"{_name(best)}, {_interval(best)} nats"
    )
    return head + _contrasts(others, "nats") + _not_ranked(biased) + "."


def _target(part: pd.DataFrame, k) -> str:
    """Steps and compute to the target: each setting's, then who is separated from the fewest."""
    steps = part[part["figure"] == "steps_to_target"].set_index(["estimator", "sampler"])
    compute = part[part["figure"] == "compute_to_target"].set_index(["estimator", "sampler"])
    target = steps["budget_value"].iloc[0]
    each = []
    for key, row in steps.iterrows():
        text = f"{_name(row, key)} {_interval(row)} steps"
        if key in compute.index and np.isfinite(compute.loc[key, "value"]):
            text += f" ({_interval(compute.loc[key])} yardstick steps)"
        total = int(row["seeds"] + row["not_reached"])
        if row["not_reached"]:
            text += f", not reached on {int(row['not_reached'])} of {total} seeds"
        each.append(text + (" †" if row["biased"] else ""))
    text = (
        f"Steps to reach a test ELBO of {fmt_number(target)} at K={int(k)} (within {MARGIN:g} nat of the lowest "
        f"final one of the settings; the first crossing, interpolated): " + "; ".join(each)
    )
    for figure, frame, unit in (
        ("Fewest steps", steps, "steps"),
        ("Least compute", compute, "yardstick steps"),
    ):
        best, others, _ = _split(frame.reset_index())
        if best is not None:
            text += f". {figure}: {_name(best)}" + _contrasts(others, unit)
    return text + "."


def _split(part: pd.DataFrame) -> tuple[pd.Series | None, list[pd.Series], list[pd.Series]]:
    """The reference row, the other unbiased rows with a figure, and the biased rows."""
    best, others, biased = None, [], []
    for _, row in part.iterrows():
        if row["biased"]:
            biased.append(row)
        elif row["estimator"] == row["reference_estimator"] and row["sampler"] == row["reference_sampler"]:
            best = row
        elif np.isfinite(row["value"]):
            others.append(row)
    return best, others, biased


def _contrasts(others: list[pd.Series], unit: str) -> str:
    """'; paired by seed, separated from it: `a` (behind by 24.8 ± 0.6 nats); not separated: `b`'."""
    behind, tied, ahead, unformed = [], [], [], []
    for row in others:
        separated = truth(row["separated"])
        worse = (row["difference"] < 0) == (row["figure"] == "test_elbo")
        if separated is None:
            unformed.append(_name(row))
        elif separated and worse:
            gap = fmt_interval(abs(row["difference"]), *_abs_interval(row), symmetric=True)
            said = f"behind by {gap} {unit}" if row["figure"] == "test_elbo" else f"{gap} {unit} more"
            behind.append(f"{_name(row)} ({said})")
        elif separated:
            ahead.append(_name(row))
        else:
            tied.append(_name(row))
    parts = [f"separated from it: {', '.join(behind)}"] if behind else []
    parts += [f"not separated from it: {', '.join(tied)}"] if tied else []
    parts += (
        [f"ahead of it on the seeds both ran (its mean is over others): {', '.join(ahead)}"] if ahead else []
    )
    parts += [f"no interval against {', '.join(unformed)} (fewer than two seeds paired)"] if unformed else []
    return "; paired by seed, " + "; ".join(parts) if parts else ""


def _abs_interval(row: pd.Series) -> tuple[float, float]:
    low, high = row["difference_low"], row["difference_high"]
    return (low, high) if row["difference"] >= 0 else (-high, -low)


def _not_ranked(biased: list[pd.Series]) -> str:
    if not biased:
        return ""
    return f" (not ranked: {', '.join(_name(r) + ' † ' + r['biased'] for r in biased)})"


def _interval(row: pd.Series) -> str:
    return fmt_interval(row["value"], row["value_low"], row["value_high"], symmetric=True)


def _name(row: pd.Series, key: tuple | None = None) -> str:
    name, sampler = key if key is not None else (row["estimator"], row["sampler"])
    return f"`{setting_label(name, sampler)}`"
