"""How each unit of the plan is computed: the suite's loops over settings, seeds and checkpoints, and the
measures they call with one setting at a time.

A unit's computation is deterministic given the configuration and the unit (explicit seeds, one torch thread
per worker by default), so it gives the same rows in this process, in a worker process or in a Ray task.
:func:`execute` returns a tidy frame for every kind but the anchor run, whose result is its checkpoints.

A unit of a run across problems (``unit.problem``) is computed on its problem's data, model and budget
(`PROBLEM_RUNNERS`): the anchor is ``reparam`` at K = 1 for the budget; the variance is the encoder's, on the
problem's minibatch (the whole data when the budget takes it: B = N, as the model is fitted to), stateful
estimators warmed up on other minibatches (or on the measured batch when B = N); the noise unit splits each
setting's variance into its Monte Carlo and minibatch parts over `NOISE_BATCHES` minibatches
(``decompose_noise``); a merit unit trains the setting from every seed as one program and reads the problem's
figures of merit (:func:`vaebench.measures.merit.figures_of_merit`) at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch

from vaebench import rng
from vaebench.checks import laws
from vaebench.checks.gaussian_1d import FAMILY_LEVEL, gaussian_1d_check
from vaebench.checks.landing import stl_landing
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, Setting
from vaebench.measures import schema
from vaebench.measures.convergence import LogLikelihood, measure_convergence, measure_convergence_seeds
from vaebench.measures.merit import figures_of_merit
from vaebench.measures.throughput import Timing, build_handwritten, build_step, measure_interleaved
from vaebench.measures.variance import (
    VarianceOptions,
    baseline_target,
    decompose_noise,
    layout,
    measure_variance,
    measured_minibatch,
    target_baseline,
    warm_up,
    warm_up_minibatches,
)
from vaebench.measures.weights import WEIGHT_SAMPLES, weight_summary
from vaebench.plugins.registry import BUILT_CHECKPOINTS
from vaebench.problems import FIGURES, Problem, get_problem
from vaebench.suite import cost
from vaebench.suite.context import Context
from vaebench.suite.units import (
    ANCHOR,
    NOISE_BATCHES,
    Skipped,
    Unit,
    anchor_unit,
    checkpoint_steps,
    problem_settings,
    timed_settings,
    times_handwritten,
)
from vaebench.train import NotStackable, TrainSpec, train, train_seeds

HANDWRITTEN_STEP_NEEDS = (
    "the pytorch/examples reference step has a Bernoulli likelihood (binary cross-entropy), which needs data "
    "in [0, 1]; this data set is not"
)


MERIT_SAMPLES = 1000
"""Draws from q (global latents) or per test point (amortised) for the figures of merit."""


def execute(unit: Unit, ctx: Context) -> pd.DataFrame | dict:
    """Compute one unit: a tidy frame, or for the anchor run the checkpoints to save."""
    return (PROBLEM_RUNNERS if unit.problem else RUNNERS)[unit.kind](unit, ctx)


def _anchor(unit: Unit, ctx: Context) -> dict:
    """The anchor run's checkpoints: trained by the anchor estimator, or for a model whose checkpoint is built
    (:data:`vaebench.plugins.registry.BUILT_CHECKPOINTS`: the Gaussian toy) that checkpoint, as ``end``, at step 0."""
    config = ctx.config
    seed = config.seeds[0]
    build = BUILT_CHECKPOINTS.get(config.model.name)
    if build is not None:
        state = build(ctx.dataset, seed=seed).state_dict()
        checkpoints = {label: {"step": 0, "state": state} for label in config.variance.checkpoints}
        return {"estimator": "built", "seed": seed, "diverged_step": None, "checkpoints": checkpoints}
    steps = checkpoint_steps(config)
    setting = Setting(config.variance.anchor_estimator, 1)
    spec = ctx.train_spec(keep=tuple(sorted(set(steps.values()))))
    result = train(
        ctx.model_factory(seed), setting, ctx.dataset, spec, seed=seed, checkpoint=ctx.checkpointer(unit)
    )
    checkpoints = {
        label: {"step": step, "state": result.checkpoints[step]}
        for label, step in steps.items()
        if step in result.checkpoints
    }
    return {
        "estimator": setting.estimator,
        "seed": seed,
        "diverged_step": result.diverged_step,
        "checkpoints": checkpoints,
    }


def load_anchor(ctx: Context, problem: str = "") -> dict:
    """The anchor run's checkpoints saved by its unit (of ``problem``, in a run across problems)."""
    return torch.load(ctx.out / anchor_unit(problem).path, map_location="cpu", weights_only=True)


def _variance(unit: Unit, ctx: Context) -> pd.DataFrame:
    """Every (estimator, sampler, K) of the grid at one checkpoint, on seed ``unit.seed``'s minibatch; the
    grid's combinations that cannot run are recorded as skipped rows, with the reason."""
    config, v = ctx.config, ctx.config.variance
    anchor = load_anchor(ctx)
    if unit.checkpoint not in anchor["checkpoints"]:
        step = checkpoint_steps(config)[unit.checkpoint]
        raise Skipped(
            f"not measured: the anchor run ({anchor['estimator']}, K=1, seed {anchor['seed']}) diverged at step "
            f"{anchor['diverged_step']}, before the {unit.checkpoint!r} checkpoint (step {step})"
        )
    saved = anchor["checkpoints"][unit.checkpoint]
    model = ctx.model_factory(anchor["seed"])
    model.load_state_dict(saved["state"])
    model.to(ctx.device)
    seed, groups = unit.seed, list(layout(model).groups)
    x = measured_minibatch(ctx.dataset, v.batch_size, seed).to(ctx.device)
    stateful = any(ESTIMATORS[name].stateful for name in config.estimators)
    others = (
        [b.to(ctx.device) for b in warm_up_minibatches(ctx.dataset, v.batch_size, seed)] if stateful else []
    )
    baselines: dict = {}  # one per target, shared by the estimators of that target
    # the minibatch's importance-weight diagnostics (k-hat, ESS, chi²), drawn once, on every row
    options = VarianceOptions(weights=weight_summary(model, x, WEIGHT_SAMPLES, seed=seed))
    frames = []
    for name in config.estimators:
        for sampler in config.samplers:
            for k in config.samples:
                setting = _setting(name, k, sampler)
                if isinstance(setting, str):
                    frames.append(_skipped(name, k, seed, groups, setting, sampler))
                    continue
                estimator = setting.build()
                if estimator.stateful:
                    warm_up(estimator, model, others, num_samples=k, seed=seed)
                baseline = None
                if v.baseline_samples:
                    target = baseline_target(estimator, k)
                    if target not in baselines:
                        baselines[target] = target_baseline(model, x, target, v.baseline_samples, seed)
                    baseline = baselines[target]
                frame = measure_variance(
                    model, estimator, x, k, v.replicates, baseline=baseline, seed=seed, options=options
                )
                warmed = len(others) if estimator.stateful else 0
                frames.append(frame.assign(status="ok", skip_reason="", warm_up_batches=warmed))
    out = pd.concat(frames, ignore_index=True).assign(
        checkpoint=unit.checkpoint, step=saved["step"], run="shared"
    )
    return schema.conform(out[list(schema.VARIANCE.measured)], schema.VARIANCE)


def _setting(name: str, k: int, sampler: str) -> Setting | str:
    """The setting of the grid, or why it cannot run: the `Setting`'s own check (the configuration was validated,
    so its refusal is a combination the estimator does not take), not a second one here."""
    try:
        return Setting(name, k, sampler)
    except VaebenchError as why:
        return str(why)


def _skipped(name: str, k: int, seed: int, groups: list[str], reason: str, sampler: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "estimator": name,
            "sampler": sampler,
            "objective": ESTIMATORS[name].objective,
            "num_samples": k,
            "seed": seed,
            "group": groups,
            "status": "skipped",
            "skip_reason": reason,
        }
    )


def _convergence(unit: Unit, ctx: Context) -> pd.DataFrame:
    """One training run, or the runs of the unit's seeds as one program (a note when they could not stack)."""
    t = ctx.config.train
    likelihood = LogLikelihood(t.ll_samples, t.ll_points or None)
    if unit.seeds:
        slices = [(seed, lr) for seed in unit.seeds for lr in unit.lrs or (None,)]  # seed-major
        frame, note = measure_convergence_seeds(
            [ctx.model_factory(seed) for seed, _ in slices],
            unit.setting,
            ctx.dataset,
            ctx.train_spec(),
            seeds=[seed for seed, _ in slices],
            likelihood=likelihood,
            checkpoint=ctx.checkpointer(unit),
            lrs=[lr for _, lr in slices] if unit.lrs else None,
        )
        if note:
            frame.attrs["note"] = f"{unit.key}: {note}"
        return frame
    return measure_convergence(
        ctx.model_factory(unit.seed),
        unit.setting,
        ctx.dataset,
        ctx.train_spec(),
        seed=unit.seed,
        likelihood=likelihood,
        checkpoint=ctx.checkpointer(unit),
    )


def _throughput(unit: Unit, ctx: Context) -> pd.DataFrame:
    """Every setting at the unit's K (and at the smallest K the hand-written step), built here and timed
    interleaved in rounds by the throughput measure, so that their ratios share each round's machine load."""
    config = ctx.config
    t = config.throughput
    seed = config.seeds[0]
    x = ctx.dataset.train[: t.batch_size]
    if ctx.dataset.binarize == "dynamic":
        x = torch.bernoulli(x, generator=rng.generator(seed, "throughput.data"))
    model = ctx.model_factory(seed)
    built, skipped = [], []
    if times_handwritten(unit, config):
        if x.numel() and (x.min() < 0 or x.max() > 1):
            skipped.append({
                "sampler": "iid", "estimator": schema.HANDWRITTEN, "num_samples": 1, "seed": seed,
                "batch_size": int(x.shape[0]), "device": str(ctx.device), "status": "skipped",
                "reason": HANDWRITTEN_STEP_NEEDS, "timing_group": unit.name,
            })  # fmt: skip
        else:
            built.append(
                build_handwritten(x, hidden=model.hidden[0], z_dim=model.z_dim, device=ctx.device, seed=seed)
            )
    for setting in timed_settings(unit, config):
        with rng.seeded(seed, "throughput.noise", device=ctx.device):  # as measure_throughput builds a step
            built.append(
                build_step(model, setting.build(), x, setting.num_samples, device=ctx.device, seed=seed)
            )
    frames = [pd.DataFrame(skipped)] if skipped else []
    if built:
        timing = Timing(t.repeats, t.warmup)
        frames.append(measure_interleaved(built, seed=seed, timing=timing, group=unit.name))
    out = pd.concat(frames, ignore_index=True)
    if skipped:  # the run's notes say it once; the row keeps the reason for the table
        out.attrs["note"] = f"{unit.key}: hand-written step not timed: {HANDWRITTEN_STEP_NEEDS}"
    return out


def _landing(unit: Unit, ctx: Context) -> pd.DataFrame:
    return stl_landing()


def _laws(unit: Unit, ctx: Context) -> pd.DataFrame:
    """One estimator at every K of the grid at a built checkpoint of :mod:`vaebench.checks.laws`, on the
    first seed, with the checkpoint's weight diagnostics (drawn once, the same for every estimator)."""
    config = ctx.config
    seed = config.seeds[0]
    model, x = laws.checkpoint(unit.checkpoint, laws.BATCH_SIZE, seed)
    model, x = model.to(ctx.device), x.to(ctx.device)
    groups = list(layout(model).groups)
    options = VarianceOptions(timing_repeats=1, weights=weight_summary(model, x, WEIGHT_SAMPLES, seed=seed))
    frames = []
    measured, note = cost.laws_grid(config, unit.estimator)
    for k in config.samples:
        setting = _setting(unit.estimator, k, unit.sampler) if k in measured else note
        if isinstance(setting, str):
            frames.append(_skipped(unit.estimator, k, seed, groups, setting, unit.sampler))
            continue
        estimator = setting.build()
        replicates = laws.replicates(unit.estimator, k)
        frame = measure_variance(model, estimator, x, k, replicates, seed=seed, options=options)
        frames.append(frame.assign(status="ok", skip_reason="", warm_up_batches=0))
    out = pd.concat(frames, ignore_index=True).assign(checkpoint=unit.checkpoint, step=0, run="built")
    return schema.conform(out[list(schema.VARIANCE.measured)], schema.VARIANCE)


def _quadrature(unit: Unit, ctx: Context) -> pd.DataFrame:
    """Mohamed et al. 2020's 1-D check, every row's interval at the family-wise level of
    :data:`vaebench.checks.gaussian_1d.FAMILY_LEVEL` (Bonferroni over the rows)."""
    return schema.conform(
        gaussian_1d_check(family_level=FAMILY_LEVEL, seed=ctx.config.seeds[0]), schema.QUADRATURE
    )


RUNNERS: dict[str, Callable[[Unit, Context], pd.DataFrame | dict]] = {
    ANCHOR: _anchor,
    "variance": _variance,
    "convergence": _convergence,
    "throughput": _throughput,
    "landing": _landing,
    "laws": _laws,
    "quadrature": _quadrature,
}


# ------------------------------------------------------------------------------------------------ problems


def batch_size(problem: Problem, data) -> int:
    """The problem's minibatch: its budget's, or the whole training set (``batch_size`` 0)."""
    return problem.budget.batch_size or data.train.shape[0]


def _spec(problem: Problem, data) -> TrainSpec:
    b = problem.budget
    return TrainSpec(steps=b.steps, batch_size=batch_size(problem, data), lr=b.lr, lr_schedule=b.lr_schedule,
                     eval_every=b.steps, eval_points=1)  # fmt: skip


def _start(problem: Problem, data):
    """The problem's model from seed 0: its built checkpoint (the Gaussian toy's), else its initialisation."""
    if problem.name in BUILT_CHECKPOINTS:
        return BUILT_CHECKPOINTS[problem.name](data, seed=0)
    return problem.build(data, 0)


def _problem_anchor(unit: Unit, ctx: Context) -> dict:
    """The problem's anchor: ``reparam`` at K = 1 from seed 0 for its budget (or its built checkpoint), as
    checkpoint ``end``."""
    problem, data = get_problem(unit.problem), ctx.problem_data(unit.problem)
    model, diverged, step = _start(problem, data), None, 0
    if problem.name not in BUILT_CHECKPOINTS:
        result = train(model, Setting("reparam", 1), data, _spec(problem, data), seed=0,
                       checkpoint=ctx.checkpointer(unit))  # fmt: skip
        diverged, step = result.diverged_step, result.steps
    checkpoints = {"end": {"step": step, "state": model.state_dict()}}
    return {"estimator": "reparam", "seed": 0, "diverged_step": diverged, "checkpoints": checkpoints}


def _problem_model(unit: Unit, ctx: Context):
    problem, data = get_problem(unit.problem), ctx.problem_data(unit.problem)
    model = _start(problem, data)
    model.load_state_dict(load_anchor(ctx, unit.problem)["checkpoints"]["end"]["state"])
    return problem, data, model


def _warmed(setting: Setting, model, others: list, seed: int):
    est = setting.build()
    if ESTIMATORS[setting.estimator].stateful:
        est = warm_up(est, model, others, num_samples=setting.num_samples, seed=seed)
    return est


def _problem_variance(unit: Unit, ctx: Context) -> pd.DataFrame:
    """Every setting that applies to the problem, at its anchor, on seed ``unit.seed``'s minibatch."""
    config, seed = ctx.config, unit.seed
    problem, data, model = _problem_model(unit, ctx)
    b, n = batch_size(problem, data), data.train.shape[0]
    x = measured_minibatch(data, b, seed)
    others = warm_up_minibatches(data, b, seed) if b < n else [x]
    options = VarianceOptions(resamples=200)
    rows = []
    for setting in problem_settings(config, problem)[0]:
        est = _warmed(setting, model, others, seed)
        got = measure_variance(model, est, x, setting.num_samples, config.variance.replicates, seed=seed,
                               options=options)  # fmt: skip
        rows.append(got[got["group"] == "encoder"].assign(estimator=setting.estimator,
                                                            num_samples=setting.num_samples, seed=seed))  # fmt: skip
    return pd.concat(rows, ignore_index=True).assign(problem=problem.name)


def _problem_noise(unit: Unit, ctx: Context) -> pd.DataFrame:
    """The Monte Carlo / minibatch split of every setting's noise (global latents on minibatches)."""
    config, seed = ctx.config, unit.seed
    problem, data, model = _problem_model(unit, ctx)
    b, n = batch_size(problem, data), data.train.shape[0]
    if b >= n:
        raise Skipped(f"{problem.name} trains on its whole data (B = N): no minibatch noise to split")
    others = warm_up_minibatches(data, b, seed)
    batches = list(data.batches(b, seed=0, drop_last=True))[:NOISE_BATCHES]
    options = VarianceOptions(resamples=200)
    noise = []
    for setting in problem_settings(config, problem)[0]:
        est = _warmed(setting, model, others, seed)
        parts = decompose_noise(model, est, batches, setting.num_samples,
                                max(2, config.variance.replicates // 5), seed=seed, options=options)  # fmt: skip
        noise.append(parts[parts["group"] == "encoder"].assign(estimator=setting.estimator,
                                                               num_samples=setting.num_samples))  # fmt: skip
    return pd.concat(noise, ignore_index=True).assign(problem=problem.name)


def _problem_merit(unit: Unit, ctx: Context) -> pd.DataFrame:
    """The setting trained from every seed for the problem's budget, and its figures of merit at the end."""
    config, setting, seeds = ctx.config, unit.setting, list(unit.seeds)
    problem, data = get_problem(unit.problem), ctx.problem_data(unit.problem)
    models = [problem.build(data, s) for s in seeds]
    spec = _spec(problem, data)
    try:
        results = train_seeds(models, setting, data, spec, seeds=seeds)
    except NotStackable:  # an estimator whose state does not stack: one run per seed
        models = [problem.build(data, s) for s in seeds]
        results = [train(m, setting, data, spec, seed=s) for m, s in zip(models, seeds, strict=True)]
    frames = []
    for model, seed, result in zip(models, seeds, results, strict=True):
        if result.diverged_step is not None:
            frames.append(pd.DataFrame([{"figure": problem.ranked_by, "value": float("nan"), "seed": seed}]))
            continue
        options = {"samples": MERIT_SAMPLES, "seed": seed}
        if not problem.global_latents:
            options["points"] = config.train.ll_points
        frames.append(figures_of_merit(model, data, problem.figures, **options))
    out = pd.concat(frames, ignore_index=True)
    out["higher_is_better"] = [FIGURES[f][1] for f in out["figure"]]
    return out.assign(problem=problem.name, estimator=setting.estimator, num_samples=setting.num_samples,
                      ranks=out["figure"] == problem.ranked_by)  # fmt: skip


PROBLEM_RUNNERS: dict[str, Callable[[Unit, Context], pd.DataFrame | dict]] = {
    ANCHOR: _problem_anchor,
    "variance": _problem_variance,
    "noise": _problem_noise,
    "merit": _problem_merit,
}
