"""Sentences of the reading that set the run's test log-likelihoods beside published gaps, paired by seed.

The figures and verdicts are :mod:`vaebench.analysis.published` (which says when a run is compared and how
each verdict follows the interval of the paired difference); here they become words. Words that order the two
settings (ahead, behind) follow the sign of the mean difference; whether the published size lies inside the
interval is said on its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.analysis import published
from vaebench.analysis.published import BURDA_GAP, DREG_GAIN, Comparison
from vaebench.report.formatting import fmt_number

VERDICT_WORDS = {
    ("burda", "agrees"): "**agrees** in direction (IWAE better: the interval lies above 0)",
    ("burda", "does not agree"): "**does not agree**: IWAE is worse (the interval lies below 0)",
    ("burda", "inconclusive"): "**inconclusive**: the interval holds 0, so no direction is shown",
    ("tucker", "does not agree"): "**does not agree**: DReG is worse (the interval lies below 0)",
    ("tucker", "agrees"): "**agrees**: DReG is better (the interval lies above 0)",
    (
        "tucker",
        "consistent",
    ): "**consistent** with it: DReG is not separated from IWAE (the interval holds 0)",
}
"""How each (claim, verdict) is said."""

SOURCES = {
    "burda": f"Burda et al. 2015's {fmt_number(BURDA_GAP)}-nat gain of IWAE on MNIST (84.78 against 86.35 NLL, "
    "one stochastic layer, k=50)",
    "tucker": f"Tucker et al. 2018's finding that DReG is as good as IWAE or better (about {fmt_number(DREG_GAIN)} "
    "nats in reproductions)",
}


def published_comparisons(
    summary: pd.DataFrame,
    convergence: pd.DataFrame,
    *,
    data: str | None = None,
    likelihood: str | None = None,
) -> list[str]:
    """One sentence per comparison of :func:`vaebench.analysis.published.published_comparisons`."""
    found = published.published_comparisons(summary, convergence, data=data, likelihood=likelihood)
    return [sentence(c, data) for c in found]


def sentence(c: Comparison, data: str | None) -> str:
    """The comparison in words."""
    a, b = ("IWAE", "the VAE (`reparam`)") if c.claim == "burda" else ("DReG", "IWAE")
    text = f"{a} against {b} at K={c.k}: {difference(a, c)}."
    source = SOURCES[c.claim]
    if c.blocker:
        return text + f" Not set beside {source}: {c.blocker}."
    verdict = VERDICT_WORDS.get(
        (c.claim, c.verdict), "**cannot be judged** (no interval: fewer than two seeds)"
    )
    sized = ""
    if c.size_inside is not None:
        where = "lies within" if c.size_inside else "lies outside"
        sized = f"; the published {fmt_number(c.published_size)} nats {where} the interval"
    elif c.claim == "burda" and data != "mnist" and np.isfinite(c.low):
        sized = " (the published size is MNIST's: only the direction is compared here)"
    return text + f" Beside {source}: {verdict}{sized}."


def difference(a: str, c: Comparison) -> str:
    """The paired difference with words that follow its sign."""
    diff, low, high, n = c.diff, c.low, c.high, c.seeds
    interval = f" [{fmt_number(low)}, {fmt_number(high)}]" if np.isfinite(low) else ""
    side = "ahead" if diff > 0 else "behind" if diff < 0 else "level"
    by = f" by {fmt_number(abs(diff))} nats" if diff else ""
    if not np.isfinite(low):
        separated = "no interval (fewer than two seeds)"
    elif low > 0 or high < 0:
        separated = "separated from 0"
    else:
        separated = "not separated from 0"
    return (
        f"test log-likelihood difference {fmt_number(diff)}{interval} nats paired over {n} seeds, {a} {side}{by} "
        f"on average ({separated})"
    )
