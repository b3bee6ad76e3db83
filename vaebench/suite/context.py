"""What the units of one run share: the configuration, the data set, the device, how to build the model, and
what the configuration names but does not hold (the plugins it uses, a data file's SHA-256)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaebench import devices, plugins
from vaebench.config import SuiteConfig, config_hash
from vaebench.data import Dataset, load_dataset
from vaebench.model import GaussianVAE
from vaebench.plugins import registry
from vaebench.problems import get_problem, load_installed_problems
from vaebench.suite.units import Unit
from vaebench.train import Checkpointer, TrainSpec


class Context:
    """The data set (loaded once, lazily), the device and the model factory of one run's units."""

    def __init__(self, config: SuiteConfig, out: str | Path, data_sha256: str | None = None):
        self.config = config
        self.out = Path(out)
        self.device: torch.device = devices.resolve(config.device)
        self.data_sha256 = data_sha256  # a data file must have this SHA-256 (the one its run recorded)
        self._problems: dict[str, Dataset] = {}

    @cached_property
    def dataset(self) -> Dataset:
        d = self.config.data
        return load_dataset(
            d.name,
            d.root,
            binarize=None if d.binarize == "none" else d.binarize,
            dequantize=d.dequantize,
            seed=d.seed,
            test_fraction=d.test_fraction,
            sha256=self.data_sha256,
        ).with_validation(d.valid_fraction)

    def problem_data(self, name: str) -> Dataset:
        """The data set of problem ``name`` (a run across problems), loaded once per process."""
        if name not in self._problems:
            load_installed_problems()  # a user's problem, in a worker process too
            self._problems[name] = get_problem(name).load()
        return self._problems[name]

    @cached_property
    def plugins(self) -> list[dict[str, Any]]:
        """The provenance records of the plugins this run uses (:func:`vaebench.plugins.registry.used`)."""
        return registry.used(self.config)

    @property
    def inputs(self) -> dict[str, Any]:
        """What the numbers depend on beyond the configuration: the plugins' fingerprints and the data's
        SHA-256 (a data file's or a plugin's; None for a built-in set), hashed with it."""
        return {"plugins": plugins.fingerprint(self.plugins), "data_sha256": self.dataset.sha256}

    @cached_property
    def digest(self) -> str:
        """The hash every unit's manifest carries (:func:`vaebench.config.config_hash` with `inputs`)."""
        return config_hash(self.config, self.inputs)

    @property
    def likelihood(self) -> str:
        chosen = self.config.model.likelihood
        return self.dataset.likelihood if chosen == "auto" else chosen

    def model_factory(self, seed: int = 0) -> nn.Module:
        """A fresh model, initialised from ``seed``: the seed's VAE, or a plugin's model (``model.name``)."""
        m = self.config.model
        if m.name != "gaussian-vae":
            return registry.build_model(m.name, self.dataset.x_dim, m.z_dim, seed=seed)
        return GaussianVAE(
            self.dataset.x_dim,
            m.z_dim,
            hidden=m.hidden,
            likelihood=self.likelihood,
            decoder_scale=m.decoder_scale,
            activation=m.activation,
            min_scale=m.min_scale,
            init_decoder_scale=m.init_decoder_scale,
            seed=seed,
        )

    def checkpointer(self, unit: Unit) -> Checkpointer | None:
        """The saver of ``unit``'s training state (:mod:`vaebench.train.checkpoints`), or None (``save_every_s = 0``)."""
        if not self.config.save_every_s:
            return None
        path = self.out / unit.partial_path
        return Checkpointer(path, self.config.save_every_s, key=f"{self.digest}:{unit.key}")

    def train_spec(self, keep: tuple[int, ...] = ()) -> TrainSpec:
        """The training loop's settings of this run (``keep``: steps at which to keep the state)."""
        return TrainSpec.from_config(self.config.train, device=self.device, keep=keep)
