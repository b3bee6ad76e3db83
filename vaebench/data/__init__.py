"""Data sets: the embedded digits, IDX files (Fashion-MNIST, MNIST), a synthetic set with exact log p(x), the
Gaussian toy of Rainforth et al. 2018, and yours.

:func:`load_dataset` is the entry point; see :mod:`vaebench.data.datasets` for the built-in sets and their
preprocessing, :mod:`vaebench.data.dataset` for the loaded `Dataset` and its batches, :mod:`vaebench.data.idx`
for the IDX format, :mod:`vaebench.data.synthetic` for the linear-Gaussian truth,
:mod:`vaebench.data.gaussian_toy` for the toy's points, :mod:`vaebench.data.files` for data files of your own
(.npz, .npy, .csv) and :mod:`vaebench.data.custom` for plugins' data sets.
"""

from vaebench.data.custom import DATASET_PLUGINS, tensor_digest
from vaebench.data.dataset import Dataset, batches
from vaebench.data.datasets import (
    BINARIZE_MODES,
    DATASETS,
    DIGITS_N_TRAIN,
    load_dataset,
    register_dataset,
    unregister_dataset,
)
from vaebench.data.files import FILE_SUFFIXES, is_data_file, read_file
from vaebench.data.idx import DEBIAN_FASHION_MNIST, find_idx_dir, read_idx
from vaebench.data.synthetic import LinearGaussianTruth

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
    "register_dataset",
    "tensor_digest",
    "unregister_dataset",
]
