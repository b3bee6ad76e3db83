"""What a run will cost before it starts: every unit's estimated seconds, from a few timed steps on this machine.

The cost model is calibrated, not guessed: for every distinct (estimator, sampler, K) of the plan it times a
few training steps of the configured model on a real minibatch (`vaebench.measures.throughput`: estimator,
backward and optimizer step; median of ``repeats`` after ``warmup``), and it times one test-ELBO evaluation
for the cost of a forward pass per (test point x latent sample). Then, with t(e, K) the step time and r the
forward cost per point-sample:

- convergence unit: steps · t(e, K) + evaluations · eval_samples · eval_points · r + ll_samples · ll_points · r
  per seed, the steps' part divided by `vaebench.suite.units.STACKED_SPEEDUP` for a unit of several seeds
- anchor unit: steps · t(anchor, 1) + the same evaluations (no log-likelihood)
- variance unit (one checkpoint, one seed): Σ_(e, K) replicates · t(e, K) + baseline_samples · t(e, K), an
  upper bound: the variance harness computes its replicates in batches, several times faster than one step each
- throughput unit (one K): (warmup + repeats + 1) · Σ_e t(e, K), its settings timed interleaved (one more step
  each reads the peak memory)
- landing unit: `LANDING_S`, a fixed few seconds (a small model built for the check)
- laws unit: Σ_K replicates(e, K) · (`LAWS_S_PER_REPLICATE` + K · `LAWS_S_PER_DRAW`), measured on the built
  checkpoints (they are small and fixed: not the configured model)
- quadrature unit: `QUADRATURE_S`

With ``train.compile`` every run compiles its own step (:mod:`vaebench.train.compiled`), once per batch shape:
g = 1 graph, or 2 when the run reaches an epoch's last short batch. The calibration then compiles the training
step of the anchor estimator at K = 1 and at the plan's largest K (the path training takes,
`~vaebench.train.program.SeedProgram`; compiling every setting would cost seconds each): c(K) the seconds of
its first call (compiling, and that step, as training counts them), ρ(K) = the compiled step's median time over
the eager one's, both timed the same way. With K* the calibrated K nearest K (in log K), a convergence or anchor
unit's steps' part is multiplied by ρ(K*) and the unit gets g · c(K*) more: once per unit, for stacked seeds too
(they compile one program). Other estimators compile in about the anchor's time (the same model; a few more
operations), an assumption, not a measurement. K = 1 compiles first and its c(1) includes the compiler's
start-up in a fresh process (imports, caches: seconds), which a worker pays once, not per unit: an upper bound.
On the default preset (64-200-8 on digits, a busy 2-core machine): c(1) = 6.6 s, c(10) = 3.0 s, ρ 0.61 and 0.78.

The estimate is for one worker of ``threads`` threads on this machine; the total with ``W`` workers is the
total over W, a lower bound (units do not divide evenly; throughput units run alone). Timing a few steps
of every shape takes seconds on the small presets and about a minute on ``paper``.

Accuracy, measured on the default preset on a busy 2-core machine (one worker, 490 s): the training units
(convergence) within 20% (estimated 309 s, took 371 s), the variance units overestimated 2.6x (220 s for 85 s:
the bound above), the whole run 556 s estimated for 474 s of units.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from vaebench import rng
from vaebench.checks import laws
from vaebench.config import SuiteConfig
from vaebench.estimators import Setting
from vaebench.measures.throughput import Timing, measure_throughput, synchronize, time_steps
from vaebench.registry import BUILT_CHECKPOINTS
from vaebench.suite import units
from vaebench.suite.context import Context
from vaebench.suite.memory import check_memory
from vaebench.suite.units import ANCHOR, Unit
from vaebench.train import evaluate_elbo
from vaebench.train.program import SeedProgram
from vaebench.train.run import Schedule

LANDING_S = 5.0
"""Seconds the STL check's unit takes (:mod:`vaebench.checks.landing`: 6 points x 2 estimators x 100
replicates on an 8-3 linear model; about 2 s on one core of a 2-core machine, doubled to stay an upper bound)."""

LAWS_S_PER_REPLICATE = 1e-3
"""Seconds per replicate of a laws unit, besides its draws (measured; see :func:`estimate`)."""

LAWS_S_PER_DRAW = 2e-5
"""Seconds per replicate and latent draw of a laws unit (8 datapoints of the toy or the near-posterior VAE)."""

QUADRATURE_S = 30.0
"""Seconds of the 1-D quadrature check (200,000 draws x 45 settings; about 13 s on one core of an idle 2-core
machine, doubled)."""

THROUGHPUT_ROUNDS = 1
"""Passes of (warmup + repeats + 1) steps of each setting a throughput unit takes (one: its rounds share them)."""


@dataclass(frozen=True)
class CompileCost:
    """What compiling the training step costs, measured on the anchor estimator at a few K.

    Attributes:
        compile_s: K -> seconds of the first (compiling) step.
        ratio: K -> the compiled step's median time over the eager step's.
    """

    compile_s: dict[int, float]
    ratio: dict[int, float]

    def nearest(self, k: int) -> int:
        """The calibrated K nearest ``k`` in log K (the smaller on a tie)."""
        return min(self.compile_s, key=lambda c: (abs(math.log(k / c)), c))


@dataclass
class Estimate:
    """The plan with a cost per unit.

    Attributes:
        units: (unit, estimated seconds) in plan order.
        step_s: (estimator, sampler, K) -> measured seconds per training step.
        forward_s: measured seconds per (test point x latent sample) of a forward pass.
        calibration_s: seconds the calibration took.
        compile: the measured cost of compiling the step (``train.compile``), or None (eager).
    """

    units: list[tuple[Unit, float]]
    step_s: dict[tuple[str, str, int], float]
    forward_s: float
    calibration_s: float
    compile: CompileCost | None = None

    @property
    def total_s(self) -> float:
        return math.fsum(s for _, s in self.units)


def calibrate(config: SuiteConfig, ctx: Context, repeats: int = 5, warmup: int = 2) -> tuple[dict, float]:
    """Time ``repeats`` training steps of every (estimator, sampler, K) of the plan and one test evaluation."""
    seed = config.seeds[0]
    x = ctx.dataset.train[: config.train.batch_size]
    if ctx.dataset.binarize == "dynamic":
        x = torch.bernoulli(x, generator=rng.generator(seed, "cost.data"))
    trained = config.variance.enabled or config.train.enabled or config.throughput.enabled
    shapes = {s for s in units.settings(config)} if trained else set()
    if config.variance.enabled:
        shapes.add(Setting(config.variance.anchor_estimator, 1))
    step_s = {}
    timing = Timing(repeats, warmup)
    for s in sorted(shapes, key=lambda s: (s.estimator, s.sampler, s.num_samples)):
        model = ctx.model_factory(seed)
        frame = measure_throughput(
            model, s.build(), x, s.num_samples, device=ctx.device, seed=seed, timing=timing
        )
        step_s[(s.estimator, s.sampler, s.num_samples)] = float(frame["step_s_median"].iloc[0])
    model = ctx.model_factory(seed)
    test = ctx.dataset.test[:100].to(ctx.device)
    samples = 10
    evaluate_elbo(
        model, test, num_samples=samples, generator=rng.generator(seed, "cost.eval", device=ctx.device)
    )
    tick = time.perf_counter()
    evaluate_elbo(
        model, test, num_samples=samples, generator=rng.generator(seed, "cost.eval", device=ctx.device)
    )
    forward_s = (time.perf_counter() - tick) / (len(test) * samples)
    return step_s, forward_s


def calibrate_compile(config: SuiteConfig, ctx: Context, repeats: int = 5, warmup: int = 2) -> CompileCost:
    """Compile the anchor estimator's training step at K = 1 and the largest K; time its first call, then
    ``repeats`` compiled and eager steps (median after ``warmup``), on the path training takes."""
    seed, anchor = config.seeds[0], config.variance.anchor_estimator
    spec = ctx.train_spec()
    x = ctx.dataset.train[: spec.batch_size]
    if ctx.dataset.binarize == "dynamic":
        x = torch.bernoulli(x, generator=rng.generator(seed, "cost.data"))
    x = x.to(ctx.device)
    compile_s, ratio = {}, {}
    for k in sorted({1, max(config.samples)}):
        medians = {}
        for compile in (spec.compile, False):
            program = SeedProgram(
                ctx.model_factory(seed),
                Setting(anchor, k).build(),
                k,
                ctx.dataset,
                dataclasses.replace(spec, compile=compile),
                seed,
                ctx.device,
            )

            def step(program=program) -> None:
                program.forward_backward(x)
                program.update(None)

            synchronize(ctx.device)
            tick = time.perf_counter()
            step()  # compiled: the call that compiles, which training counts as compile time
            synchronize(ctx.device)
            if compile:
                compile_s[k] = time.perf_counter() - tick
            medians[bool(compile)] = float(np.median(time_steps(step, ctx.device, repeats, warmup)))
        ratio[k] = medians[True] / medians[False]
    return CompileCost(compile_s, ratio)


def graphs_per_run(config: SuiteConfig, ctx: Context) -> int:
    """Batch shapes a run compiles for: 1, or 2 when it reaches an epoch's short last batch."""
    spec = ctx.train_spec()
    short = not spec.drop_last and len(ctx.dataset.train) % spec.batch_size != 0
    return 2 if short and config.train.steps >= Schedule.of(ctx.dataset, spec).per_epoch else 1


def estimate(config: SuiteConfig, ctx: Context | None = None) -> Estimate:
    """Every unit of ``config``'s plan with its estimated seconds on this machine (see the module's model)."""
    tick = time.perf_counter()
    ctx = ctx or Context(config, ".")
    check_memory(config, ctx.dataset.x_dim, ctx.device)  # calibrating a K that cannot fit would not return
    before = torch.get_num_threads()
    if config.threads:  # as the units will run: many more threads than cores is many times slower
        torch.set_num_threads(config.threads)
    trains = config.train.enabled or (config.variance.enabled and config.model.name not in BUILT_CHECKPOINTS)
    compiled = None
    try:
        step_s, forward_s = calibrate(config, ctx)
        if config.train.compile and trains:
            compiled = calibrate_compile(config, ctx)
    finally:
        torch.set_num_threads(before)
    test_points = len(ctx.dataset.test)
    t, v, tp = config.train, config.variance, config.throughput
    evals = t.steps // t.eval_every + 1
    eval_s = evals * t.eval_samples * min(t.eval_points or test_points, test_points) * forward_s
    ll_s = t.ll_samples * min(t.ll_points or test_points, test_points) * forward_s
    ref_step = step_s.get((v.anchor_estimator, "iid", 1), 0.0)
    graphs = graphs_per_run(config, ctx) if compiled else 0

    def compiled_at(k: int) -> tuple[float, float]:
        """(ρ, g · c) at the calibrated K nearest k: (1, 0) for an eager run."""
        if compiled is None:
            return 1.0, 0.0
        near = compiled.nearest(k)
        return compiled.ratio[near], graphs * compiled.compile_s[near]

    costs = []
    for unit in units.plan(config, test_points=test_points):
        if unit.kind == ANCHOR:
            rho, compiling = compiled_at(1)
            seconds = (
                0.0
                if config.model.name in BUILT_CHECKPOINTS
                else t.steps * ref_step * rho + compiling + eval_s
            )
        elif unit.kind == "variance":
            seconds = sum(
                (v.replicates + v.baseline_samples) * step_s[(s.estimator, s.sampler, s.num_samples)]
                for s in units.settings(config)
            )
        elif unit.kind == "landing":
            seconds = LANDING_S
        elif unit.kind == "laws":
            seconds = sum(
                laws.replicates(unit.estimator, k) * (LAWS_S_PER_REPLICATE + k * LAWS_S_PER_DRAW)
                for k in config.samples
            )
        elif unit.kind == "quadrature":
            seconds = QUADRATURE_S
        elif unit.kind == "convergence" and unit.seeds:  # S seeds as one program, compiled once
            seeds, (rho, compiling) = (
                len(unit.seeds) * max(1, len(unit.lrs)),
                compiled_at(unit.setting.num_samples),
            )
            steps_s = t.steps * step_s[_key(unit.setting)] * rho / units.STACKED_SPEEDUP
            seconds = seeds * (steps_s + eval_s + ll_s) + compiling
        elif unit.kind == "convergence":
            rho, compiling = compiled_at(unit.setting.num_samples)
            seconds = t.steps * step_s[_key(unit.setting)] * rho + compiling + eval_s + ll_s
        else:  # every setting at the unit's K, timed interleaved; the hand-written step costs about reparam's
            one = sum(step_s[_key(s)] for s in units.timed_settings(unit, config))
            one += ref_step if units.times_handwritten(unit, config) else 0.0
            seconds = THROUGHPUT_ROUNDS * (tp.warmup + tp.repeats + 1) * one
        costs.append((unit, seconds))
    return Estimate(costs, step_s, forward_s, time.perf_counter() - tick, compiled)


def _key(setting: Setting) -> tuple[str, str, int]:
    return setting.estimator, setting.sampler, setting.num_samples


def describe(est: Estimate, workers: int) -> str:
    """The plan as text: one line per unit with its estimated time, then the totals."""
    lines = []
    for unit, seconds in est.units:
        lines.append(f"  {unit.label:<48} {duration(seconds):>10}")
    total = est.total_s
    by_kind: dict[str, float] = {}
    for unit, seconds in est.units:
        by_kind[unit.kind] = by_kind.get(unit.kind, 0.0) + seconds
    lines.append(
        f"{len(est.units)} units, estimated {duration(total)} on one worker ("
        + ", ".join(f"{kind} {duration(s)}" for kind, s in by_kind.items())
        + ")"
    )
    if workers > 1:
        lines.append(f"with {workers} workers: at least {duration(total / workers)}")
    if est.compile is not None:
        lines.append(
            "compiled step (torch.compile, each training unit compiles its own): "
            + ", ".join(
                f"K={k} {est.compile.compile_s[k]:.1f} s to compile, steps {est.compile.ratio[k]:.2f}x eager"
                for k in sorted(est.compile.compile_s)
            )
        )
    lines.append(
        f"(calibrated in {est.calibration_s:.1f} s from timed training steps of every estimator x K on this "
        "machine; variance units are an upper bound)"
    )
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """Seconds as a short human duration: 42 s, 7.5 min, 3.2 h, 4.1 days."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
