"""The plugins a configuration names, loaded before it is validated, and the records of those it uses.

A configuration reaches a user's code three ways: ``plugins = ["my_pkg.estimators"]`` (``--plugin``) loads a
module's ``ESTIMATORS``/``MODELS``/``DATASETS`` dicts; an ``estimators`` entry ``my_pkg:MyEstimator`` loads that
class (and is replaced by its name); and a name that no built-in or loaded plugin has is looked for among the
installed packages' entry points (groups ``vaebench.estimators``, ``vaebench.models``, ``vaebench.datasets``,
the convention pytest plugins follow), which are imported only then. :func:`used` gives the provenance records
of the plugins the configuration uses: run.json keeps them, the configuration's hash includes their
fingerprints, a resume compares them, and worker processes re-load from them (:func:`vaebench.registry.reload`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vaebench import plugins, registry
from vaebench.config.sections import SuiteConfig
from vaebench.data import DATASET_PLUGINS, DATASETS, is_data_file
from vaebench.estimators import ESTIMATORS


def load(config: SuiteConfig) -> SuiteConfig:
    """Load what ``config`` names (see the module docstring); return it with ``module:Class`` entries replaced
    by the names they registered.

    Raises:
        VaebenchError: a module that does not import, a class that breaks the contract, a name that clashes.
    """
    for module in config.plugins:
        registry.load_module(module)
    estimators = tuple(registry.estimator_names(config.estimators))
    if any(name not in ESTIMATORS for name in estimators):
        registry.load_installed(["estimator"])
    data = config.data.name
    if not (data in DATASETS or data in DATASET_PLUGINS or is_data_file(data)):
        registry.load_installed(["dataset"])
    if config.model.name not in registry.MODELS:
        registry.load_installed(["model"])
    return dataclasses.replace(config, estimators=estimators)


def used(config: SuiteConfig) -> list[dict[str, Any]]:
    """The provenance records of the loaded plugins that ``config`` uses (none for a built-in-only run)."""
    return plugins.select(
        registry.records(),
        estimators=config.estimators,
        models=[config.model.name],
        datasets=[config.data.name],
    )
