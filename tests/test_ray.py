"""The Ray engine on a real local Ray cluster (2 CPUs): the same tables as the local engine, and a Ray worker
killed during a unit is retried with nothing lost. Skipped where Ray is not installed (CI installs the
``ray`` extra). One cluster is shared by the module and stopped at its end, with the folders it made."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from vaebench import cli, faults
from vaebench.config import config_hash, resolve
from vaebench.report.writer import write_report
from vaebench.suite import integrity, units
from vaebench.suite.ray_engine import RayEngine
from vaebench.suite.runner import run_suite

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

ESTIMATORS = ["reparam", "reinforce-loo", "iwae"]
SMALL = ["--preset", "quick", "--estimators", ",".join(ESTIMATORS), "--seeds", "0", "--quiet"]
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


def same_tables(a: Path, b: Path, names=("summary", "variance", "convergence")) -> None:
    for name in names:
        x, y = (pd.read_csv(p / f"{name}.csv") for p in (a, b))
        keep = [c for c in x if not any(word in c for word in TIMING)]
        pd.testing.assert_frame_equal(x[keep], y[keep], obj=name)


@pytest.fixture(scope="module")
def cluster():
    home_ray = Path.home() / ".ray"
    had_home_ray = home_ray.exists()
    temp = tempfile.mkdtemp(prefix="vbray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a throw-away local cluster needs no token in ~/.ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        yield
    finally:
        ray.shutdown()
        os.environ.pop("RAY_AUTH_MODE", None)
        shutil.rmtree(temp, ignore_errors=True)
        if not had_home_ray:
            shutil.rmtree(home_ray, ignore_errors=True)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    assert cli.main(["run", *SMALL, "--workers", "1", "--out", str(out)]) == 0
    return out


def test_ray_engine_gives_the_tables_of_the_local_engine(cluster, local: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert cli.main(["run", *SMALL, "--engine", "ray", "--out", str(out)]) == 0
    same_tables(local, out, ("summary", "variance", "convergence", "throughput"))
    run = pd.read_json(out / "run.json", typ="series")
    assert run["invocations"][-1]["execution"]["engine"] == "ray"
    assert run["invocations"][-1]["execution"]["workers"] == 2


def test_a_ray_worker_killed_during_a_unit_is_retried(cluster, local: Path, tmp_path: Path) -> None:
    once = tmp_path / "once"
    once.mkdir()
    env = {"env_vars": {faults.ENV: "worker:SIGKILL", faults.ONCE: str(once)}}
    config, notes = resolve(preset_name="quick", overrides={"estimators": ESTIMATORS, "seeds": [0]})
    out = tmp_path / "run"
    result = run_suite(
        config, out, notes=notes, progress=False, log=lambda line: None, engine=RayEngine(runtime_env=env),
        report=write_report,
    )  # fmt: skip
    assert (once / "worker").is_file()  # a worker process was killed in the middle of a unit
    assert result.status == "complete" and not result.failed
    plan = units.plan(config)
    state = integrity.verify(out, plan, config_hash(config))
    assert len(state.keys(integrity.VERIFIED)) == len(plan)
    same_tables(local, out)
