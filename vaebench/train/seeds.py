r"""The S slices of one setting trained as one program: one step, one optimizer, S independent runs.

A *slice* is a (seed, learning rate) pair: the seeds x step sizes of a setting stack alike (a step-size grid,
``train.lr_grid``). Below, "seed s" means slice s; two slices may share a seed if their rates differ.

:func:`train_seeds` trains S models of one setting, each from its own seed, and returns what S separate
:func:`~vaebench.train.train` runs return, to float precision: each seed keeps its own initialisation (its
model, built by the caller), data order (``dataset.batches(seed=s)``), latent noise (its ``train.noise``
generator, drawn exactly as its own run draws it), evaluation noise (``eval.elbo``) and estimator state. What
is shared is the program: one stacked model (:mod:`vaebench.train.stacked_model`), one estimator call on the S
seeds' minibatches stacked seed-major, one backward pass and one optimizer over the stacked tensors. Adam (and
every optimizer of :mod:`vaebench.optim`) is elementwise, so seed s's update is a function of seed s's
gradient alone; the surrogate, a mean over S·B rows, is multiplied by S so that seed s's gradient is its own
run's (1/B Σ over its rows), not 1/S of it.

Per-slice learning rates. Every optimizer of :mod:`vaebench.optim` (no weight decay) moves a parameter by
η_t · d_t, with a direction d_t that does not depend on η (Adam: m̂_t / (√v̂_t + ε); SGD: g_t; RMSprop,
Adamax alike) and η_t = η · c_t, the schedule's factor c_t (cosine decay) the same for every slice. So the
optimizer steps the whole stack at the base rate η = ``spec.lr`` and slice s's step is rescaled by
r_s = η_s / η:  θ_s ← θ_s + r_s (θ_s^{after} − θ_s)  (``torch.lerp``; a slice at the base rate, r_s = 1, is
its plain step bit for bit). The moments, which do not depend on η, are untouched.

Divergence is per seed: a seed whose loss (the mean objective of its rows) or gradient norm (over its own
parameters) is NaN, Inf or beyond the bound ends there, before that update, with its own final record and
states, and leaves the stack; the others go on, their updates untouched (the check is read every step, or
latched, :mod:`vaebench.train.divergence`). Each seed's clock is its share of every stacked step it took
(:mod:`vaebench.train.run`).

What cannot stack trains one seed at a time, with a note in each result (`TrainResult.note`): a model
without a batched form, a stateful estimator without a seed-aware form (:func:`~vaebench.train.stacking.
stacking_problem`), or an estimator whose stacked gradient for some seed, at the first step, differs from
that seed's own (an estimator of your own whose terms mix datapoints, or that draws its noise other than
through :meth:`~vaebench.estimators.Estimator.sample`).

A preemption checkpoint of a stacked run holds the whole stack (every live slice's parameters, optimizer
moments and generators, every slice's rows and kept states, and the final results of the slices that ended,
all keyed by their (seed, lr)); a run resumed from it equals an uninterrupted one. Slices trained one at a
time save to one checkpoint per slice beside it (:meth:`~vaebench.train.checkpoints.Checkpointer.for_seed`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn

from vaebench import devices, rng
from vaebench.errors import VaebenchError
from vaebench.estimators import Estimator, Reparam, Setting
from vaebench.optim import make_optimizer
from vaebench.train.checkpoints import Checkpointer
from vaebench.train.compiled import CompiledSurrogate
from vaebench.train.divergence import StateGuard, UpdateGuard
from vaebench.train.evaluation import elbo_noise, evaluate_elbo
from vaebench.train.loop import TrainResult, check_run, new_lane, result_of, train
from vaebench.train.malloc import keep_freed_memory
from vaebench.train.program import unique
from vaebench.train.run import Run
from vaebench.train.spec import TrainSpec
from vaebench.train.stacking import (
    SeedNoise,
    draw_noise,
    seed_state,
    stack_estimators,
    stack_models,
    stacking_problem,
)

PROBE_TOLERANCE = 1e-3
"""Largest relative difference (Frobenius norm, per parameter) between a seed's stacked first-step gradient
and its own; float32 rounding of the batched products is ~1e-6, an estimator that mixes seeds' rows ~1."""

_EVAL_ROWS = 1024  # rows per pass of the stacked evaluation, as `evaluate_elbo`'s chunk of one seed


class NotStackable(VaebenchError):
    """The first stacked step showed that these seeds cannot train as one program (the message says why)."""


def train_seeds(
    models: Sequence[nn.Module],
    setting: Setting,
    dataset,
    spec: TrainSpec,
    *,
    seeds: Sequence[int],
    estimators: Sequence[Estimator] | None = None,
    checkpoint: Checkpointer | None = None,
    lrs: Sequence[float] | None = None,
) -> list[TrainResult]:
    """Train slice i, ``models[i]`` from seed ``seeds[i]`` at rate ``lrs[i]``, for every i, as one program
    where they stack (module docstring).

    Args:
        models: one fresh model per seed, each built from its own seed (trained in place: each ends with its
            final state).
        setting: the estimator, sampler and K.
        dataset: a :class:`~vaebench.data.Dataset`.
        spec: the loop's settings, shared by every slice (``spec.lr`` is the base rate of the schedule).
        seeds: the seeds, one per model.
        estimators: one estimator per slice (default: ``setting.build()`` each), trained in place.
        checkpoint: the run's preemption checkpoint, as in :func:`~vaebench.train.train`.
        lrs: each slice's learning rate (default: ``spec.lr`` for all); the (seed, lr) pairs distinct.
            Slice i equals ``train`` of its model with ``spec.lr = lrs[i]``.

    Returns:
        One :class:`~vaebench.train.TrainResult` per slice, in order; ``seeds_stacked`` says how many trained
        together and ``note`` why they did not.

    Raises:
        VaebenchError: as :func:`~vaebench.train.train`, or models, seeds and rates that do not pair up.
    """
    seeds = list(seeds)
    if not seeds or len(models) != len(seeds):
        raise VaebenchError(
            f"train_seeds needs one model per seed, got {len(models)} models for seeds {seeds}"
        )
    lrs = [spec.lr] * len(seeds) if lrs is None else list(lrs)
    if len(lrs) != len(seeds):
        raise VaebenchError(f"train_seeds needs one lr per slice, got lrs {lrs} for seeds {seeds}")
    if any(
        isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0 or lr == math.inf for lr in lrs
    ):
        raise VaebenchError(f"train_seeds lrs must be positive numbers, got {lrs}")
    lrs = [float(lr) for lr in lrs]
    if len(set(zip(seeds, lrs, strict=True))) != len(seeds):
        raise VaebenchError(
            f"train_seeds needs distinct seeds, or distinct (seed, lr) slices, got seeds {seeds}"
            + ("" if len(set(lrs)) == 1 else f" at lrs {lrs}")
        )
    estimators = [setting.build() for _ in seeds] if estimators is None else list(estimators)
    if len(estimators) != len(seeds) or len({id(e) for e in estimators}) != len(seeds):
        raise VaebenchError("train_seeds needs one estimator instance per seed")
    for model, estimator in zip(models, estimators, strict=True):
        check_run(model, setting, estimator, dataset)
    problem = stacking_problem(models[0], setting, estimators[0]) if len(seeds) > 1 else ""
    if len(seeds) > 1 and not problem:
        try:
            return _stacked(models, estimators, setting, dataset, spec, seeds, lrs, checkpoint)
        except NotStackable as error:
            problem = str(error)
    note = f"trained one seed at a time: {problem}" if problem else ""
    grid = len(set(lrs)) > 1
    results = []
    for model, estimator, seed, lr in zip(models, estimators, seeds, lrs, strict=True):
        # one checkpoint per slice; a slice's file names its rate only when the rates differ
        own = (
            None
            if checkpoint is None or len(seeds) == 1
            else checkpoint.for_seed(_slice_name(seed, lr, grid))
        )
        result = train(
            model,
            setting,
            dataset,
            replace(spec, lr=lr),
            seed=seed,
            estimator=estimator,
            checkpoint=checkpoint if len(seeds) == 1 else own,
        )
        result.note = note
        results.append(result)
    return results


def _slice_name(seed: int, lr: float, grid: bool) -> int | str:
    """The name of a slice's own checkpoint: its seed, and its rate when the slices' rates differ."""
    return f"{seed}-lr{lr:g}" if grid else seed


def _stacked(models, estimators, setting, dataset, spec, seeds, lrs, checkpoint) -> list[TrainResult]:
    device = devices.resolve(spec.device, like=models[0])
    program = StackedProgram(models, estimators, setting.num_samples, dataset, spec, seeds, device, lrs)
    lanes = [
        new_lane(s, m, e, dataset, spec, program.test)
        for s, m, e in zip(seeds, models, estimators, strict=True)
    ]
    lanes = Run(program, lanes, dataset, spec, setting.num_samples).run(checkpoint)
    for lane, model, estimator in zip(lanes, models, estimators, strict=True):
        model.load_state_dict(lane.final_state)
        estimator.load_state_dict(lane.estimator_state)
    return [result_of(lane, seeds_stacked=len(seeds)) for lane in lanes]


class StackedProgram:
    """The training program of S seeds of one setting (the module docstring; the protocol of
    :class:`~vaebench.train.program.SeedProgram`, with the seed axis first on every tensor it holds).

    Args:
        models: the S seeds' models (copied into the stack; each gets its final state at the end).
        estimators: the S seeds' estimators (each prepared here on its own model, as its own run would).
        num_samples: K.
        dataset: the data set.
        spec: the loop's settings.
        seeds: the S slices' seeds.
        device: where they train.
        lrs: the S slices' learning rates (default: ``spec.lr`` each).
    """

    stacked = True

    def __init__(self, models, estimators, num_samples, dataset, spec: TrainSpec, seeds, device, lrs=None):
        self.k, self.spec, self.device, self.seeds = num_samples, spec, device, list(seeds)
        self.lrs = [spec.lr] * len(self.seeds) if lrs is None else list(lrs)
        self.slices = [[s, lr] for s, lr in zip(self.seeds, self.lrs, strict=True)]  # every slice, in order
        keep_freed_memory()  # a step's activations reused, not faulted in afresh (vaebench.train.malloc)
        first = dataset.train[: spec.batch_size].to(device)
        for model, estimator, seed in zip(models, estimators, seeds, strict=True):
            model.to(device)
            estimator.prepare(model, first, seed=seed)
            estimator.to(device)
        self.models, self.estimators = list(models), list(estimators)
        self.model = stack_models(self.models)
        self.est = stack_estimators(self.estimators)
        self.params = unique([*self.model.parameters(), *self.est.parameters()])
        self.opt, _ = make_optimizer(self.params, spec.lr, spec.optimizer)
        self.noise = [rng.generator(seed, "train.noise", device=device) for seed in seeds]
        self.test = dataset.test[: spec.eval_points].to(device)
        self.compiled = self._compile()
        self.compiling = False
        self.excluded = 0.0  # seconds of this step that are not training (the first step's check)
        self.verified = False
        self.update_guard = self.state_guard = None
        self.ratios = None  # r_s = lr_s / spec.lr [S], when a slice's rate differs from the base rate
        if any(lr != spec.lr for lr in self.lrs):
            self.ratios = torch.tensor([lr / spec.lr for lr in self.lrs], device=device)
            self.before = [torch.empty_like(p) for p in self.params]
        if spec.check_every > 1:
            if self.ratios is None:  # else `update` keeps a frozen slice's parameters itself
                self.update_guard = UpdateGuard(self.opt, self.params, seed_axis=True)
            self.state_guard = StateGuard(self.est, seed_axis=True)

    def _compile(self) -> CompiledSurrogate | None:
        if not self.spec.compile:
            return None
        scale = float(len(self.seeds))
        return CompiledSurrogate(self.model, self.est, self.k, self.spec.compile, self.device, scale)

    def train_mode(self) -> None:
        self.model.train()
        self.est.train()

    def batch(self, xs: list[Tensor]) -> Tensor:
        """The S minibatches stacked seed-major [S·B, D], on the device (untimed: data loading)."""
        return torch.cat(xs).to(self.device, non_blocking=True)

    def forward_backward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Every seed's gradient in ``.grad``; each seed's loss [S] and gradient norm [S], on the device."""
        seeds = len(self.seeds)
        rows = x.shape[0] // seeds
        drawn_from = None if self.verified else [g.get_state() for g in self.noise]
        if self.state_guard is not None:
            self.state_guard.save()
        self.opt.zero_grad(set_to_none=True)
        try:
            if self.compiled is not None:  # one draw of [K, S·B, Z], made before the compiled region
                eps = draw_noise(
                    self.noise, self.est.sampler, self.k, (rows, self.model.z_dim), self.params[0]
                )
                self.compiling = self.compiled.compiles(x, eps)
                surrogate, elbo = self.compiled(x, eps)
            else:
                out = self.est(self.model, x, num_samples=self.k, generator=SeedNoise(self.noise))
                surrogate, elbo = out.surrogate * seeds, out.elbo
            surrogate.backward()
        except Exception as error:
            if self.verified:
                raise
            raise NotStackable(f"the stacked step failed ({type(error).__name__}: {error})") from error
        loss = -elbo.detach().view(seeds, rows).mean(1)
        norms = [
            torch.linalg.vector_norm(p.grad.reshape(seeds, -1), dim=1)
            for p in self.params
            if p.grad is not None
        ]
        norm = torch.linalg.vector_norm(torch.stack(norms), dim=0)  # over each seed's own parameters
        if drawn_from is not None:
            start = time.perf_counter()
            self._verify(x.view(seeds, rows, -1), drawn_from)
            self.excluded = time.perf_counter() - start
            self.verified = True
        return loss, norm

    def _verify(self, x: Tensor, drawn_from: list[Tensor]) -> None:
        """Each seed's stacked gradient against its own run's first-step gradient (`PROBE_TOLERANCE`).

        Slices of one seed at different rates (a step-size grid) start alike: where a slice's model, estimator
        state, minibatch and noise equal an earlier slice's, so does its own gradient, computed once."""
        computed: list[tuple[int, list]] = []  # (slice, its own gradients) per distinct first step
        for i, (model, estimator, seed) in enumerate(
            zip(self.models, self.estimators, self.seeds, strict=True)
        ):
            named = list(model.named_parameters())
            same = next((g for j, g in computed if self._same_start(i, j, x, drawn_from)), None)
            if same is None:
                generator = rng.generator(seed, "train.noise", device=self.device)
                generator.set_state(drawn_from[i])
                own = copy.deepcopy(estimator).train()
                surrogate = own(model, x[i], num_samples=self.k, generator=generator).surrogate
                same = torch.autograd.grad(surrogate, [p for _, p in named], allow_unused=True)
                computed.append((i, same))
            grads = same
            stacked = self.model.seed_state(i, grad=True)
            for (name, _), grad in zip(named, grads, strict=True):
                grad = torch.zeros_like(stacked[name]) if grad is None else grad
                error = torch.linalg.vector_norm(stacked[name] - grad)
                if not error <= PROBE_TOLERANCE * torch.linalg.vector_norm(grad) + 1e-6:
                    raise NotStackable(
                        f"seed {seed}'s stacked gradient of {name} differs from its own run's (relative error "
                        f"{float(error / torch.linalg.vector_norm(grad).clamp_min(1e-30)):.2g}): the estimator "
                        "mixes datapoints or draws its noise other than through Estimator.sample"
                    )

    def _same_start(self, i: int, j: int, x: Tensor, drawn_from: list[Tensor]) -> bool:
        """Whether slices i and j take the same first step: seed, noise, minibatch, model and estimator state."""
        if self.seeds[i] != self.seeds[j] or not torch.equal(drawn_from[i], drawn_from[j]):
            return False
        if not torch.equal(x[i], x[j]):
            return False
        pairs = [
            (self.models[i].state_dict(), self.models[j].state_dict()),
            (self.estimators[i].state_dict(), self.estimators[j].state_dict()),
        ]
        return all(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) for a, b in pairs)

    def update(self, frozen: Tensor | None) -> None:
        """The optimizer's step over the stacked tensors (``frozen``: the latched seeds, left as they were),
        each slice's step rescaled to its own rate (module docstring)."""
        if self.ratios is None:
            if frozen is None:
                self.opt.step()
            else:
                self.update_guard.step(frozen)
            return
        with torch.no_grad():
            torch._foreach_copy_(self.before, [p.detach() for p in self.params])
            self.opt.step()
            for p, before in zip(self.params, self.before, strict=True):
                shape = (-1, *[1] * (p.dim() - 1))
                if frozen is None:  # in place: the same arithmetic, one pass fewer over the parameters
                    torch.lerp(before, p, self.ratios.to(p.dtype).view(shape), out=p)
                    continue
                scaled = torch.lerp(before, p, self.ratios.to(p.dtype).view(shape))
                # a frozen slice keeps its parameters (divergence.UpdateGuard)
                p.copy_(torch.where(frozen.view(shape), before, scaled))

    def restore_state(self, frozen_before: Tensor) -> None:
        self.state_guard.restore(frozen_before)

    @torch.no_grad()
    def evaluate(self) -> list[float]:
        """Every seed's test ELBO at once, each with its own ``eval.elbo`` noise (that of its own run)."""
        seeds, n, points = len(self.seeds), self.spec.eval_samples, self.test.shape[0]
        like = self.params[0]
        drawn = {  # a seed's draws, shared by its slices at every rate (its own run's at each)
            s: elbo_noise(
                n, points, self.model.z_dim, rng.generator(s, "eval.elbo", device=self.test.device), like
            )
            for s in dict.fromkeys(self.seeds)
        }
        noise = [drawn[s] for s in self.seeds]
        per = max(1, _EVAL_ROWS // seeds)
        reparam, parts = Reparam(), []
        for start in range(0, points, per):
            x = self.test[start : start + per].repeat(seeds, 1)
            eps = torch.cat([e[:, start : start + per] for e in noise], 1)
            parts.append(reparam(self.model, x, num_samples=n, generator=eps).elbo.view(seeds, -1))
        return torch.cat(parts, 1).mean(1).tolist()

    @torch.no_grad()
    def evaluate_one(self, position: int) -> float:
        """One seed's test ELBO, on its own model (given its state): exactly its own run's evaluation."""
        model = self.models[position]
        model.load_state_dict(self.model.seed_state(position))
        gen = rng.generator(self.seeds[position], "eval.elbo", device=self.test.device)
        return (
            evaluate_elbo(model, self.test, num_samples=self.spec.eval_samples, generator=gen).mean().item()
        )

    def states(self, position: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Seed ``position``'s model and estimator ``state_dict`` s, as its own run names them."""
        return self.model.seed_state(position), seed_state(self.est, position)

    @torch.no_grad()
    def drop(self, positions: list[int]) -> None:
        """Take the seeds at ``positions`` out of the stack: parameters, gradients, optimizer state, buffers."""
        if not positions:
            return
        keep = [i for i in range(len(self.seeds)) if i not in positions]
        index = torch.as_tensor(keep, dtype=torch.long, device=self.device)
        for p in self.params:
            before, grad = p.shape[0], p.grad
            p.data = p.data[index]
            p.grad = None if grad is None else grad[index]
            state = self.opt.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.dim() and value.shape[0] == before:
                    state[key] = value[index]
        for module in (self.model, self.est):
            for buffer in module.buffers():
                buffer.data = buffer.data[index]
        for name in ("seeds", "lrs", "models", "estimators", "noise"):
            setattr(self, name, [getattr(self, name)[i] for i in keep])
        if self.update_guard is not None:
            self.update_guard.resize()
        if self.ratios is not None:
            self.ratios = self.ratios[index]
            self.before = [torch.empty_like(p) for p in self.params]
        self.compiled = self._compile()

    def capture(self, lanes, epoch: int, batch: int) -> dict:
        """The whole stack between two steps, and every seed's progress (see the module docstring)."""
        return {
            "kind": "seeds",
            "slices": self.slices,
            "alive": [[s, lr] for s, lr in zip(self.seeds, self.lrs, strict=True)],
            "model": self.model.state_dict(),
            "estimator": self.est.state_dict(),
            "optimizer": self.opt.state_dict(),
            "generators": [g.get_state() for g in self.noise],
            "lanes": [
                {
                    "position": lane.recorder.position(
                        epoch=epoch, batch=batch, recorded_at=lane.recorded_at
                    ),
                    "diverged_step": lane.diverged_step,
                    "stop": lane.stop,
                    "final_state": lane.final_state,
                    "estimator_state": lane.estimator_state,
                }
                for lane in lanes
            ],
        }

    def restore(self, saved: dict, lanes) -> tuple[int, int] | None:
        """Continue from `capture`'s state: (epoch, batch to start at), or None if it is not these slices'."""
        if saved.get("kind") != "seeds" or saved.get("slices") != self.slices:
            return None
        alive = saved["alive"]
        self.drop(
            [i for i, key in enumerate(zip(self.seeds, self.lrs, strict=True)) if list(key) not in alive]
        )
        self.model.load_state_dict(saved["model"])
        self.est.load_state_dict(saved["estimator"])
        self.opt.load_state_dict(saved["optimizer"])
        for generator, state in zip(self.noise, saved["generators"], strict=True):
            generator.set_state(state)
        for lane, kept in zip(lanes, saved["lanes"], strict=True):
            epoch, skip, lane.recorded_at = lane.recorder.resume(kept["position"])
            lane.diverged_step, lane.stop = kept["diverged_step"], kept["stop"]
            lane.final_state, lane.estimator_state = kept["final_state"], kept["estimator_state"]
        self.verified = True  # checked by the run that saved it
        return epoch, skip
