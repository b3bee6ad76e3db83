"""The data sets of the global-latent problems, as :class:`~vaebench.data.Dataset` rows.

A row holds everything one datapoint contributes to the likelihood, so minibatches are rows as for the VAEs:

- ``breast-cancer``: scikit-learn's Wisconsin diagnostic breast cancer set (569 x 30, shipped with the
  package, offline), split 80 / 20 by a fixed permutation (stream ``problems.split``, seed 0, the same for every
  run), each feature standardised by the training rows' mean and standard deviation; a row is the 30 features
  then the label (1: malignant);
- ``eight-schools``: the 8 published (y_j, σ_j) pairs (:data:`~vaebench.problems.models.EIGHT_SCHOOLS`); a row is
  (j, y_j, σ_j), so a school's θ̃_j is found whatever the minibatch; train and test are the same 8 rows;
- ``funnel``: a density without data: one empty row [1, 0].
"""

from __future__ import annotations

import numpy as np
import torch

from vaebench import rng
from vaebench.data import Dataset
from vaebench.problems.models import EIGHT_SCHOOLS

BREAST_CANCER_TEST_FRACTION = 0.2
"""The held-out share of the breast-cancer rows (114 of 569)."""


def _dataset(name: str, train: torch.Tensor, test: torch.Tensor, likelihood: str, source: str) -> Dataset:
    return Dataset(
        name=name,
        train=train,
        test=test,
        image_shape=None,
        likelihood=likelihood,
        binarize=None,
        dequantize=False,
        levels=None,
        seed=0,
        source=source,
    )


def breast_cancer() -> Dataset:
    """The standardised breast-cancer rows: train [455, 31] and test [114, 31] (30 features, then the label)."""
    from sklearn.datasets import load_breast_cancer  # over a second to import: only when this set is loaded

    raw = load_breast_cancer()
    features = raw.data.astype(np.float64)
    label = (raw.target == 0).astype(np.float64)  # scikit-learn codes malignant as 0
    order = rng.numpy_generator(0, "problems.split").permutation(len(label))
    n_test = round(BREAST_CANCER_TEST_FRACTION * len(label))
    test, train = order[:n_test], order[n_test:]
    mean, sd = features[train].mean(0), features[train].std(0)
    rows = np.column_stack([(features - mean) / sd, label]).astype(np.float32)
    return _dataset(
        "breast-cancer",
        torch.from_numpy(rows[train]),
        torch.from_numpy(rows[test]),
        "bernoulli",
        "scikit-learn load_breast_cancer (UCI Wisconsin diagnostic breast cancer), standardised on the train split",
    )


def eight_schools() -> Dataset:
    """The eight schools' rows (j, y_j, σ_j) [8, 3], as train and as test."""
    rows = torch.tensor([(j, y, s) for j, (y, s) in enumerate(EIGHT_SCHOOLS)], dtype=torch.float32)
    return _dataset(
        "eight-schools", rows, rows.clone(), "gaussian", "Rubin 1981; Gelman et al., BDA3 Table 5.2"
    )


def no_data() -> Dataset:
    """One empty row [1, 0], the data of a target density such as the funnel."""
    empty = torch.zeros(1, 0)
    return _dataset("funnel", empty, empty.clone(), "gaussian", "none: a normalised density")
