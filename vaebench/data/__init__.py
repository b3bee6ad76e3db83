"""Data sets: the embedded digits, IDX files (Fashion-MNIST, MNIST), a synthetic set with exact log p(x), the
Gaussian toy of Rainforth et al. 2018, and yours.

:func:`load_dataset` is the entry point; see :mod:`vaebench.data.datasets` for the built-in sets and their
preprocessing, :mod:`vaebench.data.dataset` for the loaded `Dataset` and its batches, :mod:`vaebench.data.idx`
for the IDX format, :mod:`vaebench.data.synthetic` for the linear-Gaussian truth,
:mod:`vaebench.data.gaussian_toy` for the toy's points, :mod:`vaebench.data.arrays` for data files of your own
(.npz, .npy, .csv) and plugins' data sets (:mod:`vaebench.data.custom`; their registry and checks are
:mod:`vaebench.plugins.data_sets`).
"""

from vaebench.data.arrays import FILE_SUFFIXES, is_data_file, read_file
from vaebench.data.dataset import Dataset, batches
from vaebench.data.datasets import (
    BINARIZE_MODES,
    DATASETS,
    DIGITS_N_TRAIN,
    load_dataset,
)
from vaebench.data.idx import DEBIAN_FASHION_MNIST, find_idx_dir, read_idx
from vaebench.data.synthetic import LinearGaussianTruth
from vaebench.plugins.data_sets import DATASET_PLUGINS  # the data sets plugins add, beside DATASETS

__all__ = [
    "BINARIZE_MODES",
    "DATASETS",
    "DATASET_PLUGINS",
    "DEBIAN_FASHION_MNIST",
    "DIGITS_N_TRAIN",
    "FILE_SUFFIXES",
    "Dataset",
    "LinearGaussianTruth",
    "batches",
    "find_idx_dir",
    "is_data_file",
    "load_dataset",
    "read_file",
    "read_idx",
]
