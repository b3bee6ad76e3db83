"""Reading a results folder's tables: run.json and the combined CSVs, checked to be vaebench's tables.

Every reader of a folder (the report, ``compare``) goes through :func:`load`, which completes each frame to
its declaration (:func:`vaebench.measures.schema.complete`): older folders lack later columns, and from here
on every declared column is there (NaN: not measured). A folder's units are verified against their manifests
by the suite (:mod:`vaebench.suite.rebuild`) before its combined CSVs are trusted.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vaebench.errors import VaebenchError
from vaebench.measures import schema
from vaebench.provenance import load_run

TABLES = {
    "variance": "variance",
    "convergence": "convergence",
    "throughput": "throughput",
    "laws": "variance",  # the variance rows of the scaling laws' built checkpoints (vaebench.checks.laws)
    "quadrature": "quadrature",
}
"""The measures' tables a folder may hold, each as ``<kind>.csv``: kind -> its declaration in the schema."""

KINDS = tuple(TABLES)

REQUIRED = {kind: schema.table(TABLES[kind]).essential for kind in KINDS}
"""Columns a combined CSV of a kind must have to be read (:attr:`vaebench.measures.schema.Table.essential`)."""

NUMERIC = ("num_samples", "seed", "trace_var", "step", "value")
"""Essential columns that must hold numbers."""

FIX = "restore it, move it away, or rebuild the folder with `python -m vaebench run --resume --out <folder>`"


def load(out: str | Path) -> tuple[dict, dict[str, pd.DataFrame]]:
    """A results folder's run.json (empty if missing) and its combined CSVs (empty frames if missing).

    Raises:
        VaebenchError: run.json or a CSV is unreadable or not what vaebench writes (naming the file).
    """
    out = Path(out)
    run = load_run(out)
    return run, {kind: read(out / f"{kind}.csv", kind) for kind in KINDS}


def read(path: Path, kind: str) -> pd.DataFrame:
    """One table of a measure, checked and completed to its declaration (an empty frame if there is none)."""
    try:
        frame = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (ValueError, UnicodeDecodeError, OSError) as err:  # ParserError is a ValueError
        raise VaebenchError(f"{path} is not a readable CSV ({type(err).__name__}); {FIX}") from None
    return checked(frame, kind, path)


def checked(frame: pd.DataFrame, kind: str, where: Path | str) -> pd.DataFrame:
    """``frame`` completed to its declaration, or a `VaebenchError` naming ``where`` if it is not vaebench's."""
    if frame.empty:
        return frame
    columns = REQUIRED[kind]
    missing = [c for c in columns if c not in frame]
    text = [c for c in columns if c in NUMERIC and c not in missing]
    text = [c for c in text if not pd.api.types.is_numeric_dtype(frame[c])]
    if missing or text:
        what = f"missing columns {', '.join(missing)}" if missing else f"non-numeric {', '.join(text)}"
        raise VaebenchError(f"{where} is not a vaebench {kind} table ({what}); {FIX}")
    return schema.complete(frame, TABLES[kind])
