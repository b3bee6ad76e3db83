"""The reading of a report: sentences computed from the comparison table, never a template.

The bottom line (:mod:`vaebench.report.bottom_line`) answers each question with its verdict; the reading
follows it with the details: how far apart the settings lie, how the variance moves with K, whether training
had levelled off, the final test ELBO paired by seed, the recommendation across K, the settings at equal
budget (equal wall-clock, equal steps, steps to a target: :mod:`vaebench.report.budget`), the published gaps, the
step times against each other and against a hand-written step, and which runs diverged. Each sentence states
what the numbers show, so it cannot contradict the table it sits next to, and every word that orders two
numbers follows their sign. A sentence whose inputs were not measured is left out. Biased settings (``†``)
are named apart and never ranked with the unbiased ones.

It also says what the numbers cannot show: an SNR whose interval reaches the noise floor is named as no
measured signal and not ranked; when the test-ELBO curves had not levelled off, it says that the comparison is
of early training; an estimator with diverged runs is never called best without saying so; and a setting is
recommended only when, paired by seed, it is separated from every other (else the reading says that none is).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.analysis import yardstick
from vaebench.analysis.budget import budget
from vaebench.estimators import ESTIMATORS
from vaebench.measures.schema import HANDWRITTEN, SUMMARY, complete
from vaebench.report.budget import at_equal_budget
from vaebench.report.formatting import fmt_number
from vaebench.report.phrases import (
    at_noise_floor,
    biased,
    finite_rows_at,
    is_score_function,
    overlap,
    power_of_ten,
    ratio_text,
    setting_key,
    setting_name,
    setting_names,
    times,
    with_interval,
)
from vaebench.report.settings import setting_label
from vaebench.report.verdict import levelled_off, quality, recommendation
from vaebench.train import DIVERGENCE_BOUND


def reading(
    summary: pd.DataFrame,
    frames: dict[str, pd.DataFrame],
    *,
    checkpoint: str | None,
    data: str | None = None,
    likelihood: str | None = None,
) -> list[str]:
    """Sentences computed from the summary table and the measures' frames (convergence, throughput).

    Args:
        summary: :func:`vaebench.analysis.summaries.summary_table`.
        frames: the tidy frames by kind (``convergence`` for paired comparisons, ``throughput`` for the step
            ratios and the hand-written pytorch/examples step, and ``budget``, :func:`vaebench.analysis.budget.budget`,
            computed from ``convergence`` when absent); missing kinds drop their sentences.
        checkpoint: the variance checkpoint the table reports, for the wording.
        data, likelihood: unused (the published gaps are claims: :mod:`vaebench.analysis.claims`).
    """
    if summary.empty:
        return []
    # Every declared column, NaN where not measured: a sentence whose numbers are all NaN is left out.
    summary = complete(summary, SUMMARY)
    ks = sorted(summary["num_samples"].dropna().unique())
    convergence = frames.get("convergence", pd.DataFrame())
    throughput = frames.get("throughput", pd.DataFrame())
    lines = _variance(summary, ks, checkpoint) + _k_effect(summary, ks)
    lines += levelled_off(summary) + quality(summary, ks, convergence)
    if not convergence.empty:
        lines += recommendation(summary, convergence)
        at_budget = frames.get("budget")
        lines += at_equal_budget(budget(convergence, throughput) if at_budget is None else at_budget, summary)
    return lines + _speed(summary, ks, throughput) + _divergence(summary)


def _variance(summary: pd.DataFrame, ks: list, checkpoint: str | None) -> list[str]:
    lines = []
    where = f" (at the {checkpoint} checkpoint)" if checkpoint else ""
    for k in ks:
        rows = finite_rows_at(summary, k, "trace_var")
        fair = rows[[not biased(r) for _, r in rows.iterrows()]]
        if len(fair) >= 2:
            lo, hi = fair.loc[fair["trace_var"].idxmin()], fair.loc[fair["trace_var"].idxmax()]
            lines.append(
                f"Encoder gradient variance at K={k}{where} spans {times(hi['trace_var'] / lo['trace_var'])} over "
                f"the {len(fair)} unbiased settings, from {setting_name(lo)}, {with_interval(lo, 'trace_var')}, to "
                f"{setting_name(hi)}, {with_interval(hi, 'trace_var')}."
            )
        base = rows[(rows["estimator"] == "reparam") & (rows["sampler"] == "iid")]
        score = rows[rows["estimator"].map(is_score_function)]
        if not base.empty and not score.empty:
            ratios = score["trace_var"] / base["trace_var"].iloc[0]
            names = ", ".join(setting_name(r) for _, r in score.iterrows())
            span = (
                f"{times(ratios.min())} to {times(ratios.max())}" if len(score) > 1 else times(ratios.iloc[0])
            )
            lines.append(
                f"At K={k} the score-function estimators ({names}) have {span} the encoder variance of `reparam`."
            )
        wrong = rows[[biased(r) for _, r in rows.iterrows()]]
        if not wrong.empty:
            many = len(wrong) > 1
            lines.append(
                f"At K={k}, {setting_names(list(wrong.itertuples()), k=False)} † estimate{'' if many else 's'} a "
                f"gradient of the wrong mean ({ESTIMATORS[wrong['estimator'].iloc[0]].bias}): "
                f"{'their' if many else 'its'} low variance is no merit, and no ranking here includes "
                f"{'them' if many else 'it'}."
            )
    return lines


def _k_effect(summary: pd.DataFrame, ks: list) -> list[str]:
    """How the variance and the SNR change from the smallest to the largest K."""
    if len(ks) < 2:
        return []
    k0, k1 = ks[0], ks[-1]
    both = []
    for (name, sampler), g in summary.groupby(["estimator", "sampler"], sort=False):
        g = g.set_index("num_samples")
        if k0 in g.index and k1 in g.index and np.isfinite(g.loc[[k0, k1], "trace_var"]).all():
            both.append((setting_label(name, sampler), g))
    lines = []
    if both:
        text = ", ".join(f"`{n}` {times(g.loc[k1, 'trace_var'] / g.loc[k0, 'trace_var'])}" for n, g in both)
        lines.append(
            f"From K={k0} to K={k1} the encoder variance changes by: {text} (1/K would be {times(k0 / k1)})."
        )
    if summary["snr"].notna().any():
        lines += _snr_floor(summary)
        falling = []
        for name, g in both:
            a, b = g.loc[k0], g.loc[k1]
            if at_noise_floor(a) or at_noise_floor(b):
                continue  # no measured signal to compare
            if b["snr"] < a["snr"]:
                where = "outside" if overlap(a, b, "snr") is False else "within"
                falling.append(
                    f"`{name}` ({fmt_number(a['snr'])} → {fmt_number(b['snr'])}, {where} the intervals)"
                )
        if falling:
            lines.append(f"Encoder SNR falls as K grows from {k0} to {k1} for: " + "; ".join(falling) + ".")
        else:
            above = " above the noise floor" if summary.apply(at_noise_floor, axis=1).any() else ""
            lines.append(f"No estimator's encoder SNR{above} falls from K={k0} to K={k1}.")
    return lines


def _snr_floor(summary: pd.DataFrame) -> list[str]:
    """The SNRs whose interval reaches the noise floor: indistinguishable from a gradient of mean zero."""
    rows = summary[summary.apply(at_noise_floor, axis=1)] if not summary.empty else summary
    if rows.empty:
        return []
    floor = fmt_number(float(rows["snr_floor"].max()))
    return [
        f"Encoder SNR indistinguishable from no signal (its interval reaches √(2/(πR)) = {floor}, the SNR a "
        f"gradient of mean zero shows with R replicates): {setting_names(list(rows.itertuples()), limit=6, k=True)}; "
        "these SNRs are not ranked."
    ]


def _speed(summary: pd.DataFrame, ks: list, throughput: pd.DataFrame) -> list[str]:
    """The step times of each K against each other (as ratios over interleaved rounds where measured so), and
    the suite's ``reparam`` step against the hand-written one."""
    lines = []
    timed = yardstick.timed_rows(throughput)
    for k in ks:
        rows = finite_rows_at(summary, k, "step_ratio")
        if len(rows) >= 2:
            fast, slow = rows.loc[rows["step_ratio"].idxmin()], rows.loc[rows["step_ratio"].idxmax()]
            r = yardstick.step_ratio(timed, setting_key(slow), setting_key(fast))
            lines.append(
                f"Step time at K={k}: the slowest, {setting_name(slow)}, takes {ratio_text(r.value, r.low, r.high)} "
                f"the time of the fastest, {setting_name(fast)} (over {r.n} interleaved rounds; "
                f"{fmt_number(slow['step_ms'])} and {fmt_number(fast['step_ms'])} ms on this machine)."
            )
            continue
        rows = finite_rows_at(summary, k, "step_ms")
        if len(rows) >= 2:
            fast, slow = rows.loc[rows["step_ms"].idxmin()], rows.loc[rows["step_ms"].idxmax()]
            lines.append(
                f"Median step time at K={k} on this machine: from {fmt_number(fast['step_ms'])} ms "
                f"({setting_name(fast)}) to {fmt_number(slow['step_ms'])} ms ({setting_name(slow)}), each setting "
                "timed alone, so these times are not compared (a busy moment can reorder them)."
            )
    return lines + _handwritten(summary, ks, throughput, timed)


def _handwritten(summary: pd.DataFrame, ks: list, throughput: pd.DataFrame, timed: pd.DataFrame) -> list[str]:
    if throughput.empty or not (throughput["estimator"] == HANDWRITTEN).any():
        return []
    hand = throughput[throughput["estimator"] == HANDWRITTEN]
    handwritten_ms = 1e3 * float(hand["step_s_median"].iloc[0])
    mine = summary[
        (summary["estimator"] == "reparam")
        & (summary["sampler"] == "iid")
        & (summary["num_samples"] == ks[0])
    ]
    if not np.isfinite(handwritten_ms) or mine.empty or not np.isfinite(mine["step_ms"].iloc[0]):
        return []
    r = yardstick.step_ratio(timed, ("reparam", "iid", int(ks[0])), (HANDWRITTEN, "iid", 1))
    head = (
        "A hand-written PyTorch step of the same VAE (the pytorch/examples recipe) takes "
        f"{fmt_number(handwritten_ms)} ms on this machine; the suite's `reparam` step at K={ks[0]} takes "
    )
    if np.isfinite(r.value):
        return [
            head + f"{ratio_text(r.value, r.low, r.high)} its time (timed interleaved, over {r.n} rounds)."
        ]
    return [head + f"{times(mine['step_ms'].iloc[0] / handwritten_ms)} that (timed in separate units)."]


def _divergence(summary: pd.DataFrame) -> list[str]:
    if summary["diverged"].isna().all():  # nothing was trained
        return []
    runs = int(np.nansum(summary["runs"]))
    bad = summary[summary["diverged"].fillna(0) > 0]
    if bad.empty:
        return [f"No training run diverged ({runs} runs)."]
    which = ", ".join(
        f"{setting_name(r)} K={int(r['num_samples'])} ({int(r['diverged'])}/{int(r['runs'])})"
        for _, r in bad.iterrows()
    )
    return [
        f"{int(bad['diverged'].sum())} of {runs} training runs diverged (a NaN or Inf, or a loss or gradient norm "
        f"beyond {power_of_ten(DIVERGENCE_BOUND)}; left out of the means): {which}."
    ]
