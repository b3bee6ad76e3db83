r"""A published ordering of estimators by test log-likelihood, judged link by link from paired contrasts.

A ranking a_1 R_1 a_2 R_2 ... a_n at one K, each relation R_i one of `RELATIONS`, is judged one link (a_i, a_i+1)
at a time from the test log-likelihood of each seed (:func:`vaebench.analysis.summaries.per_seed`):
d = mean_s (L_{a_i, s} - L_{a_i+1, s}) with its Student-t interval (:func:`vaebench.analysis.contrast.contrast`,
``paired difference``: runs of one seed share the initialisation and the data order, which the pairing removes).

- ``>`` (better): *agrees* when d's interval lies above 0, *does not agree* when below, *inconclusive* when it
  holds 0;
- ``>=`` (at least as good): the same, but an interval holding 0 is *consistent* with it;
- ``~`` (as good as): *agrees* when the interval lies inside [-`TIE`, `TIE`], *does not agree* when wholly
  outside it, else *inconclusive* (an equivalence test: a wide interval is no evidence of a tie).

Without an interval (one seed) a link *cannot be judged*. The ranking's verdict is its worst link's, in the
order of `SEVERITY`, and the link that decides it is the one a claims row reports (:func:`ranking_row`), with the
published figures beside the run's. A ranking is compared on the source's data only, never withheld for
curves still moving: it is the ranking at the run's budget, and its row says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from vaebench.analysis import summaries
from vaebench.analysis.contrast import Contrast, contrast

RELATIONS: dict[str, str] = {">": "better than", ">=": "at least as good as", "~": "as good as"}
"""The relations of a link, in words."""

TIE = 1.0
"""Nats within which two estimators' test log-likelihoods are "as good as" each other (``~``)."""

SEVERITY = ("does not agree", "inconclusive", "cannot be judged", "consistent", "agrees")
"""Link verdicts, worst first: a ranking's verdict is its worst link's."""


@dataclass(frozen=True)
class Ranking:
    """A claim measured by the test log-likelihood of ``order`` at K = ``k``, each neighbouring pair paired by seed.

    Attributes:
        k: the K (iid draws) every estimator trained at.
        order: estimator names, best first.
        relations: between neighbours, one of `RELATIONS` each.
        published: the source's test log-likelihood of each of ``order`` (nats), the same order.
        read_off: how far a published figure may be from the source's (read off a plot), nats.
        data: the data set (binarized, Bernoulli likelihood) the published figures are on.
        source_steps: the training steps behind the published figures (0: not stated).
    """

    k: int
    order: tuple[str, ...]
    relations: tuple[str, ...]
    published: tuple[float, ...]
    read_off: float = 0.0
    data: str = "fashion-mnist"
    source_steps: int = 0


@dataclass(frozen=True)
class Link:
    """One judged link: ``better`` R ``worse``, their paired difference and its verdict."""

    better: str
    worse: str
    relation: str
    d: Contrast
    verdict: str


def link_verdict(relation: str, low: float, high: float) -> str:
    """The verdict of one link from the interval [low, high] of better - worse (module docstring)."""
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation {relation!r}; choose one of: {', '.join(RELATIONS)}")
    if not (math.isfinite(low) and math.isfinite(high)):
        return "cannot be judged"
    if relation == "~":
        if -TIE <= low and high <= TIE:
            return "agrees"
        return "does not agree" if low > TIE or high < -TIE else "inconclusive"
    if low > 0:
        return "agrees"
    if high < 0:
        return "does not agree"
    return "consistent" if relation == ">=" else "inconclusive"


def judge(
    convergence: pd.DataFrame, metric: str, k: int, order: Sequence[str], relations: Sequence[str]
) -> list[Link]:
    """Every link of ``order[0] relations[0] order[1] ...`` at K = ``k`` (iid draws), from ``metric``'s
    per-seed values in the tidy convergence rows."""
    values = [summaries.per_seed(convergence, metric, (name, "iid", k)) for name in order]
    out = []
    for i, relation in enumerate(relations):
        d = contrast(values[i], values[i + 1], "paired difference")
        out.append(Link(order[i], order[i + 1], relation, d, link_verdict(relation, d.low, d.high)))
    return out


def decisive(links: Sequence[Link]) -> Link:
    """The link that decides the ranking: the first of the worst verdict."""
    return min(links, key=lambda link: SEVERITY.index(link.verdict))


def describe(links: Sequence[Link], published: Mapping[str, float]) -> str:
    """Each link in words with its interval, verdict and the published difference."""
    return "; ".join(
        f"{a.better} {a.relation} {a.worse}: {a.d.value:+.2f} [{a.d.low:+.2f}, {a.d.high:+.2f}] {a.verdict} "
        f"(published {published[a.better] - published[a.worse]:+.1f})"
        for a in links
    )


def off_data(wanted: str, data: str | None, likelihood: str | None) -> str:
    """Why a run on ``data`` is not set beside figures published on binarized ``wanted`` ('' when it is)."""
    if data == wanted and likelihood == "bernoulli":
        return ""
    return (
        f"the published figures are on binarized {wanted} with a Bernoulli likelihood; this run is on {data}"
    )


def ranking_row(
    m: Ranking, convergence: pd.DataFrame, metric: str, data: str | None, likelihood: str | None
) -> dict | None:
    """The claims row of ``m`` (columns of ``claims.csv`` but its key, claim and source), or None when the
    convergence rows lack one of its estimators at its K."""
    if convergence.empty:
        return None
    rows = convergence[(convergence["metric"] == metric) & (convergence["num_samples"] == m.k)]
    if not set(m.order) <= set(rows["estimator"]):
        return None
    links = judge(convergence, metric, m.k, m.order, m.relations)
    worst = decisive(links)
    published = dict(zip(m.order, m.published, strict=True))
    blocker = off_data(m.data, data, likelihood)
    means = ", ".join(
        f"{name} {summaries.per_seed(convergence, metric, (name, 'iid', m.k)).mean():.1f} ({published[name]})"
        for name in m.order
    )
    detail = (f"{blocker}; " if blocker else "") + (
        f"the ranking at this budget ({int(convergence['step'].max())} steps"
        + (f"; the source trains {m.source_steps:,}" if m.source_steps else "")
        + f"), each link paired over {worst.d.n} seeds, interval at 95%: {describe(links, published)}. "
        f"Test log p(x) (published): {means}"
    )
    tie = worst.relation == "~"
    return {
        "where": f"K = {m.k}", "figure": f"test log p(x), {worst.better} - {worst.worse} (nats)",
        "measured": worst.d.value, "measured_low": worst.d.low, "measured_high": worst.d.high,
        "theory": 0.0 if tie else published[worst.better] - published[worst.worse],
        "tolerance": TIE if tie else 2 * m.read_off,
        "verdict": "not comparable" if blocker else worst.verdict, "detail": detail,
    }  # fmt: skip
