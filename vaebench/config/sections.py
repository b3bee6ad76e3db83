"""The configuration's sections: frozen dataclasses, each field with its default, a comment, and the
constraints its value must meet (:func:`~vaebench.config.constraints.option`); and the presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from vaebench.config.constraints import (
    MAX_THREADS,
    at_least,
    between,
    each,
    entries,
    folder_name,
    known_device,
    one_of,
    option,
    positive,
    sample_count,
    seed_value,
    thread_count,
)
from vaebench.data import BINARIZE_MODES, DATASET_PLUGINS, DATASETS, FILE_SUFFIXES, is_data_file
from vaebench.errors import VaebenchError
from vaebench.estimators import BUILTIN_ESTIMATORS, ESTIMATORS, SAMPLERS
from vaebench.model import ACTIVATIONS, DECODER_SCALES, LIKELIHOODS
from vaebench.optim import OPTIMIZERS
from vaebench.plugins.registry import MODELS
from vaebench.problems import BUILTIN_PROBLEMS, PROBLEMS, load_installed_problems

CHECKPOINTS: dict[str, float] = {"init": 0.0, "early": 0.1, "middle": 0.5, "end": 1.0}
"""Where the shared variance checkpoints sit, as fractions of the anchor training run's steps."""


def _data_set(key: str, name: str) -> str | None:
    if name in DATASETS or name in DATASET_PLUGINS or is_data_file(name):
        return None
    plugins = f", a plugin's ({', '.join(DATASET_PLUGINS)})" if DATASET_PLUGINS else ""
    return (
        f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}{plugins}, or the path of a "
        f"{', '.join(FILE_SUFFIXES)} file of your own"
    )


def _problem(key: str, name: str) -> str | None:
    load_installed_problems()
    return None if name in PROBLEMS else f"unknown problem {name!r}; valid names: {', '.join(PROBLEMS)}"


def _fraction(key: str, value: float) -> str | None:
    return None if 0 < value < 1 else f"{key} must lie strictly between 0 and 1, got {value!r}"


def _holdout(key: str, value: float) -> str | None:
    return None if 0 <= value < 1 else f"{key} must lie in [0, 1) (0: none), got {value!r}"


# One line per field: its type, default and constraints, then its comment.
# fmt: off
@dataclass(frozen=True)
class DataConfig:
    """Which data set, and how it is preprocessed (see :func:`vaebench.data.load_dataset`)."""

    name: str = option("digits", _data_set)  # one of vaebench.data.DATASETS, a plugin's data set, or the path
    # of a .npz, .npy or .csv file of your own (vaebench.data.arrays); digits ships with scikit-learn
    root: str | None = None  # folder of the fashion-mnist / mnist IDX files; None: the usual places
    binarize: str = option("none", one_of(("none", *BINARIZE_MODES)))  # "none" keeps grey levels; "dynamic"
    # redraws Bernoulli pixels every batch
    dequantize: bool = True  # uniform noise over one grey level: digits has 3 constant pixels whose σ would
    # otherwise collapse to the floor and add ~6 nats each to every Gaussian ELBO (Theis et al. 2016)
    seed: int = option(0, seed_value)  # seed of the preprocessing noise (and of the synthetic model), fixed
    # across runs
    test_fraction: float = option(0.2, _fraction)  # a .npy or .csv file: the share held out for testing (a
    # seeded split)
    valid_fraction: float = option(0.0, _holdout)  # share of the training examples held
    # out for validation (a seeded split, vaebench.data.Dataset.with_validation), what a step-size grid
    # selects on; 0: none


@dataclass(frozen=True)
class ModelConfig:
    """The shared `GaussianVAE` (see :class:`vaebench.model.GaussianVAE`); x_dim comes from the data."""

    name: str = option("gaussian-vae", one_of(MODELS, "model"))  # a key of plugins.registry.MODELS: the
    # seed's VAE, or a plugin's model (built as factory(x_dim, z_dim, seed=...)); the keys below but z_dim are
    # GaussianVAE's own
    z_dim: int = option(8, positive)  # latent dimension Z: small enough for digits' 64 pixels, large enough
    # to matter
    hidden: tuple[int, ...] = option((200,), each(positive, entry="widths"))  # hidden widths (decoder mirrors
    # them); () is the linear-Gaussian model
    likelihood: str = option("auto", one_of(("auto", *LIKELIHOODS)))  # "auto": bernoulli when the data are
    # binarized, else gaussian
    decoder_scale: str = option("learned", one_of(DECODER_SCALES))  # Gaussian σ_x: one learned value per
    # pixel, or "network" (per z)
    activation: str = option("tanh", one_of(ACTIVATIONS))  # tanh is smooth and bounded, which keeps
    # score-function runs from blowing up
    min_scale: float = option(1e-3, positive)  # floor on every σ so log σ stays finite on constant pixels
    init_decoder_scale: float = option(0.1, positive)  # σ_x near where training takes it on digits: from 1,
    # Adam spends hundreds of steps shrinking σ_x (at ~lr per step) and every estimator's curve looks the same


LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
"""Learning-rate schedules: ``constant`` (``lr`` at every step) or ``cosine``, ``lr · (1 + cos(π t / T)) / 2``
at update t of T (Loshchilov & Hutter 2017, without restarts): the step size decays to 0 at the last update,
so a run of fixed length ends on a curve that has levelled off instead of one still moving at full step size."""


def _backend(key: str, value: bool | str) -> str | None:
    if value != "":
        return None
    return f"{key} is an empty string; set true (inductor), false, or a torch.compile backend name"


_ALL_TEST_POINTS = at_least(0, "(0: the whole test set)")


@dataclass(frozen=True)
class TrainConfig:
    """The shared training loop and the end-of-run evaluation (one convergence unit)."""

    steps: int = option(500, positive)  # optimizer steps per run: 35 epochs of digits at batch 100
    batch_size: int = option(100, positive)  # examples per minibatch
    lr: float = option(1e-3, positive)  # Adam's default step size, the usual VAE setting (the first step's,
    # under a schedule)
    lr_schedule: str = option("constant", one_of(LR_SCHEDULES))  # constant, or cosine: decays to 0 at the
    # last step (vaebench.train.spec)
    optimizer: str = option("adam", one_of(OPTIMIZERS))  # a key of vaebench.optim.OPTIMIZERS
    stack_seeds: bool = True  # the seeds of a setting trained as one program, one unit (vaebench.train.seeds)
    lr_grid: tuple[float, ...] = option((), entries(positive, entry="rates", empty=True))  # step sizes
    # each setting is trained at, with lr among them, its seeds x rates one program; the rate chosen per
    # setting on the validation split (vaebench.analysis.selection)
    compile: bool | str = option(False, _backend)  # torch.compile the step: true (inductor), or a backend
    # name; compile time is counted apart from the step time
    check_every: int = option(1, positive)  # steps between host reads of the divergence check (N > 1: latched
    # on the device)
    eval_every: int = option(25, positive)  # steps between test-ELBO evaluations (the curves' resolution)
    eval_samples: int = option(10, positive)  # pathwise samples per test point for the test ELBO of the
    # curves
    eval_points: int = option(0, _ALL_TEST_POINTS)  # test points for the curves' test ELBO; 0 uses the whole
    # test set
    ll_samples: int = option(5000, positive)  # importance samples per test point for the test log-likelihood
    # (Burda et al.)
    ll_points: int = option(100, _ALL_TEST_POINTS)  # test points (the first, the same for all runs) for the
    # log-likelihood; 0: all
    enabled: bool = True  # train every estimator x K x seed (the convergence measure); false: only the
    # variance measure's anchor run trains (the `scaling` preset)


def _baseline_samples(key: str, value: int) -> str | None:
    if value == 0 or value >= 2:
        return None
    return f"{key} must be 0 (no baseline gradient) or >= 2, got {value}"


@dataclass(frozen=True)
class VarianceConfig:
    """Gradient variance, measured for every estimator x K at the same parameters."""

    enabled: bool = True  # measure gradient variance at all
    checkpoints: tuple[str, ...] = option(("init", "early", "middle", "end"), entries(one_of(CHECKPOINTS)))  # keys of
    # CHECKPOINTS
    replicates: int = option(100, at_least(2, "to estimate a variance"))  # independent gradient estimates per
    # (estimator, K, checkpoint, seed)
    batch_size: int = option(100, positive)  # minibatch the gradients are taken on (held fixed within a
    # measurement)
    seeds: tuple[int, ...] = option((), entries(seed_value, entry="", empty=True))  # one minibatch and noise stream
    # per seed, the same for every estimator; () measures on the run's seeds (`seeds`, --seeds): see
    # SuiteConfig.variance_seeds
    baseline_samples: int = option(256, _baseline_samples)  # estimates averaged into the baseline gradient
    # (bias, cosine); 0: none
    anchor_estimator: str = option("reparam", one_of(ESTIMATORS))  # trains the anchor run, whose checkpoints
    # everybody is measured at
    summary_checkpoint: str = "end"  # which checkpoint the summary table reports


@dataclass(frozen=True)
class ThroughputConfig:
    """Training-step time per estimator x K (forward, backward and optimizer step)."""

    enabled: bool = True  # measure step time at all
    batch_size: int = option(100, positive)  # examples per timed step (the training batch size by default)
    repeats: int = option(50, positive)  # timed steps; the median and its interval are reported
    warmup: int = option(5, at_least(0))  # untimed steps first (allocator, caches, lazy initialisation)


LAW_CHECKPOINTS: tuple[str, ...] = ("toy", "near-posterior")
"""Built checkpoints where the scaling laws' weight condition holds (:mod:`vaebench.checks.laws`)."""

LAW_GRID: tuple[int, ...] = (1, 3, 10, 30, 100, 300, 1000)
"""K the laws are measured at by default: half-decades to 1000, so the largest decade has three points."""

LAW_ESTIMATORS: tuple[str, ...] = ("iwae", "dreg", "ovis-mc", "reparam", "stl", "reinforce", "reinforce-loo")
"""The IWAE-objective estimators of the published SNR laws (OVIS_MC's at the K its pairwise work affords:
vaebench.suite.cost.laws_grid), and stateless ELBO estimators with variance laws (exact for plain averages, as K
grows for the leave-one-out baseline)."""


@dataclass(frozen=True)
class ChecksConfig:
    """Checks against answers known in closed form or published (vaebench.checks), each its own unit; the
    report's claims section reads them. Off unless asked for (the `scaling` preset runs them all)."""

    laws: tuple[str, ...] = option((), entries(one_of(LAW_CHECKPOINTS), empty=True))  # built checkpoints where every
    # stateless estimator x K of the run's grid is measured for the scaling laws, of LAW_CHECKPOINTS: "toy"
    # (Rainforth et al. 2018's Gaussian), "near-posterior" (a linear-Gaussian VAE, q = its exact posterior,
    # mean perturbed, over-dispersed); () none
    landing: bool = False  # STL at the exact posterior (Roeder et al. 2017); also runs whenever the run
    # measures stl's variance at several K
    quadrature: bool = False  # the 1-D Gaussian of Mohamed et al. 2020, Figures 2-3: exact variances by
    # quadrature against the estimators' Monte Carlo intervals (seconds)


EXECUTION_KEYS: tuple[str, ...] = ("name", "workers", "save_every_s")
"""Top-level keys that say how a run is executed, never what it computes: left out of the configuration's hash
(:func:`vaebench.config.config_hash`), and a resume may change them."""

REAL_VALUED = ("synthetic", "gaussian-toy")
"""Built-in data sets whose values are real numbers, not pixel grey levels."""


def real_valued(name: str) -> bool:
    """Whether data set ``name`` is not made of grey levels: the built-in real-valued sets, a data file, a
    plugin's data set (it has no grey levels to dequantize)."""
    return name in REAL_VALUED or is_data_file(name) or name in DATASET_PLUGINS


CLASSIC_ESTIMATORS: tuple[str, ...] = tuple(
    n for n in BUILTIN_ESTIMATORS
    if n in {"reparam", "reparam-analytic-kl", "stl", "reparam-cv", "reinforce", "reinforce-ma", "reinforce-loo",
             "reinforce-nvil", "vargrad", "iwae", "dreg", "iwae-stl", "vimco"}
)  # fmt: skip
"""The estimators of the default run: the pathwise and score-function ELBO estimators with their baselines, and
the IWAE objective's (IWAE, DReG, IWAE-STL, VIMCO). The later families (`FAMILY_ESTIMATORS`) have a preset of
their own, ``families``, so that the default run keeps its cost."""

FAMILY_ESTIMATORS: tuple[str, ...] = tuple(n for n in BUILTIN_ESTIMATORS if n not in CLASSIC_ESTIMATORS)
"""The built-in estimators besides the classic ones: MVD, Rényi and its DReG form, reweighted wake-sleep and its
DReG wake phase, tail-adaptive, MIWAE, CIWAE, PIWAE."""


@dataclass(frozen=True)
class SuiteConfig:
    """Everything one `python -m vaebench run` does."""

    name: str = option("default", folder_name)  # names the output folder results/<timestamp>-<name>/
    plugins: tuple[str, ...] = ()  # your modules, loaded first: their ESTIMATORS, MODELS, DATASETS dicts join
    # the registries (plugins.registry); an estimator can also be named module:Class in `estimators`
    estimators: tuple[str, ...] = option(CLASSIC_ESTIMATORS, entries(one_of(ESTIMATORS, "estimator"), entry=""))  # keys
    # of ESTIMATORS (a plugin's by name)
    samples: tuple[int, ...] = option((1, 10), entries(sample_count))  # K values; combinations
    # an estimator cannot do are skipped, noted
    problems: tuple[str, ...] = option((), entries(_problem, entry="", empty=True))  # names of
    # vaebench.problems (python -m vaebench list); empty: the one problem of `data` and `model`; else each
    # problem's own data, model and budget (vaebench.suite.units.plan_problems), and the verdicts across them
    samplers: tuple[str, ...] = option(("iid",), entries(one_of(SAMPLERS)))  # how the K draws
    # of ε are made: iid, antithetic, rqmc (see vaebench.estimators.sampling); a sampler that would bias an
    # estimator is skipped for it, noted
    seeds: tuple[int, ...] = option((0, 1, 2), entries(seed_value, entry=""))  # seeds of model
    # initialisation, data order and Monte Carlo draws
    device: str = option("cpu", known_device)  # "cpu", "cuda", "cuda:N", or "auto" (cuda when available)
    threads: int = option(1, thread_count)  # torch CPU threads (0: torch's default); see the note on threads
    # below
    workers: int = option(0, between(0, MAX_THREADS, "one per usable core"))  # units run at once in worker
    # processes; 0: the usable cores // threads; 1: in-process
    save_every_s: float = option(600.0, at_least(0, "(seconds; 0: never)"))  # seconds between saves of a
    # running training unit's state, so a kill or a preemption loses at most this much of it
    # (vaebench.train.checkpoints); 0: never
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    variance: VarianceConfig = field(default_factory=VarianceConfig)
    throughput: ThroughputConfig = field(default_factory=ThroughputConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)

    @property
    def variance_seeds(self) -> tuple[int, ...]:
        """The seeds the variance is measured on: ``variance.seeds`` when it names any, else the run's
        ``seeds``. The one rule of seeds: ``seeds`` (``--seeds``) seeds everything that is repeated per seed
        (a training run of every setting, a variance minibatch and its noise); what is done once (the anchor
        run, the step timing, the checks) uses the first."""
        return self.variance.seeds or self.seeds


# fmt: on


# ------------------------------------------------------------------------------------------------ presets

# A note on threads: the default model's matrices are small (batch 100 x a few hundred units), where an OpenMP
# parallel region costs about as much as it saves; and when the machine is busy, a second spinning thread
# that gets descheduled stalls every operation (benchmarks/README.md, "A shared machine"). One thread is the
# robust default for the digits presets; `paper` uses torch's default (all cores), where the 784-200-200-50
# model's matrices are large enough to share.


def _presets() -> dict[str, SuiteConfig]:
    # The default run: the seed's Gaussian VAE at 64-100-8 (tanh), 3000 steps (210 epochs of digits) from lr 3e-3
    # decayed by a cosine to 0, so that the pathwise curves level off (the change of the test ELBO over the last
    # quarter, within a nat; how the size and the schedule were chosen: the README's "Reference results").
    # Under a schedule that decays to 0, "levelled off" is the end of the schedule, not the best the model can
    # do. Variance at init, middle and end (not also early).
    default = SuiteConfig(
        model=ModelConfig(hidden=(100,)),
        train=TrainConfig(steps=3000, lr=3e-3, lr_schedule="cosine", eval_every=50),
        variance=VarianceConfig(checkpoints=("init", "middle", "end")),
    )
    quick = dataclasses.replace(
        default,
        name="quick",
        samples=(1, 4),
        seeds=(0, 1),
        model=ModelConfig(z_dim=4, hidden=(32,)),
        train=TrainConfig(steps=60, eval_every=20, ll_samples=200, ll_points=100),
        variance=VarianceConfig(
            checkpoints=("init", "end"), replicates=10, batch_size=50, baseline_samples=16
        ),
        throughput=ThroughputConfig(batch_size=50, repeats=3, warmup=1),
    )
    # Burda, Grosse & Salakhutdinov 2015: 2 x 200 tanh units, 50 latents, Bernoulli decoder on dynamically
    # binarized images, K in {1, 5, 50}; a long schedule (~330 epochs of 60,000 images at batch 100).
    paper = dataclasses.replace(
        default,
        name="paper",
        threads=0,
        samples=(1, 5, 50),
        data=DataConfig(name="fashion-mnist", binarize="dynamic", dequantize=False),
        model=ModelConfig(z_dim=50, hidden=(200, 200), likelihood="bernoulli", activation="tanh"),
        train=TrainConfig(steps=200_000, batch_size=100, eval_every=5_000, ll_samples=5000, ll_points=0),
        variance=VarianceConfig(replicates=200, seeds=(0, 1, 2), baseline_samples=4096),
    )
    # The scaling laws in K and the published claims (vaebench.checks): no training, no anchor run. The laws
    # are measured at built checkpoints where their weight condition holds (the Gaussian toy of Rainforth et
    # al. 2018, and a linear-Gaussian VAE with q at its exact posterior perturbed), K from 1 to 1000; next
    # to them STL at the exact posterior and the 1-D quadrature check. A few minutes on 2 cores.
    scaling = dataclasses.replace(
        default,
        name="scaling",
        estimators=LAW_ESTIMATORS,
        samples=LAW_GRID,
        seeds=(0,),
        data=DataConfig(name="gaussian-toy", dequantize=False),
        model=ModelConfig(name="gaussian-toy"),
        train=TrainConfig(enabled=False),
        variance=VarianceConfig(enabled=False),
        throughput=ThroughputConfig(enabled=False),
        checks=ChecksConfig(laws=LAW_CHECKPOINTS, landing=True, quadrature=True),
    )
    # A real-data study sized to about an hour of CPU core time: Burda et al.'s one-stochastic-layer model
    # (2 x 200 tanh, 50 latents, Bernoulli decoder, dynamic binarization) on Fashion-MNIST, the three
    # estimators the published comparisons need (the VAE, IWAE, DReG) at their K in {1, 5, 50}, 3 seeds.
    # A step at K = 50 costs ~10x one at K = 1 (DReG's ~15x), so K = 50 sets the budget: batch 25 buys four
    # times the updates of batch 100 for the same cost. 24,000 steps (10 epochs) with the learning rate decayed
    # by a cosine, as in the default run, so that the curves can level off (its cost and what levelled off:
    # the README's "The Fashion-MNIST reference study"). The test log-likelihood uses 1000 samples on the first
    # 500 test points, the same for every run (Burda et al.: 5000 on all 10,000); runs are compared paired by
    # seed on those same points.
    fashion = dataclasses.replace(
        default,
        name="fashion-mnist",
        estimators=("reparam", "iwae", "dreg"),
        samples=(1, 5, 50),
        seeds=(0, 1, 2),
        data=DataConfig(name="fashion-mnist", binarize="dynamic", dequantize=False),
        model=ModelConfig(z_dim=50, hidden=(200, 200), likelihood="bernoulli", activation="tanh"),
        train=TrainConfig(
            steps=24000,
            batch_size=25,
            lr_schedule="cosine",
            eval_every=200,
            eval_points=1000,
            ll_samples=1000,
            ll_points=300,
        ),
        variance=VarianceConfig(
            checkpoints=("init", "end"), replicates=50, batch_size=25, baseline_samples=256
        ),
        throughput=ThroughputConfig(batch_size=25, repeats=10, warmup=2),
    )
    # The estimator families added after the classic ones, next to the three they refine (the VAE, IWAE, DReG),
    # on the default run's data, model and training.
    families = dataclasses.replace(
        default, name="families", estimators=("reparam", "iwae", "dreg", *FAMILY_ESTIMATORS)
    )
    # Every built-in problem (vaebench.problems), each on its own data, model and budget, the classic estimators
    # and MVD (the measure-valued family of Mohamed et al. 2020, whose Bayesian logistic regression comparison
    # reads its variance on blr-breast-cancer) that apply x K in {1, 10} x 3 seeds: the verdicts across
    # problems (vaebench.suite.units.plan_problems). About a quarter of an hour on 2 cores: the problems' budgets are cut
    # to the steps where their curves level off (digits a third of the default's schedule; vaebench.problems.
    # builtin says each choice and what it costs in the ranking figure).
    problems = dataclasses.replace(
        default,
        name="problems",
        estimators=(*CLASSIC_ESTIMATORS, "mvd"),
        problems=BUILTIN_PROBLEMS,
        variance=VarianceConfig(replicates=50),
        train=TrainConfig(ll_points=100),
    )
    # The default run with every setting trained at five step sizes and each estimator read at its own (as
    # Agrawal, Sheldon & Domke 2020 tune per method): a log-spaced grid over one decade with the default's 3e-3
    # in the middle, so the shared-rate verdicts come from the same run and a choice at either end is a factor
    # of 3 from it; a tenth of the training digits (144) held out to choose on, never the test set.
    tuned = dataclasses.replace(
        default,
        name="tuned",
        data=dataclasses.replace(default.data, valid_fraction=0.1),
        train=dataclasses.replace(default.train, lr_grid=(1e-3, 2e-3, 3e-3, 5e-3, 1e-2)),
    )
    # Liévin, Dittadi, Christensen & Winther 2020's Gaussian VAE (vlievin/ovis experiments/gaussian-vae.json,
    # the repository's figure gaussian-vae-all-pivot): Fashion-MNIST statically binarized at pixel >= 0.5,
    # Bernoulli decoder, 2 x 200 tanh, 200 latents, batch 24, Adam at a constant 3e-4, K in {5, 10, 50}, and the
    # five estimators of its figure. TVO at its defaults: 5 intervals log-spaced from β_1 = 0.01 (the paper's
    # partition at K < 10; it moves β_1 to 0.02 at K = 10 and 0.03 at K = 50). OVIS is the paper's
    # "ovis-gamma1", `ovis-gamma` at γ = 1, which the paper trains on the Rényi bound at α = 0.7 (w^0.3) and
    # vaebench on IWAE_K (it has no α). The paper: 4,000,000 steps x 3 seeds, log p(x) from 5000 importance
    # samples on every test point. Here, sized to ~35 minutes on 2 cores (the dry run): 5000 steps x 3 seeds
    # (steps cut, seeds kept for the paired intervals, estimators all kept), log p(x) from 1000 samples on the
    # first 300 test points (the same for every run); the encoder SNR from 100 replicates at init, early,
    # middle and end of the anchor (reparam, K = 1) run, every setting at the same parameters.
    ovis = dataclasses.replace(
        default,
        name="ovis",
        estimators=("iwae-stl", "dreg", "iwae", "tvo", "ovis-gamma"),
        samples=(5, 10, 50),
        seeds=(0, 1, 2),
        data=DataConfig(name="fashion-mnist", binarize="threshold", dequantize=False),
        model=ModelConfig(z_dim=200, hidden=(200, 200), likelihood="bernoulli", activation="tanh"),
        train=TrainConfig(
            steps=5000,
            batch_size=24,
            lr=3e-4,
            eval_every=200,
            eval_points=500,
            ll_samples=1000,
            ll_points=300,
        ),
        variance=VarianceConfig(
            checkpoints=("init", "early", "middle", "end"),
            replicates=100,
            batch_size=24,
            baseline_samples=0,
        ),
        throughput=ThroughputConfig(batch_size=24, repeats=10, warmup=2),
    )
    return {
        "quick": quick,
        "default": default,
        "paper": paper,
        "scaling": scaling,
        "fashion-mnist": fashion,
        "families": families,
        "problems": problems,
        "tuned": tuned,
        "ovis": ovis,
    }


def preset(name: str) -> SuiteConfig:
    """The named preset (a key of `PRESET_DESCRIPTIONS`)."""
    presets = _presets()
    if name not in presets:
        raise VaebenchError(f"unknown preset {name!r}; valid presets: {', '.join(presets)}")
    return presets[name]
