"""A problem: the named bundle of data, model (likelihood included), training budget and figures of merit.

An estimator's ranking on one model need not transfer to another; a :class:`Problem` is one of the models a
ranking is asked to hold across. It is a value: nothing is loaded or built until :meth:`Problem.load` and
:meth:`Problem.build` are called, so a registry of problems costs nothing to import.

Figures of merit (`FIGURES`): the amortised VAEs are judged by the test ELBO and the importance-sampled test
log-likelihood (Burda et al. 2015), as the suite's runs always were; a global-latent model by the ELBO on the
full training data (its objective), the held-out predictive log-likelihood where there is a test split, the
gap to log Z where log Z is known, and the Pareto k̂ of q as an importance proposal for the posterior (Yao,
Vehtari, Simpson & Gelman 2018, "Yes, but did it work?": k̂ < 0.5 says importance sampling from q is
reliable, k̂ > 0.7 that q misses the posterior's tails). Each problem names the one figure that ranks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from vaebench.data import Dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, make_estimator

FIGURES: dict[str, tuple[str, bool]] = {
    "test_elbo": ("ELBO per test point (the amortised encoder on unseen data)", True),
    "test_log_likelihood": ("importance-sampled log p(x) per test point (Burda et al. 2015)", True),
    "elbo": ("ELBO of the full training data, the objective of a global-latent model", True),
    "predictive_log_likelihood": ("log E_q[p(y | x, w)] per held-out point", True),
    "gap_to_log_z": ("log Z - ELBO = KL(q ‖ p(z | x)), where log Z is known", False),
    "khat": ("Pareto k̂ of q as importance proposal for the posterior (< 0.5 reliable, > 0.7 not)", False),
}
"""Every figure of merit a problem may name: figure -> (what it is, whether higher is better)."""


@dataclass(frozen=True)
class Budget:
    """How a problem is trained: Adam steps, the minibatch (0: the whole training set) and the step size.

    Attributes:
        steps: optimizer steps per run.
        batch_size: rows per minibatch; 0 takes the whole training set every step (no minibatch noise).
        lr: the first step's size.
        lr_schedule: ``"constant"`` or ``"cosine"`` (decays to 0 at the last step).
    """

    steps: int
    batch_size: int
    lr: float
    lr_schedule: str = "cosine"

    def __post_init__(self) -> None:
        for name, value, low in (("steps", self.steps, 1), ("batch_size", self.batch_size, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise VaebenchError(f"a problem's budget needs {name} an integer >= {low}, got {value!r}")
        if not isinstance(self.lr, int | float) or not self.lr > 0:
            raise VaebenchError(f"a problem's budget needs lr > 0, got {self.lr!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise VaebenchError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")


@dataclass(frozen=True)
class Problem:
    """A named problem.

    Attributes:
        name: its registry name (letters, digits, ``.``, ``_``, ``+``, ``-``).
        description: what it is, and which figure ranks it and why.
        data: () -> the :class:`~vaebench.data.Dataset` (called by :meth:`load`).
        model: (dataset, seed) -> the model at its initialisation (called by :meth:`build`); it keeps the
            estimator contract, with local latents ([B, Z]) or global ones ([1, Z], ``global_latents = True``).
        budget: the :class:`Budget` of its training runs.
        figures: the figures of merit reported (keys of `FIGURES`), in order.
        ranked_by: the one of ``figures`` that ranks estimators on it.
        global_latents: whether z is shared by the whole data set (see :mod:`vaebench.problems.variational`).
        requires: () -> "" when its data can be loaded here, else why not and how to get them (a problem
            whose data are not installed is skipped with that line, never failed).
        estimators: the only estimators a run across problems trains on it, when its cost allows no more
            (empty: every one the run names); a run says which it left out, and why (``limit``).
        limit: why ``estimators`` limits it (said in the run's notes).
    """

    name: str
    description: str
    data: Callable[[], Dataset]
    model: Callable[[Dataset, int], nn.Module]
    budget: Budget
    figures: tuple[str, ...]
    ranked_by: str
    global_latents: bool = False
    requires: Callable[[], str] = field(default=lambda: "")
    estimators: tuple[str, ...] = ()
    limit: str = ""

    def __post_init__(self) -> None:
        unknown = [f for f in self.figures if f not in FIGURES]
        if unknown:
            raise VaebenchError(
                f"problem {self.name!r}: unknown figure(s) {', '.join(unknown)}; valid: {', '.join(FIGURES)}"
            )
        if self.ranked_by not in self.figures:
            raise VaebenchError(
                f"problem {self.name!r} is ranked by {self.ranked_by!r}, which is not one of its figures "
                f"({', '.join(self.figures)})"
            )

    @property
    def higher_is_better(self) -> bool:
        """Whether a higher ``ranked_by`` figure is better."""
        return FIGURES[self.ranked_by][1]

    def unavailable(self) -> str:
        """ "" when the problem can run here, else why not (its data are missing, and how to install them)."""
        return self.requires()

    def load(self) -> Dataset:
        """Its data set (raises a clear error when :meth:`unavailable` says why it cannot)."""
        why = self.unavailable()
        if why:
            raise VaebenchError(f"problem {self.name!r} cannot run here: {why}")
        return self.data()

    def build(self, dataset: Dataset, seed: int = 0) -> nn.Module:
        """Its model for ``dataset`` at initialisation seed ``seed``."""
        return self.model(dataset, seed)

    def unsupported(self, estimator: str, num_samples: int) -> str:
        """Why the registered ``estimator`` cannot run on this problem at K = ``num_samples`` ("" if it can).

        On global latents: an estimator that declares ``local_only`` (an amortised baseline), and, when the
        budget subsamples (``batch_size`` > 0), one whose encoder target at this K is not the ELBO: IWAE_K and
        its kin of a minibatch-scaled joint do not average to the full data's (see
        :mod:`vaebench.problems.variational`).
        """
        if estimator not in ESTIMATORS:
            raise VaebenchError(f"unknown estimator {estimator!r}; valid names: {', '.join(ESTIMATORS)}")
        if not self.global_latents:
            return ""
        cls = ESTIMATORS[estimator]
        if cls.local_only:
            return f"{estimator} cannot run on {self.name}'s global latents: {cls.local_only}"
        target = make_estimator(estimator).target(max(num_samples, cls.min_samples)).encoder
        if self.budget.batch_size and target.name != "elbo":
            return (
                f"{estimator} at K={num_samples} targets {target}, which is not linear in log p: on minibatches "
                f"of {self.name}'s global latents it is not the full data's {target} (use K=1, or batch_size 0)"
            )
        return ""
