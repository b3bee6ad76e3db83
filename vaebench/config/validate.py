"""Checks of a config's values beyond their types, with messages that name the key and the valid choices."""

from __future__ import annotations

import math
import os

from vaebench import devices
from vaebench.config.schema import (
    CHECKPOINTS,
    LAW_CHECKPOINTS,
    LR_SCHEDULES,
    REAL_VALUED,
    SuiteConfig,
    real_valued,
)
from vaebench.data import BINARIZE_MODES, DATASET_PLUGINS, DATASETS, FILE_SUFFIXES, Dataset, is_data_file
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, SAMPLERS, runnable, unsupported
from vaebench.model import ACTIVATIONS, DECODER_SCALES, LIKELIHOODS
from vaebench.optim import OPTIMIZERS
from vaebench.registry import BUILT_CHECKPOINTS, MODELS

MAX_SEED = 2**63 - 1
"""Largest seed: the largest TOML integer, and one that torch.manual_seed and an int64 CSV column take."""

MAX_THREADS = 1024
"""Most torch threads accepted: far above any CPU's core count, far below what makes thread creation fail."""


def validate(config: SuiteConfig, explicit_estimators: bool = False) -> list[str]:
    """Check values beyond their types; return notes on the (estimator, K) pairs that will be skipped.

    An estimator that needs more samples than some K (reinforce-loo needs K >= 2) skips that K with a note.
    If it can run at none of the requested K it is an error when the user named it, and a note when it came
    from the default list of all estimators.

    Raises:
        VaebenchError: naming the key, the bad value and the valid choices.
    """
    c = config
    _check_name(c.name)
    _nonempty("estimators", c.estimators)
    for name in c.estimators:
        if name not in ESTIMATORS:
            raise VaebenchError(f"unknown estimator {name!r}; valid names: {', '.join(ESTIMATORS)}")
    _unique("estimators", c.estimators)
    _nonempty("samples", c.samples)
    for k in c.samples:
        if k < 1:
            raise VaebenchError(f"samples (K) must be integers >= 1 (latent draws per datapoint), got {k}")
    _unique("samples", c.samples)
    _nonempty("samplers", c.samplers)
    for sampler in c.samplers:
        _choice("samplers entry", sampler, tuple(SAMPLERS))
    _unique("samplers", c.samplers)
    _nonempty("seeds", c.seeds)
    for s in c.seeds:
        _seed("seeds", s)
    _unique("seeds", c.seeds)
    devices.resolve(c.device)  # a device torch does not see is refused here, before any work
    if not 0 <= c.threads <= MAX_THREADS:
        raise VaebenchError(
            f"threads must be between 0 (torch's default) and {MAX_THREADS}, got {c.threads} "
            f"(this machine has {os.cpu_count()} CPU threads)"
        )
    if not 0 <= c.workers <= MAX_THREADS:
        raise VaebenchError(
            f"workers must be between 0 (one per usable core) and {MAX_THREADS}, got {c.workers}"
        )
    if not (math.isfinite(c.save_every_s) and c.save_every_s >= 0):
        raise VaebenchError(f"save_every_s must be a number of seconds >= 0 (0: never), got {c.save_every_s}")
    _seed("data.seed", c.data.seed)
    if not (c.data.name in DATASETS or c.data.name in DATASET_PLUGINS or is_data_file(c.data.name)):
        plugins = f", a plugin's ({', '.join(DATASET_PLUGINS)})" if DATASET_PLUGINS else ""
        raise VaebenchError(
            f"unknown data set {c.data.name!r}; valid names: {', '.join(DATASETS)}{plugins}, or the path of a "
            f"{', '.join(FILE_SUFFIXES)} file of your own"
        )
    if not 0 < c.data.test_fraction < 1:
        raise VaebenchError(
            f"data.test_fraction must lie strictly between 0 and 1, got {c.data.test_fraction!r}"
        )
    if c.model.name not in MODELS:
        raise VaebenchError(f"unknown model {c.model.name!r}; valid names: {', '.join(MODELS)}")
    _choice("data.binarize", c.data.binarize, ("none", *BINARIZE_MODES))
    if c.data.binarize != "none" and c.data.dequantize:
        raise VaebenchError(
            f"data.binarize {c.data.binarize!r} needs data.dequantize = false (dequantization is for grey "
            "levels; the digits presets turn it on)"
        )
    _positive("model.z_dim", c.model.z_dim)
    for h in c.model.hidden:
        _positive("model.hidden widths", h)
    _choice("model.likelihood", c.model.likelihood, ("auto", *LIKELIHOODS))
    if real_valued(c.data.name):
        simulated = c.data.name in REAL_VALUED  # unbounded values: no Bernoulli decoder, no binarization
        for key, bad, fix in (
            ("model.likelihood", simulated and c.model.likelihood == "bernoulli", "'gaussian' or 'auto'"),
            ("data.binarize", simulated and c.data.binarize != "none", "'none'"),
            ("data.dequantize", c.data.dequantize, "false"),
        ):
            if bad:
                raise VaebenchError(
                    f"{key} {_show(key, c)} does not fit {c.data.name}, which holds real values (not pixel "
                    f"grey levels); set {key} = {fix}"
                )
    _choice("model.decoder_scale", c.model.decoder_scale, DECODER_SCALES)
    _choice("model.activation", c.model.activation, tuple(ACTIVATIONS))
    _positive("model.min_scale", c.model.min_scale)
    _positive("model.init_decoder_scale", c.model.init_decoder_scale)
    for key in ("steps", "batch_size", "eval_every", "ll_samples"):
        _positive(f"train.{key}", getattr(c.train, key))
    _positive("train.lr", c.train.lr)
    if not 0 <= c.data.valid_fraction < 1:
        raise VaebenchError(
            f"data.valid_fraction must lie in [0, 1) (0: none), got {c.data.valid_fraction!r}"
        )
    if c.train.lr_grid:
        for lr in c.train.lr_grid:
            _positive("train.lr_grid rates", lr)
        _unique("train.lr_grid", c.train.lr_grid)
        if c.train.lr not in c.train.lr_grid:
            raise VaebenchError(
                f"train.lr_grid {list(c.train.lr_grid)} must contain train.lr = {c.train.lr} (the shared-rate "
                "verdicts are read at it, beside the tuned ones)"
            )
        if len(c.train.lr_grid) > 1 and not c.data.valid_fraction:
            raise VaebenchError(
                "train.lr_grid selects each setting's rate on a validation split: set data.valid_fraction "
                "(--valid-fraction 0.1); the test set is never used to choose"
            )
    _choice("train.optimizer", c.train.optimizer, tuple(OPTIMIZERS))
    _choice("train.lr_schedule", c.train.lr_schedule, LR_SCHEDULES)
    _positive("train.check_every", c.train.check_every)
    if c.train.compile == "":
        raise VaebenchError(
            "train.compile is an empty string; set true (inductor), false, or a torch.compile backend name"
        )
    _positive("train.eval_samples", c.train.eval_samples)
    for key in ("ll_points", "eval_points"):
        if getattr(c.train, key) < 0:
            raise VaebenchError(
                f"train.{key} must be >= 0 (0: the whole test set), got {getattr(c.train, key)}"
            )
    v = c.variance
    _nonempty("variance.checkpoints", v.checkpoints)
    for label in v.checkpoints:
        _choice("variance.checkpoints entry", label, tuple(CHECKPOINTS))
    _unique("variance.checkpoints", v.checkpoints)
    _choice("variance.summary_checkpoint", v.summary_checkpoint, v.checkpoints)
    if v.replicates < 2:
        raise VaebenchError(f"variance.replicates must be >= 2 to estimate a variance, got {v.replicates}")
    _positive("variance.batch_size", v.batch_size)
    for s in v.seeds:  # () follows the run's seeds (SuiteConfig.variance_seeds)
        _seed("variance.seeds", s)
    _unique("variance.seeds", v.seeds)
    if v.baseline_samples == 1 or v.baseline_samples < 0:
        raise VaebenchError(
            f"variance.baseline_samples must be 0 (no baseline gradient) or >= 2, got {v.baseline_samples}"
        )
    _choice("variance.anchor_estimator", v.anchor_estimator, tuple(ESTIMATORS))
    if v.enabled and unsupported(v.anchor_estimator, 1):
        usable = [s.estimator for s in runnable(ESTIMATORS, [1])]
        raise VaebenchError(
            f"variance.anchor_estimator {v.anchor_estimator!r} needs K >= "
            f"{ESTIMATORS[v.anchor_estimator].min_samples}, but the anchor run trains at K = 1; choose one "
            f"of: {', '.join(usable)}"
        )
    if c.model.name in BUILT_CHECKPOINTS and v.enabled and v.checkpoints != ("end",):
        raise VaebenchError(
            f"the {c.model.name} model is measured at a built checkpoint, not along a training run: set "
            f'variance.checkpoints = ["end"] (got {list(v.checkpoints)})'
        )
    for label in c.checks.laws:
        _choice("checks.laws entry", label, LAW_CHECKPOINTS)
    _unique("checks.laws", c.checks.laws)
    if not (v.enabled or c.train.enabled or c.throughput.enabled or c.checks.laws or c.checks.landing
            or c.checks.quadrature):  # fmt: skip
        raise VaebenchError(
            "this configuration measures nothing: variance, train and throughput are disabled and no check is "
            "asked for; enable one (e.g. [variance] enabled = true) or run --preset scaling for the checks"
        )
    t = c.throughput
    for key in ("batch_size", "repeats"):
        _positive(f"throughput.{key}", getattr(t, key))
    if t.warmup < 0:
        raise VaebenchError(f"throughput.warmup must be >= 0, got {t.warmup}")

    notes = []
    if c.data.root is not None and c.data.name not in ("fashion-mnist", "mnist"):
        notes.append(f"data.root (--data-dir) is ignored: {c.data.name} is not read from IDX files")
    for name in c.estimators:
        need = ESTIMATORS[name].min_samples
        bad = [k for k in c.samples if unsupported(name, k)]  # with iid draws only K can refuse
        if len(bad) == len(c.samples) and explicit_estimators:
            raise VaebenchError(
                f"estimator {name!r} needs K >= {need} but samples are {list(c.samples)}; "
                f"add a K >= {need} (e.g. --samples {','.join(map(str, [*c.samples, max(need, 10)]))})"
            )
        if len(bad) == len(c.samples):
            notes.append(f"skipping {name} entirely: it needs K >= {need}, samples are {list(c.samples)}")
        elif bad:
            notes.append(f"skipping {name} at K={','.join(map(str, bad))}: it needs K >= {need}")
    return notes + _sampler_notes(c)


def _sampler_notes(c: SuiteConfig) -> list[str]:
    """Notes on the (estimator, sampler) pairs that will be skipped; an error if nothing at all can run."""
    notes = []
    for sampler in (s for s in c.samplers if s != "iid"):
        refused = [n for n in c.estimators if sampler not in ESTIMATORS[n].samplers]
        if refused:
            notes.append(
                f"skipping {', '.join(refused)} with sampler {sampler}: they are unbiased only with iid "
                "samples (see `python -m vaebench list`)"
            )
        odd = [k for k in c.samples if sampler == "antithetic" and k % 2]
        if odd:
            notes.append(f"skipping sampler antithetic at K={','.join(map(str, odd))}: it needs an even K")
    if not runnable(c.estimators, c.samples, c.samplers):
        raise VaebenchError(
            f"no estimator can run at samples {list(c.samples)} with samplers {list(c.samplers)}; "
            "add a K or a sampler they take (e.g. --samplers iid)"
        )
    return notes


def _show(key: str, config: SuiteConfig) -> str:
    section, name = key.split(".")
    value = getattr(getattr(config, section), name)
    return str(value).lower() if isinstance(value, bool) else repr(value)


def check_data(config: SuiteConfig, dataset: Dataset) -> None:
    """Check the settings that depend on the loaded data (its size), before any unit runs.

    Raises:
        VaebenchError: a batch larger than the training set (which would silently shrink it).
    """
    n = dataset.train.shape[0]
    for key, value in (
        ("train.batch_size", config.train.batch_size),
        ("variance.batch_size", config.variance.batch_size),
        ("throughput.batch_size", config.throughput.batch_size),
    ):
        if value > n:
            raise VaebenchError(
                f"{key} {value} is larger than the training set ({n} examples of {dataset.name}); use at most {n}"
            )


def _check_name(name: str) -> None:
    """The run's name becomes a folder name: one plain path component."""
    bad = [ch for ch in name if ord(ch) < 32 or ord(ch) == 127 or ch in '/\\:*?"<>|']
    if not name.strip():
        why = "is empty"
    elif name.startswith("."):
        why = "starts with '.'"
    elif len(name) > 100:
        why = "is longer than 100 characters"
    elif bad:
        why = f"contains {bad[0]!r}"
    else:
        return
    raise VaebenchError(
        f"name {name!r} {why}: it names the folder results/<timestamp>-<name>, so use one plain folder name "
        "(letters, digits, '-', '_'); --out DIR chooses the whole folder instead"
    )


def _seed(key: str, seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        what = "an integer" if key == "data.seed" else "integers"
        raise VaebenchError(f"{key} must be {what} >= 0 and <= 2**63 - 1 = {MAX_SEED}, got {seed}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise VaebenchError(f"{key} {value!r} is not valid; choose one of: {', '.join(choices)}")


def _positive(key: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise VaebenchError(f"{key} must be > 0, got {value!r}")


def _nonempty(key: str, values: tuple) -> None:
    if not values:
        raise VaebenchError(f"{key} must not be empty")


def _unique(key: str, values: tuple) -> None:
    seen = {v for v in values if list(values).count(v) > 1}
    if seen:
        raise VaebenchError(f"{key} lists {', '.join(map(str, sorted(seen)))} more than once")
