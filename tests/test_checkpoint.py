"""A training unit stopped mid-way and resumed from its checkpoint gives the rows of an uninterrupted one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from vaebench import faults
from vaebench.data import load_dataset
from vaebench.estimators import Setting
from vaebench.model import GaussianVAE
from vaebench.suite import units
from vaebench.suite.context import Context
from vaebench.suite.ownership import saved_config
from vaebench.train import Checkpointer, TrainSpec, train

TIMING = ("wall_time_s", "train_time_s", "seconds", "step_ms", "work_normalized", "_s_", "per_s", "ratio")


class Preempted(Exception):
    pass


class StopAfter(Checkpointer):
    """Saves at every step and stops the run (like a kill) right after its n-th save."""

    def __init__(self, path: Path, n: int):
        super().__init__(path, every_s=0.0)
        self.n = n

    def save(self, state) -> None:
        super().save(state)
        if self.saves == self.n:
            raise Preempted


def run(path: Path | None, stop: int | None = None):
    data = load_dataset("digits", binarize="dynamic", dequantize=False)
    model = GaussianVAE(data.x_dim, 4, hidden=(16,), likelihood="bernoulli", seed=3)
    checkpoint = None if path is None else (StopAfter(path, stop) if stop else Checkpointer(path, 0.0))
    # reinforce-ma keeps a moving-average baseline (estimator state); batch 500 crosses epochs (~1,300 points)
    spec = TrainSpec(steps=11, batch_size=500, eval_every=4, keep=[0, 6, 11])
    return train(model, Setting("reinforce-ma", 2), data, spec, seed=5, checkpoint=checkpoint)


def test_a_run_resumed_from_its_checkpoint_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    whole = run(None)
    path = tmp_path / "unit.pt"
    with pytest.raises(Preempted):
        run(path, stop=7)  # stopped after step 7, in the middle of the third epoch
    assert Checkpointer(path, 0.0).load()["progress"]["counts"]["step"] == 7
    resumed = run(path)
    pd.testing.assert_frame_equal(
        resumed.history.drop(columns="wall_time_s"), whole.history.drop(columns="wall_time_s")
    )
    for a, b in zip(resumed.final_state.values(), whole.final_state.values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.checkpoints.keys() == whole.checkpoints.keys() == {0, 6, 11}
    assert torch.equal(resumed.estimator_state["baseline"], whole.estimator_state["baseline"])


def test_a_checkpoint_of_another_unit_or_configuration_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "unit.pt"
    Checkpointer(path, 0.0, key="a").save({"x": 1})
    assert Checkpointer(path, 0.0, key="b").load() is None
    assert Checkpointer(path, 0.0, key="a").load() == {"x": 1}
    path.write_bytes(b"damaged")
    assert Checkpointer(path, 0.0, key="a").load() is None


SMALL = ["--preset", "quick", "--estimators", "reparam,reinforce-loo", "--samples", "2", "--seeds", "0", "--steps", "40", "--quiet"]  # fmt: skip


def cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vaebench", *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_a_unit_killed_mid_way_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("save_every_s = 0.0001\nworkers = 1\n")
    base, out = tmp_path / "base", tmp_path / "run"
    assert cli(["run", *SMALL, "--workers", "1", "--out", str(base)]).returncode == 0
    env = {
        **os.environ,
        faults.ENV: "checkpointed#50:SIGKILL",
    }  # the anchor run (40) and 10 steps of the next
    killed = cli(["run", *SMALL, "--config", str(tmp_path / "c.toml"), "--out", str(out)], env=env)
    assert killed.returncode == -9
    config = saved_config(out)
    (unit,) = [u for u in units.plan(config) if u.kind == "convergence" and u.setting.estimator == "reparam"]
    saved = Context(config, out).checkpointer(unit).load()
    assert saved is not None and saved["progress"]["counts"]["step"] == 10  # a checkpoint mid-way
    env.pop(faults.ENV)
    assert cli(["run", "--resume", "--out", str(out)], env=env).returncode == 0
    assert not (out / unit.partial_path).exists()  # done with once the unit is saved
    for name in ("convergence", "summary"):
        a, b = (pd.read_csv(p / f"{name}.csv") for p in (base, out))
        keep = [c for c in a if not any(word in c for word in TIMING)]
        pd.testing.assert_frame_equal(a[keep], b[keep], obj=name)
