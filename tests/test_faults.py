"""Fault injection: a results folder survives kills, signals, damaged files and refused writes.

Every case starts from a small run (the quick preset shrunk to 2 estimators at one K and one seed, 20 steps:
6 units of all four kinds) and ends either with tables equal to an uninterrupted run of the same
configuration on every deterministic column (all but timings), or with a non-zero exit and a message; never
exit 0 with different numbers. Units finished before a fault come out of it byte for byte: no data lost.

Signals are sent by the process to itself at named points (``VAEBENCH_TEST_FAULT``, see
:mod:`vaebench.suite.faults`): real signals at exact places, without timing races. SIGKILL cases run in a
subprocess; SIGINT and SIGTERM run in-process through ``cli.main``, which installs the handlers. One
uninterrupted baseline run is shared by every case (module-scoped fixture).
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from vaebench import cli, faults, files
from vaebench.config import config_hash
from vaebench.errors import StorageError
from vaebench.report import plots
from vaebench.suite import integrity, ownership
from vaebench.suite.ownership import saved_config
from vaebench.suite.units import plan

pytestmark = pytest.mark.slow

SMALL = ["--preset", "quick", "--estimators", "reparam,reinforce-loo", "--samples", "2", "--seeds", "0", "--steps", "20", "--workers", "1", "--quiet"]  # fmt: skip
TABLES = ("variance", "convergence", "throughput", "summary")
TIMING = re.compile(r"time|seconds|_s_|_s$|per_s|work_normalized|flops|ceiling|memory|step_ms|load_|ratio")
"""Columns that measure time or memory: they differ between two identical runs."""


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAEBENCH_DATA", raising=False)
    monkeypatch.delenv(faults.ENV, raising=False)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "run"
    assert cli.main(["run", *SMALL, "--out", str(out)]) == 0
    return out


@pytest.fixture
def copy(baseline: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(baseline, out)
    return out


def tables(out: Path) -> dict[str, pd.DataFrame]:
    """The folder's tables without their timing columns."""
    frames = {name: pd.read_csv(out / f"{name}.csv") for name in TABLES}
    return {name: f[[c for c in f if not TIMING.search(c)]] for name, f in frames.items()}


def assert_same_tables(out: Path, baseline: Path) -> None:
    expected = tables(baseline)
    for name, frame in tables(out).items():
        pd.testing.assert_frame_equal(frame, expected[name], obj=name)


def finished(out: Path) -> dict[str, bytes]:
    """Unit key -> data bytes of every verified unit."""
    config = saved_config(out)
    state = integrity.verify(out, plan(config), config_hash(config))
    return {k: (out / u.path).read_bytes() for u in plan(config) if (k := u.key) in state.keys("verified")}


def assert_kept(before: dict[str, bytes], out: Path) -> None:
    """Every unit finished before the fault is still there, byte for byte (no data lost)."""
    after = finished(out)
    lost = [k for k, data in before.items() if after.get(k) != data]
    assert not lost, f"data lost: {lost}"


def status(out: Path) -> str:
    return json.loads((out / "run.json").read_text())["status"]


def resume(out: Path, capsys) -> tuple[int, str]:
    code = cli.main(["run", "--resume", "--out", str(out), "--quiet"])
    return code, capsys.readouterr().err


def report(out: Path, capsys) -> tuple[int, str]:
    code = cli.main(["report", str(out)])
    return code, capsys.readouterr().err


def in_subprocess(args: list[str], fault: str = "", preexec: Callable[[], None] | None = None):
    env = {**os.environ, faults.ENV: fault}
    command = [sys.executable, "-m", "vaebench", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, preexec_fn=preexec)


# ------------------------------------------------------------------------------------------------ signals


# Five invocations on one folder, each stopped by a signal at another place, most of them resumed runs. The plan
# runs reference, variance init and end, convergence reparam and reinforce-loo, and throughput K2 (the
# hand-written step, reparam and reinforce-loo timed together); "unit#N" is the N-th unit that one invocation starts, "saved#N" its N-th saved unit.
SIGNALS = [
    ("unit#3:SIGINT", 130),  # Ctrl-C before variance/end (two units done)
    ("saved#2:SIGINT", 130),  # resumed: between convergence/reparam's data file and its manifest
    ("unit#2:SIGTERM", 143),  # resumed: `kill` before convergence/reinforce-loo
    ("unit#2:SIGINT,report:SIGINT", 130),  # Ctrl-C, then Ctrl-C again while the partial report is written
    ("report:SIGTERM", 143),  # every unit finished, `kill` in the middle of the report
]


def test_signals_anywhere_leave_a_truthful_resumable_folder(
    baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "run"
    args = ["run", *SMALL, "--out", str(out)]
    for fault, code in SIGNALS:
        before = finished(out) if out.exists() else {}
        monkeypatch.setenv(faults.ENV, fault)
        assert cli.main(args) == code, fault
        err = capsys.readouterr().err
        assert "interrupted" in err and f"--resume --out {out}" in err and "Traceback" not in err, (
            fault,
            err,
        )
        assert status(out) == "interrupted", fault
        assert not (out / ownership.LOCK_FILE).exists()
        assert "**Partial report**" in (out / "report.md").read_text()  # this one's, or the previous one's
        assert_kept(before, out)
        args = ["run", "--resume", "--out", str(out), "--quiet"]
    monkeypatch.delenv(faults.ENV)
    assert len(finished(out)) == 6  # every unit finished before the last signal: `report` alone rebuilds
    assert report(out, capsys)[0] == 0
    assert_same_tables(out, baseline)
    before = finished(out)
    assert resume(out, capsys)[0] == 0
    assert status(out) == "complete"
    assert_same_tables(out, baseline)
    assert_kept(before, out)


def test_sigkill_anywhere_then_resume_gives_the_same_tables(baseline: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["run", *SMALL, "--out", str(out)]
    # killed between the reference checkpoints and their manifest; then during a resumed run; then in the report
    for fault in ("saved#1:SIGKILL", "unit#4:SIGKILL", "report:SIGKILL"):
        before = finished(out) if out.exists() else {}
        done = in_subprocess(args, fault)
        assert done.returncode == -signal.SIGKILL, (fault, done.stderr)
        assert (out / ownership.LOCK_FILE).exists()  # left behind by the kill, but nobody holds it
        # SIGKILL cannot be caught: run.json stays as it was, and the folder resumes all the same
        assert status(out) == ("complete" if fault == "report:SIGKILL" else "running")
        assert_kept(before, out)
        if fault == "saved#1:SIGKILL":
            assert not finished(out) and (out / "units/anchor/checkpoints.pt").is_file()
        args = ["run", "--resume", "--out", str(out), "--quiet"]
        if fault == "unit#4:SIGKILL":  # the reference data file without a manifest was redone, and said so
            assert "anchor/checkpoints (a data file without its manifest" in done.stderr
            assert report(out, capsys)[0] == 0  # a partial report that does not claim the run is running
            assert "stopped (killed: run.json still says running)" in (out / "report.md").read_text()
    assert len(finished(out)) == 6
    assert report(out, capsys)[0] == 0
    assert_same_tables(out, baseline)
    before = finished(out)
    code, err = resume(out, capsys)
    assert code == 0 and "re-running" not in err, err
    assert_same_tables(out, baseline)
    assert_kept(before, out)


def test_a_signal_during_start_up_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "run"
    for fault, code in (("main:SIGTERM", 143), ("start:SIGINT", 130)):
        monkeypatch.setenv(faults.ENV, fault)
        assert cli.main(["run", *SMALL, "--out", str(out)]) == code
        err = capsys.readouterr().err
        assert "interrupted" in err and "Traceback" not in err, err
        assert not out.exists()  # the folder it had created is gone again
    # a kill during start-up leaves the lock file alone in the folder: a new run takes the folder anyway
    out.mkdir()
    (out / ownership.LOCK_FILE).write_text("12345\n")
    monkeypatch.setenv(faults.ENV, "unit:SIGINT")
    assert cli.main(["run", *SMALL, "--out", str(out)]) == 130
    assert status(out) == "interrupted"


# ------------------------------------------------------------------------------------------------ damage


def _cut(path: Path, at_row_boundary: bool) -> None:
    data = path.read_bytes()
    third = len(data) // 3
    end = data.index(b"\n", third) + 1 if at_row_boundary else data.index(b"\n", third) - 5
    path.write_bytes(data[:end])


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 12] = b"\xff\xfe\x00garbled\x81\x82"
    path.write_bytes(bytes(data))


def _copy_unit(source: Path, target: Path) -> None:
    for suffix in (".csv", ".json"):
        shutil.copy(source.with_suffix(suffix), target.with_suffix(suffix))


CONV = "units/convergence/reparam-K2-s0"
DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (damage, unit it hits, what the message says)
    "empty unit": (lambda o: (o / f"{CONV}.csv").write_bytes(b""), "convergence/reparam-K2-s0", "empty"),
    "truncated mid-row": (lambda o: _cut(o / "units/variance/end-s0.csv", False), "variance/end-s0", "truncated"),
    "truncated at a row boundary": (lambda o: _cut(o / "units/variance/end-s0.csv", True), "variance/end-s0", "truncated"),
    "garbled bytes": (lambda o: _garble(o / "units/convergence/reinforce-loo-K2-s0.csv"), "convergence/reinforce-loo-K2-s0", "garbled"),
    "garbled manifest": (lambda o: (o / "units/throughput/K2.json").write_bytes(b"{not json\xff"), "throughput/K2", "manifest is unreadable"),
    "garbled reference checkpoints": (lambda o: _garble(o / "units/anchor/checkpoints.pt"), "anchor/checkpoints", "garbled"),
    "data file deleted": (lambda o: (o / "units/variance/init-s0.csv").unlink(), "variance/init-s0", "data file is missing"),
    "another unit's files": (lambda o: _copy_unit(o / "units/convergence/reinforce-loo-K2-s0.csv", o / f"{CONV}.csv"), "convergence/reparam-K2-s0", "belongs to unit"),
    "unit deleted from a complete run": (lambda o: [(o / f"{CONV}{s}").unlink() for s in (".csv", ".json")], "convergence/reparam-K2-s0", "run.json says the run completed"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_unit_is_named_never_reported_and_redone_by_resume(
    case: str, copy: Path, baseline: Path, capsys
) -> None:
    damage, unit, reason = DAMAGE[case]
    before = {k: v for k, v in finished(copy).items() if k != unit}
    damage(copy)
    report_files = {
        p: p.read_bytes() for p in (copy / "summary.csv", copy / "report.md", copy / "variance.csv")
    }
    code, err = report(copy, capsys)
    assert code == 2 and unit in err and reason in err and "--resume --out" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert {p: p.read_bytes() for p in report_files} == report_files  # the published report is left alone
    code, err = resume(copy, capsys)
    assert code == 0, err
    if case != "unit deleted from a complete run":  # (missing units are simply run)
        assert f"re-running 1 unit(s) whose files are not verified: {unit}" in err, err
    assert_same_tables(copy, baseline)
    assert_kept(before, copy)


def test_a_unit_from_another_configuration_is_redone(
    copy: Path, baseline: Path, tmp_path: Path, capsys
) -> None:
    other = tmp_path / "other"  # the same unit name, 10 steps instead of 20; variance and throughput off
    toml = tmp_path / "other.toml"
    toml.write_text("[variance]\nenabled = false\n[throughput]\nenabled = false\n")
    args = [*SMALL, "--estimators", "reparam", "--steps", "10", "--config", str(toml), "--out", str(other)]
    assert cli.main(["run", *args]) == 0
    _copy_unit(other / f"{CONV}.csv", copy / f"{CONV}.csv")
    code, err = report(copy, capsys)
    assert code == 2 and "convergence/reparam-K2-s0 (written by a run with another configuration)" in err
    code, err = resume(copy, capsys)
    assert code == 0 and "convergence/reparam-K2-s0 (written by a run with another configuration)" in err
    assert_same_tables(copy, baseline)
    # only the data file copied in (its manifest is this run's): its content does not match the manifest
    shutil.copy(other / f"{CONV}.csv", copy / f"{CONV}.csv")
    code, err = resume(copy, capsys)
    assert code == 0 and "re-running 1 unit(s) whose files are not verified: convergence/reparam-K2-s0" in err
    assert_same_tables(copy, baseline)


def test_strays_leftovers_and_stale_errors_are_ignored_and_named(copy: Path, baseline: Path, capsys) -> None:
    _copy_unit(copy / f"{CONV}.csv", copy / "units/convergence/reparam-K2-s9.csv")  # a seed not in the plan
    (copy / "units/notes.txt").write_text("mine")
    (copy / "units/variance/.end.csv.999.tmp").write_text("half a file")  # a write stopped by a kill
    (copy / f"{CONV}.error").write_text("RuntimeError: an old failure\n")  # next to a finished unit
    before = finished(copy)
    code, err = report(copy, capsys)
    assert code == 0 and "ignoring 3 file(s)" in err and "reparam-K2-s9.csv" in err and "notes.txt" in err
    assert_same_tables(copy, baseline)  # the stray seed-9 unit was not merged in
    code, err = resume(copy, capsys)
    assert code == 0 and "ignoring" in err and "re-running" not in err, err  # not exit 1 for the old .error
    assert not (copy / f"{CONV}.error").exists() and not (copy / "units/variance/.end.csv.999.tmp").exists()
    assert_same_tables(copy, baseline)
    assert_kept(before, copy)


def test_an_edited_run_json_is_not_mixed_with_the_units(copy: Path, capsys) -> None:
    run = json.loads((copy / "run.json").read_text())
    run["config"]["train"]["steps"] = 10  # the units were run with 20
    (copy / "run.json").write_text(json.dumps(run))
    code, err = report(copy, capsys)
    assert code == 2 and "6 unit(s)" in err and "another configuration" in err
    assert cli.main(["run", *SMALL, "--resume", "--out", str(copy)]) == 2
    assert "train.steps: 10 -> 20" in capsys.readouterr().err


def test_resuming_with_flags_equal_to_the_saved_ones_is_accepted(copy: Path, capsys) -> None:
    code = cli.main(["run", "--resume", "--out", str(copy), "--steps", "20", "--seeds", "0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    code = cli.main(["run", "--resume", "--out", str(copy), "--steps", "30", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "train.steps: 20 -> 30" in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------------------------ ownership


def test_a_folder_in_use_is_refused(copy: Path, capsys) -> None:
    with ownership.hold(copy, create=False):  # as a running process would
        assert cli.main(["run", "--resume", "--out", str(copy), "--quiet"]) == 2
        assert f"is in use by another vaebench process (pid {os.getpid()})" in capsys.readouterr().err
        assert cli.main(["report", str(copy)]) == 2
        assert "in use" in capsys.readouterr().err
    assert resume(copy, capsys)[0] == 0


def test_two_runs_in_the_same_second_get_two_folders(tmp_path: Path) -> None:
    base = tmp_path / "20250101-000000-quick"
    assert [ownership.new_folder(base) for _ in range(3)] == [
        base,
        base.with_name(base.name + "-2"),
        base.with_name(base.name + "-3"),
    ]


# ------------------------------------------------------------------------------------------------ writes refused


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit is then EFBIG, not a crash

    return apply


def test_a_file_size_limit_stops_the_run_with_one_message(copy: Path, baseline: Path, capsys) -> None:
    (copy / "units/anchor/checkpoints.json").unlink()  # the reference is redone: ~43 kB, over the limit
    args = ["run", "--resume", "--out", str(copy), "--quiet"]
    done = in_subprocess(args, preexec=_file_size_limit(32_000))  # run.json and the CSVs fit in 32 kB
    assert done.returncode == 74, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "error" in line]
    assert "Traceback" not in done.stderr
    assert "checkpoints.pt: File too large (EFBIG)" in line and "--resume --out" in line, line
    run = json.loads((copy / "run.json").read_text())
    assert run["status"] == "aborted" and "EFBIG" in run["error"]
    assert resume(copy, capsys)[0] == 0
    assert_same_tables(copy, baseline)


def test_a_full_disk_during_a_unit_or_the_report(
    copy: Path, baseline: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    real_write, real_save = files.write_bytes, plots.save
    for unit in ("variance/end-s0", "convergence/reparam-K2-s0"):
        (copy / f"units/{unit}.json").unlink()  # two units to redo

    calls = []

    def full_after_one(path, data):
        if "units" in Path(path).parts:  # run.json still fits: it records what happened
            calls.append(path)
            if len(calls) > 2:  # the first unit's data and manifest fit, the next one does not
                raise StorageError.from_os(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path)
        return real_write(path, data)

    monkeypatch.setattr(files, "write_bytes", full_after_one)
    code, err = resume(copy, capsys)
    assert code == 74 and "Traceback" not in err
    (error,) = [line for line in err.splitlines() if "error" in line]
    assert "No space left on device (ENOSPC)" in error and "free some space" in error and "--resume" in error
    assert status(copy) == "aborted" and len(finished(copy)) == 5

    def full_disk(fig, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(files, "write_bytes", real_write)
    monkeypatch.setattr(plots, "save", full_disk)
    code, err = resume(copy, capsys)
    assert code == 74 and "No space left on device" in err and "Traceback" not in err, err
    assert status(copy) == "aborted" and len(finished(copy)) == 6  # every unit is saved; the plots are not
    monkeypatch.setattr(plots, "save", real_save)
    assert report(copy, capsys)[0] == 0
    assert_same_tables(copy, baseline)
    assert resume(copy, capsys)[0] == 0 and status(copy) == "complete"


def test_a_read_only_folder_is_one_message(copy: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):  # as on a read-only mount (root ignores chmod)
        if str(path).startswith(str(copy)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(ownership.os, "open", read_only)
    for command in (["run", "--resume", "--out", str(copy), "--quiet"], ["report", str(copy)]):
        assert cli.main(command) == 74
        err = capsys.readouterr().err
        assert "Read-only file system (EROFS)" in err and "choose another --out" in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert status(copy) == "complete"  # untouched
