"""The first screen of report.md: the takeaway sentence, the bottom line as a table, and the caveats.

Everything here is read from what analysis already decided: the verdicts are the records of ``verdicts.json``
(:func:`vaebench.analysis.verdicts.records`), the caveats read the comparison table's flag columns
(``converged``, ``diverged``, ``biased``), the claims' verdicts (``claims.csv``) and the timing rows. Nothing
here ranks, pairs or tests: a setting is called the winner only where its record has one.

The takeaway groups the records: each winner with the questions (and K) it wins, then the questions whose
best is not separated from the rest. A table row holds one record: its best (or "not separated"), the best's
figure with its interval, and the best set against the next one (a ratio, or a difference paired by seed).
Every word that orders two numbers is chosen from the sign of the number it describes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.analysis import yardstick
from vaebench.analysis.plateau import TOLERANCE
from vaebench.analysis.settings import truth
from vaebench.analysis.verdicts import QUESTIONS
from vaebench.measures.schema import SUMMARY, complete
from vaebench.report.formatting import fmt_interval, fmt_number, markdown
from vaebench.report.phrases import ratio_text, setting_names

WINS = {
    QUESTIONS[0]: "the lowest gradient variance",
    QUESTIONS[1]: "the best variance x step time",
    QUESTIONS[2]: "the best test log-likelihood",
    QUESTIONS[3]: "the fastest step",
}
"""What winning each question is called in the takeaway."""

NOUNS = {
    QUESTIONS[0]: "gradient variance",
    QUESTIONS[1]: "variance x step time",
    QUESTIONS[2]: "test log-likelihood",
    QUESTIONS[3]: "step time",
}
"""What each question compares."""

NOT_COMPARED = ("not comparable", "not testable here", "cannot be judged")
"""Claim verdicts that mean the run could not set its figure beside the published one."""


def _ks(ks: list) -> str:
    """'K = 1', 'K = 1 and 10', 'K = 1, 5 and 50'."""
    ks = [str(k) for k in ks]
    return "K = " + (ks[0] if len(ks) == 1 else ", ".join(ks[:-1]) + " and " + ks[-1])


def _and(parts: list[str], word: str = "and") -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" {word} " + parts[-1]


def takeaway(records: list[dict], claims: pd.DataFrame | None = None) -> str:
    """One sentence from the verdicts: who wins what at which K, and what is not separated.

    A run without verdicts (its checks only) says how its measured claims came out instead."""
    judged = [r for r in records if r["best"] is not None]
    if not judged:
        return _claims_takeaway(claims)
    clauses = []
    wins: dict[str, dict[str, list]] = {}
    for r in judged:
        if r["winner"] is not None:
            wins.setdefault(r["winner"], {}).setdefault(r["question"], []).append(r["K"])
    for name, questions in wins.items():
        by_ks: dict[tuple, list[str]] = {}
        for question, ks in questions.items():
            by_ks.setdefault(tuple(ks), []).append(WINS[question])
        said = [f"{_and(words)} at {_ks(list(ks))}" for ks, words in by_ks.items()]
        clauses.append(f"`{name}` has " + ", and ".join(said))
    open_: dict[str, list] = {}
    for r in judged:
        if r["winner"] is None:
            open_.setdefault(r["question"], []).append(r["K"])
    every = sorted({r["K"] for r in judged})
    by_ks = {}
    for question, ks in open_.items():
        by_ks.setdefault(tuple(ks), []).append(NOUNS[question])
    unseparated = [
        f"{_and(nouns, 'or')}" + ("" if list(ks) == every else f" at {_ks(list(ks))}")
        for ks, nouns in by_ks.items()
    ]
    if unseparated:
        clauses.append("no setting is separated from the rest on " + " or on ".join(unseparated))
    text = "; ".join(clauses)
    return text[0].upper() + text[1:] + "." if not text.startswith("`") else text + "."


def _claims_takeaway(claims: pd.DataFrame | None) -> str:
    if claims is None or claims.empty:
        return "No verdict: this run compared no settings and measured no published claim."
    measured = claims[claims["verdict"] != "not measured in this run"]
    counts = measured["verdict"].value_counts()
    told = ", ".join(f"{word} {n}" for word, n in counts.items())
    return (
        f"This run compares no estimators (its checks only); it measured {len(measured)} published claims"
        + (f" (verdicts: {told})." if told else ".")
    )


# ------------------------------------------------------------------------------------------- the table


def table(records: list[dict]) -> list[str]:
    """The bottom line as markdown lines (empty without verdicts)."""
    if not records:
        return []
    frame = pd.DataFrame({"record": records})
    columns = [
        ("question", lambda r: r["record"]["question"]),
        ("K", lambda r: str(r["record"]["K"])),
        ("winner", lambda r: _winner(r["record"])),
        ("figure [interval]", lambda r: _figure(r["record"])),
        ("against the next [interval]", lambda r: _against(r["record"])),
    ]
    return ["## Bottom line", "", markdown(frame, columns), ""]


def _winner(r: dict) -> str:
    if r["best"] is None:  # its reason is in verdicts.json; for timing, the caveat says it once
        return "cannot be judged"
    same = f" (= {', '.join(f'`{n}`' for n in r['same_as'])})" if r["same_as"] else ""
    if r["winner"] is not None:
        return f"`{r['winner']}`{same}"
    level = len(r["not_separated"])
    if not level:  # every other setting has its figures: nothing to separate it from
        return f"`{r['best']}`{same}: {r['reason']}"
    return f"not separated: `{r['best']}`{same} leads, {level} level with it"


def _interval(r: dict, key: str, pair: str) -> tuple[float, float, float]:
    low, high = r[pair]
    return (*(np.nan if v is None else v for v in (r[key], low, high)),)


def _figure(r: dict) -> str:
    if r["best"] is None:
        return "–"
    value, low, high = _interval(r, "value", "interval")
    if r["question"] == QUESTIONS[2]:
        return f"{fmt_interval(value, low, high, symmetric=True)} nats"
    if r["question"] == QUESTIONS[0]:
        return fmt_interval(value, low, high)
    if r["yardstick"] in (None, r["best"]):
        return "1 (the yardstick)" if r["yardstick"] else ratio_text(value, low, high)
    if r["yardstick"] == r["against"]:
        return "–"  # its ratio to the yardstick is the next column's
    return f"{ratio_text(value, low, high)} `{r['yardstick']}`'s"


def _against(r: dict) -> str:
    if r["against"] is None:
        return "–"
    change, low, high = _interval(r, "change", "change_interval")
    if not np.isfinite(change):
        return "–"
    if r["contrast"] == "ratio":
        return f"{ratio_text(change, low, high)} `{r['against']}`'s"
    sign = "+" if change > 0 else "-" if change < 0 else ""
    lo, hi = (low, high) if change >= 0 else (-high, -low)
    return (
        f"{sign}{fmt_interval(abs(change), lo, hi, symmetric=True)} nats on `{r['against']}`, paired by seed"
    )


# ---------------------------------------------------------------------------------------- the caveats


def caveats(
    summary: pd.DataFrame,
    claims: pd.DataFrame | None,
    run: dict,
    throughput: pd.DataFrame | None,
) -> list[str]:
    """At most four caveats, each said once: curves that had not levelled off (and diverged runs), the biased
    settings left out of every ranking, the timing basis and the machine's load, the claims not compared."""
    summary = complete(summary, SUMMARY) if not summary.empty else summary
    said = [_curves(summary), _biased(summary), timing_basis(run, throughput), _not_compared(claims)]
    lines = [c for c in said if c]
    return ["## Caveats", "", *[f"- {c}" for c in lines], ""] if lines else []


def _curves(summary: pd.DataFrame) -> str:
    if summary.empty:
        return ""
    moving = summary[summary["converged"].map(lambda v: truth(v) is False)]
    parts = []
    if not moving.empty:
        window = f"steps {moving['rise_from_step'].min():.0f}–{moving['rise_to_step'].max():.0f}"
        rise = moving["test_elbo_rise"]
        parts.append(
            f"**Not levelled off**: the test ELBO of {setting_names(list(moving.itertuples()), k=True)} still "
            f"moved by more than {TOLERANCE:g} nat over a quarter of training while the step size was still at "
            f"least half its peak ({window}; {fmt_number(rise.min())} to {fmt_number(rise.max())} nats): their "
            "test figures rank training that was still gaining, not converged models."
        )
    elif summary["converged"].map(lambda v: truth(v) is None).all() and summary["runs"].fillna(0).any():
        parts.append(
            "**Levelling off not judged**: too few evaluations in the window it is judged on to tell whether "
            "the curves had levelled off."
        )
    bad = summary[summary["diverged"].fillna(0) > 0]
    if not bad.empty:
        which = ", ".join(
            f"`{r['estimator']}` K={int(r['num_samples'])} ({int(r['diverged'])}/{int(r['runs'])})"
            for _, r in bad.iterrows()
        )
        parts.append(f"**Diverged runs**, left out of the means and the rankings: {which}.")
    return " ".join(parts)


def _biased(summary: pd.DataFrame) -> str:
    if summary.empty:
        return ""
    wrong = summary[summary["biased"].fillna("").astype(str) != ""]
    if wrong.empty:
        return ""
    groups = []
    for why, rows in wrong.groupby("biased", sort=False):
        groups.append(f"{setting_names(list(rows.itertuples()), k=True)} († {why})")
    return (
        f"**Not ranked**: {'; '.join(groups)}: a gradient of the wrong mean, so a low variance is no merit; "
        "it is left out of every ranking."
    )


def _not_compared(claims: pd.DataFrame | None) -> str:
    if claims is None or claims.empty:
        return ""
    rows = claims[claims["verdict"].isin(NOT_COMPARED)]
    if rows.empty:
        return ""
    groups = []
    for why, part in rows.groupby(rows["detail"].fillna(""), sort=False):
        names = "; ".join(part["claim"])
        groups.append(f"{names}" + (f": {why}" if why else ""))
    return f"**Claims not compared** ({len(rows)}): " + ". ".join(groups) + "."


def timing_basis(run: dict, throughput: pd.DataFrame | None) -> str:
    """What the timing verdicts rest on (interleaved rounds) and the machine's load; '' without timing."""
    if throughput is None or throughput.empty:
        return ""
    rows = yardstick.timed_rows(throughput)
    if rows.empty:
        text = (
            "**Timing**: the steps of this folder were timed one setting at a time (before interleaved "
            "timing), so no timing verdict is drawn: absolute times of separate units move with the load."
        )
    else:
        rounds, steps = int(rows["rounds"].max()), int(rows["round_steps"].max())
        text = (
            f"**Timing**: ratios over {rounds} interleaved rounds of {steps} step{'s' if steps > 1 else ''}, "
            "every setting of a K in one unit, so a load that slows a round slows each of its steps alike."
        )
    machine = _machine(run, rows)
    return " ".join(part for part in (text, machine) if part)


def _machine(run: dict, rows: pd.DataFrame) -> str:
    load = run.get("load") or {}
    env = run.get("environment") or {}
    before, after = (load.get(k, {}) or {} for k in ("before", "after"))
    cpu = before.get("cpu") or env.get("cpu")
    cores = before.get("usable_cores") or env.get("usable_cores")
    if cpu is None and cores is None and not load:
        return ""
    head = f"{cpu or 'unknown CPU'}" + (f", {cores} usable cores" if cores else "")
    loads = [(when, d.get("load_1min")) for when, d in (("at the start", before), ("at the end", after))]
    said = [f"{fmt_number(value, 2)} {when}" for when, value in loads if value is not None]
    during = []
    if not rows.empty:
        during = [v for v in (*rows["load_before"], *rows["load_after"]) if v is not None and np.isfinite(v)]
        if during:
            low, high = min(during), max(during)
            span = fmt_number(low, 2) if low == high else f"{fmt_number(low, 2)} to {fmt_number(high, 2)}"
            said.append(f"{span} while timed")
    text = head + ("; 1-minute load " + ", ".join(said) if said else "") + "."
    peak = max([v for _, v in loads if v is not None] + during, default=None)
    if cores and peak is not None and peak > cores:
        text += (
            f" **The machine was busy** (load {fmt_number(peak, 2)} over {cores} cores): the intervals over "
            "rounds widen for it."
        )
    return text
