"""The report's figures, as functions: each takes the loaded results (:func:`vaebench.load`) and ``ax=None``.

Following rliable's ``plot_utils``, every panel function draws on ``ax`` (a new figure when None) and returns
the axes, so a user restyles or combines panels freely (matplotlib's own API); the report draws its figures
with these same functions (:func:`draw`), and ``python -m vaebench plot`` writes them as PDF, SVG or PNG.

- :func:`variance_vs_k`, :func:`snr_vs_k`: a variance figure against K on log-log axes, error bars from the
  ``_low``/``_high`` columns (pooled over the variance seeds, :func:`vaebench.analysis.summaries.variance_by_k`);
- :func:`elbo_curves`: the learning curves of one K, the mean over seeds with the seeds' Student-t band; with
  more than `CROWDED` settings the best `HIGHLIGHT` by final value are drawn in full and the rest faint;
- :func:`step_time`: the median training-step time per setting, a bar per K.

How a setting looks is decided in one place (:mod:`vaebench.report.styles`). Settings whose figures are
identical (the same gradient on the same draws) are drawn once, with a legend entry that names them all
(:func:`vaebench.report.styles.shared_labels`); a figure of several panels has one legend entry per setting
(:func:`legend_outside` merges what the panels say of it). Log axes are labelled at any range
(:func:`label_log_axis`: a range under a decade gets 2-5-10 or linear ticks, never none).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from vaebench.analysis import yardstick
from vaebench.analysis.convergence import summarize_curves
from vaebench.analysis.folder import Results
from vaebench.analysis.settings import order_estimators, with_sampler
from vaebench.analysis.summaries import variance_by_k
from vaebench.estimators import ESTIMATORS, SAMPLERS
from vaebench.files import atomic_write
from vaebench.measures.dictionary import header
from vaebench.measures.schema import CONVERGENCE, HANDWRITTEN, THROUGHPUT, complete
from vaebench.report import styles
from vaebench.report.settings import setting_label

FIGURES = {
    "variance": "variance_snr_vs_k.png",
    "steps": "elbo_vs_steps.png",
    "wallclock": "elbo_vs_wallclock.png",
    "compute": "elbo_vs_compute.png",
    "throughput": "throughput.png",
}
"""The report's figures: key -> file name (``vaebench plot`` swaps the suffix for its format)."""

FORMATS = ("pdf", "svg", "png")
"""Formats of :func:`save`: vector PDF and SVG for a journal, PNG for the report."""

CROWDED = 6
"""More settings than this in one learning-curve panel, and only the best `HIGHLIGHT` are drawn in full."""

HIGHLIGHT = 4
"""Settings drawn in full in a crowded learning-curve panel (the highest final values); the rest are faint."""

FAINT = 0.3
"""Opacity of the settings a crowded panel does not highlight."""


def figure(ncols: int = 1, *, panel: tuple[float, float] = (5.0, 3.8)) -> tuple[Figure, list[Axes]]:
    """A figure with a row of ``ncols`` panels.

    It is a bare ``matplotlib.figure.Figure`` (no pyplot): no display is needed, no global backend is switched,
    and nothing is kept alive by pyplot's figure registry.
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


def label_log_axis(ax: Axes, which: str = "y") -> None:
    """Ticks with labels on a log axis whatever its range: powers of ten, else 1-2-5, else 1..9, else linear.

    Matplotlib labels only powers of ten on a log axis whose minor ticks are off, so a range inside one decade
    showed no number at all. The view range is read now: call this after drawing.
    """
    axis = ax.yaxis if which == "y" else ax.xaxis
    low, high = ax.get_ylim() if which == "y" else ax.get_xlim()
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        return
    ticks: list[float] = []
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    for subs in ((1.0,), (1.0, 2.0, 5.0), tuple(range(1, 10))):
        ticks = [m * 10.0**e for e in decades for m in subs if low <= m * 10.0**e <= high]
        if len(ticks) >= 3:
            break
    if len(ticks) < 2:  # a narrow range: evenly spaced ticks inside it
        ticks = [t for t in MaxNLocator(4).tick_values(low, high) if low <= t <= high]
    digits = 3
    while len({_tick(t, digits) for t in ticks}) < len(ticks) and digits < 8:
        digits += 1
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _tick(v, digits)))
    axis.set_minor_locator(NullLocator())


def _tick(value: float, digits: int) -> str:
    """A tick label: plain (``1000``, ``0.05``) inside [1e-3, 1e5), scientific outside."""
    if 1e-3 <= abs(value) < 1e5:
        return np.format_float_positional(value, precision=digits, unique=True, fractional=False, trim="-")
    return f"{value:.{digits}g}"


def plot_against_k(
    frame: pd.DataFrame, metric: str, *, ax: Axes | None = None, ylabel: str | None = None, title: str = ""
) -> Axes:
    """``metric`` against K on log-log axes, one line per setting, with ``metric_low``/``metric_high`` bars.

    Args:
        frame: one row per (estimator, sampler, num_samples): columns ``estimator``, ``num_samples``,
            ``metric`` and, if present, ``{metric}_low`` and ``{metric}_high``
            (e.g. :func:`vaebench.analysis.summaries.variance_by_k`).
        metric: the column to plot, e.g. ``trace_var`` or ``snr``.
        ax: axes to draw on; a new figure when None.
        ylabel: y-axis label (default: the metric's header in the data dictionary).
        title: panel title.
    """
    ax = _axes(ax)
    bounds = [c for c in (f"{metric}_low", f"{metric}_high") if c in frame]
    hidden, labels = styles.shared_labels(with_sampler(frame), [metric, *bounds])
    shown: list[np.ndarray] = []
    for name, sampler, rows in _series(frame):
        rows = rows[np.isfinite(rows[metric]) & (rows[metric] > 0)].sort_values("num_samples")
        if rows.empty or (name, sampler) in hidden:
            continue
        y = rows[metric].to_numpy(float)
        yerr = None
        if f"{metric}_low" in rows and f"{metric}_high" in rows:
            # a lower end at or below 0 cannot be drawn on a log axis: its bar runs out of the panel's bottom
            low = rows[f"{metric}_low"].to_numpy(float)
            high = rows[f"{metric}_high"].to_numpy(float)
            shown += [low, high]
            yerr = np.nan_to_num(np.vstack([y - np.clip(low, 1e-300, None), high - y]).clip(min=0))
        shown.append(y)
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
    values = np.concatenate(shown) if shown else np.array([])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size:  # framed by the points and the positive ends of their bars
        ax.set_ylim(values.min() / 1.25, values.max() * 1.25)
    ks = sorted(frame["num_samples"].unique())
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.xaxis.set_minor_locator(NullLocator())
    label_log_axis(ax, "y")
    ax.set_xlabel("K (latent samples per datapoint)")
    ax.set_ylabel(ylabel or header(metric))
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
    highlight: int = HIGHLIGHT,
) -> Axes:
    """A learning curve per setting at one K: the mean over seeds, with the seeds' 95% band.

    Args:
        convergence: tidy rows of the convergence measure (``estimator, num_samples, seed, step,
            wall_time_s, metric, value``; ``diverged`` optional).
        num_samples: which K to draw.
        x: ``step``, ``wall_time_s`` (the wall-clock averaged over seeds at each evaluation step) or
            ``yardstick_steps`` (compute: :func:`vaebench.analysis.yardstick.yardstick_steps`, on the rows).
        metric: the metric to draw (``test_elbo`` by default: the plain ELBO for every estimator).
        ax: axes to draw on; a new figure when None.
        title: panel title.
        highlight: with more than `CROWDED` settings, how many (the highest final values) are drawn in full;
            the others are faint and without a band.
    """
    ax = _axes(ax)
    convergence = complete(convergence, CONVERGENCE)  # older frames: no run diverged
    bands = curve_bands(convergence[convergence["num_samples"] == num_samples], metric)
    hidden, labels = set(), {}
    if not bands.empty:
        ordered = order_estimators(with_sampler(bands))  # "reparam = iwae": the registry's first names both
        hidden, labels = styles.shared_labels(ordered, ["value"], at=("step",), partial=False)
        # the legend spans panels: say at which K the settings are one (merged by legend_outside)
        labels = {key: _shared_at(text, num_samples) for key, text in labels.items()}
    series = [(n, s, b.sort_values("step")) for n, s, b in _series(bands) if (n, s) not in hidden]
    finals = {(n, s): b["value"].iloc[-1] for n, s, b in series}
    ranked = sorted(finals, key=lambda key: -finals[key] if np.isfinite(finals[key]) else math.inf)
    full = set(ranked[:highlight]) if len(series) > CROWDED else set(finals)
    tails = []
    for name, sampler, b in series:
        look = styles.style(name, sampler)
        label = labels.get((name, sampler), setting_label(name, sampler))
        strong = (name, sampler) in full
        ax.plot(
            b[x], b["value"], label=label, linewidth=1.4 if strong else 0.9, alpha=1.0 if strong else FAINT,
            markersize=4 if strong else 2.5, markevery=max(len(b) // 6, 1), zorder=3 if strong else 2, **look,
        )  # fmt: skip
        if strong:
            ax.fill_between(
                b[x], b["value_low"], b["value_high"], color=look["color"], alpha=0.2, linewidth=0
            )
        tails.append(b["value"].iloc[len(b) // 4 :])
    div = convergence[(convergence["num_samples"] == num_samples) & convergence["diverged"].astype(bool)]
    for (name, _), g in div[div["metric"] == metric].groupby(["estimator", "seed"]):
        last = g.sort_values("step").iloc[-1]
        ax.plot(last[x], last["value"], "x", color=styles.color(name), markersize=8)
    if not div.empty:
        # A run that diverged on an absurd but finite loss may end on an absurd value: frame the others.
        steady = convergence[
            (convergence["num_samples"] == num_samples) & ~convergence["diverged"].astype(bool)
        ]
        steady = curve_bands(steady, metric)
        if not steady.empty:
            tails = [g.sort_values("step")["value"].iloc[len(g) // 4 :] for _, _, g in _series(steady)]
    _frame_tails(ax, tails)
    ax.set_xlabel(
        {"step": "optimizer steps", "wall_time_s": "training wall-clock (s)",
         "yardstick_steps": "compute (steps of the K's yardstick)"}.get(x, x)
    )  # fmt: skip
    ax.set_ylabel({"test_elbo": "test ELBO (nats)"}.get(metric, metric))
    crowded = f", best {highlight} of {len(series)} in full" if len(series) > CROWDED else ""
    ax.set_title(title or f"K = {num_samples}{crowded}")
    ax.grid(True, alpha=0.3)
    return ax


def _shared_at(label: str, k: int) -> str:
    """``reparam = iwae`` as ``reparam (= iwae at K=1)``: what the panel of K says of a setting's legend entry."""
    first, _, others = label.partition(" = ")
    return f"{first} (= {others} at K={k})" if others else label


def _frame_tails(ax: Axes, tails: list[pd.Series]) -> None:
    """Early ELBOs are orders of magnitude below the final ones: frame the last three quarters of each curve."""
    if not tails:
        return
    tail = pd.concat(tails).to_numpy(float)
    tail = tail[np.isfinite(tail)]
    if tail.size:
        low, high = float(tail.min()), float(tail.max())
        pad = 0.05 * (high - low) if high > low else 1.0
        ax.set_ylim(low - pad, high + pad)


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
            colors.append(styles.color(name))
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


# ------------------------------------------------------------------------------------ figures of results


def variance_vs_k(
    results: Results,
    metric: str = "trace_var",
    *,
    group: str = "encoder",
    checkpoint: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """A variance figure of the loaded results against K (log-log), pooled over the variance seeds.

    Args:
        results: :func:`vaebench.load`'s result.
        metric: a figure of the variance measure (``trace_var``, ``snr``, ``snr_rms``, ``dsnr``, ...).
        group: ``encoder`` or ``decoder`` parameters.
        checkpoint: the anchor run's checkpoint (default: the summary's, :attr:`Results.checkpoint`).
        ax: axes to draw on; a new figure when None.
    """
    checkpoint = checkpoint or results.checkpoint
    by_k = variance_by_k(results.variance, group=group, checkpoint=checkpoint)
    where = f" ({checkpoint} checkpoint)" if checkpoint else ""
    title = {"trace_var": f"{group.capitalize()} gradient variance{where}",
             "snr": f"{group.capitalize()} gradient SNR{where}"}.get(metric, f"{header(metric)}{where}")  # fmt: skip
    ylabel = {"trace_var": "trace of covariance", "snr": "mean |E g| / std g"}.get(metric)
    return plot_against_k(by_k, metric, ax=ax, ylabel=ylabel, title=title)


def snr_vs_k(results: Results, *, group: str = "encoder", ax: Axes | None = None) -> Axes:
    """The gradient's signal-to-noise ratio against K (:func:`variance_vs_k` of ``snr``)."""
    return variance_vs_k(results, "snr", group=group, ax=ax)


def elbo_curves(
    results: Results, num_samples: int, *, x: str = "step", ax: Axes | None = None, highlight: int = HIGHLIGHT
) -> Axes:
    """The test-ELBO learning curves of one K against steps (``x="step"``), training seconds
    (``x="wall_time_s"``: what happened on this machine) or compute (``x="yardstick_steps"``: steps x the
    interleaved step-time ratio to the K's yardstick, :func:`vaebench.analysis.yardstick.yardstick_steps`,
    where the steps were timed); see :func:`plot_curves`."""
    rows = results.convergence
    if x == "yardstick_steps":
        rows = _computed(results)
    return plot_curves(rows, num_samples=num_samples, x=x, ax=ax, highlight=highlight)


def _computed(results: Results) -> pd.DataFrame:
    """The convergence rows with their compute in yardstick steps (rows whose steps were not timed left out)."""
    if results.throughput.empty:
        return results.convergence.iloc[:0].assign(yardstick_steps=pd.Series(dtype=float))
    rows = yardstick.yardstick_steps(
        with_sampler(results.convergence), yardstick.step_ratios(results.throughput)
    )
    return rows[rows["yardstick_steps"].notna()]


def step_time(results: Results, *, ax: Axes | None = None) -> Axes:
    """The median training-step time per setting, a bar per K, at the run's throughput batch size."""
    return plot_throughput(_timed_rows(results), ax=ax)


def _timed_rows(results: Results) -> pd.DataFrame:
    rows = results.throughput
    if rows.empty:
        return rows
    rows = rows[rows["status"] == "ok"]
    rows = rows[rows["variant"] == rows["variant"].iloc[0]] if not rows.empty else rows
    batch = (results.config.get("throughput") or {}).get("batch_size")
    if batch is not None and (rows["batch_size"] == batch).any():
        rows = rows[rows["batch_size"] == batch]
    return rows


def draw(results: Results) -> dict[str, Figure]:
    """The report's figures that the results allow: key of `FIGURES` -> figure (drawn by the functions above)."""
    out = {}
    by_k = (
        variance_by_k(results.variance, checkpoint=results.checkpoint) if not results.variance.empty else None
    )
    if by_k is not None and not by_k.empty:
        fig, (left, right) = figure(2)
        variance_vs_k(results, ax=left)
        if by_k["snr"].notna().any():
            snr_vs_k(results, ax=right)
        legend_outside(fig, [left, right])
        out["variance"] = fig
    if not results.convergence.empty:
        ks = sorted(results.convergence["num_samples"].unique())
        drawn = [("steps", "step"), ("wallclock", "wall_time_s")]
        if not _computed(results).empty:
            drawn.append(("compute", "yardstick_steps"))
        for key, x in drawn:
            fig, axes = figure(len(ks))
            for ax, k in zip(axes, ks, strict=True):
                elbo_curves(results, k, x=x, ax=ax)
            legend_outside(fig, axes)
            out[key] = fig
    if not _timed_rows(results).empty:
        fig, (ax,) = figure(1, panel=(9.0, 4.0))
        step_time(results, ax=ax)
        out["throughput"] = fig
    return out


def write_figures(results: Results, out: str | Path, fmt: str = "png") -> dict[str, str]:
    """Draw the report's figures (:func:`draw`) and save each into ``out`` as ``fmt``; return key -> file name."""
    out = Path(out)
    return {
        key: save(fig, out / Path(FIGURES[key]).with_suffix(f".{fmt}")).name
        for key, fig in draw(results).items()
    }


def save(fig: Figure, path: str | Path, *, dpi: int = 100) -> Path:
    """Save a figure in the format its suffix names (`FORMATS`), atomically (a stopped write leaves the old file
    or none). PDF and SVG are vector and carry no creation date, so the same results give the same file."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"cannot save a figure as {path.name!r}: the formats are {', '.join(FORMATS)}")
    metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(fmt)
    with matplotlib.rc_context({"svg.hashsalt": "vaebench"}):  # SVG ids from a fixed salt, not a random one
        atomic_write(
            path, lambda fh: fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
        )
    return path


_NOTE = re.compile(r" \(= | = ")


def legend_outside(fig: Figure, axes) -> None:
    """One legend for a row of panels, right of them: one entry per setting, saying what every panel said of it
    (``reparam (= iwae at K=1)``), with the handle of a panel that drew it in full."""
    entries: dict[str, tuple[object, list[str]]] = {}
    for ax in np.atleast_1d(axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            match = _NOTE.search(label)
            base, note = (label[: match.start()], label[match.start() :]) if match else (label, "")
            kept, notes = entries.get(base, (handle, []))
            if _faint(kept) and not _faint(handle):
                kept = handle
            if note and note not in notes:
                notes.append(note)
            entries[base] = (kept, notes)
    if entries:
        rank = {name: i for i, name in enumerate(_ordered(b.split(" (")[0] for b in entries))}
        bases = sorted(
            entries, key=lambda b: rank[b.split(" (")[0]]
        )  # registry order, whichever panel drew first
        handles = [entries[b][0] for b in bases]
        labels = [b + "".join(entries[b][1]) for b in bases]
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5))


def _faint(handle) -> bool:
    alpha = getattr(handle, "get_alpha", lambda: None)()
    return alpha is not None and alpha < 1


__all__ = [
    "FIGURES", "FORMATS", "draw", "elbo_curves", "figure", "label_log_axis", "legend_outside", "plot_against_k",
    "plot_curves", "plot_throughput", "save", "snr_vs_k", "step_time", "variance_vs_k", "write_figures",
]  # fmt: skip
