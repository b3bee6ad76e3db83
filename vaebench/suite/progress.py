"""The progress bar: one bar over the whole suite, advanced by unit weights, so its ETA covers every unit left."""

from __future__ import annotations

from vaebench.progress import bar as progress_bar
from vaebench.suite import units
from vaebench.suite.units import Unit


def bar(plan: list[Unit], todo: list[Unit], progress: bool | None):
    """A tqdm bar over every unit of ``plan`` that starts at the finished ones (``progress`` False: none)."""
    total = units.total_weight(plan)
    return progress_bar(
        total,
        progress,
        initial=total - units.total_weight(todo),
        bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
        desc="vaebench",
        dynamic_ncols=True,
    )
