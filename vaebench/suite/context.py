"""What the units of one run share: the configuration, the data set, the device and how to build the model."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import torch

from vaebench import devices
from vaebench.config import SuiteConfig, config_hash
from vaebench.data import Dataset, load_dataset
from vaebench.model import GaussianVAE
from vaebench.suite.units import Unit
from vaebench.train import Checkpointer, TrainSpec


class Context:
    """The data set (loaded once, lazily), the device and the model factory of one run's units."""

    def __init__(self, config: SuiteConfig, out: str | Path):
        self.config = config
        self.out = Path(out)
        self.device: torch.device = devices.resolve(config.device)

    @cached_property
    def dataset(self) -> Dataset:
        d = self.config.data
        return load_dataset(
            d.name,
            d.root,
            binarize=None if d.binarize == "none" else d.binarize,
            dequantize=d.dequantize,
            seed=d.seed,
        )

    @property
    def likelihood(self) -> str:
        chosen = self.config.model.likelihood
        return self.dataset.likelihood if chosen == "auto" else chosen

    def model_factory(self, seed: int = 0) -> GaussianVAE:
        """A fresh model, initialised from ``seed``."""
        m = self.config.model
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
        return Checkpointer(path, self.config.save_every_s, key=f"{config_hash(self.config)}:{unit.key}")

    def train_spec(self, keep: tuple[int, ...] = ()) -> TrainSpec:
        """The training loop's settings of this run (``keep``: steps at which to keep the state)."""
        return TrainSpec.from_config(self.config.train, device=self.device, keep=keep)
