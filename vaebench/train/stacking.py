r"""What lets the S seeds of one setting train as one program: the model's and the estimator's stacked forms.

A stacked step (:mod:`vaebench.train.seeds`) needs three things, each checked here:

- the model's **batched form**: :class:`~vaebench.train.stacked_model.StackedGaussianVAE` for a
  :class:`~vaebench.model.GaussianVAE`, or for a model of your own a classmethod ``stack(models)`` of its
  class returning a module that keeps the stacked contract: ``posterior`` and ``log_joint`` on the S seeds'
  rows stacked seed-major ([S·B, D], [K, S·B, Z] -> [K, S·B]), attributes ``seeds`` and ``z_dim``,
  ``seed_state(i, grad=False)`` (seed i's ``state_dict``, or its gradients, under its own model's names),
  ``load_seed_state(i, state)``, and the seed axis first on every parameter and buffer;
- an estimator whose terms are **per datapoint**, so that seed s's rows are its own run's (every stateless
  built-in one), or a **seed-aware form** of a stateful one: :class:`StackedMovingAverage` and
  :class:`StackedNVIL` keep one baseline, one set of running statistics and (NVIL) one baseline network per
  seed (:class:`StackedQuadraticCV` one set of curvature moments per seed), with the seed axis first, and
  update each from its own seed's rows only. A form that knows the seed axis, rather than one estimator per
  seed, keeps one program per step: S estimators would mean S passes
  through the model, the very cost stacking removes;
- each seed's **noise** from its own stream: :func:`draw_noise` draws ε for every seed with that seed's
  ``train.noise`` generator, exactly the draw its own run's estimator would make, and hands the stacked
  estimator the concatenation (:meth:`~vaebench.estimators.Estimator.sample` takes drawn noise).

:func:`stacking_problem` says, from the model and the estimator alone, why a (model, setting) cannot stack
("" when it can); the stacked loop also checks its first step's gradients seed by seed against each seed's own
(an estimator of your own that mixes datapoints or draws noise another way falls back to one seed at a time).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError
from vaebench.estimators import (
    Estimator,
    NoiseSource,
    QuadraticCV,
    ReinforceMovingAverage,
    ReinforceNVIL,
    Setting,
    log_density,
    standard_normal,
)
from vaebench.model import GaussianVAE
from vaebench.train.stacked_model import StackedGaussianVAE, StackedMLP


class StackedMovingAverage(ReinforceMovingAverage):
    """``reinforce-ma`` for S seeds: baseline b_s [S] and its update from seed s's rows only.

    Args:
        estimators: the S seeds' prepared estimators (the same options); their state is copied.
    """

    def __init__(self, estimators: Sequence[ReinforceMovingAverage]):
        first = estimators[0]
        super().__init__(first.decay, first.seed, first.score_term, first.sampler)
        self.name = first.name
        self.baseline = torch.stack([e.baseline for e in estimators])
        self.steps = torch.stack([e.steps for e in estimators])
        self._prepared = True

    def prepare(self, model, x, seed=None):
        """Nothing to set: every seed's baseline came from its own prepared estimator."""
        Estimator.prepare(self, model, x)

    def learning_signal(self, x, f):
        """f_k - b_s on seed s's rows of f [K, S·B]; then b_s ← α b_s + (1 - α) mean of seed s's f."""
        seeds = self.baseline.shape[0]
        per_seed = f.view(f.shape[0], seeds, -1)
        signal = (per_seed - self.baseline.to(f.dtype).view(1, seeds, 1)).view_as(f)
        if self.training:
            with torch.no_grad():
                mean = per_seed.mean((0, 2)).to(self.baseline.dtype)
                self.baseline.mul_(self.decay).add_((1 - self.decay) * mean)
                self.steps.add_(1)
        return signal

    def seed_state(self, index: int) -> dict[str, Tensor]:
        """Seed ``index``'s ``state_dict`` as its own ``reinforce-ma`` names it (copies)."""
        return {"baseline": self.baseline[index].clone(), "steps": self.steps[index].clone()}


class StackedNVIL(ReinforceNVIL):
    """``reinforce-nvil`` for S seeds: b_ψs(x) by a stacked network, c_s, v_s [S], each from its seed's rows.

    The maths is :class:`~vaebench.estimators.ReinforceNVIL`'s, with every statistic broadcast to its
    seed's rows and updated from them alone.

    Args:
        estimators: the S seeds' prepared estimators (the same options); their state is copied.
    """

    def __init__(self, estimators: Sequence[ReinforceNVIL]):
        first = estimators[0]
        super().__init__(
            first.hidden, first.decay, first.normalize, first.seed, first.score_term, first.sampler
        )
        self.name = first.name
        self.baseline_net = StackedMLP([e.baseline_net for e in estimators])
        for buffer in ("center", "variance", "steps"):
            setattr(self, buffer, torch.stack([getattr(e, buffer) for e in estimators]))
        self._prepared = True

    def prepare(self, model, x, seed=None):
        """Nothing to set: every seed's network and statistics came from its own prepared estimator."""
        Estimator.prepare(self, model, x)

    def estimate(self, model, x, num_samples, generator):
        seeds = self.steps.shape[0]
        rows = x.shape[0] // seeds
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator).detach()
        log_q = log_density(q, z)
        log_p = model.log_joint(x, z)
        f = log_p - log_q
        b = self.baseline_net(x.view(seeds, rows, -1)).reshape(-1)  # [S·B]
        center = self.center.to(f.dtype).repeat_interleave(rows)
        scale = self._scale().to(f.dtype).repeat_interleave(rows) if self.normalize else 1.0
        residual = f.detach() - b.detach()
        signal = (residual - center) * scale
        baseline_loss = (f.detach() - center - b).pow(2).mean(0)
        path = log_p - scale * log_q if self.score_term else log_p
        score = (path + signal * log_q).mean(0) - baseline_loss
        if self.training:
            self._update(residual)
        return self._output(f.detach().mean(0), score)

    @torch.no_grad()
    def _update(self, residual: Tensor) -> None:
        seeds = self.steps.shape[0]
        per_seed = residual.view(residual.shape[0], seeds, -1).transpose(0, 1).reshape(seeds, -1)
        mean = per_seed.mean(1).to(self.center.dtype)
        if per_seed.shape[1] > 1:
            var = per_seed.var(1, unbiased=False).to(self.variance.dtype)
        else:
            var = torch.zeros_like(self.variance)
        self.center.mul_(self.decay).add_((1 - self.decay) * mean)
        self.variance.mul_(self.decay).add_((1 - self.decay) * var)
        self.steps.add_(1)

    def seed_state(self, index: int) -> dict[str, Tensor]:
        """Seed ``index``'s ``state_dict`` as its own ``reinforce-nvil`` names it (copies)."""
        state = {name: getattr(self, name)[index].clone() for name in ("center", "variance", "steps")}
        net = self.baseline_net.unflatten(self.baseline_net.weights.detach()[index])
        state.update(
            {f"baseline_net.{k}": v.clone(memory_format=torch.contiguous_format) for k, v in net.items()}
        )
        return state


class StackedQuadraticCV(QuadraticCV):
    """``quadratic-cv`` for S seeds: moments [S, 2, Z], each seed's curvature on its rows, updated from them.

    Args:
        estimators: the S seeds' prepared estimators (the same options); their state is copied.
    """

    def __init__(self, estimators: Sequence[QuadraticCV]):
        first = estimators[0]
        super().__init__(first.decay, first.seed, first.sampler)
        self.name = first.name
        self.moments = torch.stack([e.moments for e in estimators])
        self._prepared = True

    def prepare(self, model, x, seed=None):
        """Nothing to set: every seed's moments came from its own prepared estimator."""
        Estimator.prepare(self, model, x)

    def row_curvature(self, rows: int) -> Tensor:
        return self.curvature.repeat_interleave(rows // self.moments.shape[0], 0)  # [S·B, Z]

    def update(self, per_row: Tensor) -> None:
        seeds = self.moments.shape[0]
        per_seed = per_row.view(2, seeds, -1, per_row.shape[-1]).mean(2).transpose(0, 1)  # [S, 2, Z]
        self.moments.mul_(self.decay).add_((1 - self.decay) * per_seed.to(self.moments))

    def seed_state(self, index: int) -> dict[str, Tensor]:
        """Seed ``index``'s ``state_dict`` as its own ``quadratic-cv`` names it (copies)."""
        return {"moments": self.moments[index].clone()}


STACKED_FORMS: dict[type[Estimator], type[Estimator]] = {
    ReinforceMovingAverage: StackedMovingAverage,
    ReinforceNVIL: StackedNVIL,
    QuadraticCV: StackedQuadraticCV,
}
"""Estimator class (exactly; a subclass may change what the state means) -> its seed-aware form."""


def model_problem(model: nn.Module) -> str:
    """Why ``model`` has no batched form ("" when it has one); see the module docstring."""
    if type(model) is GaussianVAE or callable(getattr(type(model), "stack", None)):
        return ""
    return (
        f"{type(model).__name__} has no batched form (a classmethod stack(models) keeping the stacked "
        "contract of vaebench.train.stacking)"
    )


def estimator_problem(estimator: Estimator) -> str:
    """Why ``estimator`` cannot run on stacked seeds ("" when it can); see the module docstring."""
    cls = type(estimator)
    if cls in STACKED_FORMS:
        return ""
    has_state = any(True for _ in estimator.parameters()) or any(True for _ in estimator.buffers())
    if cls.stateful or has_state:
        return (
            f"estimator {estimator.name or cls.__name__} keeps state (a baseline, running statistics or a "
            "network of its own) and has no form that knows the seed axis (vaebench.train.stacking.STACKED_FORMS)"
        )
    return ""


def stacking_problem(model: nn.Module, setting: Setting, estimator: Estimator | None = None) -> str:
    """Why the seeds of ``setting`` on ``model`` cannot train as one program ("" when they can).

    Args:
        model: one seed's model.
        setting: the estimator, sampler and K (every sampler stacks: each seed's noise is drawn alone).
        estimator: the estimator instance, if not ``setting.build()``.
    """
    return model_problem(model) or estimator_problem(setting.build() if estimator is None else estimator)


def stack_models(models: Sequence[nn.Module]) -> nn.Module:
    """The batched form of S models of one class (see `model_problem`)."""
    problem = model_problem(models[0])
    if problem:
        raise VaebenchError(problem)
    if type(models[0]) is GaussianVAE:
        return StackedGaussianVAE(models)
    return type(models[0]).stack(models)


def stack_estimators(estimators: Sequence[Estimator]) -> Estimator:
    """One estimator for the S seeds: the shared stateless one, or the seed-aware form of stateful ones.

    Args:
        estimators: the S seeds' estimators, prepared on their own models (one class, one sampler).
    """
    first = estimators[0]
    problem = estimator_problem(first)
    if problem:
        raise VaebenchError(problem)
    if any(type(e) is not type(first) or e.sampler != first.sampler for e in estimators):
        raise VaebenchError("the seeds' estimators must be of one class and one sampler")
    form = STACKED_FORMS.get(type(first))
    return first if form is None else form(estimators)


def seed_state(estimator: Estimator, index: int) -> dict[str, Tensor]:
    """Seed ``index``'s estimator state (copies): its part of a seed-aware form, or a shared one's state."""
    if hasattr(estimator, "seed_state"):
        return estimator.seed_state(index)
    return {k: v.detach().clone() for k, v in estimator.state_dict().items()}


class SeedNoise(NoiseSource):
    """Each seed's noise from its own generator: rows s·B .. s·B + B - 1 of every draw from ``generators[s]``.

    Given as the stacked estimator's ``generator``, it answers every draw the estimator makes, however many
    and of whatever size (MIWAE's M·K samples, the measure-valued estimator's normals), with exactly the draws
    each seed's own run makes, in the same order.
    """

    def __init__(self, generators: Sequence[torch.Generator]):
        self.generators = list(generators)

    def standard_normal(self, sampler, num_samples, shape, dtype, device) -> Tensor:
        seeds = len(self.generators)
        if not shape or shape[0] % seeds:
            raise VaebenchError(f"a draw of shape {list(shape)} does not split into {seeds} seeds' rows")
        own = (shape[0] // seeds, *shape[1:])
        draws = [
            standard_normal(sampler, num_samples, own, g, dtype=dtype, device=device) for g in self.generators
        ]
        return draws[0] if seeds == 1 else torch.cat(draws, 1)


def draw_noise(
    generators: Sequence[torch.Generator],
    sampler: str,
    num_samples: int,
    shape: tuple[int, int],
    like: Tensor,
) -> Tensor:
    """ε [K, S·B, Z] for the S seeds: seed s's block drawn from ``generators[s]`` as its own run draws it.

    Args:
        generators: each seed's ``train.noise`` generator, in stack order.
        sampler: the estimator's sampler.
        num_samples: K.
        shape: (B, Z), the shape of one seed's posterior.
        like: a tensor of the dtype and device of the draws.
    """
    draws = [
        standard_normal(sampler, num_samples, shape, g, dtype=like.dtype, device=like.device)
        for g in generators
    ]
    return draws[0] if len(draws) == 1 else torch.cat(draws, 1)
