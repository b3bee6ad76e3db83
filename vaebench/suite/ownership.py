"""Who may write a results folder: new folders are created exclusively, a lock is held while a run writes,
and a folder that holds a run is continued only with ``--resume`` and the same configuration.

- :func:`new_folder` creates ``results/<timestamp>-<name>`` with `os.mkdir`, which fails if the folder exists,
  so two runs started in the same second get ``...-<name>`` and ``...-<name>-2``, never one shared folder.
- :func:`hold` takes an exclusive `fcntl.flock` on ``<folder>/.lock`` for as long as a run (or ``report``)
  writes there. A second process asking for the same folder is refused at once with the holder's pid. The
  kernel drops the lock when its holder dies, even by SIGKILL, so a killed run never leaves a stale lock: the
  file may remain, the lock does not. On systems without `fcntl` the lock file is created with ``O_EXCL``
  instead, and a killed run's file must be deleted by hand (the message says so).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from vaebench import plugins
from vaebench.config import EXECUTION_KEYS, SuiteConfig, differences, from_dict
from vaebench.errors import StorageError, VaebenchError
from vaebench.plugins import registry
from vaebench.provenance import load_run

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


def new_folder(base: str | Path) -> Path:
    """Create and return ``base``, or ``base-2``, ``base-3``, ... if taken (exclusive creation: no two callers
    get the same folder)."""
    base = Path(base)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError.from_os(err, base.parent, "cannot create the results folder") from None
    for n in range(1, 10_000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise StorageError.from_os(err, path, "cannot create the results folder") from None
    raise VaebenchError(f"{base}: 9,999 folders of that name exist already; choose --name or --out")


@contextlib.contextmanager
def hold(out: str | Path, *, create: bool = True) -> Iterator[Path]:
    """Hold the folder's lock for the block (creating the folder first if ``create``).

    Raises:
        VaebenchError: another process holds the folder, or ``out`` is a file.
        StorageError: the folder or its lock file cannot be created (read-only, disk full, ...).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VaebenchError(f"--out {str(out)!r} is a file, not a folder; choose another --out")
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError.from_os(err, out, "cannot create the results folder") from None
    path = out / LOCK_FILE
    fd = _acquire(path)
    try:
        with contextlib.suppress(OSError):  # the holder's pid is only for others' messages
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield out
    finally:
        # Unlink before closing: a process waiting on this inode then sees it unlinked and retries (below).
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _acquire(path: Path) -> int:
    if fcntl is None:
        try:
            return os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        except FileExistsError:
            raise VaebenchError(
                f"{path.parent} is in use by another vaebench process (or a killed one left {path}: delete "
                "it if no run is going on)"
            ) from None
        except OSError as err:
            raise StorageError.from_os(err, path, "cannot lock the results folder") from None
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as err:
            raise StorageError.from_os(err, path, "cannot lock the results folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StorageError.from_os(err, path, "cannot lock the results folder") from None
            raise VaebenchError(
                f"{path.parent} is in use by another vaebench process{_holder(path)}; wait for it to "
                "finish, or choose another --out"
            ) from None
        # The holder may have unlinked the file between our open and our lock: then we locked a ghost.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


# ------------------------------------------------------------------------------------------------ resume


CHANGED_PLUGIN = (
    "its source changed since this run started, and a results folder must not mix two versions of an "
    "estimator: start a new run (another --out), or restore the recorded version to resume or report this one"
)


def saved_config(out: str | Path) -> SuiteConfig:
    """The configuration a results folder was run with (from its run.json), with the plugins it used loaded
    in this process from their records (:func:`vaebench.plugins.registry.reload`, which refuses changed code)."""
    run = load_run(out)
    if not run:
        raise VaebenchError(f"{str(out)!r} has no run.json: nothing to resume or report there")
    if not isinstance(run.get("config"), dict):
        raise VaebenchError(f"{Path(out) / 'run.json'}: not a vaebench run.json (no 'config' table)")
    try:
        registry.reload(run.get("plugins") or [], fix=CHANGED_PLUGIN)
        return from_dict(run["config"])
    except VaebenchError as err:
        raise VaebenchError(f"{Path(out) / 'run.json'}: {err}") from None


def _is_empty(out: Path) -> bool:
    return not any(p.name != LOCK_FILE and not p.name.endswith(".tmp") for p in out.iterdir())


def check_resume(out: Path, config: SuiteConfig, resume: bool, ctx=None) -> None:
    """Refuse to mix two runs in one folder; on resume, require the same configuration, and (with the run's
    `~vaebench.suite.context.Context`) the same plugin code and the same data file: a results folder must not
    mix two versions of an estimator, or of the data."""
    if out.exists() and not out.is_dir():
        raise VaebenchError(f"--out {str(out)!r} is a file, not a folder; choose another --out")
    if not (out / "run.json").is_file():
        if resume:
            raise VaebenchError(
                f"--resume: {str(out)!r} holds no run to resume (no run.json); drop --resume to start one"
            )
        if out.is_dir() and not _is_empty(out):
            raise VaebenchError(f"{str(out)!r} exists and is not empty; choose another --out")
        return
    if not resume:
        raise VaebenchError(
            f"{str(out)!r} already holds a run; pass --resume to continue it, or choose another --out"
        )
    # how the run is executed (workers) may change between invocations; what it computes may not
    diffs = [d for d in differences(saved_config(out), config) if d.split(":")[0] not in EXECUTION_KEYS]
    if diffs:
        raise VaebenchError(
            f"--resume: the configuration differs from the one saved in {out / 'run.json'}: "
            + "; ".join(diffs)
            + " (resume with the same options, or pass only --resume --out to reuse the saved ones)"
        )
    if ctx is None:
        return
    run = load_run(out)
    changed = plugins.changes(run.get("plugins") or [], ctx.plugins)
    if changed:
        raise VaebenchError(
            f"--resume: the plugins differ from those the run in {out} used: " + "; ".join(changed) + " (a "
            "results folder must not mix two versions of an estimator: restore the plugin's code, or start a new run)"
        )
    then, now = (run.get("data") or {}).get("sha256"), ctx.dataset.sha256
    if then != now:
        raise VaebenchError(
            f"--resume: the data differ from those the run in {out} used (sha256 {str(then)[:12]} then, "
            f"{str(now)[:12]} now; {ctx.dataset.source}): restore the data, or start a new run"
        )
