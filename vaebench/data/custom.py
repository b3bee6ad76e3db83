"""Data of your own: a data file (:mod:`vaebench.data.arrays`) or a plugin's data set
(:mod:`vaebench.plugins.data_sets`), as a `Dataset`. Neither is made of grey levels, so neither is dequantized.

Provenance: a file's `Dataset.sha256` is the SHA-256 of its bytes; a plugin's, of its train and test tensors.
"""

from __future__ import annotations

from vaebench.data import arrays
from vaebench.data.dataset import Dataset
from vaebench.plugins import data_sets


def load_own(
    name: str,
    *,
    binarize: str | None,
    seed: int,
    test_fraction: float = arrays.TEST_FRACTION,
    batch_size: int | None = None,
    sha256: str | None = None,
) -> Dataset:
    """A plugin's data set (``name`` in `vaebench.plugins.data_sets.DATASET_PLUGINS`) or a data file (its path); see the module docstring.

    Raises:
        VaebenchError: the file's or the plugin's problem, named (see :mod:`vaebench.data.arrays`).
    """
    if name in data_sets.DATASET_PLUGINS:
        return data_sets.load(name, binarize, seed)
    found = arrays.read_file(
        name, test_fraction=test_fraction, seed=seed, batch_size=batch_size, sha256=sha256
    )
    train, test = arrays.binarize_unit(found.train, found.test, binarize, seed, found.source)
    return Dataset(
        name=name,
        train=train,
        test=test,
        image_shape=found.image_shape,
        likelihood="gaussian" if binarize is None else "bernoulli",
        binarize=binarize,
        dequantize=False,
        levels=None,
        seed=seed,
        source=f"{found.source} ({found.split})",
        sha256=found.sha256,
    )
