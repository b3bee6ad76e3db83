"""Self-verifying units: a manifest beside each unit's file, and the check of a folder against its plan.

A unit's data file is written first, then its manifest (``units/<kind>/<unit>.json``), both atomically. The
manifest records the unit's key, a hash of the run's configuration, the data file's size, row count and
SHA-256, and for a variance unit the SHA-256 of the anchor run's checkpoints it was measured at. A unit counts
as finished only when its manifest exists and all of these match, so each unit of the plan is one of:

- **verified**: manifest and data agree; its rows are used;
- **missing**: neither file (not run yet);
- **unfinished**: a data file without a manifest (a run stopped between the two writes, or a file copied in);
- **damaged**: a manifest whose data file is missing, empty, truncated, garbled, written under another
  configuration (e.g. run.json edited since), for another unit, or measured at other anchor checkpoints.

Files under ``units/`` that belong to no unit of the plan are **strays**: never read, only named. ``--resume``
re-runs every unit that is not verified; ``report`` uses only verified units and refuses a damaged folder.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vaebench.measures.schema import ANCHOR_UNIT
from vaebench.suite.units import ANCHOR, MEASURED_AT_ANCHOR, Unit

VERIFIED, MISSING, UNFINISHED, DAMAGED = "verified", "missing", "unfinished", "damaged"
STATES = (VERIFIED, MISSING, UNFINISHED, DAMAGED)


def manifest_path(unit: Unit) -> Path:
    """Where a unit's manifest goes, relative to the results folder."""
    return unit.path.with_suffix(".json")


def manifest(unit: Unit, payload: bytes, rows: int, digest: str, inputs: dict[str, str] | None = None) -> str:
    """The manifest's text for a unit whose data file holds ``payload``."""
    return json.dumps(
        {
            "unit": unit.key,
            "config": digest,
            "file": unit.path.name,
            "bytes": len(payload),
            "rows": rows,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "inputs": inputs or {},
        },
        indent=1,
    )


@dataclass
class Verdict:
    """The state of one unit on disk.

    Attributes:
        state: ``verified``, ``missing``, ``unfinished`` or ``damaged``.
        reason: why it is not verified ("" when it is).
        sha256: the data file's hash (verified units).
        frame: its rows (verified units of a measure kind).
    """

    state: str
    reason: str = ""
    sha256: str | None = None
    frame: pd.DataFrame | None = None


def check(out: Path, unit: Unit, digest: str, anchor: str | None = None) -> Verdict:
    """Check one unit's files against its manifest; ``anchor``: the verified anchor run's SHA-256, if any."""
    data, record = out / unit.path, out / manifest_path(unit)
    if not record.is_file():
        if data.exists():
            return Verdict(
                UNFINISHED, "a data file without its manifest (stopped while saving, or copied in)"
            )
        return Verdict(MISSING, "not run")
    try:
        m = json.loads(record.read_bytes())
        expected = {"unit", "config", "bytes", "rows", "sha256"}
        if not isinstance(m, dict) or not expected <= set(m):
            raise ValueError
    except (OSError, ValueError):
        return Verdict(DAMAGED, "its manifest is unreadable")
    if m["unit"] != unit.key:
        return Verdict(DAMAGED, f"its manifest belongs to unit {m['unit']!r}")
    if m["config"] != digest:
        return Verdict(DAMAGED, "written by a run with another configuration")
    try:
        raw = data.read_bytes()
    except FileNotFoundError:
        return Verdict(DAMAGED, "its data file is missing")
    except OSError as err:
        return Verdict(DAMAGED, f"its data file is unreadable ({err.strerror})")
    if len(raw) != m["bytes"]:
        if not raw:
            return Verdict(DAMAGED, f"empty, its manifest says {m['bytes']} bytes")
        return Verdict(
            DAMAGED, f"{len(raw)} bytes, its manifest says {m['bytes']} (truncated or overwritten)"
        )
    sha = hashlib.sha256(raw).hexdigest()
    if sha != m["sha256"]:
        return Verdict(DAMAGED, "its content differs from its manifest (garbled)")
    used = (m.get("inputs") or {}).get(ANCHOR_UNIT)
    if unit.kind in MEASURED_AT_ANCHOR and anchor is not None and used != anchor:
        return Verdict(DAMAGED, "measured at other anchor-run checkpoints than the ones in this folder")
    if unit.kind == ANCHOR:
        return Verdict(VERIFIED, sha256=sha)
    try:
        frame = pd.read_csv(io.BytesIO(raw)) if raw.strip() else pd.DataFrame()
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
        return Verdict(DAMAGED, "its data file is not a readable CSV")
    if len(frame) != m["rows"]:
        return Verdict(DAMAGED, f"{len(frame)} rows, its manifest says {m['rows']}")
    return Verdict(VERIFIED, sha256=sha, frame=frame)


@dataclass
class FolderState:
    """Every unit of a plan checked on disk, and the files under ``units/`` that belong to none.

    Attributes:
        verdicts: unit key -> :class:`Verdict`, in plan order.
        strays: files under ``units/`` that are no unit's data, manifest or error record.
        stale_errors: error records of units that are verified (left by an older run).
    """

    verdicts: dict[str, Verdict] = field(default_factory=dict)
    strays: list[Path] = field(default_factory=list)
    stale_errors: list[Path] = field(default_factory=list)

    def keys(self, state: str) -> list[str]:
        return [k for k, v in self.verdicts.items() if v.state == state]

    def reasons(self, *states: str) -> dict[str, str]:
        """Unit key -> reason, for the units in ``states``."""
        return {k: v.reason or v.state for k, v in self.verdicts.items() if v.state in states}

    @property
    def has_manifests(self) -> bool:
        return any(v.state in (VERIFIED, DAMAGED) for v in self.verdicts.values())

    def frames(self, plan: list[Unit]) -> dict[str, list[pd.DataFrame]]:
        """The verified units' frames by kind, in file-name order."""
        out: dict[str, list[pd.DataFrame]] = {}
        for unit in sorted(plan, key=lambda u: (u.kind, u.name)):
            verdict = self.verdicts.get(unit.key)
            if verdict is not None and verdict.frame is not None:
                out.setdefault(unit.kind, []).append(verdict.frame)
        return out


def verify(out: str | Path, plan: list[Unit], digest: str) -> FolderState:
    """Check every unit of ``plan`` in the folder ``out`` and find the stray files under ``units/``."""
    out = Path(out)
    state = FolderState()
    anchors: dict[str, str | None] = {}  # by problem
    for unit in plan:  # an anchor unit comes first: the units measured at it are checked against it
        verdict = check(out, unit, digest, anchors.get(unit.problem))
        if unit.kind == ANCHOR and verdict.state == VERIFIED:
            anchors[unit.problem] = verdict.sha256
        state.verdicts[unit.key] = verdict
    known: set[Path] = set()
    for unit in plan:
        known |= {out / unit.path, out / manifest_path(unit), out / unit.error_path}
        if state.verdicts[unit.key].state == VERIFIED and (out / unit.error_path).is_file():
            state.stale_errors.append(out / unit.error_path)
    root = out / "units"
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            temporary = path.name.startswith(".") and path.name.endswith(".tmp")
            if path.is_file() and path not in known and not temporary:
                state.strays.append(path)
    return state


def failures(out: str | Path, plan: list[Unit], state: FolderState) -> dict[str, str]:
    """Units of the plan that raised and are not verified since: 'kind/unit' -> the error's first line."""
    out = Path(out)
    found = {}
    for unit in plan:
        path = out / unit.error_path
        if state.verdicts[unit.key].state != VERIFIED and path.is_file():
            try:
                lines = path.read_text(errors="replace").strip().splitlines()
            except OSError:
                lines = []
            found[unit.key] = lines[0] if lines else "(no message recorded)"
    return found


def describe(reasons: dict[str, str], limit: int = 6) -> str:
    """'kind/unit (reason), ...' on one line, the first ``limit`` of them."""
    items = [f"{key} ({why})" for key, why in reasons.items()]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more
