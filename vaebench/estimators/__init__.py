r"""Gradient estimators for variational inference, behind one contract.

The objective. For data x, encoder q_φ(z|x) and model p_θ(x, z), with f(z) = log p_θ(x, z) - log q_φ(z|x):

    ELBO(θ, φ) = E_{q_φ(z|x)}[f(z)]                                  (objective "elbo")
    IWAE_K     = E_{z_1..K ~ q}[log (1/K) Σ_k exp f(z_k)]            (objective "iwae", Burda et al. 2015)

and, built from the same log-weights log w_k = f(z_k), the objective labels of `OBJECTIVES`:

- ``"iwae-subsets"``: IWAE_m from K >= m draws, the U-statistic over their m-subsets (``iwae`` and ``dreg``
  with ``subsets=m``; Burroni et al. 2023);
- ``"renyi"``: the K-sample variational Rényi bound E[(1-α)^-1 log (1/K) Σ_k w_k^(1-α)] at the estimator's α
  (``renyi``, ``renyi-dreg``; Li & Turner 2016);
- ``"ciwae"``: β ELBO + (1 - β) IWAE_K (Rainforth et al. 2018);
- ``"piwae"``: θ by IWAE_{M·K}, φ by MIWAE(M, K), whose mean is IWAE_K (Rainforth et al. 2018; ``miwae``,
  whose target is IWAE_K in both groups, is labelled ``"iwae"``);
- ``"inclusive-kl"``: θ by IWAE_K, φ by -KL(p(z|x) || q(z|x)), the wake phase of reweighted wake-sleep
  (``rws``, ``rws-dreg``; Bornschein & Bengio 2015);
- ``"tail-adaptive"``: θ by the ELBO, φ by the tail-adaptive f-divergence of Wang, Liu & Liu 2018, which has
  no fixed value; it is compared with the ELBO gradient;
- ``"tvo"``: the thermodynamic variational objective, the left Riemann sum of ∫_0^1 E_{π_β}[log w] dβ over a
  partition of [0, 1], π_β ∝ q^(1-β) p^β (``tvo``; Masrani, Le & Wood 2019);
- ``"uha"``: the importance-weighted bound of an extended proposal that moves each z_k ~ q by L uncorrected
  underdamped Langevin steps along an annealing path (``uha``; Geffner & Domke 2021, Zhang et al. 2021).

What exactly an estimator's gradient targets, per parameter group and with its K, α or β, is
``est.target(K)`` (a :class:`Target` of two :class:`Bound`\ s); the verification and the variance measure's
baseline gradient read it. The measure-valued derivative (``mvd``, objective ``"elbo"``) is the third family
of Mohamed et al. 2020's survey: differences of f at points drawn from the two parts of ∂q/∂φ, no derivative
of f (:mod:`~vaebench.estimators.measure_valued`).

The gradient in θ is pathwise for every estimator (the sampling of z does not depend on θ). The estimators
differ in how they handle ∇_φ, where q_φ is also the sampling distribution:

    pathwise (reparameterization): z = μ_φ + σ_φ ⊙ ε, ε ~ N(0, I),   ∇_φ E_q[f] = E_ε[∇_φ f(μ_φ + σ_φ ⊙ ε)]
    score function (REINFORCE):    ∇_φ E_q[f] = E_q[(f(z) - b) ∇_φ log q_φ(z|x)] + E_q[∇_φ f(z)]|_z fixed

where any baseline b independent of z leaves the score-function form unbiased (E_q[∇_φ log q] = 0). The last
term is E_q[-∇_φ log q_φ(z|x)] = 0: it changes no expectation, but it acts like shifting the baseline by one
nat and often costs variance, so the score-function estimators drop it by default, as black-box VI does
(Ranganath, Gerrish & Blei 2014; Pyro's ``TraceGraph_ELBO``); ``score_term=True`` keeps it (see
:class:`~vaebench.estimators.score_function.Reinforce` for when each is better).

The contract. ``est = make_estimator(name, **options)``; then ``out = est(model, x, num_samples=K)`` with
x [B, D] returns an :class:`EstimatorOutput`:

- ``out.surrogate``: a scalar whose *value* is the negative batch-mean objective estimate and whose
  *gradient* (``out.surrogate.backward()``) is this estimator's estimate of that quantity's gradient. It is
  built as ``-(objective + (s - s.detach()))`` (the trick of Pyro's ``Trace_ELBO.differentiable_loss``), so
  loss curves stay honest whatever the gradient estimator;
- ``out.elbo``: the detached per-datapoint objective estimate [B];
- ``out.objective``: the objective label (also ``est.objective``), so no table mixes objectives silently.

Estimators talk to the model only through ``posterior(x)`` (a ``Normal`` with batch shape [B, Z]) and
``log_joint(x, z)`` ([K, B, Z] -> [K, B]); the closed-form-KL estimator also uses ``prior()`` and
``log_likelihood(x, z)``. A model with *global* latents (one z for the whole data set, ``model.global_latents``)
keeps the same methods with B = 1: ``posterior(x)`` [1, Z] and ``log_joint(x, z)`` [K, 1, Z] -> [K, 1], the
minibatch's log-likelihood scaled by N / B (:mod:`vaebench.problems.variational`); an estimator that cannot
run on one says why in ``local_only``. Every estimator is vectorised over the K samples. Randomness comes from the optional
``generator`` argument (a ``torch.Generator`` on x's device), or torch's global generator when it is ``None``;
an estimator draws its noise through :meth:`Estimator.sample`, which also takes the noise ε [K, B, Z] itself in
place of a generator (drawn beforehand: a compiled training step, or seeds trained as one program).

Samplers. Every estimator draws z = μ + σ ⊙ ε; ``make_estimator(name, sampler=...)`` chooses how the K draws
of ε are made: ``"iid"`` (the default), ``"antithetic"`` (pairs ε, -ε; even K) or ``"rqmc"`` (scrambled Sobol
points, a fresh scramble per datapoint and call), see :mod:`vaebench.estimators.sampling`. An estimator lists
the samplers that keep it unbiased in ``samplers``; asking for another is an error that says why.

Each class declares what it is: ``objective``, ``family`` (``"pathwise"``: the encoder gradient flows through
the sample z; ``"score-function"``: through ∇ log q; ``"measure-valued"``: through differences of f),
``min_samples``, ``samplers``, and ``bias`` (empty for the unbiased ones, else when and how it is biased for
its target, and :meth:`Estimator.biased_at` says at which K: ``iwae-stl`` and ``tail-adaptive`` for K > 1,
``rws`` and ``rws-dreg`` at every K; the reports mark them).

Stateful estimators (moving averages, learned baselines) are ``nn.Module``\ s: optimise their parameters with
the model's, call :meth:`Estimator.prepare` with a batch before building the optimizer (it builds learned
parts and sets running statistics from that batch with the estimator's own noise; an estimator called without
it prepares itself on the first call's batch), and note that their running statistics update only in training
mode (``est.train()``) so that measuring them (``est.eval()``) does not change them. An estimator may rescale
its encoder gradient by a known positive scalar (an adaptive step size, as NVIL's variance normalisation
does; VarGrad's factor 2); it reports that factor as ``encoder_scale``.

The modules: :mod:`~vaebench.estimators.base` (the contract's classes and shared helpers),
:mod:`~vaebench.estimators.sampling` (the samplers), :mod:`~vaebench.estimators.pathwise`,
:mod:`~vaebench.estimators.score_function`, :mod:`~vaebench.estimators.measure_valued`, the log-weight
family in :mod:`~vaebench.estimators.importance_weighted` (IWAE_K, its U-statistics),
:mod:`~vaebench.estimators.renyi`, :mod:`~vaebench.estimators.iwae_variants` (MIWAE, CIWAE, PIWAE) and
:mod:`~vaebench.estimators.inclusive` (wake-sleep, tail-adaptive), :mod:`~vaebench.estimators.ovis` (OVIS's
control variates), :mod:`~vaebench.estimators.thermodynamic` (TVO), :mod:`~vaebench.estimators.quadratic`
(the quadratic control variate), :mod:`~vaebench.estimators.annealed` (UHA), and the registry here. To add an estimator: subclass :class:`Estimator` in the module of its family, implement ``estimate``,
give it a docstring with its gradient formula and citation, and add one line to ``ESTIMATORS`` below; the CLI
choices and the test parametrization read that dict. An estimator of your own, in your own package, keeps the
same contract (:mod:`~vaebench.estimators.contract` checks it) and is added to that dict by :func:`register`
when its plugin is loaded (:mod:`vaebench.plugins.registry`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass

from vaebench.errors import VaebenchError
from vaebench.estimators import contract
from vaebench.estimators.annealed import UHA
from vaebench.estimators.base import (
    BOUNDS,
    ELBO,
    FAMILIES,
    Bound,
    Estimator,
    EstimatorOutput,
    Target,
    check_flag,
    check_num_samples,
    check_real,
    independent_objective,
    log_density,
    sample_posterior,
    sampler_problem,
    stop_gradient,
)
from vaebench.estimators.contract import OBJECTIVES
from vaebench.estimators.importance_weighted import (
    IWAE,
    IWAESTL,
    MAX_SUBSETS,
    VIMCO,
    DReG,
    leave_one_out_bounds,
    subset_index,
    subset_weights,
)
from vaebench.estimators.inclusive import ReweightedWakeSleep, TailAdaptive, WakeSleepDReG
from vaebench.estimators.iwae_variants import CIWAE, MIWAE, PIWAE
from vaebench.estimators.measure_valued import MVD_NORMALS, MeasureValued, mvd_points
from vaebench.estimators.ovis import OVISAsymptotic, OVISMonteCarlo
from vaebench.estimators.pathwise import (
    Reparam,
    ReparamAnalyticKL,
    ReparamCV,
    StickingTheLanding,
    taylor_terms,
)
from vaebench.estimators.quadratic import QuadraticCV
from vaebench.estimators.renyi import Renyi, RenyiDReG, renyi_bound
from vaebench.estimators.sampling import (
    SAMPLERS,
    NoiseSource,
    check_sampler,
    scrambled_sobol,
    standard_normal,
)
from vaebench.estimators.score_function import (
    Reinforce,
    ReinforceLeaveOneOut,
    ReinforceMovingAverage,
    ReinforceNVIL,
    VarGrad,
)
from vaebench.estimators.thermodynamic import TVO

__all__ = [
    "BOUNDS",
    "BUILTIN_ESTIMATORS",
    "CIWAE",
    "ELBO",
    "ESTIMATORS",
    "FAMILIES",
    "IWAE",
    "IWAESTL",
    "MAX_SUBSETS",
    "MIWAE",
    "MVD_NORMALS",
    "OBJECTIVES",
    "PIWAE",
    "SAMPLERS",
    "TVO",
    "UHA",
    "VIMCO",
    "Bound",
    "DReG",
    "Estimator",
    "EstimatorOutput",
    "MeasureValued",
    "NoiseSource",
    "OVISAsymptotic",
    "OVISMonteCarlo",
    "QuadraticCV",
    "Reinforce",
    "ReinforceLeaveOneOut",
    "ReinforceMovingAverage",
    "ReinforceNVIL",
    "Renyi",
    "RenyiDReG",
    "Reparam",
    "ReparamAnalyticKL",
    "ReparamCV",
    "ReweightedWakeSleep",
    "Setting",
    "StickingTheLanding",
    "TailAdaptive",
    "Target",
    "VarGrad",
    "WakeSleepDReG",
    "check_flag",
    "check_num_samples",
    "check_real",
    "check_sampler",
    "independent_objective",
    "leave_one_out_bounds",
    "log_density",
    "make_estimator",
    "mvd_points",
    "register",
    "renyi_bound",
    "runnable",
    "sample_posterior",
    "sampler_problem",
    "scrambled_sobol",
    "standard_normal",
    "stop_gradient",
    "subset_index",
    "subset_weights",
    "taylor_terms",
    "unregister",
    "unsupported",
]

ESTIMATORS: dict[str, type[Estimator]] = {
    "reparam": Reparam,
    "reparam-analytic-kl": ReparamAnalyticKL,
    "stl": StickingTheLanding,
    "reinforce": Reinforce,
    "reinforce-ma": ReinforceMovingAverage,
    "reinforce-loo": ReinforceLeaveOneOut,
    "reinforce-nvil": ReinforceNVIL,
    "iwae": IWAE,
    "dreg": DReG,
    "reparam-cv": ReparamCV,
    "vargrad": VarGrad,
    "iwae-stl": IWAESTL,
    "vimco": VIMCO,
    "mvd": MeasureValued,
    "renyi": Renyi,
    "renyi-dreg": RenyiDReG,
    "rws": ReweightedWakeSleep,
    "rws-dreg": WakeSleepDReG,
    "tail-adaptive": TailAdaptive,
    "miwae": MIWAE,
    "ciwae": CIWAE,
    "piwae": PIWAE,
    "tvo": TVO,
    "ovis-mc": OVISMonteCarlo,
    "ovis-gamma": OVISAsymptotic,
    "quadratic-cv": QuadraticCV,
    "uha": UHA,
}


def make_estimator(name: str, **options) -> Estimator:
    """Build a registered estimator by name.

    Args:
        name: a key of :data:`ESTIMATORS`.
        **options: the estimator's own options (e.g. ``decay`` for ``reinforce-ma``, ``score_term`` for the
            REINFORCE family, ``sampler`` for every estimator).

    Raises:
        VaebenchError: unknown name (the message lists the valid ones), an option it does not take, or a
            sampler that would bias it (the message says why).
    """
    if name not in ESTIMATORS:
        raise VaebenchError(f"unknown estimator {name!r}; valid names: {', '.join(ESTIMATORS)}")
    cls = ESTIMATORS[name]
    accepted = options_of(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) if accepted else "no options"
        raise VaebenchError(
            f"estimator {name!r} got unknown option(s) {', '.join(unknown)}; it takes: {takes}"
        )
    problem = sampler_problem(cls, options.get("sampler", "iid"), f"estimator {name!r}")
    if problem:
        raise VaebenchError(problem)
    estimator = cls(**options)
    estimator.name = name
    return estimator


def options_of(cls: type[Estimator]) -> list[str]:
    """The option names an estimator class takes (its constructor's keyword parameters)."""
    return [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)  # nn.Module's *args, **kwargs
    ]


def unsupported(name: str, num_samples: int, sampler: str = "iid") -> str:
    """Why the registered estimator ``name`` cannot run at K = ``num_samples`` with ``sampler`` ("" if it can).

    The one rule the planners share: K below the estimator's minimum, a sampler that would bias it, or an
    odd K for antithetic pairs.
    """
    cls = ESTIMATORS[name]
    if num_samples < cls.min_samples:
        return f"{name} needs K >= {cls.min_samples}"
    problem = sampler_problem(cls, sampler, name)
    if problem:
        return problem
    if sampler == "antithetic" and num_samples % 2:
        return f"sampler 'antithetic' needs an even K, got K={num_samples}"
    return ""


@dataclass(frozen=True)
class Setting:
    """One setting of the suite: a registered estimator with its sampler at one K, checked once, here.

    Building a `Setting` is where the suite's route checks that the estimator exists and can run at this K
    with this sampler (:func:`unsupported`); nothing the setting is passed to checks it again, and the
    estimator it builds trusts that K (`Estimator.checked_samples`). An estimator built otherwise checks its
    K and sampler at every call: the contract's guard for library callers.

    Attributes:
        estimator: a key of `ESTIMATORS`.
        num_samples: K, latent samples per datapoint.
        sampler: how the K draws are made, a key of `SAMPLERS`.

    Raises:
        VaebenchError: an unknown estimator or sampler, a K the estimator cannot take, an odd K for
            antithetic pairs (the message says which and why).
    """

    estimator: str
    num_samples: int
    sampler: str = "iid"

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise VaebenchError(f"unknown estimator {self.estimator!r}; valid names: {', '.join(ESTIMATORS)}")
        problem = unsupported(self.estimator, check_num_samples(self.num_samples), self.sampler)
        if problem:
            raise VaebenchError(problem)

    @property
    def name(self) -> str:
        """The estimator's part of a unit name: the estimator for iid draws, else ``estimator@sampler``."""
        return self.estimator if self.sampler == "iid" else f"{self.estimator}@{self.sampler}"

    @property
    def label(self) -> str:
        """``<name>-K<k>``, e.g. ``reparam-K10`` or ``stl@rqmc-K16``."""
        return f"{self.name}-K{self.num_samples}"

    @property
    def kind(self) -> type[Estimator]:
        """The estimator's class (its declarations: objective, family, bias, ...)."""
        return ESTIMATORS[self.estimator]

    def build(self, **options) -> Estimator:
        """A fresh estimator of this setting (``options``: the estimator's own, e.g. ``seed``)."""
        if (
            self.sampler != "iid"
        ):  # iid is every estimator's default (and the only one some user classes know)
            options["sampler"] = self.sampler
        estimator = make_estimator(self.estimator, **options)
        estimator.checked_samples = self.num_samples
        return estimator


def runnable(
    estimators: Iterable[str], samples: Iterable[int], samplers: Iterable[str] = ("iid",)
) -> list[Setting]:
    """The settings of a grid that can run, in the order estimator, sampler, K.

    The one place that applies `unsupported` to a grid: the suite's plan, the configuration's notes and the
    verification all read it, so "skip K below the estimator's minimum" is written once.
    """
    samples, samplers = list(samples), list(samplers)
    return [
        Setting(name, k, sampler)
        for name in estimators
        for sampler in samplers
        for k in samples
        if not unsupported(name, k, sampler)
    ]


# ------------------------------------------------------------------------------------------------ plugins

BUILTIN_ESTIMATORS: tuple[str, ...] = tuple(ESTIMATORS)
"""The estimators that ship with vaebench. Plugins (:mod:`vaebench.plugins.registry`) add theirs to `ESTIMATORS` with
:func:`register`, under names other than these."""


def register(name: str, cls: type[Estimator], origin: str = "") -> None:
    """Add a plugin's estimator class to `ESTIMATORS`, after checking it against the contract.

    Registering the same class under the same name again does nothing.

    Args:
        name: its registry name (the plugin's own; :func:`vaebench.plugins.check_name` vets its spelling).
        cls: the class (see :mod:`vaebench.estimators.contract` for what it must be).
        origin: where it came from (``my_pkg.estimators:MyEstimator``), for the messages.

    Raises:
        VaebenchError: ``cls`` breaks the contract (every problem named), or ``name`` is a built-in's or
            another plugin's.
    """
    where = f" from {origin}" if origin else ""
    found = contract.problems(cls)
    if found:
        raise VaebenchError(
            f"estimator {name!r}{where} does not satisfy the estimator contract: {'; '.join(found)}"
        )
    if name in BUILTIN_ESTIMATORS:
        raise VaebenchError(
            f"estimator {name!r}{where} clashes with the built-in estimator {name!r}: give the plugin another name"
        )
    current = ESTIMATORS.get(name)
    if current is not None and current is not cls:
        raise VaebenchError(
            f"estimator {name!r}{where} clashes with the plugin estimator {name!r} from "
            f"{current.__module__}:{current.__qualname__}: give one of them another name"
        )
    ESTIMATORS[name] = cls


def unregister(name: str) -> None:
    """Remove a plugin's estimator from `ESTIMATORS` (a built-in cannot be removed; an unknown name is ignored)."""
    if name in BUILTIN_ESTIMATORS:
        raise VaebenchError(f"estimator {name!r} is built in; only plugins can be unregistered")
    ESTIMATORS.pop(name, None)
