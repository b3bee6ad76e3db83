"""Training: the one step, the one loop every estimator is trained with, what it records, and its evaluation.

- :mod:`~vaebench.train.step`: one training step (surrogate, backward, optimizer step) and the divergence test;
- :mod:`~vaebench.train.spec`: :class:`TrainSpec`, how a run trains (length, batches, optimizer, evaluation);
- :mod:`~vaebench.train.loop`: :func:`train`, the loop, and its :class:`TrainResult`;
- :mod:`~vaebench.train.recording`: the history rows, the cost counters and the kept states;
- :mod:`~vaebench.train.evaluation`: the test ELBO and the importance-sampled test log-likelihood;
- :mod:`~vaebench.train.checkpoints`: a run's whole state saved and restored, so a preempted run resumes;
- :mod:`~vaebench.train.run`: the loop itself, over one seed's program (:mod:`~vaebench.train.program`) or
  S seeds' (:mod:`~vaebench.train.seeds`, :func:`train_seeds`: the seeds of a setting as one program, with
  what lets them stack in :mod:`~vaebench.train.stacking`, the models' batched forms in
  :mod:`~vaebench.train.stacked_model`);
- :mod:`~vaebench.train.divergence`: the divergence check latched on the device and read every N steps;
- :mod:`~vaebench.train.compiled`: the step under ``torch.compile``, its noise drawn outside.

``train(model, Setting("stl", 10), dataset, TrainSpec(steps=500))`` trains a model with the STL estimator at
K = 10; the suite runs every training unit through it. ``train_seeds([model(s) for s in seeds], setting,
dataset, spec, seeds=seeds)`` trains the seeds of one setting together, each result equal to its own run's.
"""

from vaebench.train.checkpoints import Checkpointer
from vaebench.train.evaluation import (
    DEFAULT_EVAL_SAMPLES,
    DEFAULT_LL_SAMPLES,
    estimate_log_likelihood,
    evaluate_elbo,
)
from vaebench.train.loop import HISTORY_COLUMNS, TrainResult, train
from vaebench.train.seeds import NotStackable, StackedProgram, train_seeds
from vaebench.train.spec import BUDGET_KEYS, DIVERGENCE_BOUND, TrainSpec
from vaebench.train.stacking import STACKED_FORMS, stacking_problem
from vaebench.train.step import out_of_bounds, surrogate_of, training_step

__all__ = [
    "BUDGET_KEYS",
    "DEFAULT_EVAL_SAMPLES",
    "DEFAULT_LL_SAMPLES",
    "DIVERGENCE_BOUND",
    "HISTORY_COLUMNS",
    "STACKED_FORMS",
    "Checkpointer",
    "NotStackable",
    "StackedProgram",
    "TrainResult",
    "TrainSpec",
    "estimate_log_likelihood",
    "evaluate_elbo",
    "out_of_bounds",
    "stacking_problem",
    "surrogate_of",
    "train",
    "train_seeds",
    "training_step",
]
