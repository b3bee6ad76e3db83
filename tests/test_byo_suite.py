"""Bring your own estimator, model and data to the whole suite, end to end through the command line: the example
plugin in a quick run next to ``reparam`` with local workers and on a local Ray cluster, ``verify`` proving it,
``list`` showing it, a resume refused once its source changed, a ``.npz`` data set, and ``compare`` of two runs
with its guard. Each run is the quick preset shrunk to two estimators, so the module takes well under a minute
(the Ray case alone is marked slow: it starts a real cluster)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vaebench import cli
from vaebench.estimators import BUILTIN_ESTIMATORS, ESTIMATORS
from vaebench.plugins import registry

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "partial-stl"
SHRUNK = ["--preset", "quick", "--seeds", "0,1", "--quiet"]


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch):
    """The example importable by module name (as after ``pip install -e examples/partial-stl``), also in worker
    processes; unloaded and forgotten afterwards."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))
    yield
    registry.unload()
    for name in [m for m in sys.modules if m.startswith("vaebench_partial_stl")]:
        del sys.modules[name]
    assert set(ESTIMATORS) == set(BUILTIN_ESTIMATORS)


def _run(out: Path, *extra: str) -> int:
    return cli.main(["run", *SHRUNK, "--out", str(out), *extra])


def test_the_example_runs_next_to_reparam_with_local_workers(tmp_path: Path, on_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["--plugin", "vaebench_partial_stl", "--estimators", "reparam,partial-stl", "--workers", "2"]
    assert _run(out, *args) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["estimator"]) == {"reparam", "partial-stl"}
    assert "`partial-stl`" in (out / "report.md").read_text()
    import json

    run = json.loads((out / "run.json").read_text())
    (record,) = run["plugins"]
    assert record["module"] == "vaebench_partial_stl" and len(record["sha256"]) == 64
    # the module:Class form, without --plugin, names the same estimator
    again = tmp_path / "again"
    assert _run(again, "--estimators", "reparam,vaebench_partial_stl:PartialSTL", "--workers", "1") == 0
    assert set(pd.read_csv(again / "summary.csv")["estimator"]) == {"reparam", "partial-stl"}
    capsys.readouterr()
    # compare: the two runs measured the same settings on the same data, so every row is compared
    table = tmp_path / "cmp.csv"
    assert cli.main(["compare", str(out), str(again), "--csv", str(table)]) == 0
    printed = capsys.readouterr().out
    assert "partial-stl" in printed and "reparam" in printed
    compared = pd.read_csv(table)
    assert {"partial-stl", "reparam"} <= set(compared["estimator"])
    # the same code on the same seeds: identical variance, so a 5% guard cannot fail
    assert cli.main(["compare", str(out), str(again), "--fail-on", "trace_var:5%"]) == 0


def test_verify_and_list_know_the_plugin(on_path, capsys) -> None:
    assert cli.main(["verify", "--samplers", "iid", "vaebench_partial_stl:PartialSTL"]) == 0
    assert "PASS partial-stl" in capsys.readouterr().out
    assert cli.main(["list", "--plugin", "vaebench_partial_stl"]) == 0
    listed = capsys.readouterr().out
    assert "partial-stl" in listed and "vaebench_partial_stl" in listed


def test_a_resume_after_the_plugins_source_changed_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    copy = tmp_path / "src"
    shutil.copytree(EXAMPLE / "vaebench_partial_stl", copy / "vaebench_partial_stl")
    monkeypatch.syspath_prepend(str(copy))
    out = tmp_path / "run"
    try:
        args = [
            "--plugin",
            "vaebench_partial_stl",
            "--estimators",
            "partial-stl",
            "--seeds",
            "0",
            "--workers",
            "1",
        ]
        assert _run(out, *args) == 0
        source = copy / "vaebench_partial_stl" / "__init__.py"
        source.write_text(source.read_text() + "\n# an edit\n")
        registry.unload()
        sys.modules.pop("vaebench_partial_stl", None)
        capsys.readouterr()
        assert cli.main(["run", "--resume", "--out", str(out), "--plugin", "vaebench_partial_stl"]) == 2
        err = capsys.readouterr().err
        assert "vaebench_partial_stl" in err and "source changed since this run started" in err, err
    finally:
        registry.unload()
        sys.modules.pop("vaebench_partial_stl", None)


def test_an_npz_data_set_runs_and_its_sha256_is_recorded(tmp_path: Path) -> None:
    import hashlib
    import json

    gen = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(
        path, train=gen.random((300, 12)).astype(np.float32), test=gen.random((80, 12)).astype(np.float32)
    )
    out = tmp_path / "run"
    assert (
        _run(out, "--dataset", str(path), "--estimators", "reparam,iwae", "--seeds", "0", "--workers", "1")
        == 0
    )
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(pd.read_csv(out / "summary.csv")["estimator"]) == {"reparam", "iwae"}


@pytest.mark.slow
@pytest.mark.ray
def test_the_example_runs_on_a_local_ray_cluster(tmp_path: Path, on_path) -> None:
    pytest.importorskip("ray")
    import ray

    home_ray = Path.home() / ".ray"
    had_home_ray = home_ray.exists()
    temp = tempfile.mkdtemp(prefix="vbbyo", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_TMPDIR"] = temp
    out = tmp_path / "run"
    try:
        args = ["--plugin", "vaebench_partial_stl", "--estimators", "reparam,partial-stl", "--engine", "ray"]
        assert _run(out, *args) == 0
        assert set(pd.read_csv(out / "summary.csv")["estimator"]) == {"reparam", "partial-stl"}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        os.environ.pop("RAY_AUTH_MODE", None)
        os.environ.pop("RAY_TMPDIR", None)
        shutil.rmtree(temp, ignore_errors=True)
        if not had_home_ray:
            shutil.rmtree(home_ray, ignore_errors=True)
