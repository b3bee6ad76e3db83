"""Provenance of a results folder: what ran, with what, where and when (written to `run.json`).

Numbers without their environment cannot be compared or cited, so every run records (like the `environ`
block of pytorch/benchmark's userbenchmarks): the resolved configuration, the versions of Python and the
numeric stack, the device and thread count, the git revision of the code (with a dirty flag), the command
line, start and end times, and whether the run completed or was interrupted.

Timings also need the machine they ran on and how busy it was: the CPU model, the cores this process may use
(:func:`usable_cores`, its affinity mask) and the 1-minute load average (:func:`load_average`: the mean
number of runnable processes over the last minute, decaying exponentially) when a run starts and when it
ends (:func:`machine_load`). A load above the usable cores means the timed steps shared the CPUs.

The layout of a results folder (its files, columns, unit kinds and the names in them) has one version number,
`RESULTS_VERSION`, written into run.json (asv's ``results_version``). A change of that layout bumps it, and
nothing else; :func:`load_run`, which every reader of a folder goes through, refuses a folder of another
version, naming both and what to do.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from vaebench.errors import VaebenchError

RESULTS_VERSION = 2
"""The version of the results-folder layout this vaebench writes and reads; bump it when the layout changes."""

PACKAGES = ("vaebench", "torch", "numpy", "pandas", "scipy", "matplotlib", "scikit-learn", "tqdm")
"""Distributions whose versions go into run.json."""


def now() -> str:
    """The current UTC time as an ISO 8601 string with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str | None]:
    """Python and package versions (None for a package that is not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The machine's 1-minute load average (runnable processes, averaged over the last minute); None where the
    system does not report one."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # Windows
        return None


def machine_load() -> dict[str, Any]:
    """What a timing depends on besides the code: the CPU model, the usable cores and the 1-minute load now."""
    return {"cpu": cpu_name(), "usable_cores": usable_cores(), "load_1min": load_average()}


def device_info(device: str) -> dict[str, Any]:
    """The device a run uses: its name, and torch's CPU thread count (which matters on CPU and GPU alike)."""
    info: dict[str, Any] = {
        "device": device,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        info["device_name"] = torch.cuda.get_device_name(index)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["device_name"] = info["cpu"]
    return info


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision(path: str | Path | None = None, exclude: str | Path | None = None) -> dict[str, Any] | None:
    """The git commit of the checkout holding `path` (default: this package) and whether it has edits.

    ``exclude``: a folder whose edits do not count, the run's own results folder: rerunning into a tracked
    folder (``--out results/reference/default``) rewrites its files, which says nothing about the code.
    Returns None outside a git checkout or without git; never raises.
    """
    folder = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = _git(folder, "rev-parse", "HEAD")
        pathspec = []
        if exclude is not None:
            top = Path(_git(folder, "rev-parse", "--show-toplevel")).resolve()
            out = Path(exclude).resolve()
            if out.is_relative_to(top) and out != top:
                pathspec = ["--", ".", f":(top,exclude){out.relative_to(top).as_posix()}"]
        status = _git(folder, "status", "--porcelain", "--untracked-files=no", *pathspec)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status)}


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.strip()


def collect(
    config: dict[str, Any],
    *,
    device: str,
    started: str,
    ended: str | None = None,
    status: str = "running",
    command: str | None = None,
    units: dict[str, int] | None = None,
    notes: list[str] | None = None,
    git: dict[str, Any] | None = None,
    load: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of run.json.

    Args:
        config: the resolved configuration as plain data (:func:`vaebench.config.to_dict`).
        device: the torch device the suite ran on.
        started: ISO start time of this invocation.
        ended: ISO end time, None while running.
        status: "running", "complete", "interrupted" or "failed".
        command: the command line (defaults to sys.argv).
        units: counts of units of work by state (e.g. done, failed, total).
        notes: remarks for the reader (skipped combinations, resumed runs).
        git: the revision the code was loaded from (:func:`git_revision`), read once when the run started:
            the checkout may move while a long run goes on, and run.json names the code that ran. Default:
            read it now.
        load: the machine's load around this invocation: ``before`` and (once it ended) ``after``, each a
            :func:`machine_load`; None: only the load now, as ``before``.
    """
    return {
        "results_version": RESULTS_VERSION,
        "status": status,
        "started": started,
        "ended": ended,
        "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "config": config,
        "versions": versions(),
        "environment": device_info(device),
        "git": git if git is not None else git_revision(),
        "units": units or {},
        "notes": notes or [],
        "load": load if load is not None else {"before": machine_load()},
    }


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a run.json (no checks; see :func:`load_run`)."""
    return json.loads(Path(path).read_text())


READS_ALSO = {1: "an ordinary run (not across problems)"}
"""Earlier layout versions this vaebench still reads, and which of their folders: version 2 moved only a run
across problems (its units under ``units/<problem>/<kind>/``) and added the ``problem`` column to the combined
tables, which are rewritten from the units; an ordinary run's units are the same in both."""


def reads_as_current(data: dict[str, Any], version: object) -> bool:
    """Whether a run.json of layout ``version`` is one this vaebench reads (`READS_ALSO`)."""
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    return version == 1 and not config.get("problems")


def load_run(out: str | Path) -> dict[str, Any]:
    """The run.json of a results folder as a dict; {} if there is none.

    Raises:
        VaebenchError: run.json exists but is unreadable, empty, not JSON, or not a JSON object, or it records
            a run of another `RESULTS_VERSION` (a run.json holding a configuration but no version was written
            before versions were recorded).
    """
    path = Path(out) / "run.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_bytes())
    except OSError as err:
        raise VaebenchError(f"{path}: cannot read it ({err.strerror})") from None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        what = "is empty" if not path.read_bytes().strip() else f"is not valid JSON ({err})"
        raise VaebenchError(
            f"{path} {what}: not a vaebench run.json; restore it, or remove the folder and run again"
        ) from None
    if not isinstance(data, dict):
        raise VaebenchError(
            f"{path} holds a JSON {type(data).__name__}, not the object vaebench writes; restore it, or remove "
            "the folder and run again"
        )
    version = data.get("results_version", 0 if "config" in data else RESULTS_VERSION)
    if version != RESULTS_VERSION and not reads_as_current(data, version):
        written = (
            (data.get("versions") or {}).get("vaebench") if isinstance(data.get("versions"), dict) else None
        )
        raise VaebenchError(
            f"{path}: this results folder has layout version {version!r} "
            f"(written by vaebench {written or 'of an earlier layout'}), and this vaebench reads version "
            f"{RESULTS_VERSION} only; rerun its configuration into a new folder (python -m vaebench run --config "
            "FILE --out NEW), or read it with the vaebench that wrote it"
        )
    return data
