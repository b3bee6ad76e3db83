"""Every file vaebench writes goes through here, atomically: a temporary file, flushed, then renamed.

A write goes to a temporary file in the target's folder (``.<name>.<pid>.tmp``), is flushed to disk, and is
then renamed over the target with `os.replace`, which is atomic on POSIX and Windows: a crash, Ctrl-C or a
full disk leaves either the old file or the new one, never half a file. A refused write (read-only folder,
full disk, file-size limit) raises `vaebench.errors.StorageError`, which names the file the user knows and
says what to do. Results folders (:mod:`vaebench.suite.store`), run.json (:mod:`vaebench.provenance`),
training checkpoints (:mod:`vaebench.train.checkpoints`) and the report's files all use these functions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from vaebench.errors import StorageError


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


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON atomically (values JSON cannot hold are written with ``str``)."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")
