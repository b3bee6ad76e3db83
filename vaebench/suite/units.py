"""Units of work of the suite: what they are and in which order they run (:func:`plan`).

A unit is the smallest piece of the suite that is saved on its own as soon as it finishes. The plan is the
suite's one loop over the configuration's grid (settings x seeds x checkpoints); each unit is computed by
:mod:`vaebench.suite.execute`:

- the **anchor** run (on disk ``units/anchor/checkpoints.pt``, kind `ANCHOR`): one training run of the
  anchor estimator (K = 1, the first seed) that keeps checkpoints at the fractions of
  `vaebench.config.CHECKPOINTS` (init, early, middle, end): every setting's gradient variance is measured at
  these same parameters, so estimators are compared on equal footing. A model whose checkpoint is built, not
  trained (the Gaussian toy: :data:`vaebench.plugins.registry.BUILT_CHECKPOINTS`), has that one checkpoint instead;
- ``variance/<checkpoint>-s<seed>``: every setting at one checkpoint on seed ``seed``'s minibatch;
- ``convergence/<setting>-K<k>-s<seed>``: one training run and its final test ELBO and log-likelihood
  (``...-s<seeds>-lr<rate>+<rate>...``: with a step-size grid, ``train.lr_grid``, the unit's seeds x rates as
  one program);
  ``convergence/<setting>-K<k>-s<seed>+<seed>...``: the runs of several seeds, trained as one program
  (``train.stack_seeds``, :func:`vaebench.train.train_seeds`), saved, verified and redone as one unit: a
  resume redoes all of its seeds or none, and its preemption checkpoint holds the whole stack;
- ``throughput/K<k>``: the training-step time of every setting at one K, the steps timed interleaved in
  rounds (:func:`vaebench.measures.throughput.measure_interleaved`) so that their ratios survive the machine's
  load; the hand-written pytorch/examples step joins the unit of the smallest K (it is a K = 1 step, and the
  reading sets the suite's ``reparam`` step at that K against it);
- ``landing/stl``: STL's encoder variance along a line to the exact posterior of a model built for the check
  (:mod:`vaebench.checks.landing`), when the run measures ``stl``'s variance at several K or ``checks.landing``
  asks for it;
- ``laws/<checkpoint>-<setting>``: one estimator (and sampler) at every K of the grid at a built checkpoint
  where the scaling laws' weight condition holds (``checks.laws``; :mod:`vaebench.checks.laws`);
- ``quadrature/gaussian-1d``: the 1-D Gaussian check of Mohamed et al. 2020 (``checks.quadrature``;
  :mod:`vaebench.checks.gaussian_1d`).

A run across problems (``problems``, :class:`vaebench.problems.Problem`) has the same loop, its units each
carrying their ``problem`` (on disk under ``units/<problem>/``), each problem on its own data, model and budget
(:func:`plan_problems`; a problem whose data are missing is dropped with a note):

- ``<problem>/anchor/checkpoints``: one run of ``reparam`` at K = 1 (the first seed) for the problem's budget
  (a built checkpoint, the Gaussian toy's, is built instead), whose end (checkpoint ``end``) is the point where
  every setting's gradient is measured;
- ``<problem>/variance/end-s<seed>``: every setting that applies (the estimators' own refusals and
  :meth:`Problem.unsupported`, each said once as a note) there, on seed ``seed``'s minibatch: the encoder's
  work-normalised variance;
- ``<problem>/noise/end-s<seed>`` (the first seed; a global-latent problem trained on minibatches): the
  law-of-total-variance split of each setting's noise into its Monte Carlo and minibatch parts;
- ``<problem>/merit/<setting>-s<seeds>``: the setting trained for the problem's budget from every seed, the
  seeds as one program, and the problem's figures of merit at the end.

A setting's part of a name is the estimator for iid draws, else ``<estimator>@<sampler>``
(:attr:`vaebench.estimators.Setting.name`). What a unit
costs is the cost model's (:mod:`vaebench.suite.cost`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vaebench.config import CHECKPOINTS, SuiteConfig
from vaebench.data import is_data_file
from vaebench.estimators import ESTIMATORS, Setting, runnable, unsupported
from vaebench.measures.schema import ANCHOR_UNIT
from vaebench.problems import Problem, get_problem, load_installed_problems

ANCHOR = ANCHOR_UNIT
"""The anchor run's unit kind."""

PARTIAL = Path("partial")
"""Where running training units keep their state (:mod:`vaebench.train.checkpoints`), removed when saved."""

KINDS = (ANCHOR, "variance", "noise", "convergence", "merit", "throughput", "landing", "laws", "quadrature")
"""Kinds of units, in plan order."""

NOISE_BATCHES = 10
"""Minibatches of a noise unit's Monte Carlo / minibatch split (each with ``variance.replicates // 5`` estimates)."""

MEASURED_AT_ANCHOR = ("variance", "noise")
"""Kinds of units measured at the anchor run's checkpoints: they start once it has finished."""


@dataclass(frozen=True)
class Unit:
    """One unit of work.

    Attributes:
        kind: one of `KINDS`.
        name: unique within its kind, used as the file name.
        setting: the setting it measures (convergence), else None.
        seed: the seed (convergence, variance), else None; None for a convergence unit of several seeds.
        seeds: a convergence unit's seeds, trained as one program (``train.stack_seeds``; its rows carry
            each its own ``seed``), else ().
        checkpoint: the checkpoint label (variance), else None.
        num_samples: the K whose settings a throughput unit times together (:func:`timed_settings`), else None.
        estimator: a laws unit's estimator, else None.
        sampler: a laws unit's sampler.
        lrs: a convergence unit's step sizes (``train.lr_grid``): its seeds x rates trained as one program,
            each (seed, lr) a run of its own, else ().
        problem: the problem of a run across problems, else "".
    """

    kind: str
    name: str
    setting: Setting | None = None
    seed: int | None = None
    checkpoint: str | None = None
    num_samples: int | None = None
    estimator: str | None = None
    sampler: str = "iid"
    seeds: tuple[int, ...] = ()
    lrs: tuple[float, ...] = ()
    problem: str = ""

    @property
    def path(self) -> Path:
        """Where the unit's result goes, relative to the results folder."""
        if self.kind == ANCHOR:
            return Path("units") / self.problem / ANCHOR / "checkpoints.pt"
        return Path("units") / self.problem / self.kind / f"{self.name}.csv"

    @property
    def error_path(self) -> Path:
        """Where a failure of the unit is recorded, relative to the results folder."""
        return self.path.with_suffix(".error")

    @property
    def partial_path(self) -> Path:
        """Where a running training unit keeps its state, relative to the results folder."""
        return PARTIAL / self.problem / self.kind / f"{self.name}.pt"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.problem}/{self.name}" if self.problem else f"{self.kind} {self.name}"

    @property
    def key(self) -> str:
        """``[problem/]kind/name``: how messages, manifests and run.json name the unit."""
        return f"{self.problem}/{self.kind}/{self.name}" if self.problem else f"{self.kind}/{self.name}"

    @property
    def keys(self) -> dict[str, object]:
        """The key columns every row of the unit's file carries (the house data contract)."""
        if self.setting is None:
            return {}
        s = self.setting
        out = {"estimator": s.estimator, "sampler": s.sampler, "num_samples": s.num_samples}
        return out if self.seed is None else {**out, "seed": self.seed}


class Skipped(Exception):
    """A unit that cannot be measured, for a reason that would recur on every retry (it is saved, with no rows,
    and its reason becomes a note of the run rather than a failure)."""


def settings(config: SuiteConfig) -> list[Setting]:
    """The settings of ``config`` that can run (:func:`vaebench.estimators.runnable`)."""
    return runnable(config.estimators, config.samples, config.samplers)


def shared_settings(config: SuiteConfig) -> dict[Setting, Setting]:
    """`shared` of the configuration's runnable settings."""
    return shared(settings(config))


def timed_settings(unit: Unit, config: SuiteConfig) -> list[Setting]:
    """The settings a throughput unit times together: every runnable setting at its K, in the configuration's order."""
    if unit.kind != "throughput":
        return []
    return [s for s in settings(config) if s.num_samples == unit.num_samples]


def times_handwritten(unit: Unit, config: SuiteConfig) -> bool:
    """Whether a throughput unit also times the hand-written pytorch/examples step: the unit of the smallest
    K, for a model of one hidden layer (the recipe's shape)."""
    if unit.kind != "throughput" or len(config.model.hidden) != 1 or config.model.name != "gaussian-vae":
        return False
    ks = [s.num_samples for s in settings(config)]
    return bool(ks) and unit.num_samples == min(ks)


def checkpoint_steps(config: SuiteConfig) -> dict[str, int]:
    """Checkpoint label -> step of the anchor run."""
    return {label: round(CHECKPOINTS[label] * config.train.steps) for label in config.variance.checkpoints}


def measures_landing(config: SuiteConfig) -> bool:
    """Whether the run includes the STL check: ``stl``'s variance measured at several K."""
    ks = {s.num_samples for s in settings(config) if s.estimator == "stl"}
    return config.checks.landing or (config.variance.enabled and len(set(config.samples)) > 1 and bool(ks))


def law_settings(config: SuiteConfig) -> list[tuple[str, str]]:
    """(estimator, sampler) pairs the laws units measure: the grid's, stateless ones only (a stateful
    estimator's statistics would need a warm-up on other minibatches, which a built checkpoint has not)."""
    pairs = dict.fromkeys((s.estimator, s.sampler) for s in settings(config))
    return [pair for pair in pairs if not ESTIMATORS[pair[0]].stateful]


def run_problem(config: SuiteConfig) -> str:
    """The ``problem`` of an ordinary run's rows (a run across problems: each unit's own).

    The one rule: the built-in problem whose data and model the run's are (:mod:`vaebench.problems.builtin`):
    ``digits`` for a Gaussian VAE on the digits (the default run, the quick preset: the digits problem's data
    with the run's own sizes and schedule), ``gaussian-toy`` for the toy model, ``linear-gaussian`` for a VAE
    without hidden layers on the synthetic set, ``fashion-mnist-binary`` for a one-hidden-layer Bernoulli VAE
    on dynamically binarized Fashion-MNIST; else the data set's name (``fashion-mnist`` for the ``paper``
    preset's deeper model, a data file's file name, a plugin data set's registered name)."""
    d, m = config.data, config.model
    if m.name == "gaussian-toy":
        return "gaussian-toy"
    if d.name == "synthetic" and m.name == "gaussian-vae" and not m.hidden:
        return "linear-gaussian"
    if d.name == "fashion-mnist" and d.binarize == "dynamic" and len(m.hidden) == 1:
        return "fashion-mnist-binary" if m.likelihood in ("auto", "bernoulli") else d.name
    return Path(d.name).name if is_data_file(d.name) else d.name


def anchor_unit(problem: str = "") -> Unit:
    """The anchor run's unit (of ``problem`` in a run across problems)."""
    return Unit(ANCHOR, "checkpoints", problem=problem)


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
    """Setting -> the setting of ``grid`` whose training runs are its own: its estimator declares that at this K
    its gradient is that estimator's, draw for draw (`Estimator.same_gradient`; IWAE, DReG and IWAE-STL at K = 1
    are reparam, STL and STL), so the suite trains it once and its figures are the other's. Only where the
    other is in the grid too, with the same sampler."""
    present, out = set(grid), {}
    for s in grid:
        other = s.kind.same_gradient.get(s.num_samples)
        twin = Setting(other, s.num_samples, s.sampler) if other and other != s.estimator else None
        if twin in present and twin not in out:
            out[s] = twin
    return out


def plan_problems(config: SuiteConfig) -> tuple[list[Unit], list[str]]:
    """Every unit of a run across ``config.problems``, in order, and its notes (problems dropped, settings
    refused)."""
    load_installed_problems()
    units: list[Unit] = []
    notes: list[str] = []
    seeds = tuple(config.seeds)
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
        units.append(anchor_unit(name))
        for seed in config.variance_seeds:
            units.append(Unit("variance", f"end-s{seed}", seed=seed, checkpoint="end", problem=name))
        if problem.global_latents and problem.budget.batch_size:
            first = config.variance_seeds[0]
            units.append(Unit("noise", f"end-s{first}", seed=first, checkpoint="end", problem=name))
        label = "+".join(map(str, seeds))
        units += [Unit("merit", f"{s.label}-s{label}", s, seeds=seeds, problem=name)
                  for s in grid if s not in shared(grid)]  # fmt: skip
    return units, notes


def plan(config: SuiteConfig) -> list[Unit]:
    """All units of a run, in execution order: anchor, variance, landing, laws, quadrature, convergence,
    throughput; for a run across problems, :func:`plan_problems`'s."""
    if config.problems:
        return plan_problems(config)[0]
    units: list[Unit] = []
    grid = settings(config)
    if config.variance.enabled:
        units.append(Unit(ANCHOR, "checkpoints"))
        for label in config.variance.checkpoints:
            for seed in config.variance_seeds:
                units.append(Unit("variance", f"{label}-s{seed}", seed=seed, checkpoint=label))
    if measures_landing(config):
        units.append(Unit("landing", "stl"))
    for label in config.checks.laws:
        for name, sampler in law_settings(config):
            part = name if sampler == "iid" else f"{name}@{sampler}"  # as Setting.name
            units.append(Unit("laws", f"{label}-{part}", checkpoint=label, estimator=name, sampler=sampler))
    if config.checks.quadrature:
        units.append(Unit("quadrature", "gaussian-1d"))
    stacks = (
        [tuple(config.seeds)]
        if config.train.stack_seeds and len(config.seeds) > 1
        else [(s,) for s in config.seeds]
    )
    shared = shared_settings(config)
    lrs = tuple(config.train.lr_grid) if len(config.train.lr_grid) > 1 else ()  # a grid: seeds x rates stack
    for setting in [s for s in grid if s not in shared] if config.train.enabled else []:
        for seeds in stacks:
            name = f"{setting.label}-s{'+'.join(map(str, seeds))}"
            if lrs:
                name += f"-lr{'+'.join(f'{lr:g}' for lr in lrs)}"
                units.append(Unit("convergence", name, setting, seeds=seeds, lrs=lrs))
            elif len(seeds) == 1:
                units.append(Unit("convergence", name, setting, seeds[0]))
            else:
                units.append(Unit("convergence", name, setting, seeds=seeds))
    if config.throughput.enabled:
        for k in sorted({s.num_samples for s in grid}):
            units.append(Unit("throughput", f"K{k}", num_samples=k))
    return units
