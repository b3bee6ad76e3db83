"""The one progress-bar helper: a tqdm bar when asked for, else a silent stand-in (tqdm is not imported)."""

from __future__ import annotations

import sys


class Silent:
    """What a disabled bar does: nothing, through the part of tqdm's interface vaebench uses."""

    def update(self, n: float = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: float | None, enabled: bool | None, **options):
    """A tqdm bar on stderr over ``total`` (``options`` go to tqdm), or a silent one.

    ``enabled``: True shows it, False gives the silent stand-in without importing tqdm, None
    lets tqdm decide (shown on a terminal only).
    """
    if enabled is False:
        return Silent()
    from tqdm.auto import tqdm

    return tqdm(total=total, file=sys.stderr, disable=None if enabled is None else not enabled, **options)
