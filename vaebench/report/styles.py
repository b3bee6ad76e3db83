"""How a setting looks in every plot: one colour per estimator family, a marker and dash pattern per member.

A *family* is what the registry declares of an estimator: its objective and how its encoder gradient is
formed (``pathwise``, ``score-function`` or ``measure-valued``). The colour follows the family
(`FAMILY_COLORS`), with the IWAE objective's mixtures (MIWAE, CIWAE, PIWAE) drawn in the IWAE colour and the
two wake-sleep estimators sharing one: the pathwise ELBO estimators (reparam, the analytic KL, STL, the
control variates) are blue, the score-function ELBO ones (REINFORCE with its baselines, VarGrad) red, the
measure-valued one brown, the pathwise IWAE ones (IWAE, DReG, IWAE-STL and the mixtures) green, the
score-function ones of the importance-weighted samples (VIMCO, the two OVIS forms and TVO) purple, the Renyi
ones orange, reweighted wake-sleep pink, tail-adaptive olive and UHA cyan. Within a colour each member has
its own marker and line style (`MEMBER_STYLES`), by its place among that colour's built-ins in registry
order, so the look of a built-in never depends on what else a run measured. A plugin's estimator takes its
family's colour and one of the styles its colour's built-ins leave free, chosen by a hash of its name: stable
across runs and whatever else is loaded (two plugins of one family may share a style). A name the registry
does not know (a folder written with a plugin that is not loaded), or a family no built-in has, is grey. The
sampler keeps the member's look and changes the marker's fill (`SAMPLER_FILLS`).
"""

from __future__ import annotations

import zlib

import matplotlib
import pandas as pd

from vaebench.analysis.settings import identical_settings
from vaebench.estimators import BUILTIN_ESTIMATORS, ESTIMATORS
from vaebench.report.settings import setting_label

_TAB10 = matplotlib.colormaps["tab10"].colors
FAMILY_COLORS: dict[tuple[str, str], tuple[float, float, float]] = {
    ("elbo", "pathwise"): _TAB10[0],  # blue
    ("elbo", "score-function"): _TAB10[3],  # red
    ("iwae", "pathwise"): _TAB10[2],  # green
    ("iwae", "score-function"): _TAB10[4],  # purple
    ("elbo", "measure-valued"): _TAB10[5],  # brown
    ("renyi", "pathwise"): _TAB10[1],  # orange
    ("inclusive-kl", "any"): _TAB10[6],  # pink
    ("tail-adaptive", "pathwise"): _TAB10[8],  # olive
    ("uha", "pathwise"): _TAB10[9],  # cyan
}
"""Colour of each (objective, family), after `colour_group`."""

_SAME_COLOUR = {
    ("miwae", "pathwise"): ("iwae", "pathwise"),
    ("ciwae", "pathwise"): ("iwae", "pathwise"),
    ("piwae", "pathwise"): ("iwae", "pathwise"),
    ("inclusive-kl", "pathwise"): ("inclusive-kl", "any"),
    ("inclusive-kl", "score-function"): ("inclusive-kl", "any"),
    ("tvo", "score-function"): ("iwae", "score-function"),
}
"""Families drawn in another family's colour: the IWAE mixtures in IWAE's, both wake-sleep forms in one, TVO
in the score-function IWAE estimators'."""

UNKNOWN_COLOR = _TAB10[7]
"""Grey, for an estimator the registry does not know."""

MEMBER_STYLES: tuple[tuple[str, object], ...] = (
    ("o", "-"),
    ("s", "--"),
    ("^", "-."),
    ("D", ":"),
    ("v", (0, (5, 1))),
    ("P", (0, (3, 1, 1, 1, 1, 1))),
    ("X", (0, (1, 1))),
    ("*", (0, (5, 2, 1, 2))),
)
"""(marker, line style) of a family's members, by their place in it."""

SAMPLER_FILLS = {"iid": "full", "antithetic": "none", "rqmc": "left"}
"""Marker fill of each sampler (the member keeps its colour, marker and line style)."""


def family(name: str) -> tuple[str, str] | None:
    """(objective, family) that the registry declares for ``name``; None when it does not know it."""
    cls = ESTIMATORS.get(name)
    return None if cls is None else (cls.objective, cls.family)


def colour_group(name: str) -> tuple[str, str] | None:
    """The key of ``name``'s colour in `FAMILY_COLORS`: its family, or the family it shares a colour with."""
    kin = family(name)
    return _SAME_COLOUR.get(kin, kin)


def color(name: str) -> tuple[float, float, float]:
    """The colour of an estimator in every plot: its family's."""
    return FAMILY_COLORS.get(colour_group(name), UNKNOWN_COLOR)


def member_style(name: str) -> tuple[str, object]:
    """(marker, line style) of an estimator among the built-ins of its colour (see the module docstring)."""
    kin = colour_group(name)
    builtins = [n for n in BUILTIN_ESTIMATORS if colour_group(n) == kin] if kin is not None else []
    if name in builtins:
        return MEMBER_STYLES[builtins.index(name) % len(MEMBER_STYLES)]
    free = list(range(len(builtins), len(MEMBER_STYLES))) or list(range(len(MEMBER_STYLES)))
    return MEMBER_STYLES[free[zlib.crc32(name.encode()) % len(free)]]


def style(name: str, sampler: str = "iid") -> dict[str, object]:
    """Keyword arguments of ``Axes.plot``/``errorbar`` for a setting: color, marker, linestyle, fillstyle."""
    marker, linestyle = member_style(name)
    return {
        "color": color(name),
        "marker": marker,
        "linestyle": linestyle,
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
