"""The suite's configuration: frozen dataclasses, three presets, strict TOML and command-line overrides.

A configuration is resolved in layers, each strict (an unknown key or a wrong type is a `VaebenchError` that
names the key, what was expected and what was given):

    preset (quick | default | paper)  ->  TOML file (--config)  ->  command-line flags

TOML mirrors the dataclasses: top-level keys of `SuiteConfig`, one table per section::

    preset = "quick"            # optional: the base preset (a --preset flag overrides it)
    estimators = ["reparam", "stl", "reinforce-loo"]
    samples = [1, 10]
    [train]
    steps = 500
    [data]
    name = "fashion-mnist"

TOML has no null, so options that mean "nothing" use a word or zero: `binarize = "none"`,
`likelihood = "auto"`, `threads = 0`, `ll_points = 0`. The resolved configuration is written to `run.json`
(see :func:`to_dict`), and a saved one is read back with :func:`from_dict`.
"""

from vaebench.config.sections import (
    CHECKPOINTS,
    EXECUTION_KEYS,
    LR_SCHEDULES,
    DataConfig,
    ModelConfig,
    SuiteConfig,
    ThroughputConfig,
    TrainConfig,
    VarianceConfig,
    preset,
)
from vaebench.config.strict import (
    config_hash,
    differences,
    from_dict,
    load_config,
    merge,
    read_toml,
    resolve,
    to_dict,
)
from vaebench.config.validate import validate
from vaebench.presets import PRESET_DESCRIPTIONS

__all__ = [
    "CHECKPOINTS",
    "EXECUTION_KEYS",
    "LR_SCHEDULES",
    "PRESET_DESCRIPTIONS",
    "DataConfig",
    "ModelConfig",
    "SuiteConfig",
    "ThroughputConfig",
    "TrainConfig",
    "VarianceConfig",
    "config_hash",
    "differences",
    "from_dict",
    "load_config",
    "merge",
    "preset",
    "read_toml",
    "resolve",
    "to_dict",
    "validate",
]
