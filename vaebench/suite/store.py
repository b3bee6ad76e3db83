"""The results folder on disk: atomic writes, one file per finished unit of work, combined CSVs.

Layout of a results folder::

    run.json                          provenance (vaebench.provenance), rewritten at start, end and interrupt
    .lock                             held (fcntl.flock) by the process writing the folder (suite.ownership)
    units/<kind>/<unit>.csv           one finished unit of work (tidy rows)
    units/<kind>/<unit>.json          its manifest: unit, configuration hash, bytes, rows, sha256 (suite.integrity)
    units/<kind>/<unit>.error         a unit that raised: its error, retried by --resume
    units/reference/checkpoints.pt    the shared reference run's checkpoints (for the variance units), + .json
    variance.csv convergence.csv throughput.csv   the verified units of a kind, concatenated (rebuilt)
    summary.csv report.md *.png       the report (vaebench.report.writer)

Every write goes to a temporary file in the same folder, is flushed to disk, and is then renamed over the
target with `os.replace`, which is atomic on POSIX and Windows: a crash, Ctrl-C or a full disk leaves either
the old file or the new one, never half a file. A unit is finished when its manifest exists and matches its
data file (the manifest is written second); :mod:`vaebench.suite.integrity` checks that.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from vaebench.errors import StorageError

KINDS = ("variance", "convergence", "throughput")
"""Kinds of units whose rows are combined into `<kind>.csv`."""


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(fh)`` on a temporary file next to ``path``, flush it to disk, then rename it to ``path``.

    Raises:
        StorageError: the write was refused (read-only, disk full, file-size limit); ``path`` is unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:  # name the file the user knows, not the temporary one
        raise StorageError.from_os(err, path) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (UTF-8)."""
    return write_bytes(path, text.encode())


def write_csv(path: str | Path, frame: pd.DataFrame) -> Path:
    """Write a frame as CSV atomically (no index)."""
    return write_text(path, frame.to_csv(index=False))


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV written by :func:`write_csv` (an empty file gives an empty frame)."""
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def temporary_files(out: str | Path) -> list[Path]:
    """Temporary files that a write stopped by a kill left behind (``.<name>.<pid>.tmp``)."""
    out = Path(out)
    return sorted([*out.glob(".*.tmp"), *(out / "units").glob("*/.*.tmp")])


def combine(out: str | Path, frames: dict[str, list[pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Rewrite `<kind>.csv` from the given verified units' frames and return every kind's frame.

    A kind without frames gets no `<kind>.csv` (a stale one is removed): the combined files never hold rows
    that no verified unit holds.
    """
    out = Path(out)
    combined = {}
    for kind in KINDS:
        parts = [p for p in frames.get(kind, []) if not p.empty]
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if parts:
            write_csv(out / f"{kind}.csv", frame)
        else:
            (out / f"{kind}.csv").unlink(missing_ok=True)
        combined[kind] = frame
    return combined
