"""Tests for vaebench.config: presets, strict TOML and overrides, validation messages that name the problem."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from vaebench.config import (
    CHECKPOINTS,
    PRESET_DESCRIPTIONS,
    SuiteConfig,
    differences,
    from_dict,
    load_config,
    merge,
    preset,
    resolve,
    to_dict,
    validate,
)
from vaebench.config.sections import CLASSIC_ESTIMATORS, FAMILY_ESTIMATORS
from vaebench.data import DATASETS
from vaebench.errors import VaebenchError
from vaebench.estimators import BUILTIN_ESTIMATORS, ESTIMATORS


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", list(PRESET_DESCRIPTIONS))
def test_presets_validate_and_round_trip(name: str) -> None:
    config = preset(name)
    notes = validate(config)
    needs_two = [n for n, c in ESTIMATORS.items() if c.min_samples > 1]
    assert all(any(n in note for n in needs_two) for note in notes)  # the estimators with a minimum K
    assert from_dict(to_dict(config)) == config
    assert config.name == name


def test_default_preset_is_the_issue_suite() -> None:
    config = preset("default")
    assert config.estimators == CLASSIC_ESTIMATORS and len(CLASSIC_ESTIMATORS) == 13
    assert set(preset("families").estimators) == {"reparam", "iwae", "dreg", *FAMILY_ESTIMATORS}
    assert set(CLASSIC_ESTIMATORS) | set(FAMILY_ESTIMATORS) == set(BUILTIN_ESTIMATORS)
    assert config.samples == (1, 10)
    assert len(config.seeds) == 3
    assert config.data.name == "digits"


def test_paper_preset_is_the_iwae_architecture() -> None:
    config = preset("paper")
    assert config.data.name in ("fashion-mnist", "mnist") and config.data.binarize == "dynamic"
    assert config.model.hidden == (200, 200) and config.model.z_dim == 50
    assert config.model.activation == "tanh" and config.model.likelihood == "bernoulli"
    assert config.train.steps > preset("default").train.steps


def test_ovis_preset_is_the_papers_gaussian_vae() -> None:
    """Liévin et al. 2020's setting (vlievin/ovis experiments/gaussian-vae.json) at a smaller budget."""
    config = preset("ovis")
    assert config.data.name == "fashion-mnist" and config.data.binarize == "threshold"
    assert config.model.hidden == (200, 200) and config.model.z_dim == 200
    assert config.model.activation == "tanh" and config.model.likelihood == "bernoulli"
    assert config.train.batch_size == 24 and config.train.lr == 3e-4
    assert config.train.lr_schedule == "constant"
    assert config.estimators == ("iwae-stl", "dreg", "iwae", "tvo", "ovis-gamma")
    assert config.samples == (5, 10, 50)
    assert ESTIMATORS["ovis-gamma"]().gamma == 1.0  # the paper's "ovis-gamma1"
    assert config.variance.checkpoints == ("init", "early", "middle", "end")  # the SNR along training


def test_unknown_preset_lists_the_valid_ones() -> None:
    with pytest.raises(VaebenchError, match=r"unknown preset 'fast'.*quick, default, paper"):
        preset("fast")


def test_toml_merges_over_the_preset(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        'preset = "quick"\nestimators = ["reparam", "stl"]\nsamples = [1, 5]\n'
        "[train]\nsteps = 7\nlr = 1\n[model]\nhidden = [16, 16]\n",
    )
    config = load_config(path)
    assert config.estimators == ("reparam", "stl")
    assert config.samples == (1, 5)
    assert config.train.steps == 7
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)  # an integer is a valid number
    assert config.model.hidden == (16, 16)
    assert config.train.batch_size == preset("quick").train.batch_size  # untouched keys keep the preset's
    assert load_config(path, base="default").variance == preset("default").variance  # --preset wins


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stepz = 3\n", r"unknown config key 'stepz'; valid keys: name, plugins, estimators, samples"),
        (
            "[train]\nstepz = 3\n",
            r"unknown config key 'train.stepz'; valid keys in \[train\]: steps, batch_size",
        ),
        ("[train]\nsteps = '100'\n", r"'train.steps' must be an integer, got string '100'"),
        ("[train]\nsteps = 1.5\n", r"'train.steps' must be an integer, got number 1.5"),
        ("[train]\nsteps = true\n", r"'train.steps' must be an integer, got boolean True"),
        ("[train]\nlr = 'fast'\n", r"'train.lr' must be a number, got string 'fast'"),
        ("samples = 10\n", r"'samples' must be a list of integers, got integer 10"),
        ("samples = [1, 'ten']\n", r"'samples\[1\]' must be an integer, got string 'ten'"),
        ("[variance]\nenabled = 1\n", r"'variance.enabled' must be a boolean"),
        ("train = 3\n", r"config key 'train' must be a table, got integer 3"),
        ("[data]\nname = ['digits']\n", r"'data.name' must be a string, got list"),
        ("preset = 3\n", r"'preset' must be a string"),
    ],
)
def test_toml_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(VaebenchError, match=message):
        load_config(toml(tmp_path, text))


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VaebenchError, match="is not valid TOML"):
        load_config(toml(tmp_path, "samples = [1,\n"))
    with pytest.raises(VaebenchError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_overrides_are_as_strict_as_the_file() -> None:
    with pytest.raises(VaebenchError, match=r"'data\.nam'"):
        resolve(overrides={"data": {"nam": "digits"}})
    config, _ = resolve(preset_name="quick", overrides={"seeds": [4], "data": {"name": "synthetic"}})
    assert config.seeds == (4,) and config.data.name == "synthetic"
    assert config.model == preset("quick").model


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"estimators": ["nope"]}, "unknown estimator 'nope'; valid names: " + ", ".join(ESTIMATORS)),
        ({"samples": [0]}, r"samples \(K\) must be integers >= 1.*got 0"),
        ({"samples": []}, "samples must not be empty"),
        ({"samples": [1, 1]}, "samples lists 1 more than once"),
        ({"seeds": [-1]}, "seeds must be integers >= 0"),
        ({"data": {"name": "cifar"}}, "unknown data set 'cifar'; valid names: " + ", ".join(DATASETS)),
        ({"data": {"binarize": "yes"}}, "data.binarize 'yes' is not valid; choose one of: none, dynamic"),
        ({"model": {"activation": "gelu"}}, "model.activation 'gelu' is not valid"),
        ({"train": {"steps": 0}}, "train.steps must be > 0"),
        ({"train": {"optimizer": "lbfgs"}}, "train.optimizer 'lbfgs' is not valid"),
        ({"variance": {"replicates": 1}}, "variance.replicates must be >= 2"),
        ({"variance": {"checkpoints": ["late"]}}, "checkpoints entry 'late' is not valid; choose one of: " + ", ".join(CHECKPOINTS)),
        ({"variance": {"checkpoints": ["init"]}}, "variance.summary_checkpoint 'end' is not valid; choose one of: init"),
        ({"device": "tpu"}, "unknown device 'tpu'; use cpu, cuda, cuda:N or auto"),
        ({"estimators": ["reinforce-loo"], "samples": [1]}, r"'reinforce-loo' needs K >= 2 but samples are \[1\]"),
        ({"samplers": ["sobol"]}, "samplers entry 'sobol' is not valid; choose one of: iid, antithetic, rqmc"),
        ({"samplers": []}, "samplers must not be empty"),
        ({"samplers": ["iid", "iid"]}, "samplers lists iid more than once"),
        ({"samplers": ["antithetic"], "samples": [1, 3]}, r"no estimator can run at samples \[1, 3\] with samplers \['antithetic'\]"),
    ],
)  # fmt: skip
def test_validation_errors_name_the_problem(overrides: dict, message: str) -> None:
    with pytest.raises(VaebenchError, match=message):
        resolve(overrides=overrides)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is missing")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(VaebenchError, match="no CUDA device; use --device cpu"):
        resolve(overrides={"device": "cuda"})
    config, _ = resolve(overrides={"device": "auto"})
    assert config.device == "cpu"


def test_reinforce_loo_at_k1_is_skipped_with_a_note_from_the_default_list() -> None:
    needs_two = tuple(n for n in CLASSIC_ESTIMATORS if ESTIMATORS[n].min_samples == 2)  # reinforce-loo, ...
    _, notes = resolve()
    assert notes == [f"skipping {n} at K=1: it needs K >= 2" for n in needs_two]
    _, notes = resolve(overrides={"samples": [1]})
    assert notes == [f"skipping {n} entirely: it needs K >= 2, samples are [1]" for n in needs_two]
    _, notes = resolve(overrides={"estimators": ["reinforce-loo", "reparam"], "samples": [1, 3]})
    assert notes == ["skipping reinforce-loo at K=1: it needs K >= 2"]


def test_samplers_an_estimator_cannot_use_are_skipped_with_a_note() -> None:
    config, notes = resolve(
        overrides={"estimators": ["reparam", "reinforce-loo", "iwae"], "samples": [1, 4], "samplers": ["iid", "antithetic", "rqmc"]}
    )  # fmt: skip
    assert config.samplers == ("iid", "antithetic", "rqmc")
    assert notes[1:] == [
        "skipping reinforce-loo, iwae with sampler antithetic: they are unbiased only with iid samples "
        "(see `python -m vaebench list`)",
        "skipping sampler antithetic at K=1: it needs an even K",
        "skipping reinforce-loo, iwae with sampler rqmc: they are unbiased only with iid samples "
        "(see `python -m vaebench list`)",
    ]
    assert resolve()[0].samplers == ("iid",)  # the default: plain Monte Carlo, as before samplers existed


def test_differences_names_dotted_keys() -> None:
    a = preset("default")
    b = dataclasses.replace(a, seeds=(0,), train=dataclasses.replace(a.train, steps=5))
    assert differences(a, b) == ["seeds: [0, 1, 2] -> [0]", f"train.steps: {a.train.steps} -> 5"]
    assert differences(a, a) == []


def test_merge_returns_a_new_frozen_config() -> None:
    a = SuiteConfig()
    b = merge(a, {"train": {"steps": 3}})
    assert a.train.steps == SuiteConfig().train.steps != 3 and b.train.steps == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.name = "x"  # type: ignore[misc]


def test_every_default_has_a_comment() -> None:
    """House style: one comment per default, so the config block documents itself."""
    source = Path(__import__("vaebench.config.sections").config.sections.__file__).read_text()
    for cls in (
        "DataConfig",
        "ModelConfig",
        "TrainConfig",
        "VarianceConfig",
        "ThroughputConfig",
        "SuiteConfig",
    ):
        body = source.split(f"class {cls}:")[1].split("\n\n\n")[0]
        for line in body.splitlines():
            if " = " in line and line.startswith("    ") and ":" in line.split("=")[0]:
                assert "#" in line or "field(default_factory" in line, (
                    f"{cls}: no comment on {line.strip()!r}"
                )


def test_the_readme_toml_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    config, _ = resolve(config_file=toml(tmp_path, example))
    assert config.data.name == "fashion-mnist" and config.samples == (1, 10, 50)


def test_a_data_dir_for_a_set_without_files_is_noted(tmp_path: Path) -> None:
    _, notes = resolve(preset_name="quick", overrides={"data": {"root": str(tmp_path)}})
    assert "data.root (--data-dir) is ignored: digits is not read from IDX files" in notes
    _, notes = resolve(preset_name="quick", overrides={"data": {"name": "mnist", "root": str(tmp_path)}})
    assert not any("ignored" in n for n in notes)


def _numeric_fields(section, prefix: str = ""):
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            yield from _numeric_fields(value, f"{prefix}{f.name}.")
        elif f.metadata.get("constraints") and type(value) in (int, float):
            yield f"{prefix}{f.name}"


@pytest.mark.parametrize("key", list(_numeric_fields(SuiteConfig())))
def test_every_numeric_field_declares_its_range_and_a_bad_value_names_the_key(key: str) -> None:
    # Constraints live at the field (vaebench.config.sections): -1 is out of every numeric field's range.
    *sections, name = key.split(".")
    overrides: dict = {name: -1}
    for section in reversed(sections):
        overrides = {section: overrides}
    with pytest.raises(VaebenchError, match=rf"^{re.escape(key)} "):
        resolve(preset_name="quick", overrides=overrides)


def test_an_integer_beyond_any_float_for_a_float_key_names_the_key() -> None:
    with pytest.raises(
        VaebenchError,
        match=r"config key 'train.lr' must be a number of at most about 1.8e308, got an integer of 401 digits",
    ):
        resolve(overrides={"train": {"lr": 10**400}})
