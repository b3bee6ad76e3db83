"""Units on worker processes: the scheduling rules, results independent of the worker count, a worker killed
mid-unit, and the dry run's cost estimate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pandas as pd
import pytest

from vaebench import cli, faults
from vaebench.config import config_hash, preset, resolve
from vaebench.suite import calibration, dispatch, integrity, ownership, units
from vaebench.suite.context import Context
from vaebench.suite.units import Unit

pytestmark = pytest.mark.slow

# the quick preset shrunk to 3 estimators (a score-function one among them): every kind of unit, ~10 s a run
SMALL = ["--preset", "quick", "--estimators", "reparam,reinforce-loo,iwae", "--seeds", "0", "--quiet"]
TIMING = (
    "time",
    "seconds",
    "step_ms",
    "work_normalized",
    "_s_",
    "per_s",
    "memory",
    "flops",
    "ceiling",
    "round_s",
    "load_",
    "ratio",
)
"""Words of the columns that measure time or memory: they differ between two identical runs."""


def deterministic(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[c for c in frame if not any(word in c for word in TIMING)]]


@pytest.fixture(autouse=True)
def _no_fault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.ENV, raising=False)
    monkeypatch.delenv(faults.ONCE, raising=False)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("w1") / "run"
    assert cli.main(["run", *SMALL, "--workers", "1", "--out", str(out)]) == 0
    return out


def test_scheduler_waits_for_the_anchor_run_and_runs_timed_units_alone() -> None:
    plan = units.plan(preset("quick"))
    sched = dispatch.Scheduler(plan, plan, lambda unit, ref: False, None)
    started = [sched.next() for _ in range(3)]
    assert started[0].kind == "anchor"
    # the variance units wait for the anchor run; the STL check and the training units need nothing
    assert [u.kind for u in started[1:]] == ["landing", "convergence"]
    sched.finished(started[0], "sha")
    assert sched.next().kind == "variance"
    while (unit := sched.next()) is not None:
        assert unit.kind != "throughput"  # not while other units are pending or in flight
        sched.finished(unit, None)
    for unit in list(sched.in_flight):
        sched.finished(unit, None)
    timed = sched.next()
    assert timed.kind == "throughput" and sched.next() is None  # exclusive: nothing starts beside it
    sched.finished(timed, None)
    assert sched.next().kind == "throughput"


def test_a_variance_unit_verified_at_an_identical_anchor_run_is_not_run_again() -> None:
    plan = [Unit("anchor", "checkpoints"), Unit("variance", "init", checkpoint="init")]
    sched = dispatch.Scheduler(plan, plan, lambda unit, ref: ref == "same", None)
    assert sched.next().kind == "anchor" and sched.next() is None
    sched.finished(plan[0], "same")
    assert sched.next() is None and sched.done


class _BreaksBetweenWaits(dispatch.LocalPool):
    """A pool whose worker dies after one unit ended and before the next is submitted: ``submit`` raises
    BrokenProcessPool while the unit the death broke is still in flight (the race CI once hit)."""

    def __init__(self) -> None:
        self.workers, self.submitted, self.broke, self.executor = 2, [], False, None
        self.flight: list[Future] = []

    def submit(self, unit: Unit) -> Future:
        if len(self.submitted) == 2 and not self.broke:
            self.broke = True
            for future in self.flight:
                future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
            raise BrokenProcessPool("a child process terminated abruptly")
        self.submitted.append(unit.key)
        future: Future = Future()
        if len(self.submitted) == 1:
            future.set_result(dispatch.Outcome("done"))  # ends at once
        elif len(self.submitted) == 2:
            self.flight.append(future)  # the one the dying worker holds
        else:
            future.set_result(dispatch.Outcome("done"))
        return future

    def restart(self) -> None:
        self.flight = []

    def close(self) -> None:
        pass


def test_a_pool_broken_between_two_waits_runs_every_unit_once() -> None:
    plan = [Unit("convergence", f"c{i}") for i in range(4)]
    sched = dispatch.Scheduler(plan, plan, lambda unit, ref: False, None)
    saved: list[str] = []
    pool = _BreaksBetweenWaits()
    dispatch.run_pool(pool, sched, lambda unit, outcome: saved.append(unit.key) or "sha", lambda line: None)
    assert pool.broke and sched.done
    assert sorted(saved) == sorted(u.key for u in plan)  # each saved once: the broken one ran again
    assert pool.submitted.count(plan[1].key) == 2


def test_worker_count_respects_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    monkeypatch.setattr(dispatch, "usable_cores", lambda: 8)
    config = preset("quick")
    assert dispatch.worker_count(config) == 8
    assert dispatch.worker_count(dataclasses.replace(config, threads=3)) == 2
    assert dispatch.worker_count(dataclasses.replace(config, threads=0)) == 1  # torch's default: all cores
    assert dispatch.worker_count(dataclasses.replace(config, workers=3)) == 3


def test_two_workers_give_the_same_tables_as_one(one_worker: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert cli.main(["run", *SMALL, "--workers", "2", "--out", str(out)]) == 0
    for name in ("summary", "variance", "convergence", "throughput"):
        a, b = (deterministic(pd.read_csv(p / f"{name}.csv")) for p in (one_worker, out))
        pd.testing.assert_frame_equal(a, b, obj=name)
    run = json.loads((out / "run.json").read_text())
    assert run["invocations"][-1]["execution"] == {
        "engine": "local",
        "workers": 2,
        "exclusive": ["throughput"],
    }
    assert run["status"] == "complete"


def test_a_worker_killed_mid_unit_is_retried_and_nothing_is_lost(one_worker: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    (tmp_path / "once").mkdir()
    env = {**os.environ, faults.ENV: "worker#2:SIGKILL", faults.ONCE: str(tmp_path / "once")}
    proc = subprocess.run(
        [sys.executable, "-m", "vaebench", "run", *SMALL, "--workers", "2", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "once" / "worker").is_file()  # the fault did fire: one worker was killed
    plan = units.plan(ownership.saved_config(out))
    state = integrity.verify(out, plan, config_hash(ownership.saved_config(out)))
    assert len(state.keys(integrity.VERIFIED)) == len(plan)
    for name in ("summary", "variance", "convergence"):
        a, b = (deterministic(pd.read_csv(p / f"{name}.csv")) for p in (one_worker, out))
        pd.testing.assert_frame_equal(a, b, obj=name)


def test_dry_run_prints_every_unit_with_a_cost_and_runs_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["run", "--preset", "quick", "--estimators", "reparam,iwae", "--workers", "2"]
    assert cli.main([*args, "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    plan = units.plan(preset("quick"))
    assert not out.exists()
    assert "convergence reparam-K4-s0+1" in text and "variance end" in text
    assert "units, estimated" in text and "with 2 workers" in text
    assert len([line for line in text.splitlines() if line.startswith("  ")]) == len(
        [
            u
            for u in plan
            if u.kind != "landing" and (u.setting is None or u.setting.estimator in ("reparam", "iwae"))
        ]
    )


def test_the_dry_run_counts_each_training_unit_compiling_its_step(monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = {"estimators": ["reparam"], "seeds": [0]}
    eager, _ = resolve(preset_name="quick", overrides=overrides)
    compiled, _ = resolve(preset_name="quick", overrides={**overrides, "train": {"compile": "aot_eager"}})
    measured = calibration.calibrate(eager, Context(eager, "."))
    # the same eager steps for both
    monkeypatch.setattr(calibration, "calibrate", lambda config, ctx: measured)
    without, with_compile = calibration.estimate(eager), calibration.estimate(compiled)
    assert without.rates.compile is None
    c = with_compile.rates.compile
    assert set(c.compile_s) == {1, max(compiled.samples)} and all(s > 0 for s in c.compile_s.values())
    graphs = calibration.graphs_per_run(compiled, Context(compiled, "."))
    trained = 0
    for (unit, eager_s), (same, compiled_s) in zip(without.units, with_compile.units, strict=True):
        assert unit.label == same.label
        if unit.kind not in ("convergence", units.ANCHOR):
            assert compiled_s == eager_s
            continue
        k = 1 if unit.kind == units.ANCHOR else unit.setting.num_samples
        key = (compiled.variance.anchor_estimator, "iid", 1) if k == 1 and unit.kind == units.ANCHOR else None
        step = measured[0][key or (unit.setting.estimator, unit.setting.sampler, k)]
        near = c.nearest(k)
        extra = compiled.train.steps * step * (c.ratio[near] - 1) + graphs * c.compile_s[near]
        assert compiled_s - eager_s == pytest.approx(extra)
        trained += 1
    assert trained >= 2
    assert "to compile" in calibration.describe(with_compile, 1)


def test_engine_ray_without_ray_is_one_line_and_claims_no_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    out = tmp_path / "run"
    assert cli.main(["run", "--preset", "quick", "--engine", "ray", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error" in line]
    assert 'pip install -e ".[ray]"' in line and "Traceback" not in err
    assert not out.exists()
    assert cli.main(["run", "--preset", "quick", "--address", "auto", "--out", str(out)]) == 2
    assert "--address is for --engine ray" in capsys.readouterr().err
