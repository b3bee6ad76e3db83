"""Sentences of the reading that set the run's test log-likelihoods beside published gaps, paired by seed.

Two published comparisons are checked whenever a run has the settings they need (any data set; the numbers
quoted are the papers', on MNIST, and the sentences never claim them for this run):

- IWAE against the VAE at the same K: Burda, Grosse & Salakhutdinov 2015 (arXiv:1509.00519, Table 1, one
  stochastic layer, k = 50) report a test NLL of 84.78 nats for IWAE against 86.35 for the VAE, a gap of
  `BURDA_GAP` nats in IWAE's favour. The run's gap is IWAE minus ``reparam`` (the VAE trained on the ELBO)
  at the largest K both have, paired by seed (:func:`vaebench.analysis.summaries.paired_difference`).
  *Agrees* means its interval lies above 0 (IWAE better, as published); whether `BURDA_GAP` lies inside the
  interval is said separately (the size of the gap depends on the data and the model).
- DReG against IWAE at the same K: Tucker et al. 2018 (arXiv:1810.04152) find DReG as good as or better than
  IWAE; reproductions put the gain at about `DREG_GAIN` nats. *Agrees* means the interval of DReG minus IWAE
  does not lie below 0 (DReG not worse).

The test log-likelihood is the suite's importance-sampled estimate (k = ``train.ll_samples``), a lower bound
whose bias is larger for a worse q; a sentence says when the curves had not levelled off.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.analysis import summaries
from vaebench.analysis.settings import truth
from vaebench.measures.schema import SUMMARY, complete
from vaebench.report.formatting import fmt_number

BURDA_GAP = 86.35 - 84.78
"""IWAE's test log-likelihood gain over the VAE at k = 50 on MNIST, one stochastic layer (Burda et al. 2015)."""

DREG_GAIN = 0.3
"""DReG's gain over IWAE at the same K in reproductions (nats, approximate)."""

METRIC = "test_log_likelihood"


def published_comparisons(summary: pd.DataFrame, convergence: pd.DataFrame) -> list[str]:
    """The sentences (empty when the run lacks the settings or the test log-likelihood)."""
    if summary.empty or convergence.empty or not (convergence["metric"] == METRIC).any():
        return []
    summary = complete(summary, SUMMARY)
    lines = []
    iwae_k = _shared_k(summary, "iwae", "reparam")
    if iwae_k:
        diff, low, high, n = summaries.paired_difference(
            convergence, METRIC, ("iwae", iwae_k), ("reparam", iwae_k)
        )
        if n:
            above = np.isfinite(low) and low > 0
            inside = np.isfinite(low) and low <= BURDA_GAP <= high
            lines.append(
                f"IWAE against the VAE (`reparam`) at K={iwae_k}: test log-likelihood {_diff(diff, low, high, n)} "
                f"in IWAE's favour. Burda et al. 2015 report {fmt_number(BURDA_GAP)} nats on MNIST (84.78 against "
                f"86.35 NLL, one stochastic layer, k=50): "
                + ("**agrees** in direction (IWAE better, the interval above 0)" if above else "**does not agree**: the interval does not lie above 0")
                + f"; the published {fmt_number(BURDA_GAP)} nats {'lies' if inside else 'does not lie'} within it"
                + _unconverged(summary, [("iwae", iwae_k), ("reparam", iwae_k)])
                + "."
            )  # fmt: skip
    dreg_k = _shared_k(summary, "dreg", "iwae")
    if dreg_k:
        diff, low, high, n = summaries.paired_difference(
            convergence, METRIC, ("dreg", dreg_k), ("iwae", dreg_k)
        )
        if n:
            worse = np.isfinite(high) and high < 0
            inside = np.isfinite(low) and low <= DREG_GAIN <= high
            lines.append(
                f"DReG against IWAE at K={dreg_k}: test log-likelihood {_diff(diff, low, high, n)} in DReG's favour. "
                f"Tucker et al. 2018 find DReG as good or better, about {fmt_number(DREG_GAIN)} nats in "
                "reproductions: "
                + ("**does not agree**: DReG is worse (the interval lies below 0)" if worse else "**agrees** (DReG not worse: the interval does not lie below 0)")
                + f"; {fmt_number(DREG_GAIN)} nats {'lies' if inside else 'does not lie'} within it"
                + _unconverged(summary, [("dreg", dreg_k), ("iwae", dreg_k)])
                + "."
            )  # fmt: skip
    return lines


def _shared_k(summary: pd.DataFrame, a: str, b: str) -> int | None:
    """The largest K at which both estimators (iid draws) have a test log-likelihood."""
    rows = summary[np.isfinite(summary[METRIC]) & (summary["sampler"] == "iid")]
    ks = set(rows.loc[rows["estimator"] == a, "num_samples"]) & set(
        rows.loc[rows["estimator"] == b, "num_samples"]
    )
    ks = {k for k in ks if k > 1}  # at K = 1 IWAE is the VAE and DReG is STL: no comparison to make
    return int(max(ks)) if ks else None


def _diff(diff: float, low: float, high: float, n: int) -> str:
    interval = f" [{fmt_number(low)}, {fmt_number(high)}]" if np.isfinite(low) else " (no interval: one seed)"
    return f"{fmt_number(diff)}{interval} nats, paired over {n} seeds,"


def _unconverged(summary: pd.DataFrame, settings: list[tuple[str, int]]) -> str:
    """A clause when some of the compared settings' test ELBO had not levelled off."""
    rows = [
        (name, k, truth(r["converged"]))
        for name, k in settings
        for _, r in summary[(summary["estimator"] == name) & (summary["num_samples"] == k)].iterrows()
    ]
    if all(judged is None for *_, judged in rows):  # not judged: curves too short, or nothing trained
        return ""
    moving = [f"`{name}` K={k}" for name, k, judged in rows if judged is False]
    if not moving:
        return " (the curves had levelled off)"
    return f" (but {', '.join(moving)} had not levelled off: this compares unconverged runs)"
