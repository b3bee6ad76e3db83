"""The run's test log-likelihoods set beside two published gaps, paired by seed: figures and verdicts.

Two published comparisons are checked whenever a run has the settings they need:

- IWAE against the VAE at the same K: Burda, Grosse & Salakhutdinov 2015 (arXiv:1509.00519, Table 1, one
  stochastic layer, k = 50) report a test NLL of 84.78 nats for IWAE against 86.35 for the VAE, a gap of
  `BURDA_GAP` nats in IWAE's favour. The run's gap is IWAE minus ``reparam`` (the VAE trained on the ELBO)
  at the largest K both have, paired by seed (:func:`vaebench.analysis.summaries.paired_difference`).
- DReG against IWAE at the same K: Tucker et al. 2018 (arXiv:1810.04152) find DReG as good as or better than
  IWAE; reproductions put the gain at about `DREG_GAIN` nats.

A run is set beside these results only when it can be: on binarized images with a Bernoulli likelihood
(`DIRECTION_DATA`; the published figures are MNIST's, so their size is compared on MNIST only) and with
curves that had levelled off (:mod:`vaebench.analysis.plateau`). Otherwise the comparison carries the run's
own paired difference and the reason it is not compared (``blocker``: other data, another likelihood,
training too short to have levelled off).

When compared, the verdict follows the interval of the paired difference d: for IWAE, ``agrees`` (d's
interval above 0: IWAE better, as published), ``does not agree`` (below 0: IWAE worse) or ``inconclusive``
(it holds 0: no direction shown); for DReG, ``does not agree`` (below 0: DReG worse), ``agrees`` (above 0:
DReG better) or ``consistent`` (it holds 0: as good as IWAE, which the claim allows). Without an interval
(one seed) it ``cannot be judged``; a blocked comparison is ``not comparable``.

The test log-likelihood is the suite's importance-sampled estimate (k = ``train.ll_samples``), a lower bound
whose bias is larger for a worse q. The words of the report are :mod:`vaebench.report.published`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vaebench.analysis import summaries
from vaebench.analysis.settings import truth
from vaebench.measures.schema import SUMMARY, complete

BURDA_GAP = 86.35 - 84.78
"""IWAE's test log-likelihood gain over the VAE at k = 50 on MNIST, one stochastic layer (Burda et al. 2015)."""

DREG_GAIN = 0.3
"""DReG's gain over IWAE at the same K in reproductions (nats, approximate)."""

METRIC = "test_log_likelihood"

DIRECTION_DATA = ("mnist", "fashion-mnist")
"""Data sets (binarized, Bernoulli likelihood) on which the direction of the published gaps is compared; the
published sizes are MNIST's, compared on ``mnist`` only."""

PAIRS = (("iwae", "reparam", "burda"), ("dreg", "iwae", "tucker"))
"""(candidate, rival, claim) of each published comparison."""


@dataclass(frozen=True)
class Comparison:
    """One published gap set beside the run's paired difference (candidate minus rival, nats).

    Attributes:
        claim: ``burda`` (IWAE against the VAE) or ``tucker`` (DReG against IWAE).
        k: the K of both settings.
        diff, low, high: the mean paired difference and its interval (NaN bounds: one seed).
        seeds: how many seeds were paired.
        blocker: why the run is not set beside the published figure ('' when it is).
        verdict: see the module docstring.
        size_inside: whether the published size lies inside the interval (None: not compared in size).
    """

    claim: str
    k: int
    diff: float
    low: float
    high: float
    seeds: int
    blocker: str
    verdict: str
    size_inside: bool | None

    @property
    def published_size(self) -> float:
        return BURDA_GAP if self.claim == "burda" else DREG_GAIN


def published_comparisons(
    summary: pd.DataFrame,
    convergence: pd.DataFrame,
    *,
    data: str | None = None,
    likelihood: str | None = None,
) -> list[Comparison]:
    """The comparisons the run can make (empty when it lacks the settings or the test log-likelihood).

    Args:
        summary, convergence: the comparison table and the tidy convergence rows.
        data: the data set's name (``config.data.name``); None: unknown, no comparison is made.
        likelihood: ``bernoulli`` or ``gaussian`` (the resolved likelihood); None: unknown.
    """
    if summary.empty or convergence.empty or not (convergence["metric"] == METRIC).any():
        return []
    summary = complete(summary, SUMMARY)
    found = []
    for a, b, claim in PAIRS:
        k = _shared_k(summary, a, b)
        if not k:
            continue
        diff, low, high, n = summaries.paired_difference(convergence, METRIC, (a, k), (b, k))
        if not n:
            continue
        blocker = _why_not(summary, [(a, k), (b, k)], data, likelihood)
        verdict = "not comparable" if blocker else _verdict(claim, low, high)
        size = BURDA_GAP if claim == "burda" else DREG_GAIN
        sized = not blocker and math.isfinite(low) and (claim != "burda" or data == "mnist")
        inside = bool(low <= size <= high) if sized else None
        found.append(Comparison(claim, k, diff, low, high, n, blocker, verdict, inside))
    return found


def _verdict(claim: str, low: float, high: float) -> str:
    if not np.isfinite(low):
        return "cannot be judged"
    if high < 0:
        return "does not agree"
    if low > 0:
        return "agrees"
    return "inconclusive" if claim == "burda" else "consistent"


def _why_not(
    summary: pd.DataFrame, settings: list[tuple[str, int]], data: str | None, likelihood: str | None
) -> str:
    """Why this run cannot be set beside the published figures ('' when it can)."""
    reasons = []
    if data is None or likelihood is None:
        reasons.append(
            "those are on binarized MNIST with a Bernoulli likelihood, and this run's data are not known"
        )
    elif data not in DIRECTION_DATA or likelihood != "bernoulli":
        reasons.append(
            f"those are on binarized MNIST with a Bernoulli likelihood, and this run is on {data} with a "
            f"{likelihood.capitalize()} likelihood"
        )
    judged = [
        (name, k, truth(r["converged"]))
        for name, k in settings
        for _, r in summary[(summary["estimator"] == name) & (summary["num_samples"] == k)].iterrows()
    ]
    if any(j is False for *_, j in judged):
        moving = ", ".join(f"`{name}` K={k}" for name, k, j in judged if j is False)
        reasons.append(
            f"the curves of {moving} had not levelled off (the published figures are of trained models)"
        )
    elif all(j is None for *_, j in judged):
        reasons.append("training was too short to judge whether the curves had levelled off")
    return "; ".join(reasons)


def _shared_k(summary: pd.DataFrame, a: str, b: str) -> int | None:
    """The largest K at which both estimators (iid draws) have a test log-likelihood."""
    rows = summary[np.isfinite(summary[METRIC]) & (summary["sampler"] == "iid")]
    ks = set(rows.loc[rows["estimator"] == a, "num_samples"]) & set(
        rows.loc[rows["estimator"] == b, "num_samples"]
    )
    ks = {k for k in ks if k > 1}  # at K = 1 IWAE is the VAE and DReG is STL: no comparison to make
    return int(max(ks)) if ks else None
