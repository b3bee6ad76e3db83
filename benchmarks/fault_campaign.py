"""Exhaustive fault campaign on a small run: every signal at every named point, every damage to every unit.

Not a benchmark (nothing is timed) and not part of the test suite (it takes minutes): the exhaustive
version of ``tests/test_faults.py``, which samples the same space cheaply. It prints the counts a closing
note needs: faults injected, faults survived (the folder ends with tables equal to an uninterrupted run on
every deterministic column, or the command exits non-zero with a one-line message; never exit 0 with other
numbers), and data lost (units verified before a fault that are not byte-identical after the repair).

    PYTHONPATH=. python benchmarks/fault_campaign.py [WORKDIR]

Signals: SIGINT, SIGTERM (in-process, through ``cli.main``) and SIGKILL (a subprocess) at ``main``,
``start``, ``report`` and at ``unit#N`` / ``saved#N`` for every unit N of the plan (``VAEBENCH_TEST_FAULT``,
see :mod:`vaebench.suite.faults`); each then resumed. Damage: every unit file emptied, cut mid-row, cut at a
row boundary, garbled, its data deleted, its manifest garbled; each folder is first given to ``report``
(which must refuse and leave the published report alone), then resumed.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from vaebench import cli
from vaebench.config import config_hash
from vaebench.suite import faults, integrity
from vaebench.suite.ownership import saved_config
from vaebench.suite.units import plan

SMALL = ["--preset", "quick", "--estimators", "reparam,reinforce-loo", "--samples", "2", "--seeds", "0", "--steps", "20", "--quiet"]  # fmt: skip
TABLES = ("variance", "convergence", "throughput", "summary")
TIMING = re.compile(r"time|seconds|_s_|_s$|per_s|work_normalized|flops|ceiling|memory|step_ms")


def main_quiet(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    return code, err.getvalue()


def tables(out: Path) -> dict[str, pd.DataFrame]:
    frames = {name: pd.read_csv(out / f"{name}.csv") for name in TABLES}
    return {name: f[[c for c in f if not TIMING.search(c)]] for name, f in frames.items()}


def same_tables(out: Path, baseline: Path) -> bool:
    try:
        a, b = tables(out), tables(baseline)
        return all(a[n].equals(b[n]) for n in TABLES)
    except (OSError, ValueError):
        return False


def finished(out: Path) -> dict[str, bytes]:
    if not (out / "run.json").is_file():
        return {}
    config = saved_config(out)
    units = plan(config)
    state = integrity.verify(out, units, config_hash(config))
    return {u.key: (out / u.path).read_bytes() for u in units if u.key in state.keys("verified")}


def lost(before: dict[str, bytes], out: Path) -> int:
    after = finished(out)
    return sum(after.get(k) != v for k, v in before.items())


def repair(out: Path, baseline: Path) -> bool:
    """Resume; whether it completed with tables equal to the baseline's."""
    code, err = main_quiet(["run", "--resume", "--out", str(out), "--quiet"])
    return code == 0 and "Traceback" not in err and same_tables(out, baseline)


def signals(work: Path, baseline: Path, n_units: int) -> tuple[int, int, int]:
    points = ["main", "start", "report"] + [
        f"{p}#{i}" for p in ("unit", "saved") for i in range(1, n_units + 1)
    ]
    injected = survived = data_lost = 0
    for point in points:
        for sig in ("SIGINT", "SIGTERM", "SIGKILL"):
            out = work / f"sig-{point.replace('#', '')}-{sig}"
            argv = ["run", *SMALL, "--out", str(out)]
            if sig == "SIGKILL":
                env = {**os.environ, faults.ENV: f"{point}:{sig}"}
                done = subprocess.run([sys.executable, "-m", "vaebench", *argv], env=env, capture_output=True)
                clean = done.returncode == -9
            else:
                os.environ[faults.ENV] = f"{point}:{sig}"
                try:
                    code, err = main_quiet(argv)
                finally:
                    del os.environ[faults.ENV]
                clean = code == {"SIGINT": 130, "SIGTERM": 143}[sig] and "Traceback" not in err
            injected += 1
            before = finished(out)
            if out.exists() and (out / "run.json").is_file():
                ok = repair(out, baseline)
            else:  # stopped before the run began: nothing was written; the run starts again from scratch
                ok = not out.exists() or not any(p.name != ".lock" for p in out.iterdir())
                ok = ok and main_quiet(argv)[0] == 0 and same_tables(out, baseline)
            data_lost += lost(before, out)
            survived += clean and ok
            print(f"{point:10s} {sig:8s} {'survived' if clean and ok else 'FAILED'}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
    return injected, survived, data_lost


def _cut(path: Path, boundary: bool) -> None:
    data = path.read_bytes()
    third = len(data) // 3
    at = data.find(b"\n", third)
    end = (at + 1 if boundary else at - 3) if at > 0 else third
    path.write_bytes(data[:end])


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = b"\xff\xfe\x00bad\x81\x82"
    path.write_bytes(bytes(data))


DAMAGE = {
    "empty": lambda p: p.write_bytes(b""),
    "cut mid-row": lambda p: _cut(p, False),
    "cut at a row boundary": lambda p: _cut(p, True),
    "garbled": _garble,
    "data deleted": lambda p: p.unlink(),
    "manifest garbled": lambda p: p.with_suffix(".json").write_bytes(b"{garbled"),
}


def damage(work: Path, baseline: Path) -> tuple[int, int, int]:
    config = saved_config(baseline)
    injected = survived = data_lost = 0
    for unit in plan(config):
        for name, hurt in DAMAGE.items():
            out = work / "damaged"
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(baseline, out)
            before = {k: v for k, v in finished(out).items() if k != unit.key}
            hurt(out / unit.path)
            published = (out / "summary.csv").read_bytes()
            injected += 1
            code, err = main_quiet(["report", str(out)])
            refused = code == 2 and unit.key in err and len(err.strip().splitlines()) == 1
            refused = refused and (out / "summary.csv").read_bytes() == published
            ok = repair(out, baseline)
            data_lost += lost(before, out)
            survived += refused and ok
            print(f"{unit.key:32s} {name:22s} {'survived' if refused and ok else 'FAILED'}", flush=True)
    return injected, survived, data_lost


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="vaebench-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    baseline = work / "baseline"
    shutil.rmtree(baseline, ignore_errors=True)
    assert main_quiet(["run", *SMALL, "--out", str(baseline)])[0] == 0
    n_units = len(plan(saved_config(baseline)))
    s = signals(work, baseline, n_units)
    d = damage(work, baseline)
    print(f"signals: {s[0]} injected, {s[1]} survived, {s[2]} units lost")
    print(f"damaged units: {d[0]} injected, {d[1]} survived, {d[2]} units lost")


if __name__ == "__main__":
    main()
