"""Data sets for the benchmark: the embedded digits, IDX files (Fashion-MNIST, MNIST) and a synthetic model.

Every data set is a `Dataset`: `train` [N, D] and `test` [M, D] float32 tensors, the image shape for plots,
the natural likelihood for the decoder, and where the data came from.

Preprocessing of the image sets (pixel grey levels v in {0, ..., L-1}, with L = 17 for digits, 256 for
MNIST-like sets):

* continuous (default): x = v / (L - 1) in [0, 1], for the Gaussian decoder.
* dequantized: x = (v + u) / L with u ~ U[0, 1) drawn once at load (seeded), so x fills [0, 1] without
  gaps (one grey level of uniform noise, rescaled; Theis et al. 2016, "A note on the evaluation of
  generative models").
* dynamic binarization: `train` keeps the continuous x and `batches` draws a fresh x_b ~ Bernoulli(x) for
  every minibatch, so each epoch sees new binary images (Burda et al. 2015, "Importance weighted
  autoencoders", section 5). `test` is binarized once with a fixed seed so evaluation is repeatable.
* fixed binarization: one Bernoulli(x) draw at load, seeded ("fixed" mode), or the deterministic
  threshold x >= 0.5 ("threshold" mode), for train and test alike.

The synthetic set comes from a linear-Gaussian model with an exact marginal likelihood (Tipping & Bishop
1999, probabilistic PCA):

    z ~ N(0, I_Z),   x | z ~ N(W z + b, diag(s^2)),   so   p(x) = N(x; b, W W^T + diag(s^2)),

which lets the suite report each bound's gap to the true log p(x). The ``gaussian-toy`` set is the special
case of Rainforth et al. 2018 (W = I, b = μ ~ N(0, I), unit noise, D = 20, N = 1024 per split; see
:mod:`vaebench.data.gaussian_toy`), the data of :class:`vaebench.toy.GaussianToy`.

Data of your own: a name ending in ``.npz``, ``.npy`` or ``.csv`` is the path of a file, read and checked by
:mod:`vaebench.data.arrays` (its SHA-256 goes on the `Dataset`); a name in `DATASET_PLUGINS` is a plugin's
data set (see :mod:`vaebench.data.custom`). Neither is made of grey levels, so neither is dequantized; values
in [0, 1] can be binarized like the image sets. The loaded `Dataset` and its minibatches are in
:mod:`vaebench.data.dataset`.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaebench import rng
from vaebench.data import arrays, custom
from vaebench.data.dataset import Dataset
from vaebench.data.gaussian_toy import TOY_DIM, TOY_POINTS, draw_gaussian_toy
from vaebench.data.idx import IDX_FILES, find_idx_dir, read_idx, require_idx
from vaebench.data.synthetic import draw_synthetic
from vaebench.errors import VaebenchError
from vaebench.plugins.data_sets import DATASET_PLUGINS

DATASETS: dict[str, str] = {
    "digits": "8x8 handwritten digits shipped with scikit-learn (1,437 train / 360 test), offline",
    "fashion-mnist": "28x28 Zalando clothes (60,000 / 10,000) from IDX files; apt-get install dataset-fashion-mnist",
    "mnist": "28x28 handwritten digits (60,000 / 10,000) from IDX files in a folder you name",
    "synthetic": "linear-Gaussian model with exact log p(x); sizes configurable, not bounded to [0, 1]",
    "gaussian-toy": "the Gaussian toy of Rainforth et al. 2018: D = 20, 1,024 points per split, exact log p(x)",
}
"""Valid data set names with one-line descriptions (read by the CLI's `list` command and choices)."""

BINARIZE_MODES: tuple[str, ...] = ("dynamic", "fixed", "threshold")
"""Valid values of `binarize` besides None (continuous data)."""

DIGITS_N_TRAIN = 1437
"""The digits split: the first 1,437 of a fixed permutation train, the other 360 test (80 / 20)."""

_DIGITS_SPLIT_SEED = 0  # fixed, independent of the `seed` argument, so the test set is the same for all runs


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    binarize: str | None = None,
    dequantize: bool = False,
    seed: int = 0,
    n_train: int = 10_000,
    n_test: int = 2_000,
    x_dim: int = 20,
    z_dim: int = 5,
    noise_std: float = 0.5,
    test_fraction: float = arrays.TEST_FRACTION,
    batch_size: int | None = None,
    sha256: str | None = None,
) -> Dataset:
    """Load a data set by name.

    Args:
        name: one of `DATASETS`, a name in `DATASET_PLUGINS`, or the path of a ``.npz``, ``.npy`` or ``.csv``
            file (see :mod:`vaebench.data.arrays`).
        root: folder with the IDX files for "fashion-mnist" and "mnist" (see `find_idx_dir`); ignored otherwise.
        binarize: None (continuous), "dynamic", "fixed" or "threshold"; see the module docstring.
        dequantize: add one grey level of uniform noise, x = (v + u) / L; not with `binarize`.
        seed: seed of the dequantization and binarization noise and of the synthetic (or toy) model and samples.
        n_train: synthetic only: training examples.
        n_test: synthetic only: test examples.
        x_dim: synthetic only: D, observed dimensions.
        z_dim: synthetic only: Z, latent dimensions.
        noise_std: synthetic only: observation noise s (the same for every dimension).
        test_fraction: a ``.npy`` or ``.csv`` file only: share of its examples held out for testing.
        batch_size: a data file only: the training set must have at least this many examples.
        sha256: a data file only: the SHA-256 it must have (the one a run recorded when it started).

    ``gaussian-toy`` has fixed sizes (D = 20, 1,024 train and 1,024 test points, as in Rainforth et al.
    2018) and takes only ``seed``, which draws its true prior mean and its points.

    Returns:
        The `Dataset`.

    Raises:
        VaebenchError: unknown name or mode, impossible sizes, missing, corrupt or invalid files.
    """
    if name not in DATASETS and name not in DATASET_PLUGINS and not arrays.is_data_file(name):
        raise VaebenchError(
            f"unknown data set {name!r}; valid names: {', '.join([*DATASETS, *DATASET_PLUGINS])}, or the path "
            f"of a data file ending in {', '.join(arrays.FILE_SUFFIXES)}"
        )
    if binarize is not None and binarize not in BINARIZE_MODES:
        raise VaebenchError(f"unknown binarize mode {binarize!r}; valid: None, {', '.join(BINARIZE_MODES)}")
    if binarize is not None and dequantize:
        raise VaebenchError(
            "choose either binarize or dequantize: dequantization noise is for continuous data"
        )
    if name not in DATASETS:
        if dequantize:
            raise VaebenchError(
                f"data set {name!r} is not made of grey levels: it cannot be dequantized (set dequantize to false)"
            )
        return custom.load_own(
            name,
            binarize=binarize,
            seed=seed,
            test_fraction=test_fraction,
            batch_size=batch_size,
            sha256=sha256,
        )
    if name == "synthetic":
        if binarize is not None or dequantize:
            raise VaebenchError("synthetic data is real-valued: it cannot be binarized or dequantized")
        return _load_synthetic(n_train, n_test, x_dim, z_dim, noise_std, seed)
    if name == "gaussian-toy":
        if binarize is not None or dequantize:
            raise VaebenchError("gaussian-toy data are real-valued: they cannot be binarized or dequantized")
        return _load_gaussian_toy(seed)
    if name == "digits":
        train, test, source = _load_digits()
        levels = 17
    else:
        folder = find_idx_dir(name, root)
        paths = [require_idx(folder, IDX_FILES[s]) for s in ("train", "test")]
        train, test = (read_idx(path, ndim=3) for path in paths)
        for path, images in zip(paths, (train, test), strict=True):
            if images.shape[0] == 0 or math.prod(images.shape[1:]) == 0:
                what = (
                    "0 images" if images.shape[0] == 0 else "images of {}x{} pixels".format(*images.shape[1:])
                )
                raise VaebenchError(f"{path}: holds {what}; nothing to train or test on (replace the file)")
        if train.shape[1:] != test.shape[1:]:
            raise VaebenchError(
                f"{folder}: train images are {train.shape[1:]} but test images {test.shape[1:]}"
            )
        source, levels = str(folder), 256
    image_shape = tuple(train.shape[1:])
    x_train, x_test = _preprocess(train, test, levels, binarize, dequantize, seed)
    return Dataset(
        name=name,
        train=x_train,
        test=x_test,
        image_shape=image_shape,
        likelihood="gaussian" if binarize is None else "bernoulli",
        binarize=binarize,
        dequantize=dequantize,
        levels=levels,
        seed=seed,
        source=source,
    )


def _preprocess(
    train: np.ndarray, test: np.ndarray, levels: int, binarize: str | None, dequantize: bool, seed: int
) -> tuple[Tensor, Tensor]:
    """Grey levels [N, H, W] uint8 -> [N, H*W] float32 as described in the module docstring."""
    out = []
    for part, raw in (("train", train), ("test", test)):
        x = torch.from_numpy(raw.reshape(raw.shape[0], -1).astype(np.float32))
        if dequantize:
            gen = rng.generator(seed, "data.dequantize", int(part == "test"))
            x = x.add_(torch.rand(x.shape, generator=gen)).div_(levels)
        else:
            x = x.div_(levels - 1)
        if binarize == "threshold":
            x = (x >= 0.5).to(torch.float32)
        elif binarize == "fixed" or (binarize == "dynamic" and part == "test"):
            x = torch.bernoulli(x, generator=rng.generator(seed, "data.binarize", int(part == "test")))
        out.append(x)
    return out[0], out[1]


def _digits_csv() -> Path | None:
    """scikit-learn's bundled digits CSV, found without importing sklearn (over a second), or None."""
    # The file has been at this place for many releases; if it moves, `_load_digits` uses the public loader.
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return csv if csv.is_file() else None


def _load_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """The 1,797 digits as uint8 grey levels 0..16, [N, 8, 8], split by a fixed permutation."""
    csv = _digits_csv()
    if csv is not None:
        flat = np.loadtxt(csv, delimiter=",", dtype=np.uint8)[:, :-1]  # last column is the label
    else:
        from sklearn.datasets import load_digits

        flat = load_digits().data.astype(np.uint8)
    images = flat.reshape(-1, 8, 8)
    order = rng.numpy_generator(_DIGITS_SPLIT_SEED, "data.split").permutation(images.shape[0])
    train, test = images[order[:DIGITS_N_TRAIN]], images[order[DIGITS_N_TRAIN:]]
    return train, test, "scikit-learn load_digits (UCI optical recognition of handwritten digits)"


def _load_synthetic(
    n_train: int, n_test: int, x_dim: int, z_dim: int, noise_std: float, seed: int
) -> Dataset:
    """Draw the linear-Gaussian model (W_ij ~ N(0, 1/Z), b_i ~ N(0, 1)) and then its samples."""
    for key, value in (("n_train", n_train), ("n_test", n_test), ("x_dim", x_dim), ("z_dim", z_dim)):
        if not isinstance(value, int) or value < 1:
            raise VaebenchError(f"synthetic {key} must be a positive integer, got {value!r}")
    if not (isinstance(noise_std, int | float) and math.isfinite(noise_std) and noise_std > 0):
        raise VaebenchError(f"synthetic noise_std must be a positive number, got {noise_std!r}")
    train, test, truth = draw_synthetic(
        n_train,
        n_test,
        x_dim,
        z_dim,
        noise_std,
        rng.generator(seed, "data.truth"),
        rng.generator(seed, "data.sample"),
    )
    return Dataset(
        name="synthetic",
        train=train,
        test=test,
        image_shape=None,
        likelihood="gaussian",
        binarize=None,
        dequantize=False,
        levels=None,
        seed=seed,
        source=f"linear-Gaussian model, seed {seed}, D={x_dim}, Z={z_dim}, noise std {noise_std}",
        truth=truth,
    )


def _load_gaussian_toy(seed: int) -> Dataset:
    """The toy's points (see :mod:`vaebench.data.gaussian_toy`)."""
    train, test, truth = draw_gaussian_toy(seed)
    return Dataset(
        name="gaussian-toy",
        train=train,
        test=test,
        image_shape=None,
        likelihood="gaussian",
        binarize=None,
        dequantize=False,
        levels=None,
        seed=seed,
        source=f"Gaussian toy of Rainforth et al. 2018, seed {seed}, D={TOY_DIM}, {TOY_POINTS} points per split",
        truth=truth,
    )
