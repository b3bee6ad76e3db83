"""The progress bar: one bar over the whole suite, advanced by unit weights, so its ETA covers every unit left."""

from __future__ import annotations

import sys

from vaebench.suite import units
from vaebench.suite.units import Unit


class Quiet:
    """A bar that shows nothing."""

    def update(self, n: float = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def bar(plan: list[Unit], todo: list[Unit], progress: bool | None):
    """A tqdm bar over every unit of ``plan`` that starts at the finished ones (``progress`` False: none)."""
    if progress is False:
        return Quiet()
    from tqdm.auto import tqdm

    total = units.total_weight(plan)
    bar = tqdm(
        total=total,
        initial=total - units.total_weight(todo),
        file=sys.stderr,
        disable=None if progress is None else not progress,
        bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
        desc="vaebench",
        dynamic_ncols=True,
    )
    return bar
