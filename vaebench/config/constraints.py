"""What a configuration's values must be: each field's type and constraints, declared at the field.

A field of a section (:mod:`vaebench.config.sections`) is declared with :func:`option`, which is
``dataclasses.field`` with the field's constraints in its metadata::

    steps: int = option(500, positive)  # optimizer steps per run

This module is the one place a value is checked, in two steps:

- its **type**, from the annotation, where the value enters (:func:`coerce`, called by
  :func:`vaebench.config.strict.merge` for TOML files, flags and a saved run.json alike);
- its **constraints**, on the resolved configuration (:func:`check_fields`), once the plugins are loaded
  (their estimators, models and data sets join the valid choices).

A constraint is a function ``(key, value) -> message`` that returns the error message naming the dotted key,
the value and what would be valid, or None when the value is fine. What relates several fields (a checkpoint
the summary reads must be one that is measured; pixel settings on data that are not pixels) is
:func:`vaebench.config.validate.validate`'s, after the fields.

Dataclass field metadata, not pydantic: the sections stay frozen dataclasses (hashable, compared by value,
printed as the config reads) and no dependency is added; the one checker is a loop over the fields.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from vaebench import devices
from vaebench.errors import VaebenchError

Constraint = Callable[[str, Any], "str | None"]
"""``(dotted key, value) -> the error message, or None when the value satisfies the constraint``."""

MAX_SEED = 2**63 - 1
"""Largest seed: the largest TOML integer, and one that torch.manual_seed and an int64 CSV column take."""

MAX_THREADS = 1024
"""Most torch threads (and workers) accepted: far above any CPU's core count, far below what makes thread
creation fail."""


def option(default: Any = dataclasses.MISSING, *constraints: Constraint, factory: Any = dataclasses.MISSING):
    """A dataclass field with its ``default`` (or default ``factory``) and the ``constraints`` its value must meet."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"constraints": constraints})


# ------------------------------------------------------------------------------------------------ the checker


def check_fields(config: Any, prefix: str = "") -> None:
    """Check every field of a section (and of the sections inside it) against its declared constraints.

    Raises:
        VaebenchError: the first value that breaks a constraint, with the message the constraint gives.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            check_fields(value, f"{prefix}{f.name}.")
            continue
        for constraint in f.metadata.get("constraints", ()):
            message = constraint(f"{prefix}{f.name}", value)
            if message:
                raise VaebenchError(message)


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the annotation ``tp`` (int, float, str, bool, X | None, tuple[X, ...]); an
    integer is a valid number and becomes a float.

    Raises:
        VaebenchError: naming the key, the type expected and the value given.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for choice in inner[:-1]:  # bool | str: the first type the value is, else the last one's message
            if choice in (bool, str) and isinstance(value, choice):
                return value
        return coerce(value, inner[-1], key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise VaebenchError(
                f"config key {key!r} must be a list of {_type_name(args[0])}s, got {describe(value)}"
            )
        return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:  # an integer beyond the largest float (about 1.8e308)
                raise VaebenchError(
                    f"config key {key!r} must be a number of at most about 1.8e308, got an integer of "
                    f"{len(str(abs(value)))} digits"
                ) from None
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise VaebenchError(
            f"config key {key!r} must be {_type_name(tp, article=True)}, got {describe(value)}"
        )
    return value


def _type_name(tp: Any, article: bool = False) -> str:
    name = {int: "integer", float: "number", str: "string", bool: "boolean (true or false)"}.get(tp, str(tp))
    if not article:
        return name
    return ("an " if name[0] in "aeiou" else "a ") + name


def describe(value: Any) -> str:
    """'integer 3', 'string \'x\'': a value as messages name it."""
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"


# ------------------------------------------------------------------------------------------------ constraints


def positive(key: str, value: float) -> str | None:
    """> 0 and finite."""
    return None if value > 0 and math.isfinite(value) else f"{key} must be > 0, got {value!r}"


def at_least(low: float, meaning: str = "") -> Constraint:
    """>= ``low`` and finite; ``meaning`` says what the bound means (e.g. "(0: the whole test set)")."""
    note = f" {meaning}" if meaning else ""
    return lambda key, value: (
        None if value >= low and math.isfinite(value) else f"{key} must be >= {low}{note}, got {value!r}"
    )


def between(low: float, high: float, low_means: str = "") -> Constraint:
    """Within [``low``, ``high``]; ``low_means`` says what ``low`` means."""
    note = f" ({low_means})" if low_means else ""
    return lambda key, value: (
        None if low <= value <= high else f"{key} must be between {low}{note} and {high}, got {value!r}"
    )


def one_of(choices: Iterable[str] | Mapping[str, Any], noun: str = "") -> Constraint:
    """A key of ``choices`` (read when checked, so a registry that plugins fill is current). With a ``noun``
    the message reads "unknown <noun> 'x'; valid names: ...", else "<key> 'x' is not valid; choose one of: ..."."""

    def check(key: str, value: str) -> str | None:
        valid = tuple(choices)
        if value in valid:
            return None
        if noun:
            return f"unknown {noun} {value!r}; valid names: {', '.join(valid)}"
        return f"{key} {value!r} is not valid; choose one of: {', '.join(valid)}"

    return check


def each(*constraints: Constraint, entry: str = "entry") -> Constraint:
    """Every element of a tuple meets ``constraints`` (named "<key> <entry>" in the message); a constraint
    may also name the whole list (``key``) when its message reads better so (``seeds must be integers ...``)."""

    def check(key: str, values: tuple) -> str | None:
        for value in values:
            for constraint in constraints:
                message = constraint(f"{key} {entry}" if entry else key, value)
                if message:
                    return message
        return None

    return check


def entries(*constraints: Constraint, entry: str = "entry", empty: bool = False) -> Constraint:
    """A list of distinct elements, each meeting ``constraints`` (see :func:`each`); empty only if ``empty``."""
    every = each(*constraints, entry=entry)

    def check(key: str, values: tuple) -> str | None:
        if not values and not empty:
            return f"{key} must not be empty"
        repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
        return every(key, values) or (
            f"{key} lists {', '.join(map(str, repeated))} more than once" if repeated else None
        )

    return check


def seed_value(key: str, value: int) -> str | None:
    """A seed: 0 to 2**63 - 1 (a list's message speaks of integers, one value's of an integer)."""
    if 0 <= value <= MAX_SEED:
        return None
    what = "integers" if key.endswith("seeds") else "an integer"
    return f"{key} must be {what} >= 0 and <= 2**63 - 1 = {MAX_SEED}, got {value}"


def sample_count(key: str, value: int) -> str | None:
    return (
        None if value >= 1 else f"samples (K) must be integers >= 1 (latent draws per datapoint), got {value}"
    )


def thread_count(key: str, value: int) -> str | None:
    if 0 <= value <= MAX_THREADS:
        return None
    return (
        f"{key} must be between 0 (torch's default) and {MAX_THREADS}, got {value} "
        f"(this machine has {os.cpu_count()} CPU threads)"
    )


def known_device(key: str, value: str) -> str | None:
    """A device torch sees (``devices.resolve`` names what is wrong), refused before any work."""
    devices.resolve(value)
    return None


def folder_name(key: str, name: str) -> str | None:
    """The run's name becomes a folder name: one plain path component."""
    bad = [ch for ch in name if ord(ch) < 32 or ord(ch) == 127 or ch in '/\\:*?"<>|']
    if not name.strip():
        why = "is empty"
    elif name.startswith("."):
        why = "starts with '.'"
    elif len(name.encode("utf-8", "surrogatepass")) > 100:  # file systems count a name's bytes (255 at most)
        why = f"is {len(name.encode('utf-8', 'surrogatepass'))} bytes long in UTF-8, more than 100"
    elif bad:
        why = f"contains {bad[0]!r}"
    else:
        return None
    return (
        f"{key} {name!r} {why}: it names the folder results/<timestamp>-<name>, so use one plain folder name "
        "(letters, digits, '-', '_'); --out DIR chooses the whole folder instead"
    )
