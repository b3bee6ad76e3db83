"""The field's published claims, each with the figure this run measured for it and a verdict.

One row per claim of `CLAIMS`, in the order a reader of estimator papers meets them:

1-3. Rainforth et al. 2018, IWAE encoder SNR ∝ K^-1/2 and decoder SNR ∝ K^+1/2; Tucker et al. 2019, DReG
     encoder SNR ∝ K^+1/2: the slope of ``snr_norm`` over the largest decade of K on the Gaussian toy
     (:mod:`vaebench.checks.laws`, the laws' fit :func:`vaebench.analysis.scaling.scaling_laws`), its verdict the
     law's (agrees, fails, inconclusive, not testable here, cannot be judged);
4.   Roeder et al. 2017, STL's encoder gradient variance is zero at the exact posterior: STL's variance there
     over its value at the perturbed start (:mod:`vaebench.checks.landing`), agrees when below `LANDED` while
     reparam's stays above it;
5.   Mohamed et al. 2020, Figures 2-3: the exact variances by quadrature inside the suite's Monte Carlo
     intervals (:mod:`vaebench.checks.gaussian_1d`), agrees when every row is, at the family-wise level the
     rows were measured at;
6-7. Burda et al. 2015, IWAE's test log-likelihood above the VAE's, and Tucker et al. 2019, DReG's at least
     IWAE's, on a real-data study (:mod:`vaebench.analysis.published`: the verdict follows the paired
     interval, and only runs on binarized images whose curves levelled off are compared).

A claim this run has no measurement for is "not measured in this run", naming the preset that measures it
(``--preset scaling`` for 1-5, ``--preset fashion-mnist`` for 6-7). Nothing here measures: it reads the tables
the suite's units wrote, so the report is rebuilt from the folder alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from vaebench.analysis.published import Comparison
from vaebench.checks.landing import landed
from vaebench.measures.schema import CLAIMS as CLAIMS_TABLE
from vaebench.measures.schema import conform

LANDED = 1e-8
"""STL's variance at the exact posterior over its start below which it is zero up to rounding."""


@dataclass(frozen=True)
class Claim:
    """A published claim: what it says, who said it, and what measures it.

    Attributes:
        key: short name.
        claim: the claim in words.
        source: paper, with its arXiv number and the figure or theorem.
        preset: the preset whose run measures it.
        law: (checkpoint, estimator, group) of the scaling law that measures it, for the law claims.
    """

    key: str
    claim: str
    source: str
    preset: str
    law: tuple[str, str, str] | None = None


_RAINFORTH = "Rainforth et al. 2018 (arXiv:1802.04537), Theorem 1 and its Gaussian experiment (Section 4)"

CLAIMS: tuple[Claim, ...] = (
    Claim("rainforth-encoder", "IWAE encoder SNR ∝ K^-1/2", _RAINFORTH, "scaling", ("toy", "iwae", "encoder")),
    Claim("rainforth-decoder", "IWAE decoder SNR ∝ K^+1/2", _RAINFORTH, "scaling", ("toy", "iwae", "decoder")),
    Claim("tucker-snr", "DReG encoder SNR ∝ K^+1/2", "Tucker, Lawson, Gu & Maddison 2019 (arXiv:1810.04152), "
          "Figure 1, on the Gaussian toy of Rainforth et al.", "scaling", ("toy", "dreg", "encoder")),
    Claim("roeder", "STL's encoder gradient variance is zero at the exact posterior", "Roeder, Wu & Duvenaud "
          "2017 (arXiv:1703.09194), Section 3", "scaling"),
    Claim("mohamed", "exact variances of the pathwise, score-function, mean-baseline and measure-valued "
          "(coupled and uncoupled) gradients of E_N(μ,σ²)[f] for f in {(x-k)², exp(-kx²), cos(kx)}", "Mohamed, Rosca, Figurnov & Mnih 2020 (JMLR "
          "21(132), arXiv:1906.10652), Figures 2-3", "scaling"),
    Claim("burda", "IWAE's test log-likelihood is above the VAE's at the same K", "Burda, Grosse & "
          "Salakhutdinov 2015 (arXiv:1509.00519), Table 1: 84.78 against 86.35 nats at k = 50", "fashion-mnist"),
    Claim("dreg-iwae", "DReG's test log-likelihood is at least IWAE's at the same K", "Tucker, Lawson, Gu & "
          "Maddison 2019 (arXiv:1810.04152), Section 6", "fashion-mnist"),
)  # fmt: skip
"""The claims, in the order of the report's section."""

FIGURE = "snr_norm"
"""The figure of the law claims: ||E g|| / √tr Cov, noise-corrected (the issue's audit's figure)."""


def claims_table(
    laws: pd.DataFrame,
    landing: pd.DataFrame,
    quadrature: pd.DataFrame,
    comparisons: list[Comparison],
) -> pd.DataFrame:
    """One row per claim of `CLAIMS` (columns of :data:`vaebench.measures.schema.CLAIMS`).

    Args:
        laws: the fitted laws (``scaling.csv``: :func:`vaebench.analysis.scaling.scaling_laws`, with the
            ``checkpoint`` column naming the built checkpoints).
        landing: the STL check's rows (``stl_landing.csv``), empty when not run.
        quadrature: the 1-D check's rows (``quadrature.csv``), empty when not run.
        comparisons: :func:`vaebench.analysis.published.published_comparisons` of the run.
    """
    rows = []
    for c in CLAIMS:
        head = {"claim": c.claim, "source": c.source}
        if c.law is not None:
            row = _law(c, laws)
        elif c.key == "roeder":
            row = _roeder(landing)
        elif c.key == "mohamed":
            row = _mohamed(quadrature)
        else:
            row = _published(c, comparisons)
        if row is None:
            row = {
                "verdict": "not measured in this run",
                "detail": f"run `python -m vaebench run --preset {c.preset}`",
            }
        rows.append(head | row)
    frame = pd.DataFrame(rows, columns=list(CLAIMS_TABLE.columns))
    return conform(frame, CLAIMS_TABLE)


def _law(c: Claim, laws: pd.DataFrame) -> dict | None:
    checkpoint, estimator, group = c.law
    if laws.empty:
        return None
    hit = laws[(laws["checkpoint"] == checkpoint) & (laws["estimator"] == estimator) & (laws["group"] == group)
               & (laws["figure"] == FIGURE) & (laws["sampler"] == "iid")]  # fmt: skip
    if hit.empty:
        return None
    law = hit.iloc[0]
    verdict, _, detail = str(law["verdict"]).partition(": ")
    span = f"K {int(law['k_min'])}-{int(law['k_max'])}" if math.isfinite(law["k_min"]) else ""
    detail = "; ".join(p for p in (f"slope of {FIGURE} over {span}" if span else "", f"k-hat {law['khat']:.2f}"
                                   if math.isfinite(law["khat"]) else "", detail) if p)  # fmt: skip
    return {
        "where": checkpoint, "figure": f"{FIGURE} slope", "measured": law["slope"],
        "measured_low": law["slope_low"], "measured_high": law["slope_high"], "theory": law["theory"],
        "tolerance": law["tolerance"], "verdict": verdict, "detail": detail,
    }  # fmt: skip


def _roeder(landing: pd.DataFrame) -> dict | None:
    if landing.empty:
        return None
    ratio = landed(landing)
    stl, reparam = ratio.get("stl", math.nan), ratio.get("reparam", math.nan)
    if not math.isfinite(stl):
        return None
    holds = stl < LANDED and not (math.isfinite(reparam) and reparam < LANDED)
    return {
        "where": "linear-Gaussian model at its exact posterior",
        "figure": "STL encoder variance at the posterior / at the start",
        "measured": stl, "theory": 0.0, "tolerance": LANDED, "verdict": "agrees" if holds else "fails",
        "detail": f"reparam's ratio {reparam:.3g} (its score term keeps its variance)",
    }  # fmt: skip


def _mohamed(quadrature: pd.DataFrame) -> dict | None:
    if quadrature.empty:
        return None
    inside = int(quadrature["agrees"].astype(bool).sum())
    total = len(quadrature)
    level = float(quadrature["level"].iloc[0])
    family = 1 - (1 - level) * total
    forms = ", ".join(dict.fromkeys(quadrature["estimator"]))
    return {
        "where": "1-D Gaussian, μ = σ = 1", "figure": "exact variances inside the Monte Carlo intervals",
        "measured": inside / total, "theory": 1.0, "verdict": "agrees" if inside == total else "fails",
        "detail": f"{inside} of {total} (f, k, estimator, parameter) rows inside their intervals, each at "
                  f"level {level:.5f}, {family:.0%} for all rows at once (Bonferroni), "
                  f"{int(quadrature['draws'].iloc[0]):,} draws each; forms {forms}",
    }  # fmt: skip


def _published(c: Claim, comparisons: list[Comparison]) -> dict | None:
    wanted = "burda" if c.key == "burda" else "tucker"
    found = [p for p in comparisons if p.claim == wanted]
    if not found:
        return None
    p = found[0]
    detail = p.blocker or f"paired over {p.seeds} seeds"
    if p.size_inside is not None:
        detail += f"; the published {p.published_size:.2f} nats lies {'inside' if p.size_inside else 'outside'} the interval"
    return {
        "where": f"K = {p.k}", "figure": "test log-likelihood difference (nats)", "measured": p.diff,
        "measured_low": p.low, "measured_high": p.high, "theory": p.published_size if c.key == "burda" else 0.0,
        "verdict": p.verdict, "detail": detail,
    }  # fmt: skip
