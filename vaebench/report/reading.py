"""The reading of a report: sentences computed from the comparison table, never a template.

Each sentence states what the numbers show (which estimator is lowest and by how much, whether intervals
overlap, who is ahead when runs are paired by seed, what is fastest, what wins at equal compute, which runs
diverged), so it cannot contradict the table it sits next to. A sentence whose inputs were not measured is
left out.

It also says what the numbers cannot show: an SNR whose interval reaches the noise floor is named as no
measured signal and not ranked; when the test-ELBO curves had not levelled off, it says that the comparison is
of early training; an estimator with diverged runs is never called best without saying so; and a setting is
recommended only when, paired by seed, it is separated from every other (else the reading says that none is).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.estimators import ESTIMATORS
from vaebench.measures.plateau import TOLERANCE
from vaebench.measures.schema import HANDWRITTEN, SUMMARY, complete
from vaebench.report import tables
from vaebench.report.formatting import fmt_interval, fmt_number, truth
from vaebench.report.published import published_comparisons
from vaebench.report.settings import bias_note, setting_label
from vaebench.training import DIVERGENCE_BOUND


def reading(summary: pd.DataFrame, frames: dict[str, pd.DataFrame], *, checkpoint: str | None) -> list[str]:
    """Sentences computed from the summary table and the measures' frames (convergence, throughput).

    Args:
        summary: :func:`vaebench.report.tables.summary_table`.
        frames: the tidy frames by kind (``convergence`` for paired comparisons, ``throughput`` for the
            hand-written reference step); missing kinds drop their sentences.
        checkpoint: the variance checkpoint the table reports, for the wording.
    """
    if summary.empty:
        return []
    # Every declared column, NaN where not measured: a sentence whose numbers are all NaN is left out.
    summary = complete(summary, SUMMARY)
    ks = sorted(summary["num_samples"].dropna().unique())
    convergence = frames.get("convergence", pd.DataFrame())
    throughput = frames.get("throughput", pd.DataFrame())
    lines = _variance(summary, ks, checkpoint) + _k_effect(summary, ks)
    lines += _levelled_off(summary) + _quality(summary, ks, convergence)
    if not convergence.empty:
        lines += _recommendation(summary, convergence)
    lines += published_comparisons(summary, convergence)
    return lines + _speed(summary, ks, throughput) + _equal_compute(summary, ks) + _divergence(summary)


def _rows(summary: pd.DataFrame, k, metric: str) -> pd.DataFrame:
    return summary[(summary["num_samples"] == k) & np.isfinite(summary[metric])]


def _variance(summary: pd.DataFrame, ks: list, checkpoint: str | None) -> list[str]:
    lines = []
    where = f" (at the {checkpoint} checkpoint)" if checkpoint else ""
    for k in ks:
        rows = _rows(summary, k, "trace_var")
        if len(rows) < 2:
            continue
        lo, hi = rows.loc[rows["trace_var"].idxmin()], rows.loc[rows["trace_var"].idxmax()]
        lines.append(
            f"Lowest encoder gradient variance at K={k}{where}: {_name(lo)}, {_iv(lo, 'trace_var')}; "
            f"the highest, {_name(hi)} ({_iv(hi, 'trace_var')}), is "
            f"{_times(hi['trace_var'] / lo['trace_var'])} larger{_separation(lo, hi, 'trace_var')}."
        )
        base = rows[(rows["estimator"] == "reparam") & (rows["sampler"] == "iid")]
        score = rows[rows["estimator"].map(_score_function)]
        if not base.empty and not score.empty:
            ratios = score["trace_var"] / base["trace_var"].iloc[0]
            names = ", ".join(_name(r) for _, r in score.iterrows())
            span = (
                f"{_times(ratios.min())} to {_times(ratios.max())}"
                if len(score) > 1
                else _times(ratios.iloc[0])
            )
            lines.append(
                f"At K={k} the score-function estimators ({names}) have {span} the encoder variance of `reparam`."
            )
        biased = rows[[bool(bias_note(n, k)) for n in rows["estimator"]]]
        if not biased.empty:
            lines.append(
                f"At K={k}, {_names(list(biased.itertuples()), k=False)} estimate(s) a gradient of the wrong mean "
                f"({ESTIMATORS[biased['estimator'].iloc[0]].bias}): a low variance is no merit there."
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
        text = ", ".join(f"`{n}` {_times(g.loc[k1, 'trace_var'] / g.loc[k0, 'trace_var'])}" for n, g in both)
        lines.append(
            f"From K={k0} to K={k1} the encoder variance changes by: {text} (1/K would be {_times(k0 / k1)})."
        )
    if summary["snr"].notna().any():
        lines += _snr_floor(summary)
        falling = []
        for name, g in both:
            a, b = g.loc[k0], g.loc[k1]
            if _at_floor(a) or _at_floor(b):
                continue  # no measured signal to compare
            if b["snr"] < a["snr"]:
                where = "outside" if _overlap(a, b, "snr") is False else "within"
                falling.append(
                    f"`{name}` ({fmt_number(a['snr'])} → {fmt_number(b['snr'])}, {where} the intervals)"
                )
        if falling:
            lines.append(f"Encoder SNR falls as K grows from {k0} to {k1} for: " + "; ".join(falling) + ".")
        else:
            above = " above the noise floor" if summary.apply(_at_floor, axis=1).any() else ""
            lines.append(f"No estimator's encoder SNR{above} falls from K={k0} to K={k1}.")
    return lines


def _snr_floor(summary: pd.DataFrame) -> list[str]:
    """The SNRs whose interval reaches the noise floor: indistinguishable from a gradient of mean zero."""
    rows = summary[summary.apply(_at_floor, axis=1)] if not summary.empty else summary
    if rows.empty:
        return []
    floor = fmt_number(float(rows["snr_floor"].max()))
    return [
        f"Encoder SNR indistinguishable from no signal (its interval reaches √(2/(πR)) = {floor}, the SNR a "
        f"gradient of mean zero shows with R replicates): {_names(list(rows.itertuples()), limit=6, k=True)}; "
        "these SNRs are not ranked."
    ]


def _levelled_off(summary: pd.DataFrame) -> list[str]:
    """Whether the test-ELBO curves had levelled off over the last quarter of training."""
    judged = summary[summary["converged"].map(lambda v: truth(v) is not None)]
    if judged.empty:
        return []
    moving = judged[judged["converged"].map(lambda v: truth(v) is False)]
    window = f"steps {judged['rise_from_step'].min():.0f}–{judged['rise_to_step'].max():.0f}"
    if moving.empty:
        return [
            f"Every setting's test ELBO changed by less than {TOLERANCE:g} nat over the last quarter of "
            f"training ({window}), interval included: the curves had levelled off."
        ]
    rise = moving["test_elbo_rise"]
    return [
        f"Not converged: over the last quarter of training ({window}) the test ELBO of {len(moving)} of "
        f"{len(judged)} settings moved by more than {TOLERANCE:g} nat or could not be shown to move by "
        f"less (mean change {fmt_number(rise.min())} to {fmt_number(rise.max())} nats; {_names(list(moving.itertuples()), k=True)}). "
        "The test figures below compare early training, not converged models; train longer before concluding "
        "about converged ones."
    ]  # fmt: skip


def _quality(summary: pd.DataFrame, ks: list, convergence: pd.DataFrame) -> list[str]:
    """The best test log-likelihood and final test ELBO per K, and whom it beats when paired by seed."""
    lines = []
    for metric, what in (
        ("test_log_likelihood", "test log-likelihood"),
        ("final_test_elbo", "final test ELBO"),
    ):
        for k in ks:
            rows = _rows(summary, k, metric)
            if rows.empty:
                continue
            best = rows.loc[rows[metric].idxmax()]
            text = f"Best {what} at K={k}: {_name(best)}, {_iv(best, metric, True)} nats" + _diverged_note(
                best
            )
            others = rows.drop(index=best.name)
            if not others.empty and not convergence.empty:
                tied = _tied(convergence, metric, best, others)
                text += (
                    f"; paired by seed (same initialisation and data order), it is ahead of "
                    f"{len(others) - len(tied)} of the other {len(others)}"
                )
                if tied:
                    text += f"; not separated from it: {_names(tied)}"
            lines.append(text + ".")
    return lines


def _speed(summary: pd.DataFrame, ks: list, throughput: pd.DataFrame) -> list[str]:
    lines = []
    for k in ks:
        rows = _rows(summary, k, "step_ms")
        if len(rows) < 2:
            continue
        fast, slow = rows.loc[rows["step_ms"].idxmin()], rows.loc[rows["step_ms"].idxmax()]
        lines.append(
            f"Fastest training step at K={k}: {_name(fast)}, {fmt_number(fast['step_ms'])} ms; slowest "
            f"{_name(slow)}, {fmt_number(slow['step_ms'])} ms ({_times(slow['step_ms'] / fast['step_ms'])})."
        )
    if not throughput.empty and (throughput["estimator"] == HANDWRITTEN).any():
        handwritten_ms = 1e3 * float(
            throughput[throughput["estimator"] == HANDWRITTEN]["step_s_median"].iloc[0]
        )
        mine = summary[
            (summary["estimator"] == "reparam")
            & (summary["sampler"] == "iid")
            & (summary["num_samples"] == ks[0])
        ]
        if np.isfinite(handwritten_ms) and not mine.empty and np.isfinite(mine["step_ms"].iloc[0]):
            lines.append(
                f"A hand-written PyTorch step of the same VAE (the pytorch/examples recipe) takes "
                f"{fmt_number(handwritten_ms)} ms; the suite's `reparam` step at K={ks[0]} takes "
                f"{_times(mine['step_ms'].iloc[0] / handwritten_ms)} that."
            )
    return lines


def _equal_compute(summary: pd.DataFrame, ks: list) -> list[str]:
    lines = []
    for k in ks:
        rows = _rows(summary, k, "work_normalized_var")
        if len(rows) < 2:
            continue
        best = rows.loc[rows["work_normalized_var"].idxmin()]
        others = rows.drop(index=best.name)
        second = others.loc[others["work_normalized_var"].idxmin()]
        ratio = _times(second["work_normalized_var"] / best["work_normalized_var"])
        lines.append(
            f"At equal compute (variance × seconds per estimate, K={k}) {_name(best)} wins: "
            f"{_iv(best, 'work_normalized_var')}, {ratio} below the next, "
            f"{_name(second)}{_separation(best, second, 'work_normalized_var')}."
        )
    return lines


def _divergence(summary: pd.DataFrame) -> list[str]:
    if summary["diverged"].isna().all():  # nothing was trained
        return []
    runs = int(np.nansum(summary["runs"]))
    bad = summary[summary["diverged"].fillna(0) > 0]
    if bad.empty:
        return [f"No training run diverged ({runs} runs)."]
    which = ", ".join(
        f"{_name(r)} K={int(r['num_samples'])} ({int(r['diverged'])}/{int(r['runs'])})"
        for _, r in bad.iterrows()
    )
    return [
        f"{int(bad['diverged'].sum())} of {runs} training runs diverged (a NaN or Inf, or a loss or gradient norm "
        f"beyond {_power_of_ten(DIVERGENCE_BOUND)}; left out of the means): {which}."
    ]


# ------------------------------------------------------------------------------------------------ helpers


def _name(row: pd.Series) -> str:
    return f"`{setting_label(row['estimator'], row['sampler'])}`"


def _key(row: pd.Series) -> tuple[str, int, str]:
    """(estimator, K, sampler) of a summary row, as `tables.paired_difference` takes it."""
    return row["estimator"], int(row["num_samples"]), row["sampler"]


def _iv(row: pd.Series, metric: str, symmetric: bool = False) -> str:
    return fmt_interval(row[metric], row[f"{metric}_low"], row[f"{metric}_high"], symmetric=symmetric)


def _overlap(a: pd.Series, b: pd.Series, metric: str) -> bool | None:
    """Whether two rows' intervals of ``metric`` overlap (None when an interval is missing)."""
    lo_a, hi_a, lo_b, hi_b = (r[f"{metric}_{s}"] for r in (a, b) for s in ("low", "high"))
    if not all(v is not None and np.isfinite(v) for v in (lo_a, hi_a, lo_b, hi_b)):
        return None
    return bool(lo_a <= hi_b and lo_b <= hi_a)


def _times(ratio: float) -> str:
    return f"{fmt_number(ratio, 2)}×" if np.isfinite(ratio) else "–"


def _separation(a: pd.Series, b: pd.Series, metric: str) -> str:
    overlap = _overlap(a, b, metric)
    if overlap is None:
        return ""
    return " (the intervals overlap)" if overlap else " (the intervals do not overlap)"


def _variance_rank(summary: pd.DataFrame, row: pd.Series) -> str:
    """'the 2nd-lowest encoder variance of the 9 at K=10' (or '' when variance was not measured)."""
    if not np.isfinite(row["trace_var"]):
        return ""
    peers = summary[(summary["num_samples"] == row["num_samples"]) & np.isfinite(summary["trace_var"])]
    rank = int((peers["trace_var"] < row["trace_var"]).sum()) + 1
    place = "the lowest" if rank == 1 else f"the {_ordinal(rank)}-lowest"
    return f"{place} encoder variance of the {len(peers)} at K={int(row['num_samples'])}"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _recommendation(summary: pd.DataFrame, convergence: pd.DataFrame) -> list[str]:
    """The best setting by test log-likelihood if it is separated from every other, and the best at the
    cheapest K with its paired deficit; settings with diverged runs are not recommended."""
    rows = summary[np.isfinite(summary["test_log_likelihood"])]
    if rows.empty:
        return []
    top = rows.loc[rows["test_log_likelihood"].idxmax()]
    clean = rows[rows.apply(lambda r: _diverged_runs(r) == 0, axis=1)]
    lead = ""
    if _diverged_runs(top):
        lead = (
            f"{_name(top)} at K={int(top['num_samples'])} has the highest mean test log-likelihood, but "
            f"{_diverged_runs(top)} of {int(top['runs'])} of its runs diverged (left out of that mean), so it is "
            "not recommended. "
        )
    if clean.empty:
        return [lead + "Every setting had diverged runs: there is no recommendation."]
    best = clean.loc[clean["test_log_likelihood"].idxmax()]
    tied = _tied(convergence, "test_log_likelihood", best, rows.drop(index=best.name))
    caveat = _unconverged_note(rows, best)
    if tied:
        return [
            lead + f"No estimator is separated from the best by test log-likelihood: {_name(best)} at "
            f"K={int(best['num_samples'])} has the highest ({_iv(best, 'test_log_likelihood', True)} nats), but "
            f"paired by seed it is not separated from {_names(tied, k=True)}, so these runs do not single out one "
            f"setting.{caveat}"
        ]  # fmt: skip
    k_min = clean["num_samples"].min()
    cheap = clean[clean["num_samples"] == k_min]
    cheap_best = cheap.loc[cheap["test_log_likelihood"].idxmax()]
    why = _variance_rank(summary, best)
    text = (
        lead + f"Recommendation for this model and data: {_name(best)} at K={int(best['num_samples'])}, the "
        f"best test log-likelihood of all {len(rows)} settings and separated from every other when paired by "
        "seed" + (f" ({why})" if why else "")
    )
    if cheap_best.name == best.name:
        return [text + f", at the cheapest K.{caveat}"]
    diff, low, high, n = tables.paired_difference(
        convergence,
        "test_log_likelihood",
        _key(cheap_best),
        _key(best),
    )
    cost = ""
    if np.isfinite([best["step_ms"], cheap_best["step_ms"]]).all():
        cost = f", {_times(best['step_ms'] / cheap_best['step_ms'])} cheaper per step"
    interval = f" [{fmt_number(low)}, {fmt_number(high)}]" if np.isfinite(low) else ""
    why = _variance_rank(summary, cheap_best)
    return [
        text + f". At K={int(k_min)}{cost}, the best is {_name(cheap_best)}" + (f" ({why})" if why else "")
        + f": {fmt_number(diff)}{interval} nats from it, paired over {n} seeds.{caveat}"
    ]  # fmt: skip


def _tied(convergence: pd.DataFrame, metric: str, best: pd.Series, others: pd.DataFrame) -> list[pd.Series]:
    """Rows of ``others`` whose paired difference to ``best`` has an interval containing 0 (or none)."""
    tied = []
    for _, row in others.iterrows():
        _, low, _, _ = tables.paired_difference(convergence, metric, _key(best), _key(row))
        if not (np.isfinite(low) and low > 0):
            tied.append(row)
    return tied


def _names(rows: list, limit: int = 4, k: bool | None = None) -> str:
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


def _power_of_ten(value: float) -> str:
    return f"{value:.0e}".replace("e+0", "e").replace("e+", "e")


def _at_floor(row) -> bool:
    """Whether the row's SNR interval reaches the noise floor (False when unknown)."""
    return truth(row["snr_at_floor"]) is True


def _diverged_runs(row: pd.Series) -> int:
    value = row["diverged"]
    return int(value) if value is not None and np.isfinite(value) else 0


def _diverged_note(row: pd.Series) -> str:
    """'; but 1 of 3 of its runs diverged ...' for a setting with diverged runs, else ''."""
    d = _diverged_runs(row)
    if not d:
        return ""
    return f" (but {d} of {int(row['runs'])} of its runs diverged and are left out of this mean)"


def _unconverged_note(rows: pd.DataFrame, best: pd.Series) -> str:
    """A sentence when some compared settings had not levelled off (or '' when all had, or none was judged)."""
    moving = rows[rows["converged"].map(lambda v: truth(v) is False)]
    if moving.empty:
        return ""
    if best.name in moving.index:
        which = f"`{best['estimator']}`'s test ELBO still moved by {_iv(best, 'test_elbo_rise', True)} nats"
    else:
        which = f"the test ELBO of {len(moving)} of the {len(rows)} settings still moved by more than {TOLERANCE:g} nat"
    return (
        f" This rests on runs that had not converged ({which} over the last quarter of training): it ranks early "
        "training, not converged models."
    )


def _score_function(name: str) -> bool:
    cls = ESTIMATORS.get(name)
    return cls is not None and cls.family == "score-function"
