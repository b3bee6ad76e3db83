"""The results folder on disk: atomic writes, one file per finished unit of work, combined CSVs.

Layout of a results folder::

    run.json                      provenance (vaebench.provenance), rewritten at start, end and interrupt
    units/<kind>/<unit>.csv       one finished unit of work (tidy rows), written atomically
    units/<kind>/<unit>.error     a unit that raised: its error, retried by --resume
    units/reference/checkpoints.pt  the shared reference run's checkpoints (for the variance units)
    variance.csv convergence.csv throughput.csv   all units of a kind, concatenated (rebuilt from units/)
    summary.csv report.md *.png   the report (vaebench.report.writer)

Every write goes to a temporary file in the same folder and is then renamed over the target with
`os.replace`, which is atomic on POSIX and Windows: a crash or Ctrl-C leaves either the old file or the new
one, never half a file, so "the unit's file exists" means "the unit finished".
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

KINDS = ("variance", "convergence", "throughput")
"""Kinds of units whose rows are combined into `<kind>.csv`."""


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(fh)`` on a temporary file next to ``path``, flush it to disk, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (UTF-8)."""
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def write_csv(path: str | Path, frame: pd.DataFrame) -> Path:
    """Write a frame as CSV atomically (no index)."""
    return write_text(path, frame.to_csv(index=False))


def write_torch(path: str | Path, obj: object) -> Path:
    """`torch.save` atomically."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV written by :func:`write_csv` (an empty file gives an empty frame)."""
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def unit_files(out: str | Path, kind: str) -> list[Path]:
    """The finished units of one kind, sorted by name."""
    return sorted((Path(out) / "units" / kind).glob("*.csv"))


def combine(out: str | Path) -> dict[str, pd.DataFrame]:
    """Rebuild `<kind>.csv` from the unit files (where there are any) and return every kind's frame.

    A kind without unit files keeps its existing `<kind>.csv` (e.g. a committed reference folder that
    carries only the combined files); a kind with neither gives an empty frame.
    """
    out = Path(out)
    frames = {}
    for kind in KINDS:
        files = unit_files(out, kind)
        if files:
            parts = [read_csv(f) for f in files]
            parts = [p for p in parts if not p.empty]
            frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
            write_csv(out / f"{kind}.csv", frame)
        elif (out / f"{kind}.csv").is_file():
            frame = read_csv(out / f"{kind}.csv")
        else:
            frame = pd.DataFrame()
        frames[kind] = frame
    return frames


def failures(out: str | Path) -> dict[str, str]:
    """Units that raised (and were not redone since): 'kind/unit' -> the error message."""
    root = Path(out) / "units"
    return {
        f"{p.parent.name}/{p.stem}": p.read_text().strip().splitlines()[0] if p.read_text().strip() else ""
        for p in sorted(root.glob("*/*.error"))
    }
