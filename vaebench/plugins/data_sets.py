"""Data sets of plugins: their registry (`DATASET_PLUGINS`) and the check of what their factories return.

A plugin's data set is a factory ``factory(seed=...)`` registered under a name (:func:`register_dataset`;
:mod:`vaebench.plugins.registry` loads plugins). It returns either a `~vaebench.data.Dataset`, used as it is
(the plugin chooses its preprocessing, likelihood and image shape), or the plain data, ``{"train": [N, D],
"test": [M, D]}`` or ``(train, test)`` as arrays or tensors, checked like a data file's arrays
(:mod:`vaebench.data.arrays`) and binarized when asked: the plain form is the easy one, the `Dataset` one
gives full control. Such data have no grey levels, so they are not dequantized.

Provenance: a plugin's `Dataset.sha256` is that of its train and test tensors (:func:`tensor_digest`: their
shapes, then their float32 bytes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from vaebench.data.arrays import binarize_unit, check_array
from vaebench.data.dataset import Dataset
from vaebench.errors import VaebenchError

DATASET_PLUGINS: dict[str, Callable[..., object]] = {}
"""Data sets that plugins add (:func:`register_dataset`): name -> factory."""


def tensor_digest(train: Tensor, test: Tensor) -> str:
    """SHA-256 of two float32 tensors' shapes and bytes (train, then test)."""
    h = hashlib.sha256()
    for x in (train, test):
        h.update(repr(tuple(x.shape)).encode())
        h.update(x.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def register_dataset(name: str, factory: Callable[..., object], origin: str = "") -> None:
    """Add a plugin's data set to `DATASET_PLUGINS`: ``factory(seed=...)`` returns its data.

    It returns a `Dataset`, or ``{"train": ..., "test": ...}`` / ``(train, test)`` (see :func:`load`).

    A built-in set's name is refused by :mod:`vaebench.plugins.registry` before it gets here.

    Raises:
        VaebenchError: ``factory`` is not callable with ``seed=``, or ``name`` is another plugin's.
    """
    where = f" from {origin}" if origin else ""
    if not callable(factory):
        raise VaebenchError(f"data set {name!r}{where} is a {type(factory).__name__}, not a callable factory")
    try:
        inspect.signature(factory).bind(seed=0)
    except TypeError:
        raise VaebenchError(
            f"data set {name!r}{where}: its factory cannot be called as factory(seed=0); it must take the seed "
            "as a keyword argument (and need no other)"
        ) from None
    except ValueError:  # a callable without a signature (some built-ins): trust it
        pass
    current = DATASET_PLUGINS.get(name)
    if current is not None and current is not factory:
        raise VaebenchError(
            f"data set {name!r}{where} clashes with the plugin data set {name!r} from "
            f"{getattr(current, '__module__', '?')}: give one of them another name"
        )
    DATASET_PLUGINS[name] = factory


def unregister_dataset(name: str) -> None:
    """Remove a plugin's data set (an unknown name is ignored)."""
    DATASET_PLUGINS.pop(name, None)


def load(name: str, binarize: str | None, seed: int) -> Dataset:
    """The data set of the plugin registered as ``name``, checked (see the module docstring).

    Raises:
        VaebenchError: the plugin raised, returned something else, or data that are not finite, or of
            mismatched shapes (each named).
    """
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
            check_array(x.detach().cpu().numpy(), f"data set plugin {name!r}: its {part} tensor")
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
        check_array(_as_array(x), f"{what}{part} data")
        for part, x in zip(("train", "test"), parts, strict=True)
    )
    if train.shape[1] != test.shape[1] or shape != shape_test:
        raise VaebenchError(
            f"data set plugin {name!r}: train examples have shape {shape or (train.shape[1],)} but test examples "
            f"{shape_test or (test.shape[1],)}"
        )
    train, test = binarize_unit(train, test, binarize, seed, f"data set plugin {name!r}")
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
