"""Every file vaebench writes goes through here, atomically: a temporary file, flushed, then renamed.

A write goes to a temporary file in the target's folder (``.<name>.<pid>.tmp``), is flushed to disk, and is
then renamed over the target with `os.replace`, which is atomic on POSIX and Windows: a crash, Ctrl-C or a
full disk leaves either the old file or the new one, never half a file. The target must be new or a regular
file: a folder, a device (``/dev/full``), a FIFO or a socket is refused before anything is written, since the
rename would replace it; a symbolic link is written through (its target is replaced, the link kept). A refused
write (read-only folder,
full disk, file-size limit) raises `vaebench.errors.StorageError`, which names the file the user knows and
says what to do. Results folders (:mod:`vaebench.suite.store`), run.json (:mod:`vaebench.provenance`),
training checkpoints (:mod:`vaebench.train.checkpoints`) and the report's files all use these functions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from vaebench.errors import StorageError, VaebenchError

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


def kind_of(path: str | Path) -> str | None:
    """What ``path`` is if it exists and is not a regular file (``"a FIFO (named pipe)"``), else None.

    A symbolic link is followed; a dangling one is None (its target would be a new file).
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None  # unreadable: the write or read itself says why
    return None if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def writable_target(path: str | Path) -> Path:
    """The file a write to ``path`` replaces: a symbolic link's target, else ``path``; checked to be new or
    a regular file.

    Raises:
        VaebenchError: ``path`` is a folder, a device, a FIFO or a socket (named, with what to do).
    """
    path = Path(path)
    kind = kind_of(path)
    if kind is not None:
        raise VaebenchError(
            f"{path} is {kind}, not a regular file: name a new file or a regular one to write"
        )
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(fh)`` on a temporary file next to ``path``, flush it to disk, then rename it to ``path``.

    Raises:
        VaebenchError: ``path`` is neither new nor a regular file (`writable_target`).
        StorageError: the write was refused (read-only, disk full, file-size limit); ``path`` is unchanged.
    """
    path = writable_target(path)
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
