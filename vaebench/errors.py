"""The exception types the suite raises for problems a user must fix.

`VaebenchError` is bad input. It subclasses ValueError so library users can catch it as such; the command
line catches it and prints its message (which names what is wrong and how to fix it) instead of a traceback,
and exits with status 2.

`StorageError` is a results folder that cannot be written: read-only, disk full, a file-size limit. The
command line prints its message (the file, the system's reason, what to do) and exits with status 74
(``EX_IOERR`` of sysexits.h); finished units stay saved, so the run continues with ``--resume``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class VaebenchError(ValueError):
    """Bad input to vaebench: an unknown name, an impossible setting, missing or corrupt data."""


_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "the disk quota is used up: free some space",
    errno.EFBIG: "the file-size limit (ulimit -f) is too small for this file: raise it",
    errno.EROFS: "the file system is read-only: choose another --out, or make it writable",
    errno.EACCES: "permission denied: choose another --out, or make the folder writable",
    errno.EPERM: "permission denied: choose another --out, or make the folder writable",
}


class StorageError(OSError):
    """A file of the results folder could not be written (read-only, disk full, file-size limit).

    The message names the file, the system's reason and what to do about it.
    """

    @classmethod
    def from_os(
        cls, err: OSError, path: str | Path | None = None, what: str = "cannot write"
    ) -> StorageError:
        """Wrap an `OSError` raised while writing ``path``."""
        where = path if path is not None else err.filename
        reason = err.strerror or str(err)
        code = errno.errorcode.get(err.errno, "") if err.errno is not None else ""
        advice = _ADVICE.get(err.errno, "check that the folder is writable and the disk has room")
        text = f"{what} {os.fspath(where) if where is not None else ''}: {reason}"
        text += f" ({code}); {advice}" if code else f"; {advice}"
        new = cls(err.errno, text)
        new.filename = where
        return new

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def check_int(name: str, value, minimum: int, why: str = "") -> None:
    """Raise a `VaebenchError` naming ``name`` unless ``value`` is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        reason = f" ({why})" if why else ""
        raise VaebenchError(f"{name} must be an integer >= {minimum}{reason}, got {value!r}")
