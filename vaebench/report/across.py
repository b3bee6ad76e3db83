"""The "Across problems" section of a report and its plot, from the tables of :mod:`vaebench.analysis.across`.

Reads two frames (the aggregates of ``across.csv`` and the transfer table) and writes markdown and one panel;
it computes nothing: the takeaway is the transfer table's ``winner`` column, the cells are its figures rounded.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vaebench import files
from vaebench.analysis.across import per_problem
from vaebench.provenance import load_run
from vaebench.report import styles
from vaebench.report.formatting import fmt_interval, markdown
from vaebench.report.plots import save


def _improvement(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["statistic"] == "probability_of_improvement"]


def across_section(table: pd.DataFrame, moves: pd.DataFrame, plot: str = "") -> str:
    """Markdown: a takeaway, then per estimator and K the IQM and the probabilities of improvement with their
    intervals, then the transfer table (``plot``: the file name of :func:`plot_improvement`'s figure)."""
    named = moves[moves["winner"] != ""]
    takeaway = (
        "; ".join(named["verdict"])
        if len(named)
        else "No estimator is ahead of another across these problems at any K (see the transfer table)"
    )
    problems, seeds = int(table["problems"].iloc[0]), int(table["seeds"].iloc[0])
    iqm = table[table["statistic"] == "iqm"][["estimator", "num_samples", "value", "low", "high"]]
    better = _improvement(table)
    rows = []
    for _, r in iqm.iterrows():
        mine = better[(better["estimator"] == r["estimator"]) & (better["num_samples"] == r["num_samples"])]
        cells = [
            f"{fmt_interval(m['value'], m['low'], m['high'], 2)} vs {m['versus']}" for _, m in mine.iterrows()
        ]
        rows.append({**r.to_dict(), "improvement": "; ".join(cells) or "–"})
    lines = [
        "## Across problems",
        "",
        f"{takeaway}. ({problems} problems x {seeds} seeds; 95% stratified bootstrap intervals over both.)",
        "",
        markdown(
            pd.DataFrame(rows),
            [
                ("estimator", lambda r: r["estimator"]),
                ("K", lambda r: str(int(r["num_samples"]))),
                (
                    "IQM of -log(var x time / reparam's)",
                    lambda r: fmt_interval(r["value"], r["low"], r["high"]),
                ),
                ("P(ahead of)", lambda r: r["improvement"]),
            ],
        ),
        "",
        markdown(
            moves,
            [
                ("K", lambda r: str(int(r["num_samples"]))),
                ("A", lambda r: r["a"]),
                ("B", lambda r: r["b"]),
                ("A ahead", lambda r: str(r["a_ahead"])),
                ("B ahead", lambda r: str(r["b_ahead"])),
                ("neither", lambda r: str(r["neither"])),
                ("verdict", lambda r: r["verdict"]),
            ],
        ),
    ]
    if plot:
        lines += ["", f"![probability of improvement over reparam]({plot})"]
    return "\n".join(lines) + "\n"


def plot_improvement(table: pd.DataFrame, versus: str = "reparam", ax: Axes | None = None) -> Axes:
    """P(estimator ahead of ``versus``) with its interval, one row per estimator and K; the line at ½ is a tie."""
    if ax is None:
        ax = Figure(figsize=(5.5, 4.0), layout="constrained").subplots()
    rows = _improvement(table)
    rows = rows[rows["versus"] == versus].reset_index(drop=True)
    for i, r in rows.iterrows():
        ax.errorbar(
            r["value"],
            i,
            xerr=[[r["value"] - r["low"]], [r["high"] - r["value"]]],
            capsize=3,
            **{k: v for k, v in styles.style(r["estimator"]).items() if k != "linestyle"},
        )
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yticks(
        range(len(rows)), [f"{r['estimator']} K={int(r['num_samples'])}" for _, r in rows.iterrows()]
    )
    ax.set_xlim(-0.03, 1.03)  # points at 0 and 1 (a setting ahead on every problem and seed) stay visible
    ax.set_xlabel(f"P(ahead of {versus}), paired by seed, mean over problems")
    ax.invert_yaxis()
    return ax


def problem_section(summary: pd.DataFrame, noise: pd.DataFrame) -> str:
    """Markdown: per problem, the ranking figure of every setting (mean over seeds, 95% interval), best first,
    the settings whose interval lies apart from the best's marked; then the Monte Carlo share of the gradient
    noise where a problem is trained on minibatches."""
    lines = ["## Per problem", ""]
    for problem, group in summary.groupby("problem", sort=False):
        figure = group["figure"].iloc[0]
        cells = [
            f"{r['estimator']} K={r['num_samples']} {fmt_interval(r['value'], r['low'], r['high'], 2)}"
            + (" (behind)" if r["behind_best"] else "")
            for _, r in group.iterrows()
        ]
        lines.append(f"- **{problem}** ({figure}, {'higher' if group['higher_is_better'].iloc[0] else 'lower'} "
                     f"is better): {'; '.join(cells)}")  # fmt: skip
    if not noise.empty:
        lines += [
            "",
            "Monte Carlo share of the encoder's gradient variance (the rest is minibatch noise):",
            "",
        ]
        for problem, group in noise.groupby("problem", sort=False):
            cells = [
                f"{r['estimator']} K={int(r['num_samples'])} "
                f"{fmt_interval(r['mc_fraction'], r['mc_fraction_low'], r['mc_fraction_high'], 2)}"
                for _, r in group.iterrows()
            ]
            lines.append(f"- **{problem}**: {'; '.join(cells)}")
    return "\n".join(lines) + "\n"


def write_across_report(out: str | Path, units: dict | None = None, status: str | None = None) -> Path:
    """``report.md`` of a run across problems: the "Across problems" section first (on the variance x time
    scores, with the probability of improvement on the problems' own ranking figures beside it), then a line
    per problem; ``across.png`` its plot. ``units``: what the suite's check of the folder found (a partial
    run's units left out are listed); ``status``: unused, as the suite's report hook passes it."""
    out = Path(out)
    left = (units or {}).get("left_out") or {}
    if not (out / "across.csv").is_file():
        lines = ["# vaebench across problems", "", "No table across problems yet: no problem has both its "
                 f"variance and its figures of merit. Units left out: {len(left)}.", ""]  # fmt: skip
        return files.write_text(out / "report.md", "\n".join(lines))
    table, moves = files.read_csv(out / "across.csv"), files.read_csv(out / "transfer.csv")
    moves["winner"] = ["" if pd.isna(w) else w for w in moves["winner"]]  # an empty cell reads as NaN
    merit = files.read_csv(out / "merit.csv")
    noise = files.read_csv(out / "noise.csv") if (out / "noise.csv").is_file() else pd.DataFrame()
    variance = table[table["score"] == "variance_time"]
    ax = plot_improvement(variance)
    save(ax.figure, out / "across.png")
    parts = ["# vaebench across problems", "", across_section(variance, moves, "across.png")]
    ranked = table[
        (table["score"] == "ranking_figure") & (table["statistic"] == "probability_of_improvement")
    ]
    if len(ranked):
        cells = [
            f"{r['estimator']} K={int(r['num_samples'])} {fmt_interval(r['value'], r['low'], r['high'], 2)}"
            for _, r in ranked[ranked["versus"] == "reparam"].iterrows()
        ]
        parts += ["On each problem's own ranking figure, P(ahead of reparam at the same K), paired by seed: "
                  + "; ".join(cells) + ".", ""]  # fmt: skip
    merit = merit[merit["ranks"].astype(bool)]
    parts.append(problem_section(per_problem(merit), noise))
    notes = load_run(out).get("notes") or []
    if left:
        notes.append(f"{len(left)} unit(s) left out of the tables: " + "; ".join(list(left)[:6]))
    if notes:
        parts += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return files.write_text(out / "report.md", "\n".join(parts))
