r"""Ratios of step times measured interleaved: which step is faster, by how much, with an interval over rounds.

The throughput measure times the steps of one ``timing_group`` (every setting at one K) round-robin, in R
rounds, and keeps the median step time m_{r,s} of each setting s in each round r (``round_s``,
:func:`vaebench.measures.throughput.measure_interleaved`). For two settings a and b of one group,

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

with v the encoder gradient variance (its own bootstrap interval) and τ_a / τ_b the step-time ratio above.
The three errors, on the log scale (d⁻ = log v - log low, d⁺ = log high - log v), add in quadrature as the
estimates are independent; the variances of two settings measured on the same draws are positively
correlated, which makes this conservative (wider, never narrower).

**False alarms.** If two steps cost the same, a 95% interval over rounds excludes 1 in 5% of runs, 2.5% on
each side. Two runs of the same code then state opposite winners only if both intervals miss, on opposite
sides: at most 0.025² ≈ 6·10⁻⁴ per pair of settings, and less when their costs differ (the run that misses
must miss by more). The rounds must be independent for this: a load that changes *within* a round is the
part of the machine's noise that interleaving does not remove, and it widens the interval (it adds to the
spread between rounds) rather than shifting it, as long as it strikes the settings of a round in no fixed
order (the measure rotates the order every round).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from vaebench.analysis.settings import KEYS, order_estimators
from vaebench.measures.schema import HANDWRITTEN, THROUGHPUT, complete

YARDSTICK = "reparam"
"""The estimator whose step (iid draws) every other of its K is set against, where it was timed."""


@dataclass(frozen=True)
class Ratio:
    """A ratio a/b with its interval and the number of values behind it (rounds; NaN interval: none formed)."""

    value: float
    low: float
    high: float
    rounds: int

    @property
    def separated(self) -> bool:
        """Whether the interval excludes 1 (False when there is none)."""
        return bool(np.isfinite(self.low) and (self.high < 1 or self.low > 1))


NO_RATIO = Ratio(math.nan, math.nan, math.nan, 0)


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


def step_ratio(rows: pd.DataFrame, a: tuple, b: tuple, level: float = 0.95) -> Ratio:
    """Step time of setting ``a`` over that of ``b`` (keys ``(estimator, sampler, K)``), timed in one group.

    Args:
        rows: :func:`timed_rows`.
        a, b: the settings; the hand-written step is ``(HANDWRITTEN, "iid", 1)``.
        level: the interval's level.

    Returns:
        The geometric mean over rounds of the per-round ratios with its Student-t interval (see the module
        docstring); `NO_RATIO` when either was not timed interleaved or they were timed apart.
    """
    found = [_row(rows, key) for key in (a, b)]
    if any(r is None for r in found) or found[0]["timing_group"] != found[1]["timing_group"]:
        return NO_RATIO
    ta, tb = (parse_rounds(r["round_s"]) for r in found)
    if ta.size != tb.size or ta.size == 0 or not (ta > 0).all() or not (tb > 0).all():
        return NO_RATIO
    d = np.log(ta) - np.log(tb)
    mean = float(d.mean())
    if d.size < 2:
        return Ratio(math.exp(mean), math.nan, math.nan, int(d.size))
    half = float(stats.t.ppf(0.5 + level / 2, d.size - 1)) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return Ratio(math.exp(mean), math.exp(mean - half), math.exp(mean + half), int(d.size))


def yardstick_setting(rows: pd.DataFrame, group: str) -> tuple | None:
    """The setting of ``group`` that the others are set against: ``reparam`` (iid), else the first in
    registry order (never the hand-written step); None for an empty group."""
    mine = rows[(rows["timing_group"] == group) & (rows["estimator"] != HANDWRITTEN)]
    if mine.empty:
        return None
    preferred = mine[(mine["estimator"] == YARDSTICK) & (mine["sampler"] == "iid")]
    first = (preferred if not preferred.empty else order_estimators(mine)).iloc[0]
    return first["estimator"], first["sampler"], int(first["num_samples"])


def step_ratios(
    throughput: pd.DataFrame | None, batch_size: int | None = None, level: float = 0.95
) -> pd.DataFrame:
    """Every estimator setting's step time over its group's yardstick setting, with the interval over rounds.

    Returns:
        Columns ``estimator, sampler, num_samples, timing_yardstick`` (the yardstick's label),
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
                "timing_yardstick": label(ref), "step_ratio": r.value, "step_ratio_low": r.low,
                "step_ratio_high": r.high, "timing_rounds": r.rounds, "yardstick_estimator": ref[0],
                "yardstick_sampler": ref[1],
            })  # fmt: skip
    columns = [*KEYS, "timing_yardstick", "step_ratio", "step_ratio_low", "step_ratio_high", "timing_rounds",
               "yardstick_estimator", "yardstick_sampler"]  # fmt: skip
    return pd.DataFrame(out, columns=columns)


def log_errors(value: float, low: float, high: float) -> tuple[float, float]:
    """(log value - log low, log high - log value) of a positive figure's interval; NaN where it has none."""
    if not all(np.isfinite(v) and v > 0 for v in (value, low, high)):
        return math.nan, math.nan
    return math.log(value) - math.log(low), math.log(high) - math.log(value)


def variance_ratio(a: tuple[float, float, float], b: tuple[float, float, float]) -> Ratio:
    """v_a / v_b of two independent estimates given as (value, low, high), errors in quadrature on the log
    scale (the interval keeps the inputs' level)."""
    if not all(np.isfinite(v) and v > 0 for v in (a[0], b[0])):
        return NO_RATIO
    (am, ap), (bm, bp) = log_errors(*a), log_errors(*b)
    ratio = a[0] / b[0]
    return Ratio(ratio, ratio * math.exp(-math.hypot(am, bp)), ratio * math.exp(math.hypot(ap, bm)), 0)


def with_compute_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (the summary's rows, with ``trace_var`` and :func:`step_ratios`' columns) with
    ``compute_ratio`` and its interval: each setting's variance x step time over its yardstick's at that K."""
    table = table.copy()
    for column in ("compute_ratio", "compute_ratio_low", "compute_ratio_high"):
        table[column] = math.nan
    if "yardstick_estimator" not in table or "trace_var" not in table:
        return table
    index = {(r["estimator"], r["sampler"], r["num_samples"]): i for i, r in table.iterrows()}
    for i, row in table.iterrows():
        if not isinstance(row["yardstick_estimator"], str):
            continue
        ref = index.get((row["yardstick_estimator"], row["yardstick_sampler"], row["num_samples"]))
        if ref is None:
            continue
        time = Ratio(row["step_ratio"], row["step_ratio_low"], row["step_ratio_high"], row["timing_rounds"])
        if ref == i:  # the yardstick against itself: 1 exactly
            found = Ratio(1.0, 1.0, 1.0, time.rounds) if np.isfinite(row["trace_var"]) else NO_RATIO
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


def compute_ratio(a: tuple[float, float, float], b: tuple[float, float, float], time: Ratio) -> Ratio:
    """(v_a τ_a) / (v_b τ_b) for variances (value, low, high) and a step-time ratio τ_a / τ_b, the three log
    errors in quadrature (module docstring); NaN interval when any part lacks one."""
    var = variance_ratio(a, b)
    if not (np.isfinite(var.value) and np.isfinite(time.value)):
        return NO_RATIO
    value = var.value * time.value
    vm, vp = log_errors(var.value, var.low, var.high)
    tm, tp = log_errors(time.value, time.low, time.high)
    return Ratio(
        value, value * math.exp(-math.hypot(vm, tm)), value * math.exp(math.hypot(vp, tp)), time.rounds
    )


def label(key: tuple) -> str:
    """A setting key's label: ``name`` for iid draws, else ``name (sampler)``; the hand-written step's name."""
    name, sampler, _ = key
    if name == HANDWRITTEN:
        return "hand-written step"
    return f"{name} ({sampler})" if sampler != "iid" else name


def _row(rows: pd.DataFrame, key: tuple) -> pd.Series | None:
    name, sampler, k = key
    hit = rows[(rows["estimator"] == name) & (rows["sampler"] == sampler) & (rows["num_samples"] == k)]
    return None if hit.empty else hit.iloc[0]
