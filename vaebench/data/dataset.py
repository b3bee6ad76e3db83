"""The loaded data set, its validation split, and its shuffled minibatches (binarized per batch when dynamic).

The validation split (:meth:`Dataset.with_validation`) is what tuning selects on, so that the test set is
never read to choose anything: a share f of the training examples, V = round(f·N), drawn by a permutation of
stream ``data.valid`` of the data set's own seed (the same for every run seed and setting, so every slice of a
step-size grid is judged on the same points) and removed from ``train``. Training, validation and test sets
are disjoint by construction (the test set is untouched). Under dynamic binarization ``train`` holds Bernoulli
means; the validation set is binarized once, from the same stream, as the test set is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from vaebench import rng
from vaebench.data.synthetic import LinearGaussianTruth
from vaebench.errors import VaebenchError


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded data set. Tensors are float32; `eq=False` because tensors have no single truth value.

    Attributes:
        name: one of `vaebench.data.DATASETS`, a data-set plugin's name, or the path of a data file.
        train: [N, D] training data; in [0, 1] except for `synthetic`, `gaussian-toy` and data files. With `binarize="dynamic"` it holds the
            Bernoulli means; draw binary minibatches with `batches`.
        test: [M, D] test data, preprocessed like `train` (binarized once when `binarize="dynamic"`).
        image_shape: (height, width) for plots, or None for `synthetic` and `gaussian-toy`.
        likelihood: the natural decoder likelihood: "bernoulli" when binarized, else "gaussian".
        binarize: None, "dynamic", "fixed" or "threshold".
        dequantize: whether uniform dequantization noise was added.
        levels: number of grey levels of the raw pixels (17 or 256), None for `synthetic` and `gaussian-toy`.
        seed: the seed the random preprocessing (and the synthetic model) used.
        source: where the data came from, for provenance (a directory, a file, or a description).
        truth: the generating parameters for `synthetic` and `gaussian-toy`, else None.
        sha256: for a data file, the SHA-256 of its bytes (as ``sha256sum`` prints it); for a plugin's data,
            of its train and test tensors (:func:`vaebench.plugins.data_sets.tensor_digest`); None for the built-in sets.
        valid: [V, D] validation examples carved from the training data (`with_validation`), or None.
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
    sha256: str | None = None
    valid: Tensor | None = None

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

    def with_validation(self, fraction: float) -> Dataset:
        """This data set with a share ``fraction`` of its training examples held out for validation (module
        docstring); ``fraction`` 0 returns it unchanged.

        Raises:
            VaebenchError: a fraction outside [0, 1), one that leaves no example on either side, or a data set
                already split.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction < 1:
            raise VaebenchError(f"valid_fraction must lie in [0, 1) (0: no validation set), got {fraction!r}")
        if fraction == 0:
            return self
        if self.valid is not None:
            raise VaebenchError(f"data set {self.name!r} already has a validation set; split it once")
        n = self.train.shape[0]
        held = round(fraction * n)
        if not 0 < held < n:
            raise VaebenchError(
                f"valid_fraction {fraction} of {n} training examples holds out {held}: choose a fraction that "
                "leaves at least one example for validation and one for training"
            )
        gen = rng.generator(self.seed, "data.valid")
        order = torch.randperm(n, generator=gen)
        valid = self.train[order[:held]]
        if self.binarize == "dynamic":
            valid = (torch.rand(valid.shape, generator=gen) < valid).to(valid.dtype)
        return replace(self, train=self.train[order[held:].sort().values], valid=valid)

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
