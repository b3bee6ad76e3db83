r"""A guard for CI on a comparison of two runs: fail when B is worse than A beyond the interval, by a margin.

A rule names a figure of :data:`vaebench.analysis.compare.FIGURES` and a margin, as pytest-benchmark's
``--benchmark-compare-fail`` does (``min:5%``): ``trace_var:5%`` (relative: 5% of A's value) or
``test_log_likelihood:0.5`` (absolute, in the figure's unit; only for figures compared as a difference, whose
unit is the nat). B is *worse beyond its interval* when the whole interval of the change lies past the margin
on the worse side:

    ratio, lower is better (variance, step time):   change_low  > 1 + m
    ratio, higher is better (SNR):                  change_high < 1 - m
    difference, higher is better (ELBO, log p(x)):  change_high < -m   (absolute)   or   < -m |A|   (relative)

False alarms: when B's true change lies exactly at the margin, one setting fails with probability at most
(1 - level) / 2, the one side of its two-sided interval (2.5% at the default 95%), and less the better B is.
Over S settings the chance that any fails is at most S (1 - level) / 2; to hold it at α, compare at level
1 - 2α / S (:func:`family_level`). A setting without an interval is reported as undecided and never fails.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

from vaebench.analysis.compare import FIGURES
from vaebench.errors import VaebenchError
from vaebench.measures.schema import SETTING


@dataclass(frozen=True)
class Rule:
    """``figure:margin`` parsed: a margin m >= 0, relative (a fraction of A) or absolute (figure's unit)."""

    figure: str
    margin: float
    relative: bool

    def __str__(self) -> str:
        return f"{self.figure}:{self.margin * 100:g}%" if self.relative else f"{self.figure}:{self.margin:g}"


def parse_rule(text: str) -> Rule:
    """``trace_var:5%`` or ``test_log_likelihood:0.5`` -> `Rule`.

    Raises:
        VaebenchError: not ``FIGURE:MARGIN``, an unknown figure, a negative margin, or an absolute margin on a
            figure compared as a ratio.
    """
    match = re.fullmatch(r"\s*([a-z_]+)\s*:\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*(%?)\s*", text or "")
    if not match:
        raise VaebenchError(
            f"guard rule {text!r} is not FIGURE:MARGIN, e.g. trace_var:5% (relative) or test_log_likelihood:0.5 "
            "(absolute, in nats)"
        )
    figure, number, percent = match.groups()
    if figure not in FIGURES:
        raise VaebenchError(f"guard rule {text!r}: unknown figure {figure!r}; valid: {', '.join(FIGURES)}")
    margin = float(number) / (100 if percent else 1)
    if not percent and FIGURES[figure][0] == "ratio":
        raise VaebenchError(
            f"guard rule {text!r}: {figure} is compared as a ratio B / A, so its margin is a percentage "
            f"(e.g. {figure}:5%)"
        )
    if percent and FIGURES[figure][0] == "ratio" and FIGURES[figure][1] == "higher" and margin >= 1:
        raise VaebenchError(
            f"guard rule {text!r}: a ratio cannot fall by 100% or more; use a margin below 100%"
        )
    return Rule(figure, margin, bool(percent))


def check(table: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    """The rows of a comparison for the rule's figure, each with its limit and whether B is worse past it.

    Returns:
        Columns ``estimator, sampler, num_samples, figure, rule, change, change_low, change_high, limit,
        decided`` (the interval is known) and ``worse`` (True only when decided and past the limit).
    """
    contrast, better = FIGURES[rule.figure]
    rows = table[table["figure"] == rule.figure]
    out = rows[[*SETTING, "figure", "change", "change_low", "change_high"]].copy()
    if contrast == "ratio":
        limit = 1 + rule.margin if better == "lower" else 1 - rule.margin
        out["limit"] = limit
    else:
        scale = rows["a"].abs() if rule.relative else 1.0
        out["limit"] = -rule.margin * scale
    out.insert(4, "rule", str(rule))
    out["decided"] = [
        math.isfinite(lo) and math.isfinite(hi)
        for lo, hi in zip(out["change_low"], out["change_high"], strict=True)
    ]
    past = out["change_low"] > out["limit"] if better == "lower" else out["change_high"] < out["limit"]
    out["worse"] = out["decided"] & past
    return out.reset_index(drop=True)


def family_level(false_alarm: float, settings: int) -> float:
    """The interval level at which ``settings`` one-sided checks fail together with probability <= ``false_alarm``."""
    if not 0 < false_alarm < 1 or settings < 1:
        raise VaebenchError(f"need 0 < false_alarm < 1 and settings >= 1, got {false_alarm!r}, {settings!r}")
    return 1 - 2 * false_alarm / settings
