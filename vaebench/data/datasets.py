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
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaebench import rng
from vaebench.data.gaussian_toy import TOY_DIM, TOY_POINTS, draw_gaussian_toy
from vaebench.data.idx import IDX_FILES, find_idx_dir, read_idx, require_idx
from vaebench.data.synthetic import LinearGaussianTruth, draw_synthetic
from vaebench.errors import VaebenchError

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


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded data set. Tensors are float32; `eq=False` because tensors have no single truth value.

    Attributes:
        name: one of `DATASETS`.
        train: [N, D] training data; in [0, 1] except for `synthetic` and `gaussian-toy`. With `binarize="dynamic"` it holds the
            Bernoulli means; draw binary minibatches with `batches`.
        test: [M, D] test data, preprocessed like `train` (binarized once when `binarize="dynamic"`).
        image_shape: (height, width) for plots, or None for `synthetic` and `gaussian-toy`.
        likelihood: the natural decoder likelihood: "bernoulli" when binarized, else "gaussian".
        binarize: None, "dynamic", "fixed" or "threshold".
        dequantize: whether uniform dequantization noise was added.
        levels: number of grey levels of the raw pixels (17 or 256), None for `synthetic` and `gaussian-toy`.
        seed: the seed the random preprocessing (and the synthetic model) used.
        source: where the data came from, for provenance (a directory, or a description).
        truth: the generating parameters for `synthetic` and `gaussian-toy`, else None.
    """

    name: str
    train: Tensor
    test: Tensor
    image_shape: tuple[int, ...] | None
    likelihood: str
    binarize: str | None
    dequantize: bool
    levels: int | None
    seed: int
    source: str
    truth: LinearGaussianTruth | None = None

    @property
    def x_dim(self) -> int:
        """D, the number of features per example."""
        return self.train.shape[1]

    def exact_log_marginal(self, x: Tensor) -> Tensor:
        """Exact log p(x) [N] (float64) for x [N, D]; only `synthetic` and `gaussian-toy` have one."""
        if self.truth is None:
            raise VaebenchError(
                f"data set {self.name!r} has no exact log p(x); only 'synthetic' and 'gaussian-toy' have one"
            )
        return self.truth.exact_log_marginal(x)

    def batches(
        self, batch_size: int, *, seed: int = 0, epoch: int = 0, drop_last: bool = False
    ) -> Iterator[Tensor]:
        """Shuffled minibatches of `train`, binarized per batch when `binarize="dynamic"`; see `batches`."""
        mode = "dynamic" if self.binarize == "dynamic" else None
        return batches(self.train, batch_size, seed=seed, epoch=epoch, binarize=mode, drop_last=drop_last)


def batches(
    data: Tensor,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    binarize: str | None = None,
    drop_last: bool = False,
) -> Iterator[Tensor]:
    """Shuffled minibatches of one epoch, gathered through a permutation (no copy of the whole data).

    The permutation and the Bernoulli draws come from a generator seeded by (seed, epoch), so any epoch is
    reproducible on its own and different epochs get different orders and draws.

    Args:
        data: [N, D] examples.
        batch_size: examples per batch.
        seed: seed of the shuffling and binarization.
        epoch: epoch number; each gets its own permutation and draws.
        binarize: None to yield the data as is, "dynamic" for a fresh x_b ~ Bernoulli(x) per batch.
        drop_last: drop the final batch if it is smaller than `batch_size`.

    Returns:
        An iterator of [B, D] tensors, B = batch_size (the last may be smaller unless `drop_last`).
    """
    if data.ndim != 2:
        raise VaebenchError(f"batches needs data of shape [N, D], got {tuple(data.shape)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise VaebenchError(f"batch_size must be a positive integer, got {batch_size!r}")
    if binarize not in (None, "dynamic"):
        raise VaebenchError(f"batches binarize must be None or 'dynamic', got {binarize!r}")
    if binarize == "dynamic" and data.numel() and (data.min() < 0 or data.max() > 1):
        raise VaebenchError("dynamic binarization needs data in [0, 1] (Bernoulli means)")
    gen = rng.generator(seed, "data.batches", epoch)
    return _iterate(data, batch_size, gen, binarize == "dynamic", drop_last)


def _iterate(
    data: Tensor, batch_size: int, gen: torch.Generator, dynamic: bool, drop_last: bool
) -> Iterator[Tensor]:
    n = data.shape[0]
    order = torch.randperm(n, generator=gen)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        batch = data[order[start : start + batch_size]]
        if dynamic:  # u < x is a Bernoulli(x) draw; about 2.5x faster on CPU than torch.bernoulli
            batch = (torch.rand(batch.shape, generator=gen) < batch).to(batch.dtype)
        yield batch


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
) -> Dataset:
    """Load a data set by name.

    Args:
        name: one of `DATASETS`.
        root: folder with the IDX files for "fashion-mnist" and "mnist" (see `find_idx_dir`); ignored otherwise.
        binarize: None (continuous), "dynamic", "fixed" or "threshold"; see the module docstring.
        dequantize: add one grey level of uniform noise, x = (v + u) / L; not with `binarize`.
        seed: seed of the dequantization and binarization noise and of the synthetic (or toy) model and samples.
        n_train: synthetic only: training examples.
        n_test: synthetic only: test examples.
        x_dim: synthetic only: D, observed dimensions.
        z_dim: synthetic only: Z, latent dimensions.
        noise_std: synthetic only: observation noise s (the same for every dimension).

    ``gaussian-toy`` has fixed sizes (D = 20, 1,024 train and 1,024 test points, as in Rainforth et al.
    2018) and takes only ``seed``, which draws its true prior mean and its points.

    Returns:
        The `Dataset`.

    Raises:
        VaebenchError: unknown name or mode, impossible sizes, missing or corrupt files.
    """
    if name not in DATASETS:
        raise VaebenchError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")
    if binarize is not None and binarize not in BINARIZE_MODES:
        raise VaebenchError(f"unknown binarize mode {binarize!r}; valid: None, {', '.join(BINARIZE_MODES)}")
    if binarize is not None and dequantize:
        raise VaebenchError(
            "choose either binarize or dequantize: dequantization noise is for continuous data"
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
