r"""The bottom line of a run: at each K, one verdict per question the suite measures.

The questions (`QUESTIONS`) and how two settings a, b at one K are set against each other:

- **lowest gradient variance**: the encoder gradient variance (trace of its covariance, at the reported
  checkpoint), as the ratio v_a / v_b of the two bootstrap estimates, their log errors in quadrature
  (:func:`vaebench.analysis.contrast.contrast`, ``ratio``);
- **lowest variance at equal compute**: variance x step time (the variance of a gradient averaged over an
  equal budget of compute), the ratio (v_a τ_a) / (v_b τ_b) with the step-time ratio measured interleaved,
  over rounds (:func:`vaebench.analysis.yardstick.compute_ratio`). It is named for its figure: the test ELBO
  reached at equal compute is another question (:mod:`vaebench.analysis.budget`, on the same interleaved
  ratios), and the two may rank the settings differently without contradicting each other;
- **best test log-likelihood**: the mean over seeds of the per-seed difference a - b, **paired by seed**
  (runs of one seed share the initialisation and the data order), with a Student-t interval
  (:func:`vaebench.analysis.summaries.paired_difference`);
- **fastest step**: the step-time ratio τ_a / τ_b over rounds of interleaved timing
  (:func:`vaebench.analysis.yardstick.step_ratio`).

A comparison is *separated* when its interval excludes 1 (a ratio) or 0 (a difference). The *best* is the
setting with the best figure; it is the verdict's *winner* only when it is separated from every other
setting compared, else the winner is None and the verdict lists the runners-up not separated from it.
Settings with the best's figures to rounding (the same gradient on the same draws, e.g. ``iwae`` and ``reparam``
at K = 1; :func:`vaebench.analysis.settings.same_figures`) are named with it (``same_as``), not counted as
rivals.

Only unbiased settings compete: a setting whose estimator declares a bias at its K (``iwae-stl`` at K > 1)
is left out of every ranking and named with the reason (``left_out``), as are, for the test log-likelihood,
settings with diverged runs (their mean leaves those runs out). A question with fewer than two settings to
compare at a K gets no verdict there.

Why the verdicts reproduce: the variance and test figures of a configuration are deterministic (its seeds
fix every draw), and the timing ones are ratios of steps timed in one unit, round-robin, whose intervals
are over rounds (:mod:`vaebench.analysis.yardstick` states the false-alarm rate of a flipped winner).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vaebench.analysis import summaries, yardstick
from vaebench.analysis.contrast import Contrast, contrast, none
from vaebench.analysis.settings import bias_note, same_figures, setting_label, truth
from vaebench.measures.schema import SUMMARY, complete

QUESTIONS = (
    "lowest gradient variance",
    "lowest variance at equal compute",
    "best test log-likelihood",
    "fastest step",
)
"""The questions a run answers, in the order the report states them."""


@dataclass(frozen=True)
class Verdict:
    """One question at one K.

    Attributes:
        question: one of `QUESTIONS`.
        num_samples: K.
        figure: what ``value`` is, in words.
        best: the setting with the best figure (its label), None when none could be ranked.
        winner: ``best`` when it is separated from every other setting compared, else None.
        value, low, high: the best's figure and its interval.
        against: the runner-up (the next best figure), and ``contrast`` (``ratio`` or ``difference``) with
            ``change``, ``change_low``, ``change_high``: the best set against it.
        separated: whether the best is separated from every other setting compared.
        not_separated: the runners-up not separated from the best.
        same_as: settings with the best's figures to rounding.
        left_out: settings not ranked, each "label: why".
        yardstick: for the timing questions, the K's yardstick setting that ``value`` is relative to.
        reason: the verdict's reason in words.
        compared: how many settings were ranked (the best included).
        notes: caveats (for the test figures: whether the curves had levelled off).
    """

    question: str
    num_samples: int
    figure: str
    best: str | None = None
    winner: str | None = None
    value: float = math.nan
    low: float = math.nan
    high: float = math.nan
    against: str | None = None
    contrast: str = ""
    change: float = math.nan
    change_low: float = math.nan
    change_high: float = math.nan
    separated: bool = False
    not_separated: tuple[str, ...] = ()
    same_as: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()
    yardstick: str | None = None
    reason: str = ""
    compared: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Question:
    """How one question ranks the settings of a K and sets two of them against each other."""

    name: str
    figure: str
    column: str  # the summary's column ranked
    lower: bool  # lower is better
    contrast: str  # "ratio" or "difference"
    against: Callable[[pd.Series, pd.Series], Contrast]


def verdicts(
    summary: pd.DataFrame,
    convergence: pd.DataFrame | None = None,
    throughput: pd.DataFrame | None = None,
    *,
    checkpoint: str | None = None,
    level: float = 0.95,
) -> list[Verdict]:
    """Every question's verdict at every K the run measured it (module docstring).

    Args:
        summary: :func:`vaebench.analysis.summaries.summary_table` (with ``step_ratio`` and ``compute_ratio``
            where the steps were timed interleaved).
        convergence: the tidy convergence rows (for the pairing by seed).
        throughput: the tidy throughput rows (for the step-time ratios between two settings).
        checkpoint: the variance checkpoint the summary reports, for the figure's words.
        level: the level of the intervals formed here.
    """
    if summary is None or summary.empty:
        return []
    summary = complete(summary, SUMMARY)
    rows = yardstick.timed_rows(throughput)
    convergence = convergence if convergence is not None else pd.DataFrame()
    where = f" at the {checkpoint} checkpoint" if checkpoint else ""
    questions = [
        _Question(QUESTIONS[0], f"encoder gradient variance (trace of its covariance{where})", "trace_var", True,
                  "ratio", lambda a, b: contrast(_triple(a, "trace_var"), _triple(b, "trace_var"), "ratio")),
        _Question(QUESTIONS[1], "variance x step time, over that of the K's yardstick setting", "compute_ratio",
                  True, "ratio", lambda a, b: yardstick.compute_ratio(
                      _triple(a, "trace_var"), _triple(b, "trace_var"), yardstick.step_ratio(rows, _key(a), _key(b), level))),
        _Question(QUESTIONS[2], "test log-likelihood (nats, mean over seeds)", "test_log_likelihood", False,
                  "difference", lambda a, b: _paired(convergence, a, b, level)),
        _Question(QUESTIONS[3], "step time, over that of the K's yardstick setting", "step_ratio", True, "ratio",
                  lambda a, b: yardstick.step_ratio(rows, _key(a), _key(b), level)),
    ]  # fmt: skip
    out = []
    for question in questions:
        for k in sorted(summary["num_samples"].dropna().unique()):
            verdict = _judge(question, summary[summary["num_samples"] == k], int(k))
            if verdict is not None:
                out.append(verdict)
    return out


def _judge(q: _Question, rows: pd.DataFrame, k: int) -> Verdict | None:
    """The verdict of one question at one K (None when fewer than two settings can be compared)."""
    left_out = [f"{_label(r)}: {bias_note(r['estimator'], k)}" for _, r in rows.iterrows() if _biased(r)]
    rows = rows[[not _biased(r) for _, r in rows.iterrows()]]
    if q.name in (QUESTIONS[2], QUESTIONS[3]):  # a setting whose training diverged wins neither
        bad = rows["diverged"].fillna(0) > 0
        left_out += [
            f"{_label(r)}: {int(r['diverged'])} of {int(r['runs'])} runs diverged"
            for _, r in rows[bad].iterrows()
        ]
        rows = rows[~bad]
    measured = rows[np.isfinite(rows[q.column].astype(float))]
    if len(measured) < 2:
        timed = q.column in ("step_ratio", "compute_ratio") and np.isfinite(rows["step_ms"]).sum() >= 2
        return _unjudged(q, k, left_out) if timed else None
    order = measured.sort_values(q.column, ascending=q.lower, kind="stable")
    best, others = order.iloc[0], order.iloc[1:]
    same = [r for _, r in others.iterrows() if _identical(q, best, r)]
    rivals = [r for _, r in others.iterrows() if not _identical(q, best, r)]
    contrasts = [(r, q.against(best, r)) for r in rivals]
    tied = [r for r, c in contrasts if not (c.separated and _on_best_side(q, c))]
    unformed = [r for r, c in contrasts if not np.isfinite(c.low)]
    reversed_ = [r for r, c in contrasts if c.separated and not _on_best_side(q, c)]
    separated = bool(rivals) and not tied
    against, first = contrasts[0] if contrasts else (None, none(q.contrast))
    if against is not None:  # of settings with the same gradient (dreg = stl at K = 1), name the trained one
        twins = [against, *(r for r in rivals if r is not against and _identical(q, against, r))]
        against, first = next(
            ((r, c) for r, c in contrasts if r is next((t for t in twins if not _trained_as(t)), against)),
            (against, first),
        )
    return Verdict(
        question=q.name, num_samples=k, figure=q.figure, best=_label(best),
        winner=_label(best) if separated else None, value=float(best[q.column]),
        low=float(best[f"{q.column}_low"]), high=float(best[f"{q.column}_high"]),
        against=_label(against) if against is not None else None, contrast=q.contrast,
        change=first.value, change_low=first.low, change_high=first.high, separated=separated,
        not_separated=tuple(_label(r) for r in tied), same_as=tuple(_label(r) for r in same),
        left_out=tuple(left_out), reason=_reason(q, separated, tied, unformed, reversed_, rivals), compared=len(measured),
        notes=tuple(_convergence_notes(q, measured, [best, *same, *tied])), yardstick=_yardstick(q, best),
    )  # fmt: skip


def _yardstick(q: _Question, best: pd.Series) -> str | None:
    """The yardstick setting a timing figure is relative to (None for the other questions)."""
    if q.column not in ("step_ratio", "compute_ratio"):
        return None
    ref = best["timing_yardstick"]
    return ref if isinstance(ref, str) else None


def _unjudged(q: _Question, k: int, left_out: list[str]) -> Verdict:
    """A timing question whose ratios could not be formed: the steps were timed one setting at a time."""
    why = (
        "the steps were not timed interleaved (each setting alone, as in results folders written before "
        "interleaved timing), and absolute times of separate units do not reproduce"
    )
    return Verdict(q.name, k, q.figure, left_out=tuple(left_out), reason=f"cannot be judged: {why}")


def _reason(q: _Question, separated: bool, tied: list, unformed: list, reversed_: list, rivals: list) -> str:
    how = {
        "ratio": "its ratio interval to every other excludes 1",
        "difference": "paired by seed, its difference to every other excludes 0",
    }[q.contrast]
    if q.name in (QUESTIONS[1], QUESTIONS[3]):
        how += " (over rounds of interleaved timing)"
    if not rivals:
        return "no other setting differs from it"
    if separated:
        return f"separated: {how}"
    null = "1" if q.contrast == "ratio" else "0"
    apart = [*unformed, *reversed_]
    holding = [_label(r) for r in tied if not any(r is u for u in apart)]
    parts = [f"the interval against {', '.join(holding)} holds {null}"] if holding else []
    if unformed:
        why = "fewer than two seeds paired" if q.contrast == "difference" else "fewer than two rounds"
        parts.append(f"no interval against {', '.join(_label(r) for r in unformed)} ({why})")
    if reversed_:
        parts.append(
            f"paired on the seeds both finished, {', '.join(_label(r) for r in reversed_)} lies ahead of it "
            "(their means are over other seeds)"
        )
    return "not separated: " + "; ".join(parts)


def _convergence_notes(q: _Question, rows: pd.DataFrame, contenders: list[pd.Series]) -> list[str]:
    """For the test figures: whether the compared runs had levelled off. ``contenders``: the best and the
    settings not separated from it, whose curves decide whether the verdict itself is one of converged models."""
    if q.name != QUESTIONS[2]:
        return []
    judged = [truth(v) for v in rows["converged"]]
    if all(v is None for v in judged):
        return [
            "whether training had levelled off could not be judged (too few evaluations in the window it is judged on)"
        ]
    moving = [r for _, r in rows.iterrows() if truth(r["converged"]) is False]
    if not moving:
        return []
    if any(truth(r["converged"]) is False for r in contenders):
        return ["some curves had not levelled off: this ranks early training, not converged models"]
    names = ", ".join(f"`{_label(r)}`" for r in moving)
    return [
        f"the leader's curves and those of the settings not separated from it had levelled off; {names} had "
        "not: their places rank early training"
    ]


def _on_best_side(q: _Question, c: Contrast) -> bool:
    """Whether a separated contrast favours the best (it always should; a paired test on other seeds may not)."""
    if q.contrast == "ratio":
        return c.high < 1 if q.lower else c.low > 1
    return c.high < 0 if q.lower else c.low > 0


def _identical(q: _Question, a: pd.Series, b: pd.Series) -> bool:
    """Whether two settings have the same figures to rounding (the same gradient on the same draws)."""
    if q.name not in (QUESTIONS[0], QUESTIONS[2]):
        return False  # a step time is never shared
    columns = (q.column, f"{q.column}_low", f"{q.column}_high")
    if not np.isfinite(a[columns[1]]):  # without intervals (one seed) the means alone decide
        columns = columns[:1]
    return same_figures([a[c] for c in columns], [b[c] for c in columns])


def _paired(convergence: pd.DataFrame, a: pd.Series, b: pd.Series, level: float) -> Contrast:
    if convergence.empty:
        return none("paired difference")
    per_seed = [summaries.per_seed(convergence, "test_log_likelihood", _key(r)) for r in (a, b)]
    return contrast(*per_seed, "paired difference", level)


def _key(row: pd.Series) -> tuple[str, str, int]:
    return row["estimator"], row["sampler"], int(row["num_samples"])


def _trained_as(row: pd.Series) -> str:
    """The setting whose training runs these are ("" when its own; see `TRAINED_COLUMNS` of the report)."""
    value = row.get("trained_as", "")
    return value if isinstance(value, str) else ""


def _label(row: pd.Series) -> str:
    return setting_label(row["estimator"], row["sampler"])


def _triple(row: pd.Series, figure: str) -> tuple[float, float, float]:
    return float(row[figure]), float(row[f"{figure}_low"]), float(row[f"{figure}_high"])


def _biased(row: pd.Series) -> bool:
    return bool(bias_note(row["estimator"], row["num_samples"]))


# --------------------------------------------------------------------------------------------- records


def records(found: list[Verdict]) -> list[dict]:
    """The verdicts as plain data for ``verdicts.json``: NaN as None, intervals as [low, high] pairs."""
    out = []
    for v in found:
        record = {
            "question": v.question, "K": v.num_samples, "winner": v.winner, "best": v.best,
            "figure": v.figure, "value": _plain(v.value), "interval": [_plain(v.low), _plain(v.high)],
            "against": v.against, "contrast": v.contrast or None, "change": _plain(v.change),
            "change_interval": [_plain(v.change_low), _plain(v.change_high)], "separated": v.separated,
            "not_separated": list(v.not_separated), "same_as": list(v.same_as), "left_out": list(v.left_out),
            "yardstick": v.yardstick,
            "compared": v.compared, "reason": v.reason, "notes": list(v.notes),
        }  # fmt: skip
        out.append(record)
    return out


def _plain(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def contradictions(a: list[dict], b: list[dict]) -> list[str]:
    """Where two runs' verdicts (:func:`records`) state opposite things: a winner in one that the other ranks
    separated behind its own best (or names another winner). A verdict that is not separated in one run and
    separated in the other is no contradiction: it is what a comparison near its interval's edge does."""
    index = {(r["question"], r["K"]): r for r in b}
    found = []
    for ra in a:
        rb = index.get((ra["question"], ra["K"]))
        if rb is None:
            continue
        for x, y in ((ra, rb), (rb, ra)):
            if x["winner"] is None or y["best"] is None:
                continue
            level = {y["best"], *y["not_separated"], *y["same_as"]}
            if x["winner"] not in level:
                found.append(
                    f"{ra['question']} at K={ra['K']}: one run states {x['winner']!r} as the winner, the other "
                    f"ranks it behind {y['best']!r}, separated"
                )
    return list(dict.fromkeys(found))


def changes(shared: list[dict], tuned: list[dict], questions: tuple[str, ...] = (QUESTIONS[2],)) -> list[str]:
    """Which verdicts (:func:`records`) of ``questions`` a step-size grid changed: at each K, the winner at the
    shared rate against the winner with every setting at its own rate (:mod:`vaebench.analysis.selection`);
    "not separated" is a verdict too. The default question is the convergence one (the others do not train)."""
    index = {(r["question"], r["K"]): r for r in shared if r["question"] in questions}
    found = []
    for t in tuned:
        s = index.get((t["question"], t["K"]))
        if s is None or s["winner"] == t["winner"]:
            continue
        said = [f"`{r['winner']}` wins" if r["winner"] else "not separated" for r in (s, t)]
        found.append(f"{t['question']} at K={t['K']}: {said[0]} at the shared rate, {said[1]} tuned")
    return found
