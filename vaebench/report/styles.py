"""How a setting looks in every plot: a colour and a marker per estimator, a line style per family.

Each estimator has its own (colour, marker) pair, so a new estimator never looks like a built-in:

- the built-ins, in registry order, take pairs ``(PALETTE[i % 10], MARKERS[i % 11])``: fixed, whatever else a
  run measured (10 and 11 are coprime, so the first 110 pairs are distinct);
- any other name (a plugin's estimator, or a name in a folder whose plugin is not loaded) takes a pair
  ``(OTHER_PALETTE[j % 8], MARKERS[j % 11])``, j a CRC-32 of its name modulo 88: colours no built-in has, the
  same in every run and on every machine (two such names share a pair with chance 1 in 88).

The *family* (how the encoder gradient is formed, as the registry declares it) is the line style
(`FAMILY_LINES`): solid pathwise, dashed score-function, dotted measure-valued, dash-dot for the
wake-sleep estimators that take either; a name the registry does not know is drawn solid. The sampler keeps
the look and changes the marker's fill (`SAMPLER_FILLS`).
"""

from __future__ import annotations

import math
import zlib

import matplotlib
import pandas as pd

from vaebench.analysis.settings import identical_settings
from vaebench.estimators import BUILTIN_ESTIMATORS, ESTIMATORS
from vaebench.report.settings import setting_label

PALETTE: tuple[tuple[float, float, float], ...] = tuple(matplotlib.colormaps["tab10"].colors)
"""The colours, in order (matplotlib's tab10: distinct in print and for the common colour blindnesses)."""

MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*", "<", "h", ">")
"""The markers, in order; their count is coprime with the palette's, so (colour, marker) pairs cycle late."""

FAMILY_LINES: dict[str, object] = {
    "pathwise": "-",
    "score-function": "--",
    "measure-valued": ":",
    "any": "-.",
}
"""Line style of each family (what the registry declares of an estimator); others are solid."""

SAMPLER_FILLS = {"iid": "full", "antithetic": "none", "rqmc": "left"}
"""Marker fill of each sampler (the estimator keeps its colour, marker and line style)."""

OTHER_PALETTE: tuple[tuple[float, float, float], ...] = tuple(matplotlib.colormaps["Dark2"].colors)
"""The colours of estimators that are not built in (matplotlib's Dark2: none of them is a tab10 colour)."""


def _pair(name: str) -> tuple[tuple[float, float, float], str]:
    """(colour, marker) of an estimator (see the module docstring)."""
    if name in BUILTIN_ESTIMATORS:
        i = list(BUILTIN_ESTIMATORS).index(name)  # i -> (i % 10, i % 11) is one-to-one below 110
        return PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]
    j = zlib.crc32(name.encode()) % math.lcm(len(OTHER_PALETTE), len(MARKERS))
    return OTHER_PALETTE[j % len(OTHER_PALETTE)], MARKERS[j % len(MARKERS)]


def color(name: str) -> tuple[float, float, float]:
    """The colour of an estimator in every plot."""
    return _pair(name)[0]


def marker(name: str) -> str:
    """The marker of an estimator in every plot."""
    return _pair(name)[1]


def line_style(name: str) -> object:
    """The line style of an estimator: its family's (`FAMILY_LINES`)."""
    cls = ESTIMATORS.get(name)
    return FAMILY_LINES.get(cls.family, "-") if cls is not None else "-"


def style(name: str, sampler: str = "iid") -> dict[str, object]:
    """Keyword arguments of ``Axes.plot``/``errorbar`` for a setting: color, marker, linestyle, fillstyle."""
    return {
        "color": color(name),
        "marker": marker(name),
        "linestyle": line_style(name),
        "fillstyle": SAMPLER_FILLS.get(sampler, "bottom"),
    }


def shared_labels(
    frame: pd.DataFrame,
    columns: list[str],
    at: tuple[str, ...] = ("num_samples",),
    where: str = "K",
    partial: bool = True,
) -> tuple[set[tuple[str, str]], dict[tuple[str, str], str]]:
    """Which settings a plot leaves out and how it labels the others, so that identical rows show as shared.

    A setting whose rows equal an earlier one's at every position both have (and that has no other
    position) is not drawn: the earlier one's label names both, ``reparam = iwae``. One equal at some positions
    only is drawn, its label saying where: ``iwae (= reparam at K=1)``, unless ``partial`` is False (learning
    curves, which all start at the same initialisation). The earlier setting is the one first in ``frame``.

    Returns:
        (settings not to draw, label of each drawn setting that differs from its plain label).
    """
    hidden: set[tuple[str, str]] = set()
    labels: dict[tuple[str, str], str] = {}
    keys = (
        frame[["estimator", "sampler"]].drop_duplicates().itertuples(index=False, name=None)
        if not frame.empty
        else []
    )
    own = {key: len(frame[(frame["estimator"] == key[0]) & (frame["sampler"] == key[1])]) for key in keys}
    for first, second, equal, both in identical_settings(frame, columns, at):
        if first in hidden or second in hidden:
            continue
        name = setting_label(*second)
        if len(equal) == len(both) == own.get(second):
            hidden.add(second)
            labels[first] = f"{labels.get(first, setting_label(*first))} = {name}"
        elif partial and second not in labels:
            places = ", ".join(f"{where}={p[0]}" for p in equal)
            labels[second] = f"{name} (= {setting_label(*first)} at {places})"
    return hidden, labels
