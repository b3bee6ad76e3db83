"""The reading's sentences on quality: whether training had levelled off, the best final test ELBO and whom
it beats paired by seed, and the recommendation across K (the best test log-likelihood of each K is a
verdict of the bottom line, :mod:`vaebench.analysis.verdicts`).

Runs of one seed share the initialisation and the data order, so the per-seed difference of two settings'
final test log-likelihood removes that shared variation (:func:`vaebench.analysis.summaries.paired_difference`:
the mean of d_s = a_s - b_s over seeds s with a Student-t interval). A setting is *ahead* of another when that
interval lies above 0, and is recommended only when it is ahead of every other setting and none of its runs
diverged; otherwise the reading says that the runs do not single out one setting. A curve had *levelled off*
when its test ELBO moved by less than :data:`vaebench.analysis.plateau.TOLERANCE` nats over the last quarter
of training, interval included (:mod:`vaebench.analysis.plateau`). A setting whose estimator declares a bias
at its K (``iwae-stl`` at K > 1, marked †) is never ranked with the unbiased ones: the sentences name it apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.analysis import summaries
from vaebench.analysis.plateau import TOLERANCE
from vaebench.analysis.settings import truth
from vaebench.report.formatting import fmt_number
from vaebench.report.phrases import (
    biased,
    diverged_note,
    diverged_runs,
    finite_rows_at,
    ordinal,
    setting_key,
    setting_name,
    setting_names,
    times,
    with_interval,
)


def levelled_off(summary: pd.DataFrame) -> list[str]:
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
        f"less (mean change {fmt_number(rise.min())} to {fmt_number(rise.max())} nats; {setting_names(list(moving.itertuples()), k=True)}). "
        "The test figures below compare early training, not converged models; train longer before concluding "
        "about converged ones."
    ]  # fmt: skip


def quality(summary: pd.DataFrame, ks: list, convergence: pd.DataFrame) -> list[str]:
    """The best final test ELBO per K among the unbiased settings, and whom it beats when paired by seed."""
    lines = []
    for metric, what in (("final_test_elbo", "final test ELBO"),):
        for k in ks:
            rows = finite_rows_at(summary, k, metric)
            wrong = rows[[biased(r) for _, r in rows.iterrows()]]
            rows = rows.drop(index=wrong.index)
            if rows.empty:
                continue
            best = rows.loc[rows[metric].idxmax()]
            text = (
                f"Best {what} at K={k}: {setting_name(best)}, {with_interval(best, metric, True)} nats"
                + diverged_note(best)
            )
            others = rows.drop(index=best.name)
            if not others.empty and not convergence.empty:
                tied = tied_with(convergence, metric, best, others)
                text += (
                    f"; paired by seed (same initialisation and data order), it is ahead of "
                    f"{len(others) - len(tied)} of the other {len(others)}"
                )
                if tied:
                    text += f"; not separated from it: {setting_names(tied)}"
            lines.append(text + _not_ranked(wrong) + ".")
    return lines


def _not_ranked(wrong: pd.DataFrame) -> str:
    """' (`iwae-stl` † not ranked: biased ...)' for the biased rows left out of a ranking, else ''."""
    if wrong.empty:
        return ""
    names = setting_names(list(wrong.itertuples()))
    return f" ({names} † not ranked: {wrong['biased'].iloc[0]})"


def recommendation(summary: pd.DataFrame, convergence: pd.DataFrame) -> list[str]:
    """The best setting by test log-likelihood if it is separated from every other, and the best at the
    cheapest K with its paired deficit; settings with diverged runs are not recommended."""
    rows = summary[np.isfinite(summary["test_log_likelihood"])]
    wrong = rows[[biased(r) for _, r in rows.iterrows()]]
    rows = rows.drop(index=wrong.index)
    if rows.empty:
        return []
    top = rows.loc[rows["test_log_likelihood"].idxmax()]
    clean = rows[rows.apply(lambda r: diverged_runs(r) == 0, axis=1)]
    lead = ""
    if diverged_runs(top):
        lead = (
            f"{setting_name(top)} at K={int(top['num_samples'])} has the highest mean test log-likelihood, but "
            f"{diverged_runs(top)} of {int(top['runs'])} of its runs diverged (left out of that mean), so it is "
            "not recommended. "
        )
    if clean.empty:
        return [lead + "Every setting had diverged runs: there is no recommendation."]
    best = clean.loc[clean["test_log_likelihood"].idxmax()]
    tied = tied_with(convergence, "test_log_likelihood", best, rows.drop(index=best.name))
    caveat = unconverged_note(rows, best)
    if tied:
        return [
            lead + f"No estimator is separated from the best by test log-likelihood: {setting_name(best)} at "
            f"K={int(best['num_samples'])} has the highest ({with_interval(best, 'test_log_likelihood', True)} nats), but "
            f"paired by seed it is not separated from {setting_names(tied, k=True)}, so these runs do not single out one "
            f"setting{_not_ranked(wrong)}.{caveat}"
        ]  # fmt: skip
    k_min = clean["num_samples"].min()
    cheap = clean[clean["num_samples"] == k_min]
    cheap_best = cheap.loc[cheap["test_log_likelihood"].idxmax()]
    why = variance_rank(summary, best)
    text = (
        lead
        + f"Recommendation for this model and data: {setting_name(best)} at K={int(best['num_samples'])}, the "
        f"best test log-likelihood of all {len(rows)} unbiased settings and separated from every other when "
        "paired by seed" + (f" ({why})" if why else "") + _not_ranked(wrong)
    )
    if cheap_best.name == best.name:
        return [text + f", at the cheapest K.{caveat}"]
    diff, low, high, n = summaries.paired_difference(
        convergence,
        "test_log_likelihood",
        setting_key(cheap_best),
        setting_key(best),
    )
    cost = ""
    if np.isfinite([best["step_ms"], cheap_best["step_ms"]]).all():
        cost = (
            f"; its step takes {times(cheap_best['step_ms'] / best['step_ms'])} the time of the recommended one's "
            "on this machine (timed in separate units: no interval)"
        )
    why = variance_rank(summary, cheap_best)
    return [
        text + f". At the cheapest K={int(k_min)} the best is {setting_name(cheap_best)}" + (f" ({why})" if why else "")
        + f": {_signed_gap(diff, low, high)}, paired over {n} seeds{cost}.{caveat}"
    ]  # fmt: skip


def _signed_gap(diff: float, low: float, high: float) -> str:
    """'behind it by 2.0 [1.0, 3.0] nats' (or ahead of it, level with it): words that follow the sign."""
    if not np.isfinite(diff) or diff == 0:
        return "level with it"
    lo, hi = (low, high) if diff > 0 else (-high, -low)
    interval = f" [{fmt_number(lo)}, {fmt_number(hi)}]" if np.isfinite(low) else ""
    return f"{'ahead of' if diff > 0 else 'behind'} it by {fmt_number(abs(diff))}{interval} nats"


def tied_with(
    convergence: pd.DataFrame, metric: str, best: pd.Series, others: pd.DataFrame
) -> list[pd.Series]:
    """Rows of ``others`` whose paired difference to ``best`` has an interval containing 0 (or none)."""
    tied = []
    for _, row in others.iterrows():
        _, low, _, _ = summaries.paired_difference(convergence, metric, setting_key(best), setting_key(row))
        if not (np.isfinite(low) and low > 0):
            tied.append(row)
    return tied


def variance_rank(summary: pd.DataFrame, row: pd.Series) -> str:
    """'the 2nd-lowest encoder variance of the 9 at K=10' (or '' when variance was not measured)."""
    if not np.isfinite(row["trace_var"]):
        return ""
    peers = summary[(summary["num_samples"] == row["num_samples"]) & np.isfinite(summary["trace_var"])]
    rank = int((peers["trace_var"] < row["trace_var"]).sum()) + 1
    place = "the lowest" if rank == 1 else f"the {ordinal(rank)}-lowest"
    return f"{place} encoder variance of the {len(peers)} at K={int(row['num_samples'])}"


def unconverged_note(rows: pd.DataFrame, best: pd.Series) -> str:
    """A sentence when some compared settings had not levelled off (or '' when all had, or none was judged)."""
    moving = rows[rows["converged"].map(lambda v: truth(v) is False)]
    if moving.empty:
        return ""
    if best.name not in moving.index:
        return (
            f" `{best['estimator']}`'s curves had levelled off; those of {setting_names(list(moving.itertuples()), k=True)} "
            f"had not (their test ELBO still moved by more than {TOLERANCE:g} nat over the last quarter of "
            "training): their places rank early training, not converged models."
        )
    which = (
        f"`{best['estimator']}`'s test ELBO still moved by {with_interval(best, 'test_elbo_rise', True)} nats"
    )
    return (
        f" This rests on runs that had not converged ({which} over the last quarter of training): it ranks early "
        "training, not converged models."
    )
