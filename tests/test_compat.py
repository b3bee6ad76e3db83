"""Names renamed in this release: the old ones still work for one release, each with a DeprecationWarning (or,
for config keys, a note), and results folders written before the renames still verify."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from vaebench import training
from vaebench.config import config_hash, preset, read_toml, resolve, to_dict
from vaebench.data import load_dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import Setting
from vaebench.model import GaussianVAE
from vaebench.train import TrainSpec, train


def test_the_former_train_signature_warns_and_trains_the_same_run():
    data = load_dataset("digits")
    with pytest.warns(DeprecationWarning, match="vaebench.train.train"):
        old = training.train(GaussianVAE(64, 2, hidden=(8,)), "stl", data, num_samples=2, steps=6, seed=3)
    new = train(GaussianVAE(64, 2, hidden=(8,)), Setting("stl", 2), data, TrainSpec(steps=6), seed=3)
    assert old.history.drop(columns="wall_time_s").equals(new.history.drop(columns="wall_time_s"))
    assert all(torch.equal(old.final_state[k], v) for k, v in new.final_state.items())
    with pytest.warns(DeprecationWarning, match="import it from vaebench.optim"):
        assert training.OPTIMIZERS["adam"] is torch.optim.Adam


def test_the_verify_module_forwards_with_a_warning():
    import vaebench.verify
    from vaebench.checks import exact_gradients

    with pytest.warns(DeprecationWarning, match="vaebench.checks.exact_gradients"):
        assert vaebench.verify.linear_gaussian is exact_gradients.linear_gaussian
    with pytest.raises(AttributeError):
        vaebench.verify.no_such_name  # noqa: B018


def test_renamed_config_keys_are_read_with_a_note(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text('[variance]\nreference_estimator = "stl"\nreference_samples = 8\n')
    config, notes = resolve(config_file=path)
    assert (config.variance.anchor_estimator, config.variance.baseline_samples) == ("stl", 8)
    assert (
        sum(
            "is now 'variance.anchor_estimator'" in n or "is now 'variance.baseline_samples'" in n
            for n in notes
        )
        == 2
    )
    path.write_text("[variance]\nreference_samples = 8\nbaseline_samples = 8\n")
    with pytest.raises(VaebenchError, match="same setting"):
        resolve(config_file=path)
    assert read_toml(path)  # the file itself is fine


def test_the_configuration_hash_is_computed_under_the_names_folders_store():
    # A run.json written before the rename has the old keys, and none of the keys added since; its units'
    # manifests carry the hash of that configuration: the current configuration must hash to the same value.
    config = dataclasses.replace(preset("quick"), name="x")
    data = to_dict(config)
    v = data["variance"]
    v["reference_estimator"], v["reference_samples"] = v.pop("anchor_estimator"), v.pop("baseline_samples")
    for key in ("name", "workers", "save_every_s", "plugins"):  # plugins: a key the old folders lack
        data.pop(key)
    data["model"].pop("name"), data["data"].pop("test_fraction"), data.pop("checks")
    for key in ("lr_schedule", "stack_seeds", "compile", "check_every"):
        data["train"].pop(key)
    import hashlib

    old = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    assert config_hash(config) == old
