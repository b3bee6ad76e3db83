r"""The field's published claims: one table of them (`CLAIMS`), and each with the figure a run measured and a verdict.

A claim is one row of `CLAIMS`: what it says, its source, the preset whose run measures it, and *how* it is
measured, one of seven kinds:

- :class:`Law`: the slope in K of a fitted scaling law (``scaling.csv``,
  :func:`vaebench.analysis.scaling.scaling_laws`) on a built checkpoint; the verdict is the law's (agrees,
  fails, inconclusive, not testable here, cannot be judged). The published SNR laws are measured on the
  Gaussian toy, with the noise-corrected ``snr_norm`` (||E g|| / √tr Cov);
- :class:`Landing`: STL's encoder variance at the exact posterior over its value at the perturbed start
  (``stl_landing.csv``, :mod:`vaebench.checks.landing`), agrees when below `LANDED` while reparam's is not;
- :class:`Quadrature`: the exact variances by quadrature inside the suite's Monte Carlo intervals
  (``quadrature.csv``, :mod:`vaebench.checks.gaussian_1d`), agrees when every row is, at the family-wise level
  the rows were measured at;
- :class:`Gap`: the test log-likelihood of one estimator against another's at the largest K > 1 both
  trained, paired by seed (:func:`vaebench.analysis.contrast.contrast`, ``paired difference``);
- :class:`~vaebench.analysis.ranking.Ranking`: a published ordering of estimators by test log-likelihood at
  one K, each link a paired difference judged as :mod:`vaebench.analysis.ranking` says; the row reports the
  link that decides the verdict, the published figures beside it: the ordering *at the run's budget*;
- :class:`~vaebench.analysis.trends.Falling`: a figure that falls as K grows at every checkpoint of the
  variance rows (:mod:`vaebench.analysis.trends`): the slope of log figure against log K per checkpoint.
- :class:`Direction`: one estimator's encoder gradient variance below another's on one problem
  (``variance.csv`` with its ``problem`` column), at the largest K both ran.

**Directions.** With v_s the variance of seed s, d_s = log v_s(lower) - log v_s(higher) is paired by seed
(the seed fixes the parameters the variance is measured at) and its mean has a Student-t interval
(:func:`vaebench.analysis.contrast.contrast`, ``paired difference``); the row states the ratio exp(mean d)
with exp of the interval. The m Direction rows of `CLAIMS` are judged together at the family-wise level
`FAMILY`, each at 1 - (1 - `FAMILY`) / m (Bonferroni). Verdict: ``agrees`` when the interval lies below 1,
``does not agree`` above, else ``inconclusive`` (``consistent`` for a claim of *not above*,
``Direction.at_most``); one seed gives no interval: ``cannot be judged``. Where the measured variance holds
minibatch noise (global latents trained on minibatches), that part, the variance over batches of the
minibatch objective's exact gradient, is the same for every unbiased estimator of one objective at one batch
size: it adds to both variances, so the ratio keeps the sign of the Monte Carlo parts' ratio and lies closer
to 1.

The published comparison (Mohamed et al. 2020, section 8.3; its code google-deepmind/mc_gradients) trains with
50 samples on minibatches of 32, an analytic KL for every estimator and control-variate coefficients fitted on
25 further samples, and it has no leave-one-out baseline; here each estimator is as registered, at the
largest K both ran: only the directions are set beside it, never the figures.

**Gaps, rankings, trends.** A run is set beside a published gap only when it can be: on binarized images
with a Bernoulli likelihood (`DIRECTION_DATA`; a published size is compared only on the data it was measured on,
``Gap.size_on``) and with curves that had levelled off (:mod:`vaebench.analysis.plateau`). Otherwise the
row carries the run's own paired difference d and the reason it is not compared, verdict ``not
comparable``. When compared, the verdict follows d's interval: ``agrees`` (above 0: the candidate better, as
published), ``does not agree`` (below 0), and when it holds 0 ``inconclusive``, or ``consistent`` for a claim
of *at least* (``Gap.at_least``: "as good or better" allows no difference). Without an interval (one seed)
it ``cannot be judged``. The test log-likelihood is the suite's importance-sampled estimate (k =
``train.ll_samples``), a lower bound whose bias is larger for a worse q. A ranking or a trend is compared
on the published data only (``Ranking.data``, ``Falling.data``), never withheld for curves still moving: it
is the run's budget's, and says so.

A claim the run has no measurement for is "not measured in this run", naming the preset that measures it.
Nothing here measures: it reads the tables the suite's units wrote, so the report is rebuilt from the folder
alone. Adding a claim is one row of `CLAIMS` (and, for a new kind of evidence, one measure class and its
function in `_MEASURES`). The words of the report are :mod:`vaebench.report.claims`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vaebench.analysis import summaries
from vaebench.analysis.contrast import contrast
from vaebench.analysis.ranking import Ranking, link_verdict, ranking_row
from vaebench.analysis.settings import truth
from vaebench.analysis.trends import Falling, falling_row
from vaebench.errors import VaebenchError
from vaebench.measures.schema import CLAIMS as CLAIMS_TABLE
from vaebench.measures.schema import SUMMARY, complete, conform

LANDED = 1e-8
"""STL's variance at the exact posterior over its start below which it is zero up to rounding."""

DIRECTION_DATA = ("mnist", "fashion-mnist")
"""Data sets (binarized, Bernoulli likelihood) on which the direction of a published gap is compared."""

NOT_MEASURED = "not measured in this run"


@dataclass(frozen=True)
class Law:
    """Measured by the slope of a scaling law: (checkpoint, estimator, encoder or decoder, figure), iid draws."""

    checkpoint: str
    estimator: str
    group: str
    figure: str = "snr_norm"


@dataclass(frozen=True)
class Landing:
    """Measured by STL's variance at the exact posterior (``stl_landing.csv``)."""


@dataclass(frozen=True)
class Quadrature:
    """Measured by the 1-D Gaussian check against exact variances (``quadrature.csv``)."""


@dataclass(frozen=True)
class Gap:
    """Measured by the test log-likelihood of ``candidate`` minus ``rival``, paired by seed.

    Attributes:
        candidate, rival: estimator names (iid draws, the same K).
        size: the published gap in nats (NaN: the claim has no size).
        at_least: the claim is "at least as good" (an interval holding 0 is consistent with it).
        size_on: the data sets on which the published size is compared (the direction: `DIRECTION_DATA`).
    """

    candidate: str
    rival: str
    size: float
    at_least: bool = False
    size_on: tuple[str, ...] = ("mnist",)


@dataclass(frozen=True)
class Direction:
    """Measured by ``figure`` of the encoder gradient of ``lower`` over that of ``higher`` on ``problem``,
    paired by seed, at the largest K both ran (iid draws): the claim is the ratio below 1 (``at_most``: not
    above 1)."""

    problem: str
    lower: str
    higher: str
    figure: str = "trace_var"
    at_most: bool = False


FAMILY = 0.95
"""Family-wise level of the Direction rows of `CLAIMS` (Bonferroni over them)."""


@dataclass(frozen=True)
class Claim:
    """A published claim: what it says, who said it, which preset measures it, and how.

    Attributes:
        key: short name (the ``key`` column of ``claims.csv``).
        claim: the claim in words.
        source: paper, with its arXiv number and the figure or theorem.
        preset: the preset whose run measures it.
        measure: a :class:`Law`, :class:`Landing`, :class:`Quadrature`, :class:`Gap`, :class:`Direction`,
            :class:`Ranking` or :class:`Falling`.
    """

    key: str
    claim: str
    source: str
    preset: str
    measure: Law | Landing | Quadrature | Gap | Direction | Ranking | Falling


BURDA_GAP = 86.35 - 84.78
"""IWAE's test log-likelihood gain over the VAE at k = 50 on MNIST, one stochastic layer (Burda et al. 2015)."""

DREG_GAIN = 0.3
"""DReG's gain over IWAE at the same K in reproductions (nats, approximate)."""

LIEVIN_K = (5, 10, 50)
"""The K of Liévin et al. 2020's Gaussian VAE figure."""

LIEVIN_VAE: dict[str, tuple[float, ...]] = {
    "iwae-stl": (-109.0, -108.0, -107.1),
    "dreg": (-109.3, -108.3, -107.6),
    "iwae": (-110.8, -109.8, -108.9),
    "tvo": (-113.4, -111.8, -109.0),
    "ovis-gamma": (-113.2, -111.8, -109.6),
}
"""Test log p(x) in nats at each of `LIEVIN_K` (5000 importance samples, 4,000,000 steps, 3 seeds), read off the
repository figure ``.assets/gaussian-vae-all-pivot.png`` of vlievin/ovis to within `LIEVIN_READ_OFF`; OVIS is
the paper's OVIS~ at γ = 1 (vaebench's ``ovis-gamma``)."""

LIEVIN_STEPS = 4_000_000
"""The training steps behind `LIEVIN_VAE`."""

LIEVIN_READ_OFF = 0.2
"""How far a figure of `LIEVIN_VAE` may be from the plotted value (nats)."""

LIEVIN_RELATIONS = (">=", ">", ">", "~")
"""IWAE-STL >= DReG > IWAE > TVO ~ OVIS, the order of `LIEVIN_VAE`."""

_LIEVIN = ("Liévin, Dittadi, Christensen & Winther 2020 (arXiv:2008.01998), Gaussian VAE on binarized "
           "Fashion-MNIST (vlievin/ovis .assets/gaussian-vae-all-pivot.png)")  # fmt: skip

_RAINFORTH = "Rainforth et al. 2018 (arXiv:1802.04537), Theorem 1 and its Gaussian experiment (Section 4)"
_TUCKER = "Tucker, Lawson, Gu & Maddison 2019 (arXiv:1810.04152)"
_MOHAMED = "Mohamed, Rosca, Figurnov & Mnih 2020 (JMLR 21(132), arXiv:1906.10652)"
_BLR = (
    f"{_MOHAMED}, directions of section 8.3's comparison on Bayesian logistic regression (breast cancer); "
    "figures not compared"
)
_BLR_CODE = "google-deepmind/mc_gradients"

CLAIMS: tuple[Claim, ...] = (
    Claim("rainforth-encoder", "IWAE encoder SNR ∝ K^-1/2", _RAINFORTH, "scaling", Law("toy", "iwae", "encoder")),
    Claim("rainforth-decoder", "IWAE decoder SNR ∝ K^+1/2", _RAINFORTH, "scaling", Law("toy", "iwae", "decoder")),
    Claim("tucker-snr", "DReG encoder SNR ∝ K^+1/2", f"{_TUCKER}, Figure 1, on the Gaussian toy of Rainforth et al.",
          "scaling", Law("toy", "dreg", "encoder")),
    Claim("lievin-snr", "OVIS encoder SNR ∝ K^+1/2 without reparameterization", "Liévin, Dittadi, Christensen & "
          "Winther 2020 (arXiv:2008.01998), Section 4, on the Gaussian toy of Rainforth et al.; OVIS_MC, S = 5",
          "scaling", Law("toy", "ovis-mc", "encoder")),
    Claim("roeder", "STL's encoder gradient variance is zero at the exact posterior", "Roeder, Wu & Duvenaud "
          "2017 (arXiv:1703.09194), Section 3", "scaling", Landing()),
    Claim("mohamed", "exact variances of the pathwise, score-function, mean-baseline and measure-valued "
          "(coupled and uncoupled) gradients of E_N(μ,σ²)[f] for f in {(x-k)², exp(-kx²), cos(kx)}", f"{_MOHAMED}, Figures 2-3", "scaling", Quadrature()),
    Claim("burda", "IWAE's test log-likelihood is above the VAE's at the same K", "Burda, Grosse & "
          "Salakhutdinov 2015 (arXiv:1509.00519), Table 1: 84.78 against 86.35 nats at k = 50", "fashion-mnist",
          Gap("iwae", "reparam", BURDA_GAP)),
    Claim("dreg-iwae", "DReG's test log-likelihood is at least IWAE's at the same K", f"{_TUCKER}, Section 6 "
          f"(about {DREG_GAIN} nats in reproductions)", "fashion-mnist",
          Gap("dreg", "iwae", DREG_GAIN, at_least=True, size_on=DIRECTION_DATA)),
    *(Claim(f"lievin-ranking-k{k}", f"test log p(x) at K = {k}: IWAE-STL >= DReG > IWAE > TVO ~ OVIS", _LIEVIN,
            "ovis", Ranking(k, tuple(LIEVIN_VAE), LIEVIN_RELATIONS, tuple(v[i] for v in LIEVIN_VAE.values()),
                            LIEVIN_READ_OFF, source_steps=LIEVIN_STEPS))
      for i, k in enumerate(LIEVIN_K)),
    *(Claim(f"lievin-snr-{name}", f"{label}'s encoder SNR falls as K grows, along training", _LIEVIN, "ovis",
            Falling(name)) for name, label in (("dreg", "DReG"), ("iwae", "IWAE"))),
    Claim("mohamed-blr-pathwise", "the score-function gradient's variance is above the pathwise gradient's",
          f"{_BLR} (pathwise and score function as in {_BLR_CODE})", "problems",
          Direction("blr-breast-cancer", "reparam", "reinforce")),
    Claim("mohamed-blr-mvd", "the score-function gradient's variance is above the measure-valued gradient's",
          f"{_BLR} (the coupled measure-valued estimator of {_BLR_CODE})", "problems",
          Direction("blr-breast-cancer", "mvd", "reinforce")),
    Claim("mohamed-blr-baseline", "a moving-average baseline lowers the score-function gradient's variance",
          f"{_BLR} ({_BLR_CODE}'s moving-average baseline, decay 0.9)", "problems",
          Direction("blr-breast-cancer", "reinforce-ma", "reinforce")),
    Claim("mohamed-blr-loo", "a leave-one-out baseline lowers the score-function gradient's variance",
          f"{_MOHAMED}, section 7's control variates (the survey's direction; {_BLR_CODE} has no "
          "leave-one-out baseline)", "problems", Direction("blr-breast-cancer", "reinforce-loo", "reinforce")),
    Claim("mohamed-blr-taylor", "a Taylor-expansion control variate does not raise the pathwise gradient's "
          "variance", f"{_BLR} ({_BLR_CODE}'s delta-method control variate; here Miller et al. 2017's "
          "first-order form, coefficient 1)", "problems",
          Direction("blr-breast-cancer", "reparam-cv", "reparam", at_most=True)),
)  # fmt: skip
"""The claims, in the order a reader of estimator papers meets them (and of the report's section)."""


@dataclass(frozen=True)
class Evidence:
    """What a results folder holds for the claims.

    Attributes:
        laws: the fitted laws (``scaling.csv``, with the ``checkpoint`` column naming the built checkpoints).
        landing: the STL check's rows (``stl_landing.csv``), empty when not run.
        quadrature: the 1-D check's rows (``quadrature.csv``), empty when not run.
        summary: the comparison table (:func:`vaebench.analysis.summaries.summary_table`), for the gaps.
        convergence: the tidy convergence rows, for the pairing by seed.
        data: the data set's name (``config.data.name``); None: unknown, no gap is compared.
        likelihood: ``bernoulli`` or ``gaussian`` (the resolved likelihood); None: unknown.
        variance: the tidy variance rows (``variance.csv``, with its ``problem`` column): at the run's
            checkpoints for the trends in K, per problem for the directions.
    """

    laws: pd.DataFrame = field(default_factory=pd.DataFrame)
    landing: pd.DataFrame = field(default_factory=pd.DataFrame)
    quadrature: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    convergence: pd.DataFrame = field(default_factory=pd.DataFrame)
    data: str | None = None
    likelihood: str | None = None
    variance: pd.DataFrame = field(default_factory=pd.DataFrame)


def claims_table(evidence: Evidence) -> pd.DataFrame:
    """One row per claim of `CLAIMS` (columns of :data:`vaebench.measures.schema.CLAIMS`)."""
    rows = []
    for c in CLAIMS:
        row = _MEASURES[type(c.measure)](c.measure, evidence)
        if row is None:
            row = {"verdict": NOT_MEASURED, "detail": f"run `python -m vaebench run --preset {c.preset}`"}
        rows.append({"key": c.key, "claim": c.claim, "source": c.source} | row)
    return conform(pd.DataFrame(rows, columns=list(CLAIMS_TABLE.columns)), CLAIMS_TABLE)


def landed(frame: pd.DataFrame) -> dict[str, float]:
    """Encoder variance of each estimator of the STL check at the exact posterior (fraction 0), relative to its
    value at the perturbed start (fraction 1); STL's is 0 up to rounding (below `LANDED`) when the law holds."""
    out = {}
    for name, g in frame.groupby("estimator", sort=False):
        at = g.set_index("fraction")["trace_var"]
        start = at.get(1.0, math.nan)
        out[name] = float(at.get(0.0, math.nan) / start) if start else math.nan
    return out


def _law(m: Law, ev: Evidence) -> dict | None:
    laws = ev.laws
    if laws.empty:
        return None
    hit = laws[(laws["checkpoint"] == m.checkpoint) & (laws["estimator"] == m.estimator) & (laws["group"] == m.group)
               & (laws["figure"] == m.figure) & (laws["sampler"] == "iid")]  # fmt: skip
    if hit.empty:
        return None
    law = hit.iloc[0]
    verdict, _, detail = str(law["verdict"]).partition(": ")
    span = f"K {int(law['k_min'])}-{int(law['k_max'])}" if math.isfinite(law["k_min"]) else ""
    detail = "; ".join(p for p in (f"slope of {m.figure} over {span}" if span else "", f"k-hat {law['khat']:.2f}"
                                   if math.isfinite(law["khat"]) else "", detail) if p)  # fmt: skip
    return {
        "where": m.checkpoint, "figure": f"{m.figure} slope", "measured": law["slope"],
        "measured_low": law["slope_low"], "measured_high": law["slope_high"], "theory": law["theory"],
        "tolerance": law["tolerance"], "verdict": verdict, "detail": detail,
    }  # fmt: skip


def landing_verdict(frame: pd.DataFrame) -> tuple[float, float, str]:
    """(STL's ratio, reparam's ratio, verdict) of the STL check's rows (:func:`landed`): ``agrees`` when STL's
    variance vanishes at the posterior (below `LANDED`) while reparam's does not, else ``fails``; the verdict
    is "" when STL was not measured."""
    ratio = landed(frame)
    stl, reparam = ratio.get("stl", math.nan), ratio.get("reparam", math.nan)
    if not math.isfinite(stl):
        return stl, reparam, ""
    holds = stl < LANDED and not (math.isfinite(reparam) and reparam < LANDED)
    return stl, reparam, "agrees" if holds else "fails"


def _landing(_: Landing, ev: Evidence) -> dict | None:
    if ev.landing.empty:
        return None
    stl, reparam, verdict = landing_verdict(ev.landing)
    if not verdict:
        return None
    return {
        "where": "linear-Gaussian model at its exact posterior",
        "figure": "STL encoder variance at the posterior / at the start",
        "measured": stl, "theory": 0.0, "tolerance": LANDED, "verdict": verdict,
        "detail": f"reparam's ratio {reparam:.3g} (its score term keeps its variance)",
    }  # fmt: skip


def _quadrature(_: Quadrature, ev: Evidence) -> dict | None:
    rows = ev.quadrature
    if rows.empty:
        return None
    inside = int(rows["agrees"].astype(bool).sum())
    total = len(rows)
    level = float(rows["level"].iloc[0])
    family = 1 - (1 - level) * total
    forms = ", ".join(dict.fromkeys(rows["estimator"]))
    return {
        "where": "1-D Gaussian, μ = σ = 1", "figure": "exact variances inside the Monte Carlo intervals",
        "measured": inside / total, "theory": 1.0, "verdict": "agrees" if inside == total else "fails",
        "detail": f"{inside} of {total} (f, k, estimator, parameter) rows inside their intervals, each at "
                  f"level {level:.5f}, {family:.0%} for all rows at once (Bonferroni), "
                  f"{int(rows['draws'].iloc[0]):,} draws each; forms {forms}",
    }  # fmt: skip


METRIC = "test_log_likelihood"


def _gap(m: Gap, ev: Evidence) -> dict | None:
    if ev.summary.empty or ev.convergence.empty or not (ev.convergence["metric"] == METRIC).any():
        return None
    summary = complete(ev.summary, SUMMARY)
    k = _shared_k(summary, m.candidate, m.rival)
    if not k:
        return None
    keys = [(name, "iid", k) for name in (m.candidate, m.rival)]
    d = contrast(*(summaries.per_seed(ev.convergence, METRIC, key) for key in keys), "paired difference")
    if not d.n:
        return None
    blocker = _why_not(summary, keys, ev.data, ev.likelihood)
    verdict = "not comparable" if blocker else link_verdict(">=" if m.at_least else ">", d.low, d.high)
    detail = blocker or f"paired over {d.n} seeds"
    if not blocker and math.isfinite(d.low) and ev.data in m.size_on and math.isfinite(m.size):
        where = "inside" if d.low <= m.size <= d.high else "outside"
        detail += f"; the published {m.size:.2f} nats lies {where} the interval"
    elif not blocker and math.isfinite(d.low) and math.isfinite(m.size):
        detail += f"; the published size is {', '.join(m.size_on)}'s: only the direction is compared here"
    return {
        "where": f"K = {k}", "figure": f"test log-likelihood, {m.candidate} - {m.rival} (nats)",
        "measured": d.value, "measured_low": d.low, "measured_high": d.high,
        "theory": 0.0 if m.at_least else m.size, "verdict": verdict, "detail": detail,
    }  # fmt: skip


def _why_not(
    summary: pd.DataFrame, keys: list[tuple[str, str, int]], data: str | None, likelihood: str | None
) -> str:
    """Why this run cannot be set beside the published figures ('' when it can)."""
    reasons = []
    if data is None or likelihood is None:
        reasons.append(
            "those are on binarized images with a Bernoulli likelihood, and this run's data are not known"
        )
    elif data not in DIRECTION_DATA or likelihood != "bernoulli":
        reasons.append(
            f"those are on binarized images with a Bernoulli likelihood, and this run is on {data} with a "
            f"{likelihood.capitalize()} likelihood"
        )
    judged = [
        (name, k, truth(r["converged"]))
        for name, sampler, k in keys
        for _, r in summary[(summary["estimator"] == name) & (summary["sampler"] == sampler)
                            & (summary["num_samples"] == k)].iterrows()
    ]  # fmt: skip
    if any(j is False for *_, j in judged):
        moving = ", ".join(f"`{name}` K={k}" for name, k, j in judged if j is False)
        reasons.append(
            f"the curves of {moving} had not converged (the published figures are of trained models)"
        )
    elif all(j is None for *_, j in judged):
        reasons.append("training was too short to judge whether the curves had converged")
    return "; ".join(reasons)


def _shared_k(summary: pd.DataFrame, a: str, b: str) -> int | None:
    """The largest K > 1 at which both estimators (iid draws) have a test log-likelihood (at K = 1 IWAE is the
    VAE and DReG is STL: no comparison to make)."""
    rows = summary[np.isfinite(summary[METRIC]) & (summary["sampler"] == "iid")]
    ks = set(rows.loc[rows["estimator"] == a, "num_samples"]) & set(
        rows.loc[rows["estimator"] == b, "num_samples"]
    )
    ks = {k for k in ks if k > 1}
    return int(max(ks)) if ks else None


def _ranking(m: Ranking, ev: Evidence) -> dict | None:
    return ranking_row(m, ev.convergence, METRIC, ev.data, ev.likelihood)


def _falling(m: Falling, ev: Evidence) -> dict | None:
    return falling_row(m, ev.variance, ev.data, ev.likelihood)


def _direction(m: Direction, ev: Evidence) -> dict | None:
    v = ev.variance
    if v.empty or "problem" not in v.columns:
        return None
    v = v[(v["problem"] == m.problem) & (v["group"] == "encoder") & (v["sampler"] == "iid")]
    if v.empty:
        return None
    ran = [set(v.loc[v["estimator"] == name, "num_samples"]) for name in (m.lower, m.higher)]
    if not ran[0] & ran[1]:
        missing = " and ".join(
            f"`{name}`" for name, ks in zip((m.lower, m.higher), ran, strict=True) if not ks
        )
        why = f"{missing} did not run" if missing else f"`{m.lower}` and `{m.higher}` share no K"
        return {"verdict": NOT_MEASURED, "detail": f"{why} on {m.problem}"}
    k = int(max(ran[0] & ran[1]))
    rows = v[v["estimator"].isin([m.lower, m.higher]) & (v["num_samples"] == k)]
    if rows.duplicated(["estimator", "seed"]).any():
        raise VaebenchError(
            f"the variance rows of {m.problem} hold several rows for one estimator, K and seed (K = {k}): pass "
            "one row per problem, estimator, K and seed (one checkpoint's)"
        )
    lower, higher = (
        np.log(rows[rows["estimator"] == name].set_index("seed")[m.figure]) for name in (m.lower, m.higher)
    )
    family = sum(isinstance(c.measure, Direction) for c in CLAIMS)
    level = 1 - (1 - FAMILY) / family
    d = contrast(higher, lower, "paired difference", level)  # log higher - log lower: above 0 as claimed
    if not d.n:
        return None
    return {
        "where": f"{m.problem}, K = {k}", "figure": f"encoder {m.figure}, {m.lower} / {m.higher}",
        "measured": math.exp(-d.value), "measured_low": math.exp(-d.high), "measured_high": math.exp(-d.low),
        "theory": 1.0, "verdict": link_verdict(">=" if m.at_most else ">", d.low, d.high),
        "detail": f"ratio of geometric means over {d.n} seeds, paired by seed; interval at level {level:.3f}, "
                  f"{FAMILY:.0%} for the {family} direction claims at once (Bonferroni)",
    }  # fmt: skip


_MEASURES = {
    Law: _law,
    Landing: _landing,
    Quadrature: _quadrature,
    Gap: _gap,
    Direction: _direction,
    Ranking: _ranking,
    Falling: _falling,
}
"""How each kind of measure reads the evidence: a row's measured cells, or None when the run lacks them."""
