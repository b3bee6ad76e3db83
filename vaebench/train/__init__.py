"""Training: the one step, the one loop every estimator is trained with, what it records, and its evaluation.

- :mod:`~vaebench.train.step`: one training step (surrogate, backward, optimizer step) and the divergence test;
- :mod:`~vaebench.train.spec`: :class:`TrainSpec`, how a run trains (length, batches, optimizer, evaluation);
- :mod:`~vaebench.train.loop`: :func:`train`, the loop, and its :class:`TrainResult`;
- :mod:`~vaebench.train.recording`: the history rows, the cost counters and the kept states;
- :mod:`~vaebench.train.evaluation`: the test ELBO and the importance-sampled test log-likelihood;
- :mod:`~vaebench.train.checkpoints`: a run's whole state saved and restored, so a preempted run resumes.

``train(model, Setting("stl", 10), dataset, TrainSpec(steps=500))`` trains a model with the STL estimator at
K = 10; the suite runs every training unit through it.
"""

from vaebench.train.checkpoints import Checkpointer
from vaebench.train.evaluation import (
    DEFAULT_EVAL_SAMPLES,
    DEFAULT_LL_SAMPLES,
    estimate_log_likelihood,
    evaluate_elbo,
)
from vaebench.train.loop import HISTORY_COLUMNS, TrainResult, train
from vaebench.train.spec import BUDGET_KEYS, DIVERGENCE_BOUND, TrainSpec
from vaebench.train.step import out_of_bounds, surrogate_of, training_step

__all__ = [
    "BUDGET_KEYS",
    "DEFAULT_EVAL_SAMPLES",
    "DEFAULT_LL_SAMPLES",
    "DIVERGENCE_BOUND",
    "HISTORY_COLUMNS",
    "Checkpointer",
    "TrainResult",
    "TrainSpec",
    "estimate_log_likelihood",
    "evaluate_elbo",
    "out_of_bounds",
    "surrogate_of",
    "train",
    "training_step",
]
