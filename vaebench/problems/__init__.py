"""Problems: named bundles of data, model, training budget and figures of merit, and the global-latent models.

A ranking of gradient estimators on one model need not hold on another; the problems are the models a ranking
is asked to transfer across. :mod:`~vaebench.problems.problem` defines a :class:`Problem` and its
:class:`Budget`; :mod:`~vaebench.problems.builtin` holds the built-ins and a user's own (entry-point group
``vaebench.problems``); :mod:`~vaebench.problems.variational` states the contract of a model with *global*
latents (one z for the whole data set, q of batch shape [1, Z], a minibatch-scaled joint [K, 1]), and
:mod:`~vaebench.problems.models` and :mod:`~vaebench.problems.data` build them: Bayesian linear regression
(conjugate, exact), Bayesian logistic regression, the non-centred eight schools and Neal's funnel.
"""

from vaebench.problems.builtin import (
    BUILTIN_PROBLEMS,
    GROUP,
    PROBLEMS,
    get_problem,
    load_installed_problems,
    register_problem,
    unregister_problem,
)
from vaebench.problems.models import (
    EIGHT_SCHOOLS,
    ConjugateLinearRegression,
    EightSchools,
    Funnel,
    LogisticRegression,
)
from vaebench.problems.problem import FIGURES, Budget, Problem
from vaebench.problems.variational import GlobalLatents

__all__ = [
    "BUILTIN_PROBLEMS",
    "EIGHT_SCHOOLS",
    "FIGURES",
    "GROUP",
    "PROBLEMS",
    "Budget",
    "ConjugateLinearRegression",
    "EightSchools",
    "Funnel",
    "GlobalLatents",
    "LogisticRegression",
    "Problem",
    "get_problem",
    "load_installed_problems",
    "register_problem",
    "unregister_problem",
]
