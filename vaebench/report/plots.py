"""Plots of the suite's tidy frames; every function takes ``ax=None``, draws one panel and returns the axes.

How a setting looks is decided in one place (:mod:`vaebench.report.styles`): one colour per estimator family,
a marker and a line style per member, the sampler in the marker's fill, the same in every figure and every
run. Settings whose figures are identical (the same gradient on the same draws) are drawn once, with a
legend entry that names them all, or, where they agree at some K only, with a label that says where
(:func:`vaebench.report.styles.shared_labels`). Every point comes with its interval: error bars for
variance, SNR and step time (the ``_low`` / ``_high`` columns), and a band over seeds for the learning curves
(95% Student-t interval of the mean, from :func:`vaebench.stats.mean_interval`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vaebench.analysis.convergence import summarize_curves
from vaebench.analysis.settings import order_estimators, with_sampler
from vaebench.estimators import ESTIMATORS, SAMPLERS
from vaebench.files import atomic_write
from vaebench.measures.schema import CONVERGENCE, HANDWRITTEN, THROUGHPUT, complete
from vaebench.report import styles
from vaebench.report.settings import setting_label


def estimator_color(name: str) -> tuple[float, float, float]:
    """The colour of an estimator in every plot: its family's (:func:`vaebench.report.styles.color`)."""
    return styles.color(name)


def estimator_marker(name: str) -> str:
    """The marker of an estimator within its family (:func:`vaebench.report.styles.member_style`)."""
    return styles.member_style(name)[0]


def figure(ncols: int = 1, *, panel: tuple[float, float] = (5.0, 3.8)) -> tuple[Figure, list[Axes]]:
    """A figure with a row of ``ncols`` panels.

    It is a bare ``matplotlib.figure.Figure`` (the Agg canvas, no pyplot): no display is needed, no global
    backend is switched, and nothing is kept alive by pyplot's figure registry.
    """
    fig = Figure(figsize=(panel[0] * ncols, panel[1]), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _axes(ax: Axes | None, figsize: tuple[float, float] = (5.5, 4.0)) -> Axes:
    if ax is None:
        ax = Figure(figsize=figsize, layout="constrained").subplots()
    return ax


def _ordered(names) -> list[str]:
    """Estimators in registry order, unknown names after them."""
    names = list(dict.fromkeys(names))
    known = [n for n in ESTIMATORS if n in names]
    return known + sorted(n for n in names if n not in ESTIMATORS)


def _series(frame: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(estimator, sampler, rows) per setting of ``frame``, estimators in registry order, then samplers."""
    frame = with_sampler(frame)
    out = []
    for name in _ordered(frame["estimator"]):
        mine = frame[frame["estimator"] == name]
        present = list(dict.fromkeys(mine["sampler"]))
        for sampler in [s for s in SAMPLERS if s in present] + sorted(
            s for s in present if s not in SAMPLERS
        ):
            out.append((name, sampler, mine[mine["sampler"] == sampler]))
    return out


def plot_against_k(
    frame: pd.DataFrame, metric: str, *, ax: Axes | None = None, ylabel: str | None = None, title: str = ""
) -> Axes:
    """``metric`` against K on log-log axes, one line per estimator, with ``metric_low``/``metric_high`` bars.

    Args:
        frame: one row per (estimator, num_samples): columns ``estimator``, ``num_samples``, ``metric`` and,
            if present, ``{metric}_low`` and ``{metric}_high`` (e.g. :func:`vaebench.analysis.summaries.variance_by_k`).
        metric: the column to plot, e.g. ``trace_var`` or ``snr``.
        ax: axes to draw on; a new figure when None.
        ylabel: y-axis label (default: the metric's name).
        title: panel title.
    """
    ax = _axes(ax)
    bounds = [c for c in (f"{metric}_low", f"{metric}_high") if c in frame]
    hidden, labels = styles.shared_labels(with_sampler(frame), [metric, *bounds])
    for name, sampler, rows in _series(frame):
        rows = rows[np.isfinite(rows[metric]) & (rows[metric] > 0)].sort_values("num_samples")
        if rows.empty or (name, sampler) in hidden:
            continue
        y = rows[metric].to_numpy(float)
        yerr = None
        if f"{metric}_low" in rows and f"{metric}_high" in rows:
            low = np.clip(rows[f"{metric}_low"].to_numpy(float), 1e-300, None)
            high = rows[f"{metric}_high"].to_numpy(float)
            yerr = np.nan_to_num(np.vstack([y - low, high - y]).clip(min=0))
        ax.errorbar(
            rows["num_samples"],
            y,
            yerr=yerr,
            label=labels.get((name, sampler), setting_label(name, sampler)),
            **styles.style(name, sampler),
            capsize=3,
            linewidth=1.4,
            markersize=5,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ks = sorted(frame["num_samples"].unique())
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("K (latent samples per datapoint)")
    ax.set_ylabel(ylabel or metric)
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    return ax


def curve_bands(frame: pd.DataFrame, metric: str = "test_elbo", level: float = 0.95) -> pd.DataFrame:
    """Mean over seeds of one metric per (estimator, num_samples, step), with its interval and wall-clock.

    The rows of :func:`vaebench.analysis.convergence.summarize_curves` for ``metric``: columns
    ``estimator, num_samples, step, wall_time_s`` (mean over seeds), ``value``, ``value_low``,
    ``value_high`` (Student-t interval over seeds; NaN with one seed), ``n_seeds``.
    """
    rows = frame[frame["metric"] == metric]
    if rows.empty:
        return pd.DataFrame(columns=["estimator", "num_samples", "step", "wall_time_s", "value"])
    return summarize_curves(rows, level)


def plot_curves(
    convergence: pd.DataFrame,
    *,
    num_samples: int,
    x: str = "step",
    metric: str = "test_elbo",
    ax: Axes | None = None,
    title: str = "",
) -> Axes:
    """A learning curve per estimator at one K: the mean over seeds, with the seeds' 95% band.

    Args:
        convergence: tidy rows of the convergence measure (``estimator, num_samples, seed, step,
            wall_time_s, metric, value``; ``diverged`` optional).
        num_samples: which K to draw.
        x: ``step``, ``wall_time_s`` (the wall-clock averaged over seeds at each evaluation step) or
            ``yardstick_steps`` (compute: :func:`vaebench.analysis.yardstick.yardstick_steps`, on the rows).
        metric: the metric to draw (``test_elbo`` by default: the plain ELBO for every estimator).
        ax: axes to draw on; a new figure when None.
        title: panel title.
    """
    ax = _axes(ax)
    convergence = complete(convergence, CONVERGENCE)  # older frames: no run diverged
    bands = curve_bands(convergence[convergence["num_samples"] == num_samples], metric)
    hidden, labels = set(), {}
    if not bands.empty:
        ordered = order_estimators(with_sampler(bands))  # "reparam = iwae": the registry's first names both
        hidden, labels = styles.shared_labels(ordered, ["value"], at=("step",), partial=False)
        labels = {key: f"{text} (K={num_samples})" for key, text in labels.items()}  # the legend spans panels
    finals = []
    for name, sampler, b in _series(bands):
        b = b.sort_values("step")
        if (name, sampler) in hidden:
            continue
        look = styles.style(name, sampler)
        label = labels.get((name, sampler), setting_label(name, sampler))
        ax.plot(
            b[x], b["value"], label=label, linewidth=1.4, markersize=4, markevery=max(len(b) // 6, 1), **look
        )
        ax.fill_between(b[x], b["value_low"], b["value_high"], color=look["color"], alpha=0.2, linewidth=0)
        finals.append(b["value"].iloc[len(b) // 4 :])
    div = convergence[(convergence["num_samples"] == num_samples) & convergence["diverged"].astype(bool)]
    for (name, _), g in div[div["metric"] == metric].groupby(["estimator", "seed"]):
        last = g.sort_values("step").iloc[-1]
        ax.plot(last[x], last["value"], "x", color=estimator_color(name), markersize=8)
    if not div.empty:
        # A run that diverged on an absurd but finite loss may end on an absurd value: frame the others.
        steady = convergence[
            (convergence["num_samples"] == num_samples) & ~convergence["diverged"].astype(bool)
        ]
        steady = curve_bands(steady, metric)
        if not steady.empty:
            finals = [g.sort_values("step")["value"].iloc[len(g) // 4 :] for _, _, g in _series(steady)]
    if finals:
        # Early ELBOs are orders of magnitude below the final ones: frame the last three quarters.
        tail = pd.concat(finals).to_numpy(float)
        tail = tail[np.isfinite(tail)]
        if tail.size:
            low, high = np.quantile(tail, [0.0, 1.0])
            pad = 0.05 * (high - low) if high > low else 1.0
            ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel(
        {"step": "optimizer steps", "wall_time_s": "training wall-clock (s)",
         "yardstick_steps": "compute (steps of the K's yardstick)"}.get(x, x)
    )  # fmt: skip
    ax.set_ylabel({"test_elbo": "test ELBO (nats)"}.get(metric, metric))
    ax.set_title(title or f"K = {num_samples}")
    ax.grid(True, alpha=0.3)
    return ax


def plot_throughput(throughput: pd.DataFrame, *, ax: Axes | None = None, title: str = "") -> Axes:
    """Median training-step time per estimator, one bar per K, with the median's interval as error bars.

    Args:
        throughput: rows with ``estimator, num_samples, step_s_median`` and optionally ``step_s_low`` /
            ``step_s_high``.
        ax: axes to draw on; a new figure when None.
        title: panel title.
    """
    ax = _axes(ax, figsize=(8.0, 4.0))
    throughput = complete(throughput, THROUGHPUT)
    settings = [(name, sampler) for name, sampler, _ in _series(throughput)]
    ks = sorted(throughput["num_samples"].unique())
    width = 0.8 / max(len(ks), 1)
    hatches = ("", "//", "..", "xx", "\\\\")
    for j, k in enumerate(ks):
        rows = with_sampler(throughput[throughput["num_samples"] == k]).set_index(["estimator", "sampler"])
        xs, heights, errs, colors = [], [], [], []
        for i, (name, sampler) in enumerate(settings):
            if (name, sampler) not in rows.index:
                continue
            row = rows.loc[(name, sampler)]
            median = 1e3 * float(row["step_s_median"])
            low, high = 1e3 * float(row["step_s_low"]), 1e3 * float(row["step_s_high"])
            xs.append(i - 0.4 + width * (j + 0.5))
            heights.append(median)
            errs.append((max(median - low, 0), max(high - median, 0)))
            colors.append(estimator_color(name))
        err = np.nan_to_num(np.array(errs).T) if errs else None
        ax.bar(xs, heights, width=width, color=colors, yerr=err, capsize=2, edgecolor="black",
               linewidth=0.5, hatch=hatches[j % len(hatches)], label=f"K = {k}")  # fmt: skip
    labels = ["hand-written\nreference" if n == HANDWRITTEN else setting_label(n, s) for n, s in settings]
    ax.set_xticks(range(len(settings)), labels, rotation=30, ha="right")
    ax.set_ylabel("training step (ms, median)")
    ax.set_title(title or "Cost of one training step")
    legend = ax.legend(loc="upper left")
    for patch in legend.get_patches():
        patch.set_facecolor("white")
    ax.grid(True, axis="y", alpha=0.3)
    return ax


def save(fig: Figure, path: str | Path) -> Path:
    """Save a figure as PNG (small: 100 dpi), atomically (a stopped write leaves the old file or none)."""
    path = Path(path)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100, bbox_inches="tight"))
    return path


def legend_outside(fig: Figure, axes) -> None:
    """One legend for a row of panels, placed right of them (labels of all panels, deduplicated)."""
    handles, labels = {}, []
    for ax in np.atleast_1d(axes):
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = h
                labels.append(label)
    fig.legend([handles[label] for label in labels], labels, loc="center left", bbox_to_anchor=(1.0, 0.5))
