"""The suite's configuration schema: frozen dataclasses (one comment per default) and the three presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from vaebench.data import DATASET_PLUGINS, is_data_file
from vaebench.errors import VaebenchError
from vaebench.estimators import BUILTIN_ESTIMATORS

CHECKPOINTS: dict[str, float] = {"init": 0.0, "early": 0.1, "middle": 0.5, "end": 1.0}
"""Where the shared variance checkpoints sit, as fractions of the anchor training run's steps."""


@dataclass(frozen=True)
class DataConfig:
    """Which data set, and how it is preprocessed (see :func:`vaebench.data.load_dataset`)."""

    name: str = "digits"  # one of vaebench.data.DATASETS, a plugin's data set, or the path of a .npz, .npy or
    # .csv file of your own (vaebench.data.files); digits ships with scikit-learn, nothing to download
    root: str | None = None  # folder of the fashion-mnist / mnist IDX files; None: the usual places
    binarize: str = "none"  # "none" keeps grey levels; "dynamic" redraws Bernoulli pixels every batch
    dequantize: bool = True  # uniform noise over one grey level: digits has 3 constant pixels whose σ would
    # otherwise collapse to the floor and add ~6 nats each to every Gaussian ELBO (Theis et al. 2016)
    seed: int = 0  # seed of the preprocessing noise (and of the synthetic model), fixed across runs
    test_fraction: float = 0.2  # a .npy or .csv file: the share held out for testing (a seeded split)
    valid_fraction: float = 0.0  # share of the training examples held out for validation (a seeded split,
    # vaebench.data.Dataset.with_validation), what a step-size grid selects on; 0: none


@dataclass(frozen=True)
class ModelConfig:
    """The shared `GaussianVAE` (see :class:`vaebench.model.GaussianVAE`); x_dim comes from the data."""

    name: str = "gaussian-vae"  # a key of vaebench.registry.MODELS: the seed's VAE, or a plugin's model
    # (built as factory(x_dim, z_dim, seed=...)); the keys below but z_dim are GaussianVAE's own
    z_dim: int = 8  # latent dimension Z: small enough for digits' 64 pixels, large enough to matter
    hidden: tuple[int, ...] = (200,)  # hidden widths (decoder mirrors them); () is the linear-Gaussian model
    likelihood: str = "auto"  # "auto": bernoulli when the data are binarized, else gaussian
    decoder_scale: str = "learned"  # Gaussian σ_x: one learned value per pixel, or "network" (per z)
    activation: str = "tanh"  # tanh is smooth and bounded, which keeps score-function runs from blowing up
    min_scale: float = 1e-3  # floor on every σ so log σ stays finite on constant pixels
    init_decoder_scale: float = 0.1  # σ_x near where training takes it on digits: from 1, Adam spends
    # hundreds of steps shrinking σ_x (at ~lr per step) and every estimator's curve looks the same


LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
"""Learning-rate schedules: ``constant`` (``lr`` at every step) or ``cosine``, ``lr · (1 + cos(π t / T)) / 2``
at update t of T (Loshchilov & Hutter 2017, without restarts): the step size decays to 0 at the last update,
so a run of fixed length ends on a curve that has levelled off instead of one still moving at full step size."""


@dataclass(frozen=True)
class TrainConfig:
    """The shared training loop and the end-of-run evaluation (one convergence unit)."""

    steps: int = 500  # optimizer steps per run: 35 epochs of digits at batch 100
    batch_size: int = 100  # examples per minibatch
    lr: float = 1e-3  # Adam's default step size, the usual VAE setting (the first step's, under a schedule)
    lr_schedule: str = "constant"  # constant, or cosine: decays to 0 at the last step (vaebench.train.spec)
    optimizer: str = "adam"  # a key of vaebench.optim.OPTIMIZERS
    stack_seeds: bool = True  # the seeds of a setting trained as one program, one unit (vaebench.train.seeds)
    lr_grid: tuple[float, ...] = ()  # step sizes each setting is trained at, with lr among them, its seeds x
    # rates one program; the rate chosen per setting on the validation split (vaebench.analysis.selection)
    compile: bool | str = False  # torch.compile the step: true (inductor), or a backend name; compile time
    # is counted apart from the step time
    check_every: int = 1  # steps between host reads of the divergence check (N > 1: latched on the device)
    eval_every: int = 25  # steps between test-ELBO evaluations (the curves' resolution)
    eval_samples: int = 10  # pathwise samples per test point for the test ELBO of the curves
    eval_points: int = 0  # test points for the curves' test ELBO; 0 uses the whole test set
    ll_samples: int = 5000  # importance samples per test point for the test log-likelihood (Burda et al.)
    ll_points: int = 100  # test points (the first, the same for all runs) for the log-likelihood; 0: all
    enabled: bool = True  # train every estimator x K x seed (the convergence measure); false: only the
    # variance measure's anchor run trains (the `scaling` preset)


@dataclass(frozen=True)
class VarianceConfig:
    """Gradient variance, measured for every estimator x K at the same parameters."""

    enabled: bool = True  # measure gradient variance at all
    checkpoints: tuple[str, ...] = ("init", "early", "middle", "end")  # keys of CHECKPOINTS
    replicates: int = 100  # independent gradient estimates per (estimator, K, checkpoint, seed)
    batch_size: int = 100  # minibatch the gradients are taken on (held fixed within a measurement)
    seeds: tuple[int, ...] = ()  # one minibatch and noise stream per seed, the same for every estimator;
    # () measures on the run's seeds (`seeds`, --seeds): see SuiteConfig.variance_seeds
    baseline_samples: int = 256  # estimates averaged into the baseline gradient (bias, cosine); 0: none
    anchor_estimator: str = "reparam"  # trains the anchor run, whose checkpoints everybody is measured at
    summary_checkpoint: str = "end"  # which checkpoint the summary table reports


@dataclass(frozen=True)
class ThroughputConfig:
    """Training-step time per estimator x K (forward, backward and optimizer step)."""

    enabled: bool = True  # measure step time at all
    batch_size: int = 100  # examples per timed step (the training batch size by default)
    repeats: int = 50  # timed steps; the median and its interval are reported
    warmup: int = 5  # untimed steps first (allocator, caches, lazy initialisation)


LAW_CHECKPOINTS: tuple[str, ...] = ("toy", "near-posterior")
"""Built checkpoints where the scaling laws' weight condition holds (:mod:`vaebench.checks.laws`)."""

LAW_GRID: tuple[int, ...] = (1, 3, 10, 30, 100, 300, 1000)
"""K the laws are measured at by default: half-decades to 1000, so the largest decade has three points."""

LAW_ESTIMATORS: tuple[str, ...] = ("iwae", "dreg", "reparam", "stl", "reinforce", "reinforce-loo")
"""The IWAE-objective estimators of the published SNR laws, and stateless ELBO estimators with variance laws
(exact for plain averages, as K grows for the leave-one-out baseline)."""


@dataclass(frozen=True)
class ChecksConfig:
    """Checks against answers known in closed form or published (vaebench.checks), each its own unit; the
    report's claims section reads them. Off unless asked for (the `scaling` preset runs them all)."""

    laws: tuple[str, ...] = ()  # built checkpoints where every stateless estimator x K of the run's grid is
    # measured for the scaling laws, of LAW_CHECKPOINTS: "toy" (Rainforth et al. 2018's Gaussian),
    # "near-posterior" (a linear-Gaussian VAE, q = its exact posterior, mean perturbed, over-dispersed); () none
    landing: bool = False  # STL at the exact posterior (Roeder et al. 2017); also runs whenever the run
    # measures stl's variance at several K
    quadrature: bool = False  # the 1-D Gaussian of Mohamed et al. 2020, Figures 2-3: exact variances by
    # quadrature against the estimators' Monte Carlo intervals (seconds)


EXECUTION_KEYS: tuple[str, ...] = ("name", "workers", "save_every_s")
"""Top-level keys that say how a run is executed, never what it computes: left out of the configuration's hash
(:func:`vaebench.config.config_hash`), and a resume may change them."""

RENAMED_KEYS: dict[str, str] = {
    "variance.reference_estimator": "variance.anchor_estimator",
    "variance.reference_samples": "variance.baseline_samples",
}
"""Config keys renamed since earlier releases: old dotted name -> new. The one place the old names live: a
TOML file or a run.json (an older results folder) that uses an old name is read as the new one (a TOML file
gets a note saying so), and the configuration's hash is computed under the old names, so the units of folders
written before the rename still verify. "Reference" in vaebench now names only the committed reference runs
of ``results/reference/``."""


REAL_VALUED = ("synthetic", "gaussian-toy")
"""Built-in data sets whose values are real numbers, not pixel grey levels."""


def real_valued(name: str) -> bool:
    """Whether data set ``name`` is not made of grey levels: the built-in real-valued sets, a data file, a
    plugin's data set (it has no grey levels to dequantize)."""
    return name in REAL_VALUED or is_data_file(name) or name in DATASET_PLUGINS


ADDED_KEYS: dict[str, object] = {
    "plugins": (),
    "model.name": "gaussian-vae",
    "data.test_fraction": 0.2,
    "data.valid_fraction": 0.0,
    "train.lr_schedule": "constant",
    "train.stack_seeds": True,
    "train.lr_grid": (),
    "train.compile": False,
    "train.check_every": 1,
    "checks": {
        f.name: list(v) if isinstance(v := getattr(ChecksConfig(), f.name), tuple) else v
        for f in dataclasses.fields(ChecksConfig)
    },
}
"""Keys added in this release, with their defaults: a configuration's hash leaves a key out while it has its
default, so the units of folders written before it existed still verify."""


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


def _classic_estimators() -> tuple[str, ...]:
    return CLASSIC_ESTIMATORS


@dataclass(frozen=True)
class SuiteConfig:
    """Everything one `python -m vaebench run` does."""

    name: str = "default"  # names the output folder results/<timestamp>-<name>/
    plugins: tuple[str, ...] = ()  # your modules, loaded first: their ESTIMATORS, MODELS, DATASETS dicts join
    # the registries (vaebench.registry); an estimator can also be named module:Class in `estimators`
    estimators: tuple[str, ...] = field(default_factory=_classic_estimators)  # CLASSIC_ESTIMATORS
    # (keys of ESTIMATORS; a plugin's by name)
    samples: tuple[int, ...] = (1, 10)  # K values; combinations an estimator cannot do are skipped, noted
    samplers: tuple[str, ...] = ("iid",)  # how the K draws of ε are made: iid, antithetic, rqmc (see
    # vaebench.estimators.sampling); a sampler that would bias an estimator is skipped for it, noted
    seeds: tuple[int, ...] = (0, 1, 2)  # seeds of model initialisation, data order and Monte Carlo draws
    device: str = "cpu"  # "cpu", "cuda", "cuda:N", or "auto" (cuda when available)
    threads: int = 1  # torch CPU threads (0: torch's default); see the note on threads below
    workers: int = 0  # units run at once in worker processes; 0: the usable cores // threads; 1: in-process
    save_every_s: float = 600.0  # seconds between saves of a running training unit's state, so a kill or a
    # preemption loses at most this much of it (vaebench.train.checkpoints); 0: never
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


# ------------------------------------------------------------------------------------------------ presets

# A note on threads: the default model's matrices are small (batch 100 x a few hundred units), where an OpenMP
# parallel region costs about as much as it saves; and when the machine is busy, a second spinning thread
# that gets descheduled stalls every operation (measured on a loaded 2-core machine: 300 ms vs 1.5 ms per
# step for a 64-32-4 VAE). One thread is the robust default for the digits presets; `paper` uses torch's
# default (all cores), where the 784-200-200-50 model's matrices are large enough to share.


def _presets() -> dict[str, SuiteConfig]:
    # The default run: the seed's Gaussian VAE at 64-100-8 (tanh), 3000 steps (210 epochs of digits) from lr 3e-3
    # decayed by a cosine to 0, where the pathwise curves level off (issue 23; 3 seeds, the change of the test
    # ELBO over the last quarter, 95% interval). At 64-200-8 they did not within 5 minutes: 0.96 [0.91, 1.01]
    # nats for reparam K = 1 after 1000 cosine steps, and after 3000 still 0.94 [0.85, 1.02] (reparam K = 1),
    # 0.97 [0.85, 1.09] (iwae K = 10), 0.88 [0.74, 1.03] (dreg K = 10), a 5.2-minute run; after 500 constant
    # steps at 1e-3 every curve rose 6.6-14 nats; from 1e-2 the last quarter still rose 1.67, from σ_x = 0.03
    # training started too sharp, -105. At 64-100-8 a step costs about half as much and 3000 steps leave every
    # pathwise setting at K = 1 and 10 between 0.51 [0.42, 0.61] and 0.61 [0.53, 0.70]; after 2000 steps they
    # were already within 0.70 [0.64, 0.76], 3 nats lower. Under a schedule that decays to 0, "levelled off"
    # is the end of the schedule, not the best the model can do: 4000 steps end 1.5 nats higher again (reparam
    # K = 1: 51.8 after 3000, 53.3 after 4000). Variance at init, middle and end (not also early).
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
    # by a cosine, as in the default run, so that the curves can level off: at 6000 constant-rate steps
    # (2.5 epochs) every curve still rose 1.7 to 17 nats a quarter. 1 h 55 min on 2 cores with stacked seeds
    # (measured; the dry run estimates 58.5 min with 2 workers, 2 h on one). The test log-likelihood
    # uses 1000 samples on the first 500 test points, the same for every run (Burda et al.: 5000 on all
    # 10,000); runs are compared paired by seed on those same points.
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
            ll_points=500,
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
    return {
        "quick": quick,
        "default": default,
        "paper": paper,
        "scaling": scaling,
        "fashion-mnist": fashion,
        "families": families,
    }


def preset(name: str) -> SuiteConfig:
    """The named preset (a key of `PRESET_DESCRIPTIONS`)."""
    presets = _presets()
    if name not in presets:
        raise VaebenchError(f"unknown preset {name!r}; valid presets: {', '.join(presets)}")
    return presets[name]
