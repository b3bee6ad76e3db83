"""The report of a run across problems and its plot, from the tables of :mod:`vaebench.analysis.across`.

One screen: the verdict across problems (:func:`vaebench.analysis.across.takeaway`), the leading estimators'
aggregates with their intervals, the transfer counts, the published claims the run measured, the plot, and
one line per problem. It computes nothing of its own: the verdicts and figures are the analysis's, rounded
here; the full tables are the folder's CSVs, which the last line names (``claims.csv`` and
``per_problem.csv`` are written here, from ``variance.csv`` and ``merit.csv``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vaebench import files
from vaebench.analysis.across import leaders, per_problem, takeaway
from vaebench.analysis.claims import Evidence, claims_table
from vaebench.provenance import load_run
from vaebench.report import styles
from vaebench.report.claims import section as claims_section
from vaebench.report.formatting import fmt_interval, markdown
from vaebench.report.plots import save

REFERENCE = "reparam"
"""The estimator the variance-time scores and the first probability of improvement are taken against."""


def _improvement(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["statistic"] == "probability_of_improvement"]


def _leading(table: pd.DataFrame, moves: pd.DataFrame) -> list[tuple[int, str]]:
    """(K, estimator) of the transfer table's pairs, by K then IQM (the three highest IQM without pairs)."""
    named = {int(k): list(dict.fromkeys([*g["a"], *g["b"]])) for k, g in moves.groupby("num_samples")}
    return [(k, name) for k, names in sorted((named or leaders(table, 3)).items()) for name in names]


def _p(table: pd.DataFrame, name: str, k: int, versus: str | None) -> str:
    """P(``name`` ahead of ``versus``) at K with its interval (``versus`` None: the best other)."""
    rows = _improvement(table)
    rows = rows[(rows["estimator"] == name) & (rows["num_samples"] == k)]
    rows = rows[rows["versus"] == versus] if versus else rows[rows["versus"] != REFERENCE]
    if rows.empty:
        return "–"
    r = rows.iloc[0]
    return fmt_interval(r["value"], r["low"], r["high"], 2) + ("" if versus else f" vs {r['versus']}")


def across_section(table: pd.DataFrame, moves: pd.DataFrame) -> str:
    """Markdown: the verdict across problems, the leading estimators' IQM and probabilities of improvement with
    their intervals, and the transfer counts (``table``: ``across.csv``, its ``score`` column optional: the
    rows without one, or ``variance_time``, are the variance-time aggregates; ``moves``: ``transfer.csv``)."""
    if "score" not in table.columns:
        table = table.assign(score="variance_time")
    variance = table[table["score"] == "variance_time"]
    ranked = table[table["score"] == "ranking_figure"]
    problems, seeds = int(variance["problems"].iloc[0]), int(variance["seeds"].iloc[0])
    iqm = variance[variance["statistic"] == "iqm"].set_index(["estimator", "num_samples"])
    rows = pd.DataFrame(_leading(variance, moves), columns=["num_samples", "estimator"])
    columns = [
        ("K", lambda r: str(r["num_samples"])),
        ("estimator", lambda r: r["estimator"]),
        (f"IQM of -log(var x time / {REFERENCE}'s)", lambda r: fmt_interval(
            *iqm.loc[(r["estimator"], r["num_samples"]), ["value", "low", "high"]])),
        (f"P(ahead of {REFERENCE})", lambda r: _p(variance, r["estimator"], r["num_samples"], REFERENCE)),
        ("P(ahead of the best other)", lambda r: _p(variance, r["estimator"], r["num_samples"], None)),
    ]  # fmt: skip
    if len(ranked):
        columns.append((f"on the ranking figures, P(ahead of {REFERENCE})",
                        lambda r: _p(ranked, r["estimator"], r["num_samples"], REFERENCE)))  # fmt: skip
    lines = [
        f"{takeaway(moves, problems)}. ({problems} problems x {seeds} seeds; 95% stratified bootstrap intervals "
        "over both.)",
        "",
        markdown(rows, columns),
        "",
    ]
    if len(moves):
        lines += [
            "Problems on which each of a pair is separated ahead (paired by seed):",
            "",
            markdown(moves, [
                ("K", lambda r: str(int(r["num_samples"]))), ("A", lambda r: r["a"]), ("B", lambda r: r["b"]),
                ("A ahead", lambda r: str(r["a_ahead"])), ("B ahead", lambda r: str(r["b_ahead"])),
                ("neither", lambda r: str(r["neither"])),
            ]),
            "",
        ]  # fmt: skip
    return "\n".join(lines)


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


def problem_lines(ranking: pd.DataFrame, noise: pd.DataFrame, notes: list[str]) -> list[str]:
    """Markdown, one line per problem: its ranking figure's best setting (mean over seeds, 95% interval), how
    many settings lie apart from it, the range of the Monte Carlo share of the encoder's gradient variance
    where the problem is trained on minibatches, and how many notes of the run name it (``ranking``:
    :func:`vaebench.analysis.across.per_problem`)."""
    lines = []
    for problem, group in ranking.groupby("problem", sort=False):
        best = group.iloc[0]
        behind = int(group["behind_best"].sum())
        line = (
            f"- **{problem}** ({best['figure']}, {'higher' if best['higher_is_better'] else 'lower'} is better): "
            f"best {best['estimator']} K={int(best['num_samples'])} "
            f"{fmt_interval(best['value'], best['low'], best['high'], 2)}; {behind} of {len(group)} settings "
            "behind it"
        )
        share = noise[noise["problem"] == problem]["mc_fraction"] if len(noise) else pd.Series(dtype=float)
        if len(share):
            line += f"; Monte Carlo share of the encoder's variance {share.min():.2f}-{share.max():.2f}"
        said = sum(n.startswith(f"{problem}: ") for n in notes)
        if said:
            line += f"; {said} note{'s' if said > 1 else ''}"
        lines.append(line)
    return lines


def write_across_report(out: str | Path, units: dict | None = None, status: str | None = None) -> Path:
    """``report.md`` of a run across problems (module docstring), with ``across.png`` its plot and
    ``claims.csv`` (the published claims, from ``variance.csv``) and ``per_problem.csv`` (each problem's
    ranking figure per setting, from ``merit.csv``) beside it. ``units``: what the suite's check of the folder
    found (a partial run's units left out are counted); ``status``: unused, as the suite's report hook passes
    it."""
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
    notes = list(load_run(out).get("notes") or [])
    claims = claims_table(Evidence(variance=files.read_csv(out / "variance.csv")))
    files.write_csv(out / "claims.csv", claims)
    ranking = per_problem(merit[merit["ranks"].astype(bool)])
    files.write_csv(out / "per_problem.csv", ranking)
    ax = plot_improvement(table[table["score"] == "variance_time"])
    save(ax.figure, out / "across.png")
    parts = [
        "# vaebench across problems",
        "",
        across_section(table, moves),
        *claims_section(claims, ("claim", "where", "measured", "verdict")),
        f"![probability of improvement over {REFERENCE}](across.png)",
        "",
        "## Per problem",
        "",
        *problem_lines(ranking, noise, notes),
        "",
        "Every aggregate with its interval is in `across.csv` (the ranking figures' too), every pair's counts "
        "and verdict in `transfer.csv`, each problem's settings in `per_problem.csv` (per seed: `merit.csv`), "
        "the Monte Carlo shares in `noise.csv`, each claim's source and detail in `claims.csv`, the notes in "
        "`run.json`.",
        "",
    ]
    if left:
        parts += [f"{len(left)} unit(s) left out of the tables: " + "; ".join(list(left)[:6]) + ".", ""]
    return files.write_text(out / "report.md", "\n".join(parts))
