"""The report's scaling-law section: ``scaling.csv``, a log-log plot per figure, one sentence per law.

The fits come from :func:`vaebench.analysis.scaling.scaling_laws`; nothing here decides whether a law holds,
it only says what the analysis found: each sentence reads the fit's ``verdict`` column (agrees, fails,
inconclusive, not testable here, cannot be judged), never the bare ``agrees`` flag. A failing law is written
as failing, with its interval.

Laws are fitted only on a grid of at least `MIN_K` values of K: through two points any power law fits
exactly, and a slope's interval then rests on the points' own intervals alone. With fewer K the report says
nothing about laws (no section, no ``scaling.csv``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vaebench import files
from vaebench.analysis.claims import landing_verdict
from vaebench.analysis.folder import Results
from vaebench.analysis.scaling import (
    ASYMPTOTIC_K,
    FIGURES,
    TOLERANCE_ASYMPTOTIC,
    TOLERANCE_EXACT,
    pooled_by_k,
    scaling_laws,
)
from vaebench.analysis.settings import truth
from vaebench.errors import VaebenchError
from vaebench.measures.schema import SCALING, VARIANCE, complete
from vaebench.report import plots, styles
from vaebench.report.formatting import fmt_number
from vaebench.report.settings import setting_label

PLOT = "scaling_laws.png"
"""File name of the section's plot."""

MIN_K = 3
"""Fewest distinct K a run must have measured for the report to fit and state scaling laws."""

_LABELS = {
    "trace_var": "trace of covariance",
    "snr": "SNR (mean over coordinates)",
    "snr_norm": "||E g|| / √tr Cov",
}


def plot_scaling(
    variance: pd.DataFrame,
    laws: pd.DataFrame,
    figure: str,
    group: str,
    *,
    checkpoint: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """``figure`` against K (log-log) for each estimator with a law on it: points with intervals, the fitted
    line over the K range fitted (solid), and the theoretical slope through the fit's middle (dotted)."""
    ax = plots._axes(ax)
    pooled = pooled_by_k(variance, group, figure, checkpoint)
    mine = laws[(laws["figure"] == figure) & (laws["group"] == group)]
    for _, fit in mine.iterrows():
        name, sampler = fit["estimator"], fit["sampler"]
        rows = pooled[(pooled["estimator"] == name) & (pooled["sampler"] == sampler)].sort_values(
            "num_samples"
        )
        rows = rows[np.isfinite(rows["value"]) & (rows["value"] > 0)]
        look = styles.style(name, sampler)
        color = look["color"]
        y = rows["value"].to_numpy(float)
        err = np.nan_to_num(np.vstack([y - rows["low"].clip(lower=1e-300), rows["high"] - y]).clip(min=0))
        ax.errorbar(rows["num_samples"], y, yerr=err, fmt=look["marker"], color=color, fillstyle=look["fillstyle"],
                    capsize=3, label=setting_label(name, sampler))  # fmt: skip
        k = np.geomspace(fit["k_min"], fit["k_max"], 20)
        c = fit["correction"]  # declared in vaebench.measures.schema.SCALING
        c = 0.0 if not np.isfinite(c) else c
        ax.plot(k, np.exp(fit["intercept"] + c / k) * k ** fit["slope"], color=color, linestyle="-")
        middle = np.sqrt(fit["k_min"] * fit["k_max"])
        at = np.exp(fit["intercept"] + c / middle) * middle ** fit["slope"]
        ax.plot(k, at * (k / middle) ** fit["theory"], color=color, linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel(_LABELS.get(figure, figure))
    ax.set_title(f"{group}: {figure} (fit solid, theory dotted)")
    return ax


def scaling_law(
    results: Results,
    figure: str = "trace_var",
    group: str = "encoder",
    *,
    checkpoint: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """One panel of the report's scaling-law plot from the loaded results (:func:`vaebench.load`): the fits of
    ``scaling.csv`` at ``checkpoint`` (default: the first fitted, the Gaussian toy's where there is one) over the
    variance rows they were fitted on (:func:`plot_scaling`)."""
    fits = (
        results.scaling[np.isfinite(results.scaling["slope"])]
        if not results.scaling.empty
        else results.scaling
    )
    if fits.empty:
        raise VaebenchError(
            f"{results.folder} has no fitted scaling law (scaling.csv): it needs {MIN_K} K or more"
        )
    checkpoint = checkpoint or str(fits["checkpoint"].iloc[0])
    built = results.laws
    rows = (
        built[built["checkpoint"] == checkpoint]
        if not built.empty and (built["checkpoint"] == checkpoint).any()
        else results.variance
    )
    return plot_scaling(
        rows, fits[fits["checkpoint"] == checkpoint], figure, group, checkpoint=checkpoint, ax=ax
    )


def grid_size(variance: pd.DataFrame) -> int:
    """How many distinct K the variance rows measured (rows that were skipped do not count)."""
    if variance.empty:
        return 0
    rows = complete(variance, VARIANCE)
    return int(rows.loc[rows["status"] == "ok", "num_samples"].nunique())


def verdict_of(row: pd.Series) -> str:
    """A law's verdict in words: the ``verdict`` column, or for fits written before it, from ``agrees``."""
    verdict = row.get("verdict")
    if isinstance(verdict, str) and verdict:
        return verdict
    agrees = truth(row.get("agrees"))
    return "agrees" if agrees is True else "fails" if agrees is False else "cannot be judged (no interval)"


CHECKPOINT_WORDS = {
    "toy": "the Gaussian toy of Rainforth et al. 2018 at its optimum perturbed by N(0, 0.01²) (built, q wider "
    "than the posterior: bounded weights)",
    "near-posterior": "a linear-Gaussian VAE with q at its exact posterior, the mean perturbed by N(0, 0.03²) and the standard deviations widened 1.2x (built, over-dispersed: bounded weights)",
}
"""How the section names the built checkpoints of :mod:`vaebench.checks.laws`."""


def fit_laws(
    variance: pd.DataFrame, checkpoint: str | None, built: pd.DataFrame
) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(checkpoint, its variance rows, its laws) for the run's own checkpoint (when it measured at least
    `MIN_K` values of K) and for every built checkpoint of ``laws.csv``; the built ones keep their laws that
    could not be fitted (as "cannot be judged"), which the claims read."""
    found = []
    if grid_size(variance) >= MIN_K:
        laws = complete(scaling_laws(variance, checkpoint=checkpoint), SCALING)
        if not laws.empty:
            found.append((checkpoint or "", variance, laws))
    if not built.empty:
        labels = list(dict.fromkeys(built["checkpoint"]))
        order = list(CHECKPOINT_WORDS)  # the toy first: the published claims are measured there
        for label in sorted(labels, key=lambda x: order.index(x) if x in order else len(order)):
            rows = built[built["checkpoint"] == label]
            if grid_size(rows) >= MIN_K:
                laws = complete(scaling_laws(rows, checkpoint=label, unfitted=True), SCALING)
                if not laws.empty:
                    found.append((label, rows, laws))
    return found


def write_scaling(
    out: Path, variance: pd.DataFrame, checkpoint: str | None, built: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Fit the laws (:func:`fit_laws`), write ``scaling.csv`` and a plot per checkpoint; return every fit and
    the plots' file names by checkpoint (none when no law was fitted)."""
    found = fit_laws(variance, checkpoint, built if built is not None else pd.DataFrame())
    for stale in out.glob("scaling_laws*.png"):  # a rebuilt report leaves no stale plots behind
        stale.unlink()
    if not found:
        (out / "scaling.csv").unlink(missing_ok=True)  # ...nor stale fits
        return pd.DataFrame(), {}
    laws = pd.concat([f[2] for f in found], ignore_index=True)
    files.write_csv(out / "scaling.csv", laws)
    written = {}
    for label, rows, fits in found:
        fitted = fits[np.isfinite(fits["slope"])]
        figures = [f for f in FIGURES if (fitted["figure"] == f).any()]
        if not figures:
            continue
        fig = Figure(figsize=(5.0 * len(figures), 7.6), layout="constrained")
        axes = fig.subplots(2, len(figures), squeeze=False)  # rows: encoder, decoder; a column per figure
        for col, figure in enumerate(figures):
            for row, group in enumerate(("encoder", "decoder")):
                plot_scaling(rows, fitted, figure, group, checkpoint=label or None, ax=axes[row][col])
        plots.legend_outside(fig, axes.ravel())
        name = (
            PLOT
            if label == (checkpoint or "") and label not in CHECKPOINT_WORDS
            else f"scaling_laws_{label}.png"
        )
        written[label] = plots.save(fig, out / name).name
    return laws, written


def landing_lines(frame: pd.DataFrame) -> list[str]:
    """The STL check as a sentence and a table (empty when it was not run)."""
    if frame.empty:
        return []
    stl, reparam, verdict = landing_verdict(frame)
    holds = verdict == "agrees"
    wide = frame.pivot_table(
        index=["fraction", "kl_to_posterior"], columns="estimator", values="trace_var", sort=False
    )
    wide = wide.reset_index()
    names = [c for c in ("stl", "reparam") if c in wide]
    table = ["| KL(q ‖ p(z|x)) (nats) | " + " | ".join(f"`{n}` encoder variance" for n in names) + " |"]
    table.append("|---|" + "---|" * len(names))
    for _, r in wide.iterrows():
        table.append(
            f"| {fmt_number(r['kl_to_posterior'])} | " + " | ".join(fmt_number(r[n]) for n in names) + " |"
        )
    return [
        "### STL at the exact posterior",
        "",
        "On a linear-Gaussian model built for this check (orthogonal decoder columns, so the exact posterior is "
        "a diagonal Gaussian the encoder can represent; K = 1, not this run's data), the encoder is moved along "
        "a line to the exact posterior (`stl_landing.csv`). STL's encoder gradient variance at the exact "
        f"posterior is {fmt_number(stl)} of its value at the start, reparam's {fmt_number(reparam)}: "
        + ("**agrees**: STL's variance falls to zero as q reaches the posterior (Roeder et al. 2017)."
           if holds else "**fails**: STL's variance does not vanish at the exact posterior."),
        "",
        *table,
        "",
    ]  # fmt: skip


def sentences(laws: pd.DataFrame) -> list[str]:
    """One sentence per fitted law: the slope with its interval, the theory, agrees or fails."""
    lines = []
    for _, r in laws.iterrows():
        verdict = verdict_of(r)
        word, _, detail = verdict.partition(": ")
        if not np.isfinite(r["slope"]):
            lines.append(
                f"`{setting_label(r['estimator'], r['sampler'])}` {r['group']} {r['figure']}: theory "
                f"{fmt_number(r['theory'])}, {r['law']}: **{word}** ({detail})."
            )
            continue
        k = f"K {int(r['k_min'])}–{int(r['k_max'])}, {int(r['points'])} points"
        tolerance = (
            f" ± {fmt_number(r['tolerance'])}" if np.isfinite(r["tolerance"]) and r["tolerance"] else ""
        )
        lines.append(
            f"`{setting_label(r['estimator'], r['sampler'])}` {r['group']} {r['figure']}: slope "
            f"{fmt_number(r['slope'])} [{fmt_number(r['slope_low'])}, {fmt_number(r['slope_high'])}] ({k}); "
            f"theory {fmt_number(r['theory'])}{tolerance}, {r['law']}: **{word}**"
            + (f" ({detail})" if detail else "")
            + "."
        )
    return lines


def section(laws: pd.DataFrame, plots_by: dict[str, str] | None) -> list[str]:
    """The markdown lines of the section (empty when no law was fitted)."""
    if laws.empty:
        return []
    plots_by = plots_by or {}
    words = laws.apply(verdict_of, axis=1).str.partition(":")[0]
    counts = words.value_counts()
    agree, fail = int(counts.get("agrees", 0)), int(counts.get("fails", 0))
    other = len(laws) - agree - fail
    head = (
        f"{agree} of {len(laws)} laws agree with theory (the slope's interval meets the theory ± its tolerance "
        "and excludes 0)"
        + (f"; **{fail} fail** (the interval lies wholly outside the band)" if fail else "")
        + (
            f"; {other} cannot be decided here (inconclusive, not testable or not judged: see each)"
            if other
            else ""
        )
        + ". "
        # Each law is its own 95% test: read a lone near-miss against the failures chance alone gives.
        f"Were every law true, at most about {0.05 * len(laws):.1f} of {len(laws)} would fail by chance (each is a "
        "test at 5%; laws measured on the same draws, such as the decoder laws of the ELBO estimators, which share "
        "one pathwise decoder gradient, pass or fail together). "
        "log(figure) is fitted against log(K) by least squares weighted by each point's interval (averaged over "
        "the variance seeds), the slope's interval widened when the points scatter beyond their intervals. "
        f"Laws are fitted only on at least {MIN_K} values of K. Variance laws of averages of independent "
        f"estimates hold at every K: fitted on the whole grid, tolerance ± {TOLERANCE_EXACT:g}. The IWAE and "
        "DReG SNR laws and leave-one-out baselines are limits as K grows: fitted on the largest decade of K "
        f"measured (K >= {ASYMPTOTIC_K}), tolerance ± {TOLERANCE_ASYMPTOTIC:g}, and tested only where the "
        "importance weights' Pareto k-hat shows the moment the law needs is finite (Var(w): k-hat < 1/2; DReG's "
        "encoder law E[w⁴]: k-hat < 1/4); elsewhere they are *not testable here*, never failing. SNR laws are "
        "fitted to the noise-corrected `snr_norm` and `snr_rms`, not the plain `snr`, which is biased upward near "
        "its noise floor (see `vaebench.analysis.scaling`). Every fit is in `scaling.csv`."
    )
    md = ["## Scaling laws in K", "", head, ""]
    checkpoints = list(dict.fromkeys(laws["checkpoint"].fillna("")))
    for label in checkpoints:
        mine = laws[laws["checkpoint"].fillna("") == label]
        if len(checkpoints) > 1 or label in CHECKPOINT_WORDS:
            where = CHECKPOINT_WORDS.get(label, f"the `{label}` checkpoint of the anchor run")
            md += [f"### At `{label}`: {where}", ""]
        if label in plots_by:
            md += [f"![scaling laws at {label or 'the checkpoint'}]({plots_by[label]})", ""]
        md += [f"- {line}" for line in sentences(mine)] + [""]
    return md
