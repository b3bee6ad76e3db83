"""The opening of report.md: one line per verdict, and what the timing verdicts rest on.

The verdicts are computed by :func:`vaebench.analysis.verdicts.verdicts`; here they are only put in words.
Each line names the setting, its figure with the interval, how it compares with the runner-up, and
"not separated" where the data do not single it out. Every word that orders two numbers (ahead, behind)
is chosen from the sign of the number it describes; a ratio is stated as a ratio ("0.60× that of"), which
reads right on either side of 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.analysis import yardstick
from vaebench.analysis.verdicts import QUESTIONS, Verdict
from vaebench.report.formatting import fmt_interval, fmt_number
from vaebench.report.phrases import ratio_text

NOUNS = {QUESTIONS[0]: "variance", QUESTIONS[1]: "variance x step time", QUESTIONS[3]: "step time"}
"""What a ratio of each question compares."""

SUPERLATIVES = {
    QUESTIONS[0]: "the lowest variance",
    QUESTIONS[1]: "the lowest variance x step time",
    QUESTIONS[2]: "the highest mean",
    QUESTIONS[3]: "the shortest step",
}


def section(found: list[Verdict], run: dict, throughput: pd.DataFrame | None) -> list[str]:
    """The markdown lines of the bottom line (empty when there is no verdict)."""
    if not found:
        return []
    md = [
        "## Bottom line",
        "",
        "One verdict per question and K; a setting is named the winner only when it is separated from every "
        "other (see *Words* at the end). Biased settings are never ranked with the unbiased ones.",
        "",
    ]
    md += [f"- {line(v)}" for v in found if v.best is not None]
    md += [f"- {text}" for text in unjudged(found)]
    return [*md, "", timing_basis(run, throughput, found), ""]


def unjudged(found: list[Verdict]) -> list[str]:
    """One line per reason for the verdicts that could not be judged (their questions and K named once)."""
    reasons: dict[str, list[Verdict]] = {}
    for v in found:
        if v.best is None:
            reasons.setdefault(v.reason, []).append(v)
    out = []
    for reason, group in reasons.items():
        questions = list(dict.fromkeys(v.question for v in group))
        ks = ", ".join(str(k) for k in dict.fromkeys(v.num_samples for v in group))
        what = " and ".join(questions)
        out.append(f"**{what[0].upper()}{what[1:]}, K={ks}**: {reason}.")
    return out


def line(v: Verdict) -> str:
    """One verdict in words."""
    head = f"**{v.question[0].upper()}{v.question[1:]}, K={v.num_samples}**: "
    if v.best is None:
        return head + v.reason + _left_out(v) + "."
    best = f"`{v.best}`" + _same_as(v)
    against = _against(v)
    if v.winner is None and not v.not_separated:  # every other setting has its very figures
        figure = _figure(v, noun=True)
        return head + best + (f", {figure}" if figure else "") + f": {v.reason}" + _left_out(v) + "."
    if v.winner is not None:
        others = v.compared - 1 - len(v.same_as)
        said = "; ".join(p for p in (_figure(v, noun=True), against) if p)
        rest = "the other one" if others == 1 else f"the other {others}"
        text = f"{best}" + (f", {said}" if said else "") + f": separated from {rest}"
    else:
        figure = _figure(v, noun=False)
        text = (
            f"not separated. {best} has {SUPERLATIVES[v.question]}"
            + (f" ({figure})" if figure else "")
            + f" but is not separated from {names(v.not_separated)}"
            + (f"; {against}" if against else "")
        )
    return head + text + _left_out(v) + "".join(f"; {note}" for note in v.notes) + "."


def names(labels: tuple[str, ...], limit: int = 4) -> str:
    """Setting labels as inline code, at most ``limit`` then a count."""
    shown = ", ".join(f"`{n}`" for n in labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def _figure(v: Verdict, noun: bool) -> str:
    """The best's own figure (for the timing questions: its ratio to the K's yardstick setting)."""
    if v.question == QUESTIONS[2]:
        return f"{fmt_interval(v.value, v.low, v.high, symmetric=True)} nats"
    if v.question == QUESTIONS[0]:
        return fmt_interval(v.value, v.low, v.high)
    if v.yardstick is None or v.yardstick in (v.best, v.against):
        return ""  # 1 exactly against itself, and the runner-up's ratio says it when it is the yardstick
    ratio = f"{ratio_text(v.value, v.low, v.high)} that of `{v.yardstick}`"
    return f"{NOUNS[v.question]} {ratio}" if noun else ratio


def _against(v: Verdict) -> str:
    """The best set against the runner-up, in words that follow the number's sign."""
    if v.against is None or not np.isfinite(v.change):
        return ""
    missing = "" if np.isfinite(v.change_low) else f" (no interval: fewer than two {_units(v)})"
    if v.contrast == "ratio":
        ratio = ratio_text(v.change, v.change_low, v.change_high)
        return f"{NOUNS[v.question]} {ratio} that of `{v.against}`, the next{missing}"
    size = fmt_interval(abs(v.change), *_abs_interval(v), symmetric=True)
    if v.change > 0:
        return f"ahead of `{v.against}`, the next, by {size} nats paired by seed{missing}"
    if v.change < 0:
        return (
            f"behind `{v.against}`, the next by its mean, by {size} nats on the seeds both finished{missing}"
        )
    return f"level with `{v.against}`, the next, paired by seed{missing}"


def _units(v: Verdict) -> str:
    return {QUESTIONS[2]: "seeds paired", QUESTIONS[0]: "bootstrap intervals"}.get(v.question, "rounds")


def _abs_interval(v: Verdict) -> tuple[float, float]:
    if v.change >= 0:
        return v.change_low, v.change_high
    return -v.change_high, -v.change_low


def _same_as(v: Verdict) -> str:
    if not v.same_as:
        return ""
    names = ", ".join(f"`{n}`" for n in v.same_as)
    return f" (and {names}, with the same figures to rounding: the same gradient on the same draws)"


def _left_out(v: Verdict) -> str:
    if not v.left_out:
        return ""
    return " (not ranked: " + "; ".join(_code_name(entry) for entry in v.left_out) + ")"


def _code_name(entry: str) -> str:
    name, _, why = entry.partition(": ")
    return f"`{name}` † {why}" if "biased" in why else f"`{name}` {why}"


def timing_basis(run: dict, throughput: pd.DataFrame | None, found: list[Verdict]) -> str:
    """What the timing verdicts rest on: interleaved rounds, the machine and its load."""
    rows = yardstick.timed_rows(throughput)
    timed = any(v.question in (QUESTIONS[1], QUESTIONS[3]) and v.best is not None for v in found)
    if rows.empty:
        text = (
            "The step times of this folder were measured one setting at a time (before interleaved timing), "
            "so no verdict is drawn from them: absolute times of separate units change with the machine's load."
            if throughput is not None and not throughput.empty
            else "Step times were not measured."
        )
    else:
        rounds, steps = int(rows["rounds"].max()), int(rows["round_steps"].max())
        text = (
            f"Timing verdicts are ratios of steps timed interleaved, every setting of a K in one unit: {rounds} "
            f"rounds of {steps} step{'s' if steps > 1 else ''} each, round-robin, with intervals over the rounds, "
            "so a load that slows the machine slows every step of a round alike and cancels in the ratio."
            if timed
            else ""
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
    parts = [f"Machine: {cpu or 'unknown CPU'}" + (f", {cores} usable cores" if cores else "")]
    loads = [
        (when, d.get("load_1min")) for when, d in (("when the run started", before), ("when it ended", after))
    ]
    said = [f"{fmt_number(value, 2)} {when}" for when, value in loads if value is not None]
    during = []
    if not rows.empty:
        during = [v for v in (*rows["load_before"], *rows["load_after"]) if v is not None and np.isfinite(v)]
        if during:
            low, high = min(during), max(during)
            span = fmt_number(low, 2) if low == high else f"{fmt_number(low, 2)} to {fmt_number(high, 2)}"
            said.append(f"{span} while the steps were timed")
    if said:
        parts.append("1-minute load average " + ", ".join(said))
    text = "; ".join(parts) + "."
    peak = max([v for _, v in loads if v is not None] + during, default=None)
    if cores and peak is not None and peak > cores:
        text += (
            f" **The machine was busy**: its load ({fmt_number(peak, 2)}) exceeded its {cores} usable cores, so "
            "the timed steps shared the CPUs with other work; interleaving keeps their ratios comparable, and "
            "the intervals over rounds widen for the extra noise."
        )
    return text
