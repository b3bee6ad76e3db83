"""The suite's one cost model: every unit's seconds, and the bytes of the run's largest step.

**Time.** A unit's seconds follow from a few rates (:class:`Rates`): t(e, K) the seconds of one training step
of (estimator, sampler, K) (estimator, backward and optimizer step) and r the seconds of a forward pass per
(test point x latent sample). With those:

- convergence unit: steps · t(e, K) + evaluations · eval_samples · eval_points · r + ll_samples · ll_points · r
  per seed, the steps' part divided by `STACKED_SPEEDUP` for a unit of several seeds trained as one program
- anchor unit: steps · t(anchor, 1) + the same evaluations (no log-likelihood); 0 for a built checkpoint
- variance unit (one checkpoint, one seed): Σ_(e, K) (replicates + baseline_samples) · t(e, K), an upper
  bound: the variance harness computes its replicates in batches, several times faster than one step each
- throughput unit (one K): (warmup + repeats + 1) · Σ_e t(e, K), its settings timed interleaved (one more step
  each reads the peak memory), plus t(anchor, 1) for the hand-written step
- landing unit: `LANDING_S`; quadrature unit: `QUADRATURE_S` (fixed checks on small models of their own)
- laws unit: Σ_K replicates(e, K) · (`LAWS_S_PER_REPLICATE` + K · `LAWS_S_PER_DRAW` + n(e, K) · B ·
  `LAWS_S_PER_NUMBER`), on the built checkpoints of :mod:`vaebench.checks.laws` (small and fixed: not the
  configured model), over the K of :func:`laws_grid`; n(e, K) is the estimator's own work per datapoint
  (`Estimator.own_numbers`)
- a run across problems, with t_p(e, K) the step of problem p's own model on its own minibatch and n_p its
  budget's steps: anchor n_p · t_p(reparam, 1) (0 for a built checkpoint); merit unit n_p · t_p(e, K) per seed,
  over `STACKED_SPEEDUP` for stacked seeds (the figures of merit add little: the problems' models are small);
  variance unit Σ_(e, K) replicates · t_p(e, K), noise unit Σ_(e, K) NOISE_BATCHES · replicates / 5 ·
  t_p(e, K) (upper bounds, as above)

With ``train.compile`` every run compiles its own step (:mod:`vaebench.train.compiled`), once per batch shape
(g = 1 graph, or 2 when the run reaches an epoch's last short batch): with c(K) the seconds of the first,
compiling call and ρ(K) the compiled step's time over the eager one's, at K* the calibrated K nearest K (in
log K), a convergence or anchor unit's steps' part is multiplied by ρ(K*) and the unit gets g · c(K*) more,
once per unit (stacked seeds compile one program).

The rates come from one of two places. The dry run measures them on this machine
(:func:`vaebench.suite.calibration.estimate`); the progress bar, which must not spend seconds before the first
unit, uses :func:`nominal` rates: t(e, K) = `NOMINAL_STEP_S` · (1 + 0.1 (K - 1)), 1.2 times that for a stateful
estimator, and r = `NOMINAL_STEP_S` / (50 · batch size). Its ETA is only as good as these guesses; the
formula is the same.

**Memory.** A training step at K draws K latent samples for each of B datapoints and runs the decoder on all
of them, so its activations grow as K x B; the variance measure's replicates and the throughput steps do the
same. :func:`step_bytes` counts, per latent draw and datapoint, the decoder's activations (its input z, every
hidden layer before and after the nonlinearity, the likelihood's parameters and the per-dimension log-density
terms) in float32, `FACTOR` times over (forward values kept for the backward pass, their gradients, the
backward pass's temporaries, and an estimator's own K x B work: VIMCO's leave-one-out baselines). A plugin's
model is not estimated (its shapes are its own). :func:`check_memory` refuses a K that cannot fit before the
first unit, rather than after minutes of swapping. An estimator's own work can outgrow the decoder's: OVIS_MC
holds K x S x K replaced bounds per datapoint (`Estimator.own_numbers`), and the variance harness computes a
laws unit's replicates of one K in few passes, so R of them hold R K² S B numbers at once: :func:`laws_grid`
leaves out of a laws unit the K whose estimate, FACTOR x 4 bytes x R K² S B, exceeds `LAWS_BYTES`, with a note.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vaebench.checks import laws
from vaebench.config import SuiteConfig
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, MeasureValued, Setting, make_estimator, runnable
from vaebench.plugins.registry import BUILT_CHECKPOINTS
from vaebench.problems import get_problem
from vaebench.suite import units
from vaebench.suite.units import ANCHOR, NOISE_BATCHES, Unit, problem_settings

STACKED_SPEEDUP = 1.35
"""Seed-steps per second of S = 3 seeds trained as one program over S separate steps, the smaller of the two
measured at K = 1 and K = 10 (benchmarks/README.md)."""

LANDING_S = 5.0
"""Seconds the STL check's unit takes (:mod:`vaebench.checks.landing`: 6 points x 2 estimators x 100
replicates on an 8-3 linear model), doubled to stay an upper bound."""

LAWS_S_PER_REPLICATE = 1e-3
"""Seconds per replicate of a laws unit, besides its draws."""

LAWS_S_PER_DRAW = 2e-5
"""Seconds per replicate and latent draw of a laws unit (8 datapoints of the toy or the near-posterior VAE)."""

LAWS_S_PER_NUMBER = 4e-8
"""Seconds per replicate and number of an estimator's own work (`Estimator.own_numbers`) per datapoint of a laws
unit (OVIS_MC on the toy: 1.1 s for 200 replicates at K = 100, 25 s at K = 300 on a loaded machine)."""

LAWS_BYTES = 2 << 30
"""Bytes an estimator's own work may take in a laws unit at one K (:func:`laws_grid`): fixed, not the machine's
free memory, so that the same configuration measures the same K everywhere."""

QUADRATURE_S = 30.0
"""Seconds of the 1-D quadrature check (200,000 draws x 45 settings), doubled to stay an upper bound."""

THROUGHPUT_ROUNDS = 1
"""Passes of (warmup + repeats + 1) steps of each setting a throughput unit takes (one: its rounds share them)."""

NOMINAL_STEP_S = 1 / 300
"""The progress bar's guess at the seconds of one K = 1 training step (the default model on one CPU core)."""

FACTOR = 5
"""Forward activations, their gradients, the backward pass's temporaries and an estimator's own work."""

HEADROOM = 0.8
"""Share of the available memory a step may take."""


@dataclass(frozen=True)
class CompileCost:
    """What compiling the training step costs, measured on the anchor estimator at a few K.

    Attributes:
        compile_s: K -> seconds of the first (compiling) step.
        ratio: K -> the compiled step's median time over the eager step's.
        graphs: batch shapes a run compiles for (1, or 2 with an epoch's short last batch).
    """

    compile_s: dict[int, float]
    ratio: dict[int, float]
    graphs: int = 1

    def nearest(self, k: int) -> int:
        """The calibrated K nearest ``k`` in log K (the smaller on a tie)."""
        return min(self.compile_s, key=lambda c: (abs(math.log(k / c)), c))

    def at(self, k: int) -> tuple[float, float]:
        """(ρ, g · c) at the calibrated K nearest ``k``."""
        near = self.nearest(k)
        return self.ratio[near], self.graphs * self.compile_s[near]


@dataclass(frozen=True)
class Rates:
    """What the time model needs (see the module docstring).

    Attributes:
        step_s: (estimator, sampler, K) -> seconds per training step, for every setting of the plan and the
            anchor estimator at K = 1.
        forward_s: seconds per (test point x latent sample) of a forward pass.
        test_points: the test set's size.
        compile: the cost of compiling the step (``train.compile``), or None (eager).
        problem_step_s: (problem, estimator, K) -> seconds per training step of a problem's own model (a run
            across problems); a step not there is guessed as :func:`nominal` guesses.
    """

    step_s: dict[tuple[str, str, int], float]
    forward_s: float
    test_points: int
    compile: CompileCost | None = field(default=None)
    problem_step_s: dict[tuple[str, str, int], float] = field(default_factory=dict)

    def step(self, setting: Setting) -> float:
        return self.step_s[(setting.estimator, setting.sampler, setting.num_samples)]

    def compiled_at(self, k: int) -> tuple[float, float]:
        """(ρ, g · c) at K: (1, 0) for an eager run."""
        return (1.0, 0.0) if self.compile is None else self.compile.at(k)


def nominal(config: SuiteConfig, test_points: int) -> Rates:
    """Rates guessed without timing anything (the progress bar's; see the module docstring)."""
    shapes = [*units.settings(config), Setting(config.variance.anchor_estimator, 1)]
    step_s = {
        (s.estimator, s.sampler, s.num_samples): _nominal_step(s.estimator, s.num_samples) for s in shapes
    }
    return Rates(step_s, NOMINAL_STEP_S / (50 * config.train.batch_size), test_points)


def _nominal_step(estimator: str, k: int) -> float:
    return NOMINAL_STEP_S * (1 + 0.1 * (k - 1)) * (1.2 if ESTIMATORS[estimator].stateful else 1.0)


def _problem_seconds(unit: Unit, config: SuiteConfig, rates: Rates) -> float:
    problem = get_problem(unit.problem)

    def step(setting: Setting) -> float:
        key = (unit.problem, setting.estimator, setting.num_samples)
        return rates.problem_step_s.get(key) or _nominal_step(setting.estimator, setting.num_samples)

    steps = problem.budget.steps
    if unit.kind == ANCHOR:
        return 0.0 if unit.problem in BUILT_CHECKPOINTS else steps * step(Setting("reparam", 1))
    if unit.kind == "merit":
        seeds = len(unit.seeds)
        return (seeds / STACKED_SPEEDUP if seeds > 1 else 1) * steps * step(unit.setting)
    per = (
        config.variance.replicates
        if unit.kind == "variance"
        else NOISE_BATCHES * config.variance.replicates / 5
    )
    return sum(per * step(s) for s in problem_settings(config, problem)[0])


def seconds(unit: Unit, config: SuiteConfig, rates: Rates) -> float:
    """A unit's estimated seconds at ``rates`` (the module docstring's model)."""
    if unit.problem:
        return _problem_seconds(unit, config, rates)
    t, v, tp = config.train, config.variance, config.throughput
    points = rates.test_points
    evals = t.steps // t.eval_every + 1
    eval_s = evals * t.eval_samples * min(t.eval_points or points, points) * rates.forward_s
    ll_s = t.ll_samples * min(t.ll_points or points, points) * rates.forward_s
    anchor_step = rates.step_s.get((v.anchor_estimator, "iid", 1), 0.0)
    if unit.kind == ANCHOR:
        if config.model.name in BUILT_CHECKPOINTS:
            return 0.0
        rho, compiling = rates.compiled_at(1)
        return t.steps * anchor_step * rho + compiling + eval_s
    if unit.kind == "variance":
        return sum((v.replicates + v.baseline_samples) * rates.step(s) for s in units.settings(config))
    if unit.kind == "landing":
        return LANDING_S
    if unit.kind == "laws":
        own = make_estimator(unit.estimator)
        return sum(
            laws.replicates(unit.estimator, k)
            * (
                LAWS_S_PER_REPLICATE
                + k * LAWS_S_PER_DRAW
                + own.own_numbers(k) * laws.BATCH_SIZE * LAWS_S_PER_NUMBER
            )
            for k in laws_grid(config, unit.estimator)[0]
        )
    if unit.kind == "quadrature":
        return QUADRATURE_S
    if unit.kind == "convergence":
        rho, compiling = rates.compiled_at(unit.setting.num_samples)
        steps_s = t.steps * rates.step(unit.setting) * rho
        if unit.seeds:  # S seeds (x the step sizes of a grid) as one program, compiled once
            slices = len(unit.seeds) * max(1, len(unit.lrs))
            return slices * (steps_s / STACKED_SPEEDUP + eval_s + ll_s) + compiling
        return steps_s + compiling + eval_s + ll_s
    # throughput: every setting at the unit's K, timed interleaved; the hand-written step costs about reparam's
    one = sum(rates.step(s) for s in units.timed_settings(unit, config))
    one += anchor_step if units.times_handwritten(unit, config) else 0.0
    return THROUGHPUT_ROUNDS * (tp.warmup + tp.repeats + 1) * one


# ------------------------------------------------------------------------------------------------ memory


def _batch(config: SuiteConfig) -> int:
    sizes = [config.train.batch_size] if config.train.enabled or config.variance.enabled else []
    sizes += [config.variance.batch_size] if config.variance.enabled else []
    sizes += [config.throughput.batch_size] if config.throughput.enabled else []
    return max(sizes, default=0)


def step_bytes(config: SuiteConfig, x_dim: int, num_samples: int) -> int | None:
    """Estimated peak bytes of one step at ``num_samples`` draws per datapoint; None for a plugin's model."""
    m = config.model
    if m.name == "gaussian-toy":
        per_draw = 6 * x_dim
    elif m.name == "gaussian-vae":
        per_draw = m.z_dim + 2 * sum(m.hidden) + 3 * x_dim
    else:
        return None
    return FACTOR * 4 * num_samples * _batch(config) * per_draw


def available_bytes(device: torch.device) -> int | None:
    """Memory a run can take on ``device``: the free CUDA memory, or the host's MemAvailable (None if unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def evaluations_per_draw(estimator, z_dim: int) -> int:
    """How many decoder evaluations an estimator makes per latent sample: M groups, MVD's 4Z points, else 1."""
    if isinstance(estimator, MeasureValued):
        return 4 * z_dim
    groups = getattr(estimator, "groups", 1)
    return groups if isinstance(groups, int) and groups >= 1 else 1


def laws_grid(config: SuiteConfig, name: str) -> tuple[list[int], str]:
    """The K of ``config.samples`` a laws unit measures estimator ``name`` at, and a note on those it leaves out
    ('' when none): a K whose replicates' own work (`Estimator.own_numbers`) would exceed `LAWS_BYTES`."""
    own = make_estimator(name)
    need = {
        k: FACTOR * 4 * laws.replicates(name, k) * laws.BATCH_SIZE * own.own_numbers(k)
        for k in config.samples
    }
    kept = [k for k in config.samples if need[k] <= LAWS_BYTES]
    left = [k for k in config.samples if need[k] > LAWS_BYTES]
    if not left:
        return kept, ""
    first = min(left)
    return kept, (
        f"the laws units measure {name} at K={','.join(map(str, kept))} only: at K={','.join(map(str, left))} "
        f"its replicates' own work ({own.own_numbers(first):,} numbers per datapoint at K={first}) would take "
        f"about {need[first] / 2**30:.0f} GiB, over the {LAWS_BYTES / 2**30:.0f} GiB a laws unit allows"
    )


def laws_notes(config: SuiteConfig) -> list[str]:
    """The plan's notes on the K its laws units leave out (:func:`laws_grid`)."""
    if not config.checks.laws:
        return []
    names = dict.fromkeys(name for name, _ in units.law_settings(config))
    return [note for note in (laws_grid(config, name)[1] for name in names) if note]


def parameter_bytes(config: SuiteConfig, x_dim: int) -> int:
    """Bytes of the seed VAE's parameters, their gradients and Adam's two moments, for every seed (0 otherwise)."""
    m = config.model
    if m.name != "gaussian-vae":
        return 0
    layers = [x_dim, *m.hidden, 2 * m.z_dim], [m.z_dim, *reversed(m.hidden), 2 * x_dim]
    count = sum(a * b for dims in layers for a, b in itertools.pairwise(dims))
    return 4 * 4 * count * max(1, len(config.seeds))


def check_memory(config: SuiteConfig, x_dim: int, device: torch.device) -> None:
    """Refuse a run whose largest step would not fit (see the module docstring): the largest K times the decoder
    evaluations an estimator's options make per sample (``miwae``/``piwae``: its M groups; ``mvd``: 4Z points),
    plus the parameters with their gradients and Adam's two moments (on very wide data the decoder's last layer
    alone can exceed the memory).

    Raises:
        VaebenchError: naming the setting, the estimate, what is available and how to fix it.
    """
    if not config.samples:
        return
    settings = runnable(config.estimators, config.samples, config.samplers)
    z_dim = config.model.z_dim
    worst, k, name = max(
        [
            (s.num_samples * evaluations_per_draw(s.build(), z_dim), s.num_samples, s.estimator)
            for s in settings
        ]
        or [(max(config.samples), max(config.samples), "")]
    )
    per_step = step_bytes(config, x_dim, worst)
    have = available_bytes(device)
    if per_step is None or have is None:
        return
    need = per_step + parameter_bytes(config, x_dim)
    if need <= HEADROOM * have:
        return
    least = step_bytes(config, x_dim, 1) + parameter_bytes(config, x_dim)
    if least > HEADROOM * have:
        raise VaebenchError(
            f"the model on {x_dim}-dimensional data would need about {least / 2**30:.1f} GiB even at K=1 (its "
            f"parameters with their gradients and Adam's moments: {parameter_bytes(config, x_dim) / 2**30:.1f} "
            f"GiB) and {have / 2**30:.1f} GiB is available on {device}; use fewer data dimensions, narrower "
            "hidden layers or a smaller batch size"
        )
    if worst == k:
        what, fix = f"samples K={k}", f"choose K <= {max(1, int(HEADROOM * have // max(1, per_step // k)))}"
    else:
        what = f"{name} at K={k} ({worst // k} decoder evaluations per sample: {worst} per datapoint)"
        fix = f"drop {name}, or its options that multiply the work, or choose a smaller K"
    raise VaebenchError(
        f"{what} would need about {need / 2**30:.1f} GiB per step on {device} (batch {_batch(config)}, "
        f"{x_dim} data dimensions) and {have / 2**30:.1f} GiB is available; {fix}, or a smaller batch size"
    )
