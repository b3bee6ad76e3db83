"""The comparison table and the variance-by-checkpoint table as markdown, with the legend of their columns.

The tables themselves are analysis (:mod:`vaebench.analysis.summaries`); this module only renders them.
Number formatting and the markdown primitives live in :mod:`vaebench.report.formatting`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.estimators import ESTIMATORS
from vaebench.measures.schema import SUMMARY, SUMMARY_FIGURES, complete
from vaebench.report.formatting import at_floor, flagged_cell, fmt_number, interval_cell, markdown
from vaebench.report.settings import all_iid, setting_columns

SUMMARY_COLUMNS: list[tuple[str, str, str, bool]] = [
    # (column, header, meaning, symmetric interval)
    ("trace_var", "encoder grad variance", "trace of the encoder gradient's covariance (lower is better)", False),
    ("snr", "encoder SNR", "mean over coordinates of |E g| / std g (Rainforth et al. 2018; higher is better)", False),
    ("final_test_elbo", "test ELBO", "plain ELBO of the test set at the end of training (nats; higher is better)", True),
    ("test_log_likelihood", "test log p(x)", "importance-sampled log-likelihood of the test set (nats; higher is better)", True),
    ("test_elbo_rise", "ELBO rise, last quarter", "change of the test ELBO over the last quarter of training, each seed's curve fitted by least squares (nats; within ±1 nat: levelled off, else not converged)", True),
    ("compile_s", "compile (s)", "seconds of a training run's steps that compiled (torch.compile: the first step of each batch shape), mean over its seeds; kept out of the training seconds that the wall-clock figures use. Seeds trained as one program compile once, and each seed counts its share (that compilation's seconds / seeds). Shown only when the runs compiled", False),
    ("step_ms", "step (ms)", "median time of one training step on this machine: estimator, backward, optimizer", False),
    ("step_ratio", "step / yardstick", "step time over that of the K's yardstick setting, timed interleaved: the geometric mean of the per-round ratios with a Student-t interval over rounds", False),
    ("work_normalized_var", "variance x time", "encoder variance x seconds per gradient estimate, timed inside the variance unit (its interval covers the variance only, not the timing: the figure does not reproduce across runs)", False),
    ("compute_ratio", "variance x time / yardstick", "encoder variance x step time over the yardstick setting's: lower wins at equal compute; the interval combines the variances' and the step-time ratio's", False),
]  # fmt: skip
"""The comparison table's columns, their headers in report.md and what they mean."""


def summary_markdown(summary: pd.DataFrame) -> str:
    """The comparison table as markdown (only the columns that were measured)."""
    summary = complete(summary, SUMMARY)  # columns not measured are NaN: left out below
    cols = [*setting_columns(summary), ("objective", lambda r: str(r["objective"]))]
    for column, header, _, symmetric in shown_columns(summary):
        cell = interval_cell(column, symmetric) if column in SUMMARY_FIGURES else _number_cell(column)
        if column == "snr":
            cell = flagged_cell(cell, "snr_at_floor", "(noise floor)")
        if column in TRAINED_COLUMNS:
            cell = _shared_cell(cell)
        cols.append((header, cell))
    if summary["diverged"].fillna(0).any():
        cols.append(
            (
                "diverged",
                lambda r: f"{int(r['diverged'])}/{int(r['runs'])}" if np.isfinite(r["runs"]) else "–",
            )
        )
    return markdown(summary, cols)


TRAINED_COLUMNS = ("final_test_elbo", "test_log_likelihood", "test_elbo_rise", "compile_s")
"""Columns measured on the training runs: a setting trained once as another shows that setting's (‡)."""


def _number_cell(column: str):
    return lambda row: fmt_number(row[column])


def _shared_cell(cell):
    def shown(row) -> str:
        text = cell(row)
        return (
            f"{text} ‡"
            if isinstance(row.get("trained_as"), str) and row["trained_as"] and text != "–"
            else text
        )

    return shown


def shown_columns(summary: pd.DataFrame) -> list[tuple[str, str, str, bool]]:
    """The columns of `SUMMARY_COLUMNS` the table shows: those measured, the compile seconds only where a run
    compiled, and the work-normalised variance only where no interleaved compute ratio replaces it (results
    folders from before interleaved timing)."""
    shown = [c for c in SUMMARY_COLUMNS if summary[c[0]].notna().any()]
    if not (summary["compile_s"].fillna(0) > 0).any():  # eager runs: a column of zeros says nothing
        shown = [c for c in shown if c[0] != "compile_s"]
    if summary["compute_ratio"].notna().any():
        shown = [c for c in shown if c[0] != "work_normalized_var"]
    return shown


def legend_markdown(summary: pd.DataFrame, level: float = 0.95) -> str:
    """One bullet per column of :func:`summary_markdown`: what it measures."""
    summary = complete(summary, SUMMARY)
    lines = []
    if not all_iid(summary):
        lines.append(
            "- **sampler**: how the K draws of ε in z = μ + σ ε are made: `iid` (independent), `antithetic` "
            "(pairs ε, -ε) or `rqmc` (scrambled Sobol points, a fresh scramble per datapoint and step); each "
            "keeps its estimator unbiased (`python -m vaebench list` shows which estimator takes which)."
        )
    lines.append(
        "- **objective**: what the estimator's training maximises; `iwae` rows optimise the importance-weighted "
        "bound IWAE_K, so their training objective is a different number (their test ELBO and log p(x) are "
        "comparable)."
    )
    biased = summary[summary["biased"].fillna("") != ""]
    for name in dict.fromkeys(biased["estimator"]):
        lines.append(
            f"- †: `{name}` is {ESTIMATORS[name].bias}: its variance and SNR describe a gradient of the wrong "
            "mean, so a low variance is no merit."
        )
    shared = summary[summary["trained_as"].astype(object).fillna("").astype(str) != ""]
    if not shared.empty:
        pairs = "; ".join(
            f"`{r['estimator']}` K={int(r['num_samples'])} is `{r['trained_as']}`'s"
            for _, r in shared.iterrows()
        )
        lines.append(
            f"- ‡: the training runs of another setting ({pairs}): the estimator declares that at this K its "
            "gradient is that one's, draw for draw, so the suite trained it once (a test checks the "
            "declaration); its variance and step time are its own measurements."
        )
    for column, header, meaning, _ in shown_columns(summary):
        lines.append(f"- **{header}**: {meaning}.")
        if column in ("step_ratio", "compute_ratio"):
            refs = ", ".join(
                f"`{r}`" for r in dict.fromkeys(summary["timing_yardstick"].dropna().astype(str))
            )
            lines[-1] = lines[-1][:-1] + f" (the yardstick: {refs})."
        if column == "snr" and at_floor(summary).any():
            floor = summary.loc[at_floor(summary), "snr_floor"]
            lines[-1] = lines[-1][:-1] + (
                f"; *(noise floor)*: its interval reaches √(2/(πR)) = {fmt_number(floor.max())}, the SNR "
                "that a gradient of mean zero shows with R replicates: no signal is measured, so these SNRs "
                "are not ranked."
            )
    lines.append(
        f"- Intervals are {level:.0%}. `x ± h`: Student-t interval of the mean over training seeds. "
        "`x [low, high]`: percentile bootstrap over gradient replicates (variance, SNR) or over timed steps "
        "(step time); variance figures are averaged over the variance seeds' minibatches (the same ones for "
        "every estimator) and their interval is the Monte Carlo error of that average. A ratio to the "
        "yardstick: Student-t over the rounds of interleaved timing (step time), combined in quadrature with "
        "the variances' intervals (variance x time)."
    )
    return "\n".join(lines)
