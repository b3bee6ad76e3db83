"""Data sets: the embedded digits, IDX files (Fashion-MNIST, MNIST), a synthetic set with exact log p(x), and
the Gaussian toy of Rainforth et al. 2018.

:func:`load_dataset` is the entry point; see :mod:`vaebench.data.datasets` for preprocessing and batching,
:mod:`vaebench.data.idx` for the file format, :mod:`vaebench.data.synthetic` for the linear-Gaussian truth,
:mod:`vaebench.data.gaussian_toy` for the toy's points.
"""

from vaebench.data.datasets import (
    BINARIZE_MODES,
    DATASETS,
    DIGITS_N_TRAIN,
    Dataset,
    batches,
    load_dataset,
)
from vaebench.data.idx import DEBIAN_FASHION_MNIST, find_idx_dir, read_idx
from vaebench.data.synthetic import LinearGaussianTruth

__all__ = [
    "BINARIZE_MODES",
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "DIGITS_N_TRAIN",
    "Dataset",
    "LinearGaussianTruth",
    "batches",
    "find_idx_dir",
    "load_dataset",
    "read_idx",
]
