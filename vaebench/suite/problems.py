"""A run across problems (``problems = [...]``, ``--problems a,b``): the suite's loop over problems, settings
and seeds, each problem on its own data, model and budget (:class:`vaebench.problems.Problem`).

For each available problem (one whose data are missing is dropped, with a note) the plan holds:

- ``<problem>/anchor``: one run of ``reparam`` at K = 1 (seed 0) for the problem's budget (a built checkpoint,
  the Gaussian toy's, is built instead), whose end is the point where every setting's gradient is measured;
- ``<problem>/variance-s<seed>``: every setting that applies (the estimators' own refusals and
  :meth:`Problem.unsupported`, each said once as a note) at that point, on seed ``seed``'s minibatch: the
  encoder's work-normalised variance (trace variance x seconds per estimate). Stateful estimators are warmed
  up on other minibatches, or on the measured batch itself when the budget takes the whole data (B = N, as the
  model is fitted to). A global-latent problem trained on minibatches (B < N) also gets the law-of-total-
  variance split of each setting's noise into its Monte Carlo and minibatch parts (``decompose_noise``, seed
  0's unit, ``noise.csv``);
- ``<problem>/convergence-<setting>``: the setting trained for the problem's budget from every seed, the seeds
  as one program (:func:`vaebench.train.train_seeds`), and the problem's figures of merit at the end
  (:func:`vaebench.measures.merit.figures_of_merit`: test ELBO and log-likelihood for the amortised VAEs; the
  full-data ELBO, held-out predictive log-likelihood, gap to log Z and Pareto k̂ for global latents).

The run trains on the CPU (the problems' models are small). Every unit is saved under ``units/<problem>/`` as it finishes and is not redone when its file exists (a
killed run continues where it stopped). Every table carries a ``problem`` column: ``variance.csv``,
``merit.csv``, ``noise.csv``; from them :mod:`vaebench.analysis.across` computes ``across.csv`` (the
interquartile mean, probability of improvement and performance profiles of the variance x time scores, and the
probability of improvement on each problem's ranking figure, every aggregate with its stratified bootstrap
interval over problems and seeds) and ``transfer.csv``.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vaebench import files, provenance
from vaebench.analysis.across import across, figure_scores, leaders, transfer, variance_time_scores
from vaebench.config import SuiteConfig, to_dict
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, Setting, make_estimator, unsupported
from vaebench.measures.merit import figures_of_merit
from vaebench.measures.throughput import Timing, measure_throughput
from vaebench.measures.variance import (
    VarianceOptions,
    decompose_noise,
    measure_variance,
    measured_minibatch,
    warm_up,
    warm_up_minibatches,
)
from vaebench.plugins.registry import BUILT_CHECKPOINTS
from vaebench.problems import FIGURES, Problem, get_problem, load_installed_problems
from vaebench.suite.cost import STACKED_SPEEDUP
from vaebench.suite.dispatch import worker_count
from vaebench.train import NotStackable, TrainSpec, train, train_seeds

NOISE_BATCHES = 10
"""Minibatches of the Monte Carlo / minibatch noise split (each with ``variance.replicates // 5`` estimates)."""

MERIT_SAMPLES = 1000
"""Draws from q (global latents) or per test point (amortised) for the figures of merit."""


DRY_RUN_TIMING = Timing(5, 2)
"""The dry run's timed training steps per problem and K: 5, after 2 untimed."""


@dataclass(frozen=True)
class ProblemUnit:
    """One unit of a run across problems: ``kind`` is ``anchor``, ``variance`` or ``convergence``."""

    problem: str
    kind: str
    seed: int | None = None
    setting: Setting | None = None

    @property
    def name(self) -> str:
        if self.kind == "anchor":
            return f"{self.problem}/anchor"
        if self.kind == "variance":
            return f"{self.problem}/variance-s{self.seed}"
        return f"{self.problem}/convergence-{self.setting.label}"

    @property
    def path(self) -> Path:
        return Path("units") / f"{self.name}.{'pt' if self.kind == 'anchor' else 'csv'}"


def batch_size(problem: Problem, data) -> int:
    """The problem's minibatch: its budget's, or the whole training set (``batch_size`` 0)."""
    return problem.budget.batch_size or data.train.shape[0]


def problem_settings(config: SuiteConfig, problem: Problem) -> tuple[list[Setting], list[str]]:
    """The settings of ``config`` that run on ``problem``, and its refusals as notes: an estimator's own (K
    below its minimum: the same on every problem, so said without one) and the problem's, one per reason."""
    out, why = [], {}
    left = [n for n in config.estimators if problem.estimators and n not in problem.estimators]
    notes = [f"{problem.name}: only {', '.join(problem.estimators)} ({problem.limit})"] if left else []
    for name in config.estimators:
        if name in left:
            continue
        for k in config.samples:
            own = unsupported(name, k)
            reason = own or problem.unsupported(name, k)
            if reason:
                why.setdefault((name, "" if own else problem.name, reason), []).append(k)
            else:
                out.append(Setting(name, k))
    notes += [
        f"{where + ': ' if where else ''}{name} skipped at K={','.join(map(str, ks))}: {reason}"
        for (name, where, reason), ks in why.items()
    ]
    return out, notes


def shared(grid: list[Setting]) -> dict[Setting, Setting]:
    """Setting -> the setting of ``grid`` whose gradient it is at its K, draw for draw (IWAE, DReG and IWAE-STL
    at K = 1 are reparam, STL and STL: `Estimator.same_gradient`): trained once, its figures are the other's."""
    out = {}
    for s in grid:
        other = s.kind.same_gradient.get(s.num_samples)
        twin = Setting(other, s.num_samples) if other and other != s.estimator else None
        if twin in grid and twin not in out:
            out[s] = twin
    return out


def plan(config: SuiteConfig) -> tuple[list[ProblemUnit], list[str]]:
    """Every unit of a run across ``config.problems``, in order, and its notes (problems dropped, settings
    refused)."""
    load_installed_problems()
    units: list[ProblemUnit] = []
    notes: list[str] = []
    for name in config.problems:
        problem = get_problem(name)
        why = problem.unavailable()
        if why:
            notes.append(f"problem {name} dropped: {why}")
            continue
        grid, refused = problem_settings(config, problem)
        notes += [n for n in refused if n not in notes]
        if not grid:
            notes.append(f"problem {name} dropped: no setting of the configuration runs on it")
            continue
        units.append(ProblemUnit(name, "anchor"))
        units += [ProblemUnit(name, "variance", seed=s) for s in config.variance_seeds]
        units += [ProblemUnit(name, "convergence", setting=s) for s in grid if s not in shared(grid)]
    return units, notes


def _spec(problem: Problem, data, steps: int | None = None) -> TrainSpec:
    b = problem.budget
    n = steps or b.steps
    return TrainSpec(steps=n, batch_size=batch_size(problem, data), lr=b.lr, lr_schedule=b.lr_schedule,
                     eval_every=n, eval_points=1)  # fmt: skip


def _anchor(problem: Problem, data) -> torch.nn.Module:
    if problem.name in BUILT_CHECKPOINTS:
        return BUILT_CHECKPOINTS[problem.name](data, seed=0)
    model = problem.build(data, 0)
    train(model, Setting("reparam", 1), data, _spec(problem, data), seed=0)
    return model


def _variance(
    config: SuiteConfig, problem: Problem, data, model, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    b, n = batch_size(problem, data), data.train.shape[0]
    x = measured_minibatch(data, b, seed)
    others = warm_up_minibatches(data, b, seed) if b < n else [x]
    options = VarianceOptions(resamples=200)
    grid, _ = problem_settings(config, problem)
    rows, noise = [], []
    for setting in grid:
        est = make_estimator(setting.estimator)
        if ESTIMATORS[setting.estimator].stateful:
            est = warm_up(est, model, others, num_samples=setting.num_samples, seed=seed)
        got = measure_variance(model, est, x, setting.num_samples, config.variance.replicates, seed=seed,
                               options=options)  # fmt: skip
        rows.append(got[got["group"] == "encoder"].assign(estimator=setting.estimator,
                                                            num_samples=setting.num_samples, seed=seed))  # fmt: skip
        if problem.global_latents and b < n and seed == config.variance_seeds[0]:
            batches = list(data.batches(b, seed=0, drop_last=True))[:NOISE_BATCHES]
            parts = decompose_noise(model, est, batches, setting.num_samples,
                                    max(2, config.variance.replicates // 5), seed=seed, options=options)  # fmt: skip
            noise.append(parts[parts["group"] == "encoder"].assign(estimator=setting.estimator,
                                                                   num_samples=setting.num_samples))  # fmt: skip
    frame = pd.concat(rows, ignore_index=True).assign(problem=problem.name)
    return frame, (
        pd.concat(noise, ignore_index=True).assign(problem=problem.name) if noise else pd.DataFrame()
    )


def _convergence(config: SuiteConfig, problem: Problem, data, setting: Setting) -> pd.DataFrame:
    seeds = list(config.seeds)
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


@functools.cache
def _data(name: str):
    return get_problem(name).load()


def _execute(config: SuiteConfig, out: Path, unit: ProblemUnit) -> ProblemUnit:
    """Compute one unit and save it (in this process or a worker's)."""
    torch.set_num_threads(max(config.threads, 1))
    load_installed_problems()
    problem, path = get_problem(unit.problem), out / unit.path
    d = _data(unit.problem)
    path.parent.mkdir(parents=True, exist_ok=True)
    if unit.kind == "anchor":
        torch.save(_anchor(problem, d).state_dict(), path)
    elif unit.kind == "variance":
        model = problem.build(d, 0) if problem.name not in BUILT_CHECKPOINTS else _anchor(problem, d)
        model.load_state_dict(torch.load(out / ProblemUnit(unit.problem, "anchor").path, weights_only=True))
        frame, noise = _variance(config, problem, d, model, unit.seed)
        if not noise.empty:
            files.write_csv(path.with_name(f"noise-s{unit.seed}.csv"), noise)
        files.write_csv(path, frame)
    else:
        files.write_csv(path, _convergence(config, problem, d, unit.setting))
    return unit


def run_problems(
    config: SuiteConfig, out: str | Path, log: Callable[[str], None] = print
) -> dict[str, pd.DataFrame]:
    """Run every unit of :func:`plan` not yet saved under ``out`` (``dispatch.worker_count`` processes: the
    anchors first, then the rest), then write the tables across problems.

    Returns:
        The tables written, by file stem: ``variance``, ``merit``, ``noise``, ``across``, ``transfer``.
    """
    out = Path(out)
    units, notes = plan(config)
    if not units:
        raise VaebenchError("no problem of the configuration can run here: " + "; ".join(notes))
    for note in notes:
        log(f"note: {note}")
    out.mkdir(parents=True, exist_ok=True)
    files.write_text(out / "notes.txt", "".join(f"{n}\n" for n in notes))
    started, start, done = provenance.now(), time.perf_counter(), 0
    pending = [u for u in units if not (out / u.path).is_file()]
    workers = worker_count(config)
    for phase in ([u for u in pending if u.kind == "anchor"], [u for u in pending if u.kind != "anchor"]):
        if workers == 1:
            finished = (_execute(config, out, u) for u in phase)
        else:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            finished = futures.as_completed([pool.submit(_execute, config, out, u) for u in phase])
            finished = (f.result() for f in finished)
        for unit in finished:
            done += 1
            log(f"[{done}/{len(pending)}] {unit.name} ({time.perf_counter() - start:.0f} s)")
        if workers > 1:
            pool.shutdown()
    tables = write_tables(out, units)
    record = provenance.collect(to_dict(config), device="cpu", started=started, ended=provenance.now(),
                                status="complete", units={"total": len(units), "run": len(pending)}, notes=notes)  # fmt: skip
    files.write_text(out / "run.json", json.dumps(record, indent=1, default=str))
    return tables


def describe(units: list[ProblemUnit], config: SuiteConfig, timing: Timing = DRY_RUN_TIMING) -> str:
    """The plan, a line per problem, and its cost: each training unit's own step (its estimator at its K: MVD's
    4Z points per sample cost many reparam steps) timed as the dry run of a single problem times it
    (``measure_throughput``: the median of ``timing``'s steps after its warm-up), times the seeds over
    ``cost.STACKED_SPEEDUP`` (trained as one program), scaled to the budget and summed, then shared by the
    workers."""
    lines, total = [], 0.0
    torch.set_num_threads(max(config.threads, 1))  # as the workers train
    for name in dict.fromkeys(u.problem for u in units):
        problem, d = get_problem(name), _data(name)
        mine = [u for u in units if u.problem == name]
        conv = [u for u in mine if u.kind == "convergence"]
        x = measured_minibatch(d, batch_size(problem, d), 0)
        seconds = 0.0
        runs = [(Setting("reparam", 1), 1)] if name not in BUILT_CHECKPOINTS else []  # the anchor: one seed
        for setting, seeds in runs + [(u.setting, len(config.seeds)) for u in conv]:
            frame = measure_throughput(problem.build(d, 0), make_estimator(setting.estimator), x,
                                       setting.num_samples, timing=timing)  # fmt: skip
            stacked = seeds / STACKED_SPEEDUP if seeds > 1 else 1  # the seeds trained as one program
            seconds += stacked * float(frame["step_s_median"].iloc[0]) * problem.budget.steps
        total += seconds
        lines.append(f"  {name}: {len(conv)} training units of {len(config.seeds)} seeds, "
                     f"{len(mine) - len(conv) - 1} variance units, ~{seconds / 60:.1f} min of one core")  # fmt: skip
    workers = worker_count(config)
    lines.append(f"{len(units)} units; about {total / 60 / workers:.0f} minutes with {workers} worker(s) "
                 "(every training step timed here, scaled to each budget; the figures of merit and the variance add a little)")  # fmt: skip
    return "\n".join(lines)


def _gather(out: Path, units: list[ProblemUnit], kind: str, pattern: str = "") -> pd.DataFrame:
    frames = [files.read_csv(out / u.path) for u in units if u.kind == kind]
    if pattern:
        frames = [files.read_csv(p) for p in sorted((out / "units").glob(pattern))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_tables(out: Path, units: list[ProblemUnit]) -> dict[str, pd.DataFrame]:
    """``variance.csv``, ``merit.csv``, ``noise.csv`` (every row with its ``problem``), ``across.csv`` and
    ``transfer.csv`` from the saved units of ``out``."""
    variance = _gather(out, units, "variance")
    merit = _gather(out, units, "convergence")
    twins = []
    for problem in merit["problem"].unique():
        grid = [Setting(e, int(k)) for e, k in {*zip(
            variance.loc[variance["problem"] == problem, "estimator"],
            variance.loc[variance["problem"] == problem, "num_samples"], strict=True)}]  # fmt: skip
        for s, twin in shared(grid).items():
            rows = merit[(merit["problem"] == problem) & (merit["estimator"] == twin.estimator)
                         & (merit["num_samples"] == twin.num_samples)]  # fmt: skip
            twins.append(rows.assign(estimator=s.estimator))
    merit = pd.concat([merit, *twins], ignore_index=True)
    noise = _gather(out, units, "variance", "*/noise-s*.csv")
    tables = {"variance": variance, "merit": merit, "noise": noise}
    # a variance of exactly 0 (a control variate that removes all Monte Carlo noise, where log p is quadratic)
    # is floored at the smallest positive double: its log-ratio is then very large, not infinite
    value = variance["work_normalized_var"].clip(lower=np.finfo(float).tiny)
    scores = variance_time_scores(variance.assign(value=value))
    table = across(scores).assign(score="variance_time")
    ranked = merit[merit["ranks"].astype(bool) & merit["value"].notna()]
    if ranked["problem"].nunique() >= 1:
        by_figure = across(figure_scores(ranked), profiles=False).assign(score="ranking_figure")
        table = pd.concat([table, by_figure], ignore_index=True)
    tables["across"] = table
    tables["transfer"] = transfer(scores, leaders(table[table["score"] == "variance_time"], 3))
    for stem, frame in tables.items():
        if not frame.empty:
            files.write_csv(out / f"{stem}.csv", frame)
    return tables
