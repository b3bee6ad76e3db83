r"""The estimator contract: the base class, its output, and the helpers every estimator shares.

See :mod:`vaebench.estimators` for the contract in words and the maths. Here: :class:`Estimator` (checks K and
the sampler, prepares state, calls ``estimate``), :class:`EstimatorOutput`, and the pieces the estimators are
built from: drawing z = μ + σ ⊙ ε with the estimator's sampler (:func:`sample_posterior`), log q(z|x)
(:func:`log_density`), q with its parameters detached (:func:`stop_gradient`), the independent draw that
initialises running statistics (:func:`independent_objective`), and the description of what an estimator's
gradient targets (:class:`Bound`, :class:`Target`), which the verification and the variance measure's baseline
gradient read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from vaebench import rng
from vaebench.errors import VaebenchError
from vaebench.estimators.sampling import SAMPLERS, check_sampler, standard_normal

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

FAMILIES = ("pathwise", "score-function", "measure-valued")
"""How an estimator forms its encoder gradient: through the sample z (pathwise), through ∇ log q (score), or
from differences of f between points drawn from the two parts of ∂q/∂φ (measure-valued), with no derivative
of f."""

BOUNDS = ("elbo", "iwae", "renyi", "ciwae", "inclusive-kl", "tvo", "uha")
"""The bounds a :class:`Bound` can name (see there)."""


@dataclass(frozen=True)
class Bound:
    """One bound whose gradient an estimator estimates, for one group of parameters.

    Attributes:
        name: one of `BOUNDS`: ``"elbo"``; ``"iwae"`` (IWAE_K); ``"renyi"`` (the K-sample variational Rényi
            bound E[(1-α)^-1 log (1/K) Σ_k w_k^(1-α)]); ``"ciwae"`` (β ELBO + (1-β) IWAE_K); ``"inclusive-kl"``
            (-KL(p(z|x) || q(z|x)), an encoder target only); ``"tvo"`` (the thermodynamic bound's left Riemann
            sum over S intervals, :mod:`~vaebench.estimators.thermodynamic`); ``"uha"`` (the annealed bound of
            L uncorrected Langevin steps with K samples, :mod:`~vaebench.estimators.annealed`).
        samples: K of the bound (1 for the ELBO and the inclusive KL); S, the intervals, for TVO.
        parameter: α of the Rényi bound, β of CIWAE, β_1 of TVO's log-spaced partition (0 for the linear
            one); for UHA the tuple of its dynamics (L, step size, damping, schedule); None for the others.

    Build one with :meth:`of`, which names every bound equal to the ELBO as the ELBO (IWAE_1, any Rényi or
    CIWAE bound at K = 1, the Rényi bound at α = 1), so that equal bounds compare equal.
    """

    name: str
    samples: int = 1
    parameter: float | tuple | None = None

    @classmethod
    def of(cls, name: str, samples: int = 1, parameter: float | tuple | None = None) -> Bound:
        if name not in BOUNDS:
            raise VaebenchError(f"unknown bound {name!r}; valid bounds: {', '.join(BOUNDS)}")
        if name == "uha":  # no Langevin step: IWAE_K; at K = 1 with steps, still not the ELBO
            return cls(name, samples, tuple(parameter)) if parameter[0] else cls.of("iwae", samples)
        if name in ("elbo", "inclusive-kl") or samples == 1 or (name == "renyi" and parameter == 1.0):
            return cls("elbo" if name != "inclusive-kl" else name)
        if name == "iwae" or (name == "renyi" and parameter == 0.0) or (name == "ciwae" and parameter == 0.0):
            return cls("iwae", samples)  # α = 0: the Rényi bound is IWAE_K; β = 0: CIWAE is IWAE_K
        if name == "ciwae" and parameter == 1.0:
            return cls("elbo")
        return cls(name, samples, float(parameter))

    def __str__(self) -> str:
        if self.name in ("elbo", "inclusive-kl"):
            return {"elbo": "ELBO", "inclusive-kl": "-KL(p(z|x) || q)"}[self.name]
        if self.name == "iwae":
            return f"IWAE_{self.samples}"
        if self.name == "tvo":
            partition = f"log {self.parameter:g}" if self.parameter else "linear"
            return f"TVO_{self.samples}({partition})"
        if self.name == "uha":
            steps, step_size, damping, schedule = self.parameter
            return f"UHA_{self.samples}(L={steps}, eps={step_size:g}, eta={damping:g}, {schedule})"
        return f"{'VR' if self.name == 'renyi' else 'CIWAE'}_{self.samples}({self.parameter:g})"


@dataclass(frozen=True)
class Target:
    """What an estimator's gradient estimates: a bound for the encoder (φ) and one for the decoder (θ)."""

    encoder: Bound
    decoder: Bound

    def __str__(self) -> str:
        return str(self.encoder) if self.encoder == self.decoder else f"φ: {self.encoder}, θ: {self.decoder}"


ELBO = Target(Bound("elbo"), Bound("elbo"))
"""The target of every estimator of the ELBO gradient."""


@dataclass(frozen=True)
class EstimatorOutput:
    """What an estimator returns.

    Attributes:
        surrogate: scalar; value = -mean_b(objective estimate), gradient = this estimator's estimate.
        elbo: detached per-datapoint objective estimate [B].
        objective: the objective label, one of :data:`vaebench.estimators.OBJECTIVES` (``"elbo"``, ``"iwae"``,
            ``"renyi"``, ...).
    """

    surrogate: Tensor
    elbo: Tensor
    objective: str


class Estimator(nn.Module):
    """Base class: validates K and the sampler, prepares state, then calls :meth:`estimate`.

    Class attributes describe the estimator to the registry, the CLI and the reports:

    - ``objective``: the bound whose gradient it estimates, one of :data:`vaebench.estimators.OBJECTIVES`
      (``"elbo"``, ``"iwae"``, ``"renyi"``, ...; the package docstring defines each);
    - ``family``: one of `FAMILIES`, how the encoder gradient is formed;
    - ``stateful``: whether it carries state across calls (running statistics, a learned baseline) that
      :meth:`prepare` sets and training updates; a variance measurement warms such an estimator up first;
    - ``min_samples``: the smallest K it can use, and ``min_samples_reason`` why (the leave-one-out
      baseline's reason when empty);
    - ``samplers``: the samplers that leave it unbiased (see :mod:`vaebench.estimators.sampling`), and
      ``iid_only``: why the others would bias it, for the error message;
    - ``bias``: empty for an unbiased estimator, else when and how it is biased (the reports mark it);
      :meth:`biased_at` says at which K (by default K > 1, as for ``iwae-stl``);
    - ``same_gradient``: K -> the registered estimator whose gradient this one's is at that K, draw for draw
      (the same noise, the same surrogate's gradient up to rounding; e.g. IWAE at K = 1 is the ELBO's
      reparameterization gradient): the suite trains such a setting once and reports the run under both
      names, marked as shared (``tests/test_estimators.py`` checks every declaration);
    - ``local_only``: empty when the estimator also runs on a model with global latents (one z for the whole
      data set, ``model.global_latents``; see :mod:`vaebench.problems.variational`), else why not: calling it
      on such a model is an error that says so;
    - ``summary`` and ``citation`` (the paper it comes from): one line each, for ``python -m vaebench list``.

    Args:
        sampler: how the standard normal noise ε of z = μ + σ ⊙ ε is drawn, a key of `SAMPLERS`.
    """

    objective: ClassVar[str] = "elbo"
    family: ClassVar[str] = "pathwise"
    stateful: ClassVar[bool] = False
    min_samples: ClassVar[int] = 1
    min_samples_reason: ClassVar[str] = ""  # why K >= min_samples, when not the leave-one-out baseline's
    samplers: ClassVar[tuple[str, ...]] = tuple(SAMPLERS)
    iid_only: ClassVar[str] = ""
    bias: ClassVar[str] = ""
    local_only: ClassVar[str] = ""
    same_gradient: ClassVar[Mapping[int, str]] = MappingProxyType({})
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    name: str = ""
    _prepared: bool = False  # a plain attribute, so checking it never reads the device
    checked_samples: int | None = None  # the K its `Setting` checked when it built it: not checked again

    def __init__(self, sampler: str = "iid"):
        super().__init__()
        problem = sampler_problem(type(self), sampler)
        if problem:
            raise VaebenchError(problem)
        self.sampler = sampler
        self.register_load_state_dict_post_hook(_loaded)

    def forward(
        self,
        model: nn.Module,
        x: Tensor,
        num_samples: int = 1,
        generator: torch.Generator | Tensor | None = None,
    ) -> EstimatorOutput:
        if not isinstance(x, Tensor):
            raise VaebenchError(f"x must be a torch.Tensor of shape [B, D], got {type(x).__name__}")
        if num_samples != self.checked_samples:  # the library's boundary (a Setting checked its own K)
            check_num_samples(num_samples, self.min_samples, self.name, self.min_samples_reason)
            check_sampler(self.sampler, num_samples)
        if self.local_only and getattr(model, "global_latents", False):
            raise VaebenchError(
                f"{self.name or type(self).__name__} cannot run on a model with global latents: {self.local_only}"
            )
        if not self._prepared:  # never use state that was never set: prepare on this batch first
            self.prepare(model, x)
        return self.estimate(model, x, num_samples, generator)

    def estimate(
        self, model: nn.Module, x: Tensor, num_samples: int, generator: torch.Generator | None
    ) -> EstimatorOutput:
        raise NotImplementedError

    def prepare(self, model: nn.Module, x: Tensor, seed: int | None = None) -> None:
        """Build any state that depends on the data (before the optimizer is made); a no-op by default.

        ``seed``: the run's seed, from which a stateful estimator draws its initial state (its own ``seed``
        option wins when set; None: 0), so independent runs start from independent states. Called by the
        first ``forward`` (without a seed) if nobody called it before. Subclasses that override it take the
        same arguments, must end by calling ``super().prepare(model, x)`` (which moves the estimator's
        buffers and parameters to ``x``'s device and marks it prepared) and keep it idempotent.
        """
        self.to(x.device)
        self._prepared = True

    @property
    def encoder_scale(self) -> float:
        """Known positive factor this estimator applies to its encoder gradient (1 for unbiased ones)."""
        return 1.0

    def target(self, num_samples: int) -> Target:
        """The bounds whose gradients this estimator estimates at K = ``num_samples`` (per parameter group).

        From ``objective`` by default: the ELBO, or IWAE_K for ``"iwae"``. Estimators whose target depends on
        their options (α, β, the groups or subsets) or differs between encoder and decoder override it.
        """
        bound = Bound.of("iwae" if self.objective == "iwae" else "elbo", num_samples)
        return Target(bound, bound)

    def own_numbers(self, num_samples: int) -> int:
        """Numbers per datapoint this estimator's own work holds besides the model's activations, when it grows
        faster than K (the cost model's memory and time of a laws unit, :mod:`vaebench.suite.cost`); 0: none."""
        return 0

    def biased_at(self, num_samples: int) -> bool:
        """Whether the gradient is biased for :meth:`target` at this K (default: a declared bias, K > 1)."""
        return bool(self.bias) and num_samples > 1

    def sample(self, q: Normal, num_samples: int, generator: torch.Generator | Tensor | None) -> Tensor:
        """z = μ + σ ⊙ ε [K, B, Z] from q [B, Z], ε drawn by this estimator's sampler.

        ``generator`` may also be ε itself, a tensor [K, B, Z] drawn beforehand with this estimator's sampler:
        training draws the noise outside the estimator where a ``torch.Generator`` cannot go (a compiled step)
        or where each seed's rows need their own generator (seeds stacked as one program,
        :mod:`vaebench.train.stacking`).
        """
        if isinstance(generator, Tensor):
            if generator.shape != (num_samples, *q.loc.shape):
                raise VaebenchError(
                    f"drawn noise must have shape [K, B, Z] = {[num_samples, *q.loc.shape]}, "
                    f"got {list(generator.shape)} (noise drawn beforehand is one draw of K samples of the "
                    "posterior; an estimator that draws otherwise cannot take it, e.g. in a compiled step)"
                )
            return q.loc + q.scale * generator
        return sample_posterior(q, num_samples, generator, self.sampler)

    def _output(self, objective: Tensor, score: Tensor | None = None) -> EstimatorOutput:
        """Assemble the surrogate from the objective [B] (with its pathwise gradient) and a score term [B].

        The score term contributes its gradient only, never its value.
        """
        total = objective.mean()
        if score is not None:
            score = score.mean()
            total = total + (score - score.detach())
        return EstimatorOutput(surrogate=-total, elbo=objective.detach(), objective=self.objective)


def _loaded(module: Estimator, incompatible_keys) -> None:
    """After ``load_state_dict``: check at the next call whether the loaded statistics were ever set."""
    module._prepared = False


def sampler_problem(cls: type[Estimator], sampler: str, name: str = "") -> str:
    """Why estimator class ``cls`` cannot use ``sampler`` ("" when it can).

    The message names the sampler, the reason (an unknown sampler, or one that would bias this estimator)
    and the samplers it takes.
    """
    who = name or cls.__name__
    if sampler not in SAMPLERS:
        return f"unknown sampler {sampler!r} for {who}; valid samplers: {', '.join(SAMPLERS)}"
    if sampler not in cls.samplers:
        return f"{who} cannot use sampler {sampler!r}: {cls.iid_only}; it takes sampler=" + " or ".join(
            repr(s) for s in cls.samplers
        )
    return ""


LEAVE_ONE_OUT_MINIMUM = "the leave-one-out baseline averages the other K-1 samples"
"""Why the leave-one-out estimators need K >= 2 (the default reason of `check_num_samples`)."""


def check_num_samples(num_samples: int, minimum: int = 1, name: str = "", reason: str = "") -> int:
    """Raise a clear error unless K is an integer >= minimum (``reason``: why the minimum, for the message;
    by default that of the leave-one-out baselines)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < minimum:
        why = (
            f" ({reason or LEAVE_ONE_OUT_MINIMUM}; use K >= {minimum} or another estimator)"
            if minimum > 1
            else ""
        )
        who = f" for {name}" if name else ""
        raise VaebenchError(f"num_samples (K) must be an integer >= {minimum}{who}{why}, got {num_samples!r}")
    return num_samples


def check_flag(name: str, value) -> bool:
    """``value`` if it is a bool, else a clear error naming the option."""
    if not isinstance(value, bool):
        raise VaebenchError(f"{name} must be True or False, got {value!r}")
    return value


def check_real(name: str, value, low: float = -math.inf, high: float = math.inf) -> float:
    """``value`` as a float if it is a finite real number in [low, high], else a clear error naming the option."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise VaebenchError(f"{name} must be a finite real number, got {value!r}")
    if not low <= value <= high:
        raise VaebenchError(f"{name} must lie in [{low:g}, {high:g}], got {value!r}")
    return float(value)


@torch.no_grad()
def independent_objective(model: nn.Module, x: Tensor, seed: int) -> Tensor:
    """f = log p(x, z) - log q(z|x) at one z ~ q(z|x) per datapoint, from noise of the estimator's own: [1, B].

    Running statistics are initialised from these draws before their first use. The noise comes from a
    generator seeded by (``seed``, a stream of its own), independent of every draw the estimator is later
    called with, so a baseline built from it does not depend on any step's samples and leaves the estimator
    unbiased (the paper's Algorithm 1 would update before use, with the same samples: slightly biased).
    """
    gen = rng.generator(seed, "init.statistics", device=x.device)
    q = model.posterior(x)
    z = sample_posterior(q, 1, gen)
    return model.log_joint(x, z) - log_density(q, z)


def sample_posterior(
    q: Normal, num_samples: int, generator: torch.Generator | None = None, sampler: str = "iid"
) -> Tensor:
    """Reparameterized draws z = μ + σ ⊙ ε from q with batch shape [B, Z] -> [K, B, Z].

    ε [K, B, Z] comes from ``sampler`` (a key of `SAMPLERS`; ``"iid"``: independent standard normals, the
    same numbers as ``torch.randn`` with this generator).
    """
    loc = q.loc
    eps = standard_normal(sampler, num_samples, loc.shape, generator, dtype=loc.dtype, device=loc.device)
    return loc + q.scale * eps


def log_density(q: Normal, z: Tensor) -> Tensor:
    """log q(z) summed over the latent dimension: z [K, B, Z] -> [K, B].

    Σ_j [-(z_j - μ_j)² / (2σ_j²) - log σ_j] - (Z/2) log 2π, written out rather than ``q.log_prob(z).sum(-1)``:
    the same density with a third of the autograd nodes, and Σ log σ taken once over [B, Z], not per sample.
    """
    z_score = (z - q.loc) / q.scale
    return -0.5 * z_score.square().sum(-1) - (q.scale.log().sum(-1) + z.shape[-1] * _HALF_LOG_2PI)


def stop_gradient(q: Normal) -> Normal:
    """q with its parameters detached: log q still depends on z, no longer on φ directly."""
    return Normal(q.loc.detach(), q.scale.detach(), validate_args=False)
