r"""The yardstick of a K: every setting's step time as a ratio to one setting's, timed interleaved.

The throughput measure times the steps of one ``timing_group`` (every setting at one K) round-robin, in R
rounds, and keeps the median step time m_{r,s} of each setting s in each round r (``round_s``,
:func:`vaebench.measures.throughput.measure_interleaved`). Two settings a and b of one group compare as the
**paired ratio** of their per-round medians (:func:`vaebench.analysis.contrast.contrast`):

    d_r = log m_{r,a} - log m_{r,b},    ratio a/b = exp(mean_r d_r),
    interval = exp(mean_r d_r ± t_{0.975, R-1} sd(d) / √R)                       (Student-t over rounds)

A load that slows the machine by a factor λ_r over a round multiplies both medians of that round and cancels
in d_r; what is left is the spread from round to round, which the interval measures. A timing comparison is
**separated** when its ratio interval excludes 1, and only then does a sentence or a verdict call one step
faster. Rows timed alone (``timing_group`` "", results folders from before interleaving) form no ratio.

Every setting's ratio to its group's *yardstick* setting (:func:`yardstick_setting`: ``reparam`` with iid
draws at that K where it was timed, else the first setting of the group in registry order) goes into the
summary table as ``step_ratio`` (:func:`step_ratios`).

**Equal compute.** Averaging n estimates divides the variance by n and multiplies the time by n, so the
figure that decides a fixed budget is variance x step time, and two settings compare as

    (v_a τ_a) / (v_b τ_b) = (v_a / v_b) · (τ_a / τ_b)                            (:func:`compute_ratio`)

with v the encoder gradient variance (its own bootstrap interval) and τ_a / τ_b the step-time ratio above,
the three log errors in quadrature (:func:`vaebench.analysis.contrast.product`). Along a learning curve, the
compute a run has spent after n steps is n τ_s / τ_yardstick **yardstick-step equivalents**
(:func:`yardstick_steps`): steps, which are deterministic, times the interleaved ratio, which a load over
the whole machine does not move. The training seconds of each unit are measured while other units run and
move with the load; they draw what happened on this machine, never a verdict.

**False alarms.** If two steps cost the same, a 95% interval over rounds excludes 1 in 5% of runs, 2.5% on
each side. Two runs of the same code then state opposite winners only if both intervals miss, on opposite
sides: at most 0.025² ≈ 6·10⁻⁴ per pair of settings, and less when their costs differ (the run that misses
must miss by more). The rounds must be independent for this: a load that changes *within* a round is the
part of the machine's noise that interleaving does not remove, and it widens the interval (it adds to the
spread between rounds) rather than shifting it, as long as it strikes the settings of a round in no fixed
order (the measure rotates the order every round).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.analysis.contrast import Contrast, contrast, none, product
from vaebench.analysis.settings import KEYS, order_estimators, setting_label
from vaebench.measures.schema import HANDWRITTEN, THROUGHPUT, complete

YARDSTICK = "reparam"
"""The estimator whose step (iid draws) every other of its K is set against, where it was timed."""


def parse_rounds(value) -> np.ndarray:
    """The per-round medians of a ``round_s`` cell (space-separated seconds) -> [R]; empty when absent."""
    if not isinstance(value, str) or not value.strip():
        return np.empty(0)
    return np.array([float(v) for v in value.split()])


def timed_rows(throughput: pd.DataFrame | None, batch_size: int | None = None) -> pd.DataFrame:
    """The rows of ``throughput`` that were timed interleaved (a group, per-round medians), eager float32, at
    one batch size (the largest by default), the hand-written step included."""
    if throughput is None or throughput.empty:
        return pd.DataFrame(columns=[*KEYS, "timing_group", "round_s"])
    rows = complete(throughput, THROUGHPUT)
    rows = rows[(rows["status"] == "ok") & ~rows["compiled"].astype(bool) & ~rows["amp"].astype(bool)]
    rows = rows[rows["timing_group"].fillna("").astype(str) != ""]
    rows = rows[rows["round_s"].map(lambda v: parse_rounds(v).size > 0).astype(bool)]
    if rows.empty:
        return rows
    if rows["batch_size"].notna().any():
        size = batch_size if batch_size is not None else rows["batch_size"].max()
        rows = rows[rows["batch_size"] == size]
    return rows.drop_duplicates(KEYS)


def step_ratio(rows: pd.DataFrame, a: tuple, b: tuple, level: float = 0.95) -> Contrast:
    """Step time of setting ``a`` over that of ``b`` (keys ``(estimator, sampler, K)``), timed in one group.

    Args:
        rows: :func:`timed_rows`.
        a, b: the settings; the hand-written step is ``(HANDWRITTEN, "iid", 1)``.
        level: the interval's level.

    Returns:
        The paired ratio over rounds (module docstring; ``n``: the rounds); NaN when either was not timed
        interleaved or they were timed apart.
    """
    found = [_row(rows, key) for key in (a, b)]
    if any(r is None for r in found) or found[0]["timing_group"] != found[1]["timing_group"]:
        return none("paired ratio")
    return contrast(*(parse_rounds(r["round_s"]) for r in found), "paired ratio", level)


def yardstick_setting(rows: pd.DataFrame, group: str) -> tuple | None:
    """The setting of ``group`` that the others are set against: ``reparam`` (iid), else the first in
    registry order (never the hand-written step); None for an empty group."""
    mine = rows[(rows["timing_group"] == group) & (rows["estimator"] != HANDWRITTEN)]
    if mine.empty:
        return None
    preferred = mine[(mine["estimator"] == YARDSTICK) & (mine["sampler"] == "iid")]
    first = (preferred if not preferred.empty else order_estimators(mine)).iloc[0]
    return first["estimator"], first["sampler"], int(first["num_samples"])


RATIO_COLUMNS = (*KEYS, "timing_yardstick", "step_ratio", "step_ratio_low", "step_ratio_high", "timing_rounds",
                 "yardstick_estimator", "yardstick_sampler")  # fmt: skip
"""Columns of :func:`step_ratios`' frame."""


def step_ratios(
    throughput: pd.DataFrame | None, batch_size: int | None = None, level: float = 0.95
) -> pd.DataFrame:
    """Every estimator setting's step time over its group's yardstick setting, with the interval over rounds.

    Returns:
        Columns `RATIO_COLUMNS`: the setting, ``timing_yardstick`` (the yardstick's label),
        ``step_ratio, step_ratio_low, step_ratio_high, timing_rounds``, and the yardstick's key as
        ``yardstick_estimator, yardstick_sampler``; empty when nothing was timed interleaved.
    """
    rows = timed_rows(throughput, batch_size)
    out = []
    for group in dict.fromkeys(rows["timing_group"]):
        ref = yardstick_setting(rows, group)
        if ref is None:
            continue
        for _, row in rows[(rows["timing_group"] == group) & (rows["estimator"] != HANDWRITTEN)].iterrows():
            key = (row["estimator"], row["sampler"], int(row["num_samples"]))
            r = step_ratio(rows, key, ref, level)
            out.append(dict(zip(KEYS, key, strict=True)) | {
                "timing_yardstick": setting_label(ref[0], ref[1]), "step_ratio": r.value,
                "step_ratio_low": r.low, "step_ratio_high": r.high, "timing_rounds": r.n,
                "yardstick_estimator": ref[0], "yardstick_sampler": ref[1],
            })  # fmt: skip
    return pd.DataFrame(out, columns=list(RATIO_COLUMNS))


def yardstick_steps(curves: pd.DataFrame, ratios: pd.DataFrame) -> pd.DataFrame:
    """``curves`` (rows with the setting's keys and ``step``) with ``yardstick_steps`` = step x the setting's
    ``step_ratio`` (:func:`step_ratios`): the compute spent, in steps of its K's yardstick (NaN where the
    setting's step was not timed interleaved)."""
    if curves.empty:
        return curves.assign(yardstick_steps=np.nan)
    ratio = ratios[[*KEYS, "step_ratio"]].drop_duplicates(KEYS) if not ratios.empty else None
    if ratio is None:
        return curves.assign(yardstick_steps=np.nan)
    joined = curves.merge(ratio, on=KEYS, how="left", validate="many_to_one")
    joined.index = curves.index
    return curves.assign(yardstick_steps=joined["step"].astype(float) * joined["step_ratio"].astype(float))


def compute_ratio(a: tuple[float, float, float], b: tuple[float, float, float], time: Contrast) -> Contrast:
    """(v_a τ_a) / (v_b τ_b) for variances (value, low, high) and a step-time ratio τ_a / τ_b, the three log
    errors in quadrature (module docstring); NaN interval when any part lacks one."""
    return product(contrast(a, b, "ratio"), time)


def with_compute_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (the summary's rows, with ``trace_var`` and :func:`step_ratios`' columns) with
    ``compute_ratio`` and its interval: each setting's variance x step time over its yardstick's at that K."""
    table = table.copy()
    for column in ("compute_ratio", "compute_ratio_low", "compute_ratio_high"):
        table[column] = np.nan
    if "yardstick_estimator" not in table or "trace_var" not in table:
        return table
    index = {(r["estimator"], r["sampler"], r["num_samples"]): i for i, r in table.iterrows()}
    for i, row in table.iterrows():
        if not isinstance(row["yardstick_estimator"], str):
            continue
        ref = index.get((row["yardstick_estimator"], row["yardstick_sampler"], row["num_samples"]))
        if ref is None:
            continue
        time = Contrast(row["step_ratio"], row["step_ratio_low"], row["step_ratio_high"], "paired ratio",
                        int(row["timing_rounds"]) if np.isfinite(row["timing_rounds"]) else 0)  # fmt: skip
        if ref == i:  # the yardstick against itself: 1 exactly
            found = Contrast(1.0, 1.0, 1.0, "ratio", time.n) if np.isfinite(row["trace_var"]) else none()
        else:
            found = compute_ratio(_triple(row), _triple(table.loc[ref]), time)
        table.loc[i, ["compute_ratio", "compute_ratio_low", "compute_ratio_high"]] = (
            found.value,
            found.low,
            found.high,
        )
    return table


def _triple(row: pd.Series, figure: str = "trace_var") -> tuple[float, float, float]:
    return float(row[figure]), float(row[f"{figure}_low"]), float(row[f"{figure}_high"])


def _row(rows: pd.DataFrame, key: tuple) -> pd.Series | None:
    name, sampler, k = key
    hit = rows[(rows["estimator"] == name) & (rows["sampler"] == sampler) & (rows["num_samples"] == k)]
    return None if hit.empty else hit.iloc[0]
