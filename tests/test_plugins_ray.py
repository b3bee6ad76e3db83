"""Plugins on a real local Ray cluster: shipped to the workers with Ray's runtime environment (``py_modules``,
given to ``ray.init``: Ray uploads local folders only for a whole job), re-loaded there from the driver's
records, and refused where the worker's copy is not the driver's. Skipped where Ray is not installed."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from vaebench import plugins
from vaebench.errors import VaebenchError
from vaebench.plugins import registry

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "partial-stl"


def test_ray_workers_load_the_shipped_plugin_and_refuse_another_copy():
    sys.path.insert(0, str(EXAMPLE))
    home_ray = Path.home() / ".ray"
    had_home_ray = home_ray.exists()
    temp = tempfile.mkdtemp(prefix="vbplg", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        records = registry.load_module("vaebench_partial_stl")
        env = {"py_modules": plugins.py_modules(records)}
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=temp, runtime_env=env)

        def work_in_a_worker(records: list[dict]) -> tuple[str, str]:
            """Load the driver's plugins, build the estimator by name, say where its code came from (defined here,
            so that Ray ships it by value: the workers cannot import this test module)."""
            from vaebench.estimators import make_estimator
            from vaebench.plugins import registry

            registry.reload(records)
            est = make_estimator("partial-stl", score_fraction=0.5)
            return type(est).__module__, sys.modules[type(est).__module__].__file__

        work = ray.remote(work_in_a_worker)
        module, file = ray.get(work.remote(records))
        assert module == "vaebench_partial_stl"
        assert "runtime_resources" in file and not file.startswith(str(EXAMPLE))  # Ray's copy, not the tree's
        tampered = [dict(records[0], sha256="0" * 64)]
        with pytest.raises(ray.exceptions.RayTaskError) as err:
            ray.get(work.remote(tampered))
        assert isinstance(err.value.cause, VaebenchError)
        assert "differs from the one the run recorded (000000000000)" in str(err.value.cause)
    finally:
        ray.shutdown()
        registry.unload()
        sys.path.remove(str(EXAMPLE))
        sys.modules.pop("vaebench_partial_stl", None)
        os.environ.pop("RAY_AUTH_MODE", None)
        shutil.rmtree(temp, ignore_errors=True)
        if not had_home_ray:
            shutil.rmtree(home_ray, ignore_errors=True)
