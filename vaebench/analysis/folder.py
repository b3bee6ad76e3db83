"""Reading a results folder's tables: run.json and the combined CSVs, checked to be vaebench's tables.

Every reader of a folder (the report, ``compare``, :func:`vaebench.load`) goes through :func:`load`, which
completes each frame to its declaration (:func:`vaebench.measures.schema.complete`): older folders lack later
columns, and from here on every declared column is there (NaN: not measured). A folder's units are verified against their manifests
by the suite (:mod:`vaebench.suite.rebuild`) before its combined CSVs are trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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

DERIVED = {"summary": "summary", "claims": "claims", "scaling": "scaling", "budget": None, "across": None}
"""The tables the report derives from the measures' (``<name>.csv``): name -> its declaration in the schema
(None: the analysis that writes it declares its columns: ``budget.csv``, :mod:`vaebench.analysis.budget`;
``across.csv``, the across-problem tables)."""

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


def read_derived(out: Path, name: str) -> pd.DataFrame:
    """A table the report wrote (`DERIVED`), checked like a measure's where the schema declares it; empty if
    absent."""
    kind = DERIVED[name]
    path = out / f"{name}.csv"
    try:
        frame = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (ValueError, UnicodeDecodeError, OSError) as err:
        raise VaebenchError(f"{path} is not a readable CSV ({type(err).__name__}); {FIX}") from None
    if kind is None or frame.empty:
        return frame
    missing = [c for c in schema.table(kind).essential if c not in frame]
    if missing:
        raise VaebenchError(
            f"{path} is not a vaebench {name} table (missing columns {', '.join(missing)}); {FIX}"
        )
    return schema.complete(frame, kind)


@dataclass(frozen=True)
class Results:
    """A results folder, read: its tidy tables, the bottom line's verdicts and the provenance.

    Attributes:
        folder: where it was read from.
        provenance: run.json: the resolved configuration (``provenance["config"]``), versions, device, threads,
            git revision, the invocations and the run's status.
        variance, convergence, throughput: the measures' tidy frames (:mod:`vaebench.measures.schema`), every
            declared column present (NaN: not measured); empty where the measure did not run.
        laws, quadrature: the scaling checks' frames (empty unless the run made them).
        summary, claims, scaling, budget, across: the tables the report derived (empty where absent: an
            unreported run, no scaling laws, or no across-problem study).
        verdicts: the bottom line, one dict per question and K (``verdicts.json``; empty if absent).
        level: the confidence level of the verdicts' intervals.
    """

    folder: Path
    provenance: dict
    variance: pd.DataFrame
    convergence: pd.DataFrame
    throughput: pd.DataFrame
    laws: pd.DataFrame = field(default_factory=pd.DataFrame)
    quadrature: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    claims: pd.DataFrame = field(default_factory=pd.DataFrame)
    scaling: pd.DataFrame = field(default_factory=pd.DataFrame)
    budget: pd.DataFrame = field(default_factory=pd.DataFrame)
    across: pd.DataFrame = field(default_factory=pd.DataFrame)
    verdicts: list = field(default_factory=list)
    level: float = 0.95

    @property
    def config(self) -> dict:
        """The resolved configuration the run used, as plain data (run.json's ``config``; empty if unknown)."""
        config = self.provenance.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def checkpoint(self) -> str | None:
        """The variance checkpoint of the summary (the report's figures at K use it), else the last measured."""
        if "variance_checkpoint" in self.summary and self.summary["variance_checkpoint"].notna().any():
            return str(self.summary["variance_checkpoint"].dropna().iloc[0])
        if self.variance.empty:
            return None
        measured = list(dict.fromkeys(self.variance.loc[self.variance["status"] == "ok", "checkpoint"]))
        return measured[-1] if measured else None

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every non-empty table by name (``variance``, ``summary``, ...), as :func:`vaebench.load` read them."""
        names = (*KINDS, *DERIVED)
        return {n: getattr(self, n) for n in names if not getattr(self, n).empty}


def results(out: str | Path, run: dict, frames: dict[str, pd.DataFrame]) -> Results:
    """A `Results` from a folder's run.json and measure frames (already checked) and its derived tables."""
    out = Path(out)
    verdicts_path = out / "verdicts.json"
    found: dict = {}
    if verdicts_path.is_file():
        try:
            found = json.loads(verdicts_path.read_text())
        except (ValueError, UnicodeDecodeError, OSError) as err:
            raise VaebenchError(
                f"{verdicts_path} is not readable JSON ({type(err).__name__}); {FIX}"
            ) from None
    derived = {name: read_derived(out, name) for name in DERIVED}
    return Results(
        folder=out, provenance=run, **{k: frames.get(k, pd.DataFrame()) for k in KINDS}, **derived,
        verdicts=list(found.get("verdicts", [])), level=float(found.get("level", 0.95)),
    )  # fmt: skip
