"""Data of your own: a data file (:mod:`vaebench.data.files`) or a plugin's data set, as a `Dataset`.

A plugin's data set is a factory ``factory(seed=...)`` registered under a name in `DATASET_PLUGINS`
(:func:`vaebench.data.register_dataset`; :mod:`vaebench.registry` loads plugins). It returns either a `Dataset`, used as it is (the plugin chooses its
preprocessing, likelihood and image shape), or the plain data, ``{"train": [N, D], "test": [M, D]}`` or
``(train, test)`` as arrays or tensors, checked like a data file's arrays and binarized when asked: the plain
form is the easy one, the `Dataset` one gives full control. Such data have no grey levels, so neither they
nor a file's are dequantized.

Provenance: a file's `Dataset.sha256` is the SHA-256 of its bytes; a plugin's, of its train and test tensors
(:func:`tensor_digest`: their shapes, then their float32 bytes).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from vaebench.data import files
from vaebench.data.dataset import Dataset
from vaebench.errors import VaebenchError


def load_own(
    name: str,
    *,
    binarize: str | None,
    seed: int,
    test_fraction: float = files.TEST_FRACTION,
    batch_size: int | None = None,
    sha256: str | None = None,
) -> Dataset:
    """A plugin's data set (``name`` in `DATASET_PLUGINS`) or a data file (its path); see the module docstring.

    Raises:
        VaebenchError: the file's or the plugin's problem, named (see :mod:`vaebench.data.files`).
    """
    if name in DATASET_PLUGINS:
        return _load_plugin(name, binarize, seed)
    found = files.read_file(
        name, test_fraction=test_fraction, seed=seed, batch_size=batch_size, sha256=sha256
    )
    train, test = files.binarize_unit(found.train, found.test, binarize, seed, found.source)
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


DATASET_PLUGINS: dict[str, Callable[..., object]] = {}
"""Data sets that plugins add (:func:`vaebench.data.register_dataset`): name -> factory."""


def tensor_digest(train: Tensor, test: Tensor) -> str:
    """SHA-256 of two float32 tensors' shapes and bytes (train, then test)."""
    h = hashlib.sha256()
    for x in (train, test):
        h.update(repr(tuple(x.shape)).encode())
        h.update(x.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _load_plugin(name: str, binarize: str | None, seed: int) -> Dataset:
    factory = DATASET_PLUGINS[name]
    try:
        made = factory(seed=seed)
    except VaebenchError:
        raise
    except Exception as err:  # the plugin's own bug: one line, naming it
        raise VaebenchError(f"data set plugin {name!r} raised {type(err).__name__}: {err}") from None
    if isinstance(made, Dataset):
        if binarize is not None and made.binarize != binarize:
            raise VaebenchError(
                f"data set plugin {name!r} returns a ready Dataset (binarize={made.binarize!r}): vaebench cannot "
                f"apply binarize {binarize!r} to it; set binarize to none, or have the plugin return plain arrays"
            )
        for part, x in (("train", made.train), ("test", made.test)):
            files.check_array(x.detach().cpu().numpy(), f"data set plugin {name!r}: its {part} tensor")
        if made.train.shape[1] != made.test.shape[1]:
            raise VaebenchError(
                f"data set plugin {name!r}: train has {made.train.shape[1]} features but test {made.test.shape[1]}"
            )
        return made if made.sha256 else dataclasses.replace(made, sha256=tensor_digest(made.train, made.test))
    if isinstance(made, Mapping) and {"train", "test"} <= set(made):
        parts = (made["train"], made["test"])
    elif isinstance(made, tuple) and len(made) == 2:
        parts = made
    else:
        raise VaebenchError(
            f"data set plugin {name!r} returned a {type(made).__name__}; return a vaebench.data.Dataset, "
            "{'train': ..., 'test': ...} or (train, test), as arrays or tensors"
        )
    what = f"data set plugin {name!r}: its "
    (train, shape), (test, shape_test) = (
        files.check_array(_as_array(x), f"{what}{part} data")
        for part, x in zip(("train", "test"), parts, strict=True)
    )
    if train.shape[1] != test.shape[1] or shape != shape_test:
        raise VaebenchError(
            f"data set plugin {name!r}: train examples have shape {shape or (train.shape[1],)} but test examples "
            f"{shape_test or (test.shape[1],)}"
        )
    train, test = files.binarize_unit(train, test, binarize, seed, f"data set plugin {name!r}")
    return Dataset(
        name=name,
        train=train,
        test=test,
        image_shape=shape,
        likelihood="gaussian" if binarize is None else "bernoulli",
        binarize=binarize,
        dequantize=False,
        levels=None,
        seed=seed,
        source=f"data set plugin {name!r} ({getattr(factory, '__module__', '?')})",
        sha256=tensor_digest(train, test),
    )


def _as_array(x: object) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
