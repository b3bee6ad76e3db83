"""Which minibatch a variance measurement is taken on, and which others a stateful estimator is warmed up on.

Seed s of a run measures every setting on the same minibatch: the first of ``data.batches(B, seed=s)``, so
estimators are compared on equal footing. A stateful estimator (a moving-average or a learned baseline) is
first warmed up at the measured parameters on the next `WARM_UP_BATCHES` minibatches of that epoch, never on
the measured one: a baseline fitted on the measured batch learns that batch's f and makes the measured
variance look far lower than in training, where each batch is new (at the end of the default digits run,
K = 1: NVIL's encoder variance 921 with b(x) fitted on the measured batch, 20,498 fitted on others).
"""

from __future__ import annotations

from torch import Tensor

from vaebench.errors import VaebenchError

WARM_UP_BATCHES = 10
"""Minibatches, other than the measured one, that each stateful estimator is warmed up on (at most)."""


def measured_minibatch(dataset, batch_size: int, seed: int) -> Tensor:
    """The minibatch [B, D] that every setting of seed ``seed`` is measured on."""
    return next(iter(dataset.batches(batch_size, seed=seed)))


def warm_up_minibatches(dataset, batch_size: int, seed: int) -> list[Tensor]:
    """Up to `WARM_UP_BATCHES` minibatches of seed ``seed``'s epoch other than the measured one.

    Raises:
        VaebenchError: the training set holds only the measured minibatch.
    """
    batches = iter(dataset.batches(batch_size, seed=seed))
    next(batches)  # the measured one; the rest of the epoch holds other rows
    out = [b for _, b in zip(range(WARM_UP_BATCHES), batches, strict=False)]
    if not out:
        raise VaebenchError(
            f"the training set holds one minibatch of {batch_size}, so there is none other than the measured "
            "one to warm stateful estimators up on; use a smaller variance batch_size"
        )
    return out
