"""What a run will cost before it starts (the dry run): the cost model's rates measured on this machine.

For every distinct (estimator, sampler, K) of the plan, and the anchor estimator at K = 1, :func:`calibrate`
times a few training steps of the configured model on a real minibatch (`vaebench.measures.throughput`:
estimator, backward and optimizer step; median of ``repeats`` after ``warmup``), and one test-ELBO evaluation
for the cost of a forward pass per (test point x latent sample). With ``train.compile``,
:func:`calibrate_compile` compiles the anchor estimator's training step at K = 1 and at the plan's largest K
(the path training takes, `~vaebench.train.program.SeedProgram`; compiling every setting would cost seconds
each) and times its first call and its compiled over eager steps. Other estimators are assumed to compile in
about the anchor's time (the same model; a few more operations), and K = 1's first call includes the
compiler's start-up in a fresh process, which a worker pays once: an upper bound. :func:`estimate` then puts
the rates into the cost model (:mod:`vaebench.suite.cost`).

The estimate is for one worker of ``threads`` threads on this machine; the total with ``W`` workers is the
total over W, a lower bound (units do not divide evenly; throughput units run alone).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from vaebench import rng
from vaebench.config import SuiteConfig
from vaebench.estimators import Setting
from vaebench.measures.throughput import Timing, measure_throughput, synchronize, time_steps
from vaebench.measures.variance import measured_minibatch
from vaebench.plugins.registry import BUILT_CHECKPOINTS
from vaebench.problems import get_problem
from vaebench.suite import cost, units
from vaebench.suite.context import Context
from vaebench.suite.cost import CompileCost, Rates
from vaebench.suite.units import Unit
from vaebench.train import evaluate_elbo
from vaebench.train.program import SeedProgram
from vaebench.train.run import Schedule


@dataclass
class Estimate:
    """The plan with a cost per unit.

    Attributes:
        units: (unit, estimated seconds) in plan order.
        rates: the measured rates of the cost model.
        calibration_s: seconds the calibration took.
    """

    units: list[tuple[Unit, float]]
    rates: Rates
    calibration_s: float

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
    return CompileCost(compile_s, ratio, graphs_per_run(config, ctx))


def graphs_per_run(config: SuiteConfig, ctx: Context) -> int:
    """Batch shapes a run compiles for: 1, or 2 when it reaches an epoch's short last batch."""
    spec = ctx.train_spec()
    short = not spec.drop_last and len(ctx.dataset.train) % spec.batch_size != 0
    return 2 if short and config.train.steps >= Schedule.of(ctx.dataset, spec).per_epoch else 1


def calibrate_problems(config: SuiteConfig, ctx: Context, repeats: int = 5, warmup: int = 2) -> dict:
    """A run across problems: time the training step of every setting of each problem's grid, and of the
    anchor (``reparam``, K = 1), on the problem's own model and minibatch (MVD's 4Z points per sample cost many
    reparam steps)."""
    step_s = {}
    for name in config.problems:
        if get_problem(name).unavailable():
            continue
        problem, data = get_problem(name), ctx.problem_data(name)
        x = measured_minibatch(data, problem.budget.batch_size or data.train.shape[0], 0)
        grid = units.problem_settings(config, problem)[0]
        for s in dict.fromkeys([Setting("reparam", 1), *grid]):
            frame = measure_throughput(
                problem.build(data, 0), s.build(), x, s.num_samples, timing=Timing(repeats, warmup)
            )
            step_s[(name, s.estimator, s.num_samples)] = float(frame["step_s_median"].iloc[0])
    return step_s


def estimate(config: SuiteConfig, ctx: Context | None = None) -> Estimate:
    """Every unit of ``config``'s plan with its estimated seconds on this machine (:mod:`vaebench.suite.cost`)."""
    tick = time.perf_counter()
    ctx = ctx or Context(config, ".")
    if config.problems:
        before = torch.get_num_threads()
        torch.set_num_threads(max(config.threads, 1))  # as the workers train
        try:
            rates = Rates({}, 0.0, 0, problem_step_s=calibrate_problems(config, ctx))
        finally:
            torch.set_num_threads(before)
        costs = [(unit, cost.seconds(unit, config, rates)) for unit in units.plan(config)]
        return Estimate(costs, rates, time.perf_counter() - tick)
    cost.check_memory(
        config, ctx.dataset.x_dim, ctx.device
    )  # calibrating a K that cannot fit would not return
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
    rates = Rates(step_s, forward_s, len(ctx.dataset.test), compiled)
    costs = [(unit, cost.seconds(unit, config, rates)) for unit in units.plan(config)]
    return Estimate(costs, rates, time.perf_counter() - tick)


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
    if est.rates.compile is not None:
        compiled = est.rates.compile
        lines.append(
            "compiled step (torch.compile, each training unit compiles its own): "
            + ", ".join(
                f"K={k} {compiled.compile_s[k]:.1f} s to compile, steps {compiled.ratio[k]:.2f}x eager"
                for k in sorted(compiled.compile_s)
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
