"""The suite's configuration: frozen dataclasses, three presets, strict TOML and command-line overrides.

A configuration is resolved in layers, each strict (an unknown key or a wrong type is a `VaebenchError` that
names the key, what was expected and what was given):

    preset (quick | default | paper)  ->  TOML file (--config)  ->  command-line flags

TOML mirrors the dataclasses: top-level keys of `SuiteConfig`, one table per section::

    preset = "quick"            # optional: the base preset (a --preset flag overrides it)
    estimators = ["reparam", "stl", "reinforce-loo"]
    samples = [1, 10]
    [train]
    steps = 500
    [data]
    name = "fashion-mnist"

TOML has no null, so options that mean "nothing" use a word or zero: `binarize = "none"`,
`likelihood = "auto"`, `threads = 0`, `ll_points = 0`. The resolved configuration is written to `run.json`
(see :func:`to_dict`), and a saved one is read back with :func:`from_dict`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaebench.data import BINARIZE_MODES, DATASETS
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS
from vaebench.model import ACTIVATIONS, DECODER_SCALES, LIKELIHOODS
from vaebench.training import OPTIMIZERS

CHECKPOINTS: dict[str, float] = {"init": 0.0, "early": 0.1, "middle": 0.5, "end": 1.0}
"""Where the shared variance checkpoints sit, as fractions of the reference training run's steps."""


@dataclass(frozen=True)
class DataConfig:
    """Which data set, and how it is preprocessed (see :func:`vaebench.data.load_dataset`)."""

    name: str = "digits"  # one of vaebench.data.DATASETS; digits ships with scikit-learn, nothing to download
    root: str | None = None  # folder of the fashion-mnist / mnist IDX files; None: the usual places
    binarize: str = "none"  # "none" keeps grey levels; "dynamic" redraws Bernoulli pixels every batch
    dequantize: bool = True  # uniform noise over one grey level: digits has 3 constant pixels whose σ would
    # otherwise collapse to the floor and add ~6 nats each to every Gaussian ELBO (Theis et al. 2016)
    seed: int = 0  # seed of the preprocessing noise (and of the synthetic model), fixed across runs


@dataclass(frozen=True)
class ModelConfig:
    """The shared `GaussianVAE` (see :class:`vaebench.model.GaussianVAE`); x_dim comes from the data."""

    z_dim: int = 8  # latent dimension Z: small enough for digits' 64 pixels, large enough to matter
    hidden: tuple[int, ...] = (200,)  # hidden widths (decoder mirrors them); () is the linear-Gaussian model
    likelihood: str = "auto"  # "auto": bernoulli when the data are binarized, else gaussian
    decoder_scale: str = "learned"  # Gaussian σ_x: one learned value per pixel, or "network" (per z)
    activation: str = "tanh"  # tanh is smooth and bounded, which keeps score-function runs from blowing up
    min_scale: float = 1e-3  # floor on every σ so log σ stays finite on constant pixels
    init_decoder_scale: float = 0.1  # σ_x near where training takes it on digits: from 1, Adam spends
    # hundreds of steps shrinking σ_x (at ~lr per step) and every estimator's curve looks the same


@dataclass(frozen=True)
class TrainConfig:
    """The shared training loop and the end-of-run evaluation (one convergence unit)."""

    steps: int = 500  # optimizer steps per run: 35 epochs of digits at batch 100
    batch_size: int = 100  # examples per minibatch
    lr: float = 1e-3  # Adam's default step size, the usual VAE setting
    optimizer: str = "adam"  # a key of vaebench.training.OPTIMIZERS
    eval_every: int = 25  # steps between test-ELBO evaluations (the curves' resolution)
    eval_samples: int = 10  # pathwise samples per test point for the test ELBO of the curves
    eval_points: int = 0  # test points for the curves' test ELBO; 0 uses the whole test set
    ll_samples: int = 5000  # importance samples per test point for the test log-likelihood (Burda et al.)
    ll_points: int = 100  # test points (the first, the same for all runs) for the log-likelihood; 0: all


@dataclass(frozen=True)
class VarianceConfig:
    """Gradient variance, measured for every estimator x K at the same parameters."""

    enabled: bool = True  # measure gradient variance at all
    checkpoints: tuple[str, ...] = ("init", "early", "middle", "end")  # keys of CHECKPOINTS
    replicates: int = 100  # independent gradient estimates per (estimator, K, checkpoint, seed)
    batch_size: int = 100  # minibatch the gradients are taken on (held fixed within a measurement)
    seeds: tuple[int, ...] = (0,)  # one minibatch and noise stream per seed, the same for every estimator
    reference_samples: int = 256  # estimates averaged into the reference gradient (bias, cosine); 0: none
    reference_estimator: str = "reparam"  # trains the one run whose checkpoints everybody is measured at
    summary_checkpoint: str = "end"  # which checkpoint the summary table reports


@dataclass(frozen=True)
class ThroughputConfig:
    """Training-step time per estimator x K (forward, backward and optimizer step)."""

    enabled: bool = True  # measure step time at all
    batch_size: int = 100  # examples per timed step (the training batch size by default)
    repeats: int = 50  # timed steps; the median and its interval are reported
    warmup: int = 5  # untimed steps first (allocator, caches, lazy initialisation)


def _all_estimators() -> tuple[str, ...]:
    return tuple(ESTIMATORS)


@dataclass(frozen=True)
class SuiteConfig:
    """Everything one `python -m vaebench run` does."""

    name: str = "default"  # names the output folder results/<timestamp>-<name>/
    estimators: tuple[str, ...] = field(default_factory=_all_estimators)  # keys of ESTIMATORS
    samples: tuple[int, ...] = (1, 10)  # K values; combinations an estimator cannot do are skipped, noted
    seeds: tuple[int, ...] = (0, 1, 2)  # seeds of model initialisation, data order and Monte Carlo draws
    device: str = "cpu"  # "cpu", "cuda", "cuda:N", or "auto" (cuda when available)
    threads: int = 1  # torch CPU threads (0: torch's default); see the note on threads below
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    variance: VarianceConfig = field(default_factory=VarianceConfig)
    throughput: ThroughputConfig = field(default_factory=ThroughputConfig)


# ------------------------------------------------------------------------------------------------ presets

# A note on threads: the default model's matrices are small (batch 100 x a few hundred units), where an OpenMP
# parallel region costs about as much as it saves; and when the machine is busy, a second spinning thread
# that gets descheduled stalls every operation (measured on a loaded 2-core machine: 300 ms vs 1.5 ms per
# step for a 64-32-4 VAE). One thread is the robust default for the digits presets; `paper` uses torch's
# default (all cores), where the 784-200-200-50 model's matrices are large enough to share.


def _presets() -> dict[str, SuiteConfig]:
    default = SuiteConfig()
    quick = dataclasses.replace(
        default,
        name="quick",
        samples=(1, 4),
        seeds=(0, 1),
        model=ModelConfig(z_dim=4, hidden=(32,)),
        train=TrainConfig(steps=60, eval_every=20, ll_samples=200, ll_points=100),
        variance=VarianceConfig(
            checkpoints=("init", "end"), replicates=10, batch_size=50, reference_samples=16
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
        variance=VarianceConfig(replicates=200, seeds=(0, 1, 2), reference_samples=4096),
    )
    return {"quick": quick, "default": default, "paper": paper}


PRESET_DESCRIPTIONS: dict[str, str] = {
    "quick": "a smoke test in well under a minute: a tiny VAE, 60 steps, K in {1, 4}, 2 seeds",
    "default": "every estimator x K in {1, 10} x 3 seeds on digits, 64-200-8 VAE, 500 steps (minutes on a CPU)",
    "paper": "Fashion-MNIST (or MNIST), dynamic binarization, Burda et al.'s 2x200 tanh, z=50, 200k steps",
}


def preset(name: str) -> SuiteConfig:
    """The named preset (`quick`, `default` or `paper`)."""
    presets = _presets()
    if name not in presets:
        raise VaebenchError(f"unknown preset {name!r}; valid presets: {', '.join(presets)}")
    return presets[name]


# ------------------------------------------------------------------------------- strict (de)serialisation


def merge(config: Any, data: dict[str, Any], prefix: str = "") -> Any:
    """A copy of the dataclass `config` with the keys of `data` replaced, checked strictly.

    Args:
        config: a config dataclass instance (e.g. a `SuiteConfig`).
        data: nested mapping like the TOML file; tables map to sub-dataclasses, lists to tuples.
        prefix: dotted path of `config` for error messages.

    Raises:
        VaebenchError: an unknown key (listing the valid ones) or a value of the wrong type.
    """
    if not isinstance(data, dict):
        raise VaebenchError(f"config key {_where(prefix)} must be a table, got {_describe(data)}")
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise VaebenchError(f"unknown config key {path!r}; valid keys{_of(prefix)}: {', '.join(names)}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            changes[key] = merge(current, value, prefix=f"{path}.")
        else:
            changes[key] = _coerce(value, hints[key], path)
    return dataclasses.replace(config, **changes)


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON-able data (tuples become lists); :func:`from_dict` inverts it."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def from_dict(data: dict[str, Any]) -> SuiteConfig:
    """Rebuild a `SuiteConfig` from :func:`to_dict` output (e.g. a saved run.json), strictly."""
    return merge(SuiteConfig(), data)


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two configs differ, each as 'key: a -> b'."""
    out = []
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x):
            out += differences(x, y, f"{prefix}{f.name}.")
        elif x != y:
            out.append(f"{prefix}{f.name}: {_show(x)} -> {_show(y)}")
    return out


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the annotation `tp` (int, float, str, bool, X | None, tuple[X, ...])."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise VaebenchError(
                f"config key {path!r} must be a list of {_type_name(args[0])}s, got {_describe(value)}"
            )
        return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise VaebenchError(
            f"config key {path!r} must be {_type_name(tp, article=True)}, got {_describe(value)}"
        )
    return value


def _type_name(tp: Any, article: bool = False) -> str:
    name = {int: "integer", float: "number", str: "string", bool: "boolean (true or false)"}.get(tp, str(tp))
    if not article:
        return name
    return ("an " if name[0] in "aeiou" else "a ") + name


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _where(prefix: str) -> str:
    return repr(prefix.rstrip(".")) if prefix else "(top level)"


def _of(prefix: str) -> str:
    return f" in [{prefix.rstrip('.')}]" if prefix else ""


# ------------------------------------------------------------------------------------------------ loading


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file (tomllib on Python 3.11+, the `tomli` package on 3.10)."""
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef]
        except ModuleNotFoundError:
            raise VaebenchError(
                "reading a --config file needs Python 3.11+ or the 'tomli' package: pip install tomli"
            ) from None
    path = Path(path)
    if not path.is_file():
        raise VaebenchError(f"config file {str(path)!r} does not exist")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise VaebenchError(f"config file {str(path)!r} is not valid TOML: {err}") from None


def load_config(path: str | Path, base: str | None = None) -> SuiteConfig:
    """Read a TOML config on top of a preset (not yet validated; see :func:`resolve`).

    Args:
        path: the TOML file.
        base: preset to start from; None uses the file's own `preset` key, else "default".
    """
    return _merge_file(read_toml(path), base)


def _merge_file(data: dict[str, Any], base: str | None) -> SuiteConfig:
    data = dict(data)
    named = data.pop("preset", None)
    if named is not None and not isinstance(named, str):
        raise VaebenchError(f"config key 'preset' must be a string, got {_describe(named)}")
    return merge(preset(base or named or "default"), data)


def resolve(
    *, preset_name: str | None = None, config_file: str | Path | None = None, overrides: dict | None = None
) -> tuple[SuiteConfig, list[str]]:
    """Build and validate the configuration of a run: preset, then file, then overrides.

    Args:
        preset_name: quick, default or paper; None uses the file's `preset` key, else "default".
        config_file: optional TOML file.
        overrides: nested mapping (like the TOML) from command-line flags.

    Returns:
        The validated config (with `device="auto"` resolved) and notes for the user (skipped combinations).
    """
    data = read_toml(config_file) if config_file is not None else {}
    config = _merge_file(data, preset_name)
    overrides = overrides or {}
    config = merge(config, overrides)
    notes = validate(config, explicit_estimators="estimators" in data or "estimators" in overrides)
    if config.device == "auto":
        config = dataclasses.replace(config, device="cuda" if torch.cuda.is_available() else "cpu")
    return config, notes


# --------------------------------------------------------------------------------------------- validation


def validate(config: SuiteConfig, explicit_estimators: bool = False) -> list[str]:
    """Check values beyond their types; return notes on the (estimator, K) pairs that will be skipped.

    An estimator that needs more samples than some K (reinforce-loo needs K >= 2) skips that K with a note.
    If it can run at none of the requested K it is an error when the user named it, and a note when it came
    from the default list of all estimators.

    Raises:
        VaebenchError: naming the key, the bad value and the valid choices.
    """
    c = config
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
    _nonempty("seeds", c.seeds)
    for s in c.seeds:
        if s < 0:
            raise VaebenchError(f"seeds must be integers >= 0, got {s}")
    _unique("seeds", c.seeds)
    _check_device(c.device)
    if c.threads < 0:
        raise VaebenchError(f"threads must be >= 0 (0 keeps torch's default), got {c.threads}")
    if c.data.name not in DATASETS:
        raise VaebenchError(f"unknown data set {c.data.name!r}; valid names: {', '.join(DATASETS)}")
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
    if c.model.likelihood == "bernoulli" and c.data.name == "synthetic":
        raise VaebenchError(
            "model.likelihood 'bernoulli' needs data in [0, 1]; synthetic data are real-valued"
        )
    _choice("model.decoder_scale", c.model.decoder_scale, DECODER_SCALES)
    _choice("model.activation", c.model.activation, tuple(ACTIVATIONS))
    _positive("model.min_scale", c.model.min_scale)
    _positive("model.init_decoder_scale", c.model.init_decoder_scale)
    for key in ("steps", "batch_size", "eval_every", "ll_samples"):
        _positive(f"train.{key}", getattr(c.train, key))
    _positive("train.lr", c.train.lr)
    _choice("train.optimizer", c.train.optimizer, tuple(OPTIMIZERS))
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
    _nonempty("variance.seeds", v.seeds)
    for s in v.seeds:
        if s < 0:
            raise VaebenchError(f"variance.seeds must be integers >= 0, got {s}")
    _unique("variance.seeds", v.seeds)
    if v.reference_samples == 1 or v.reference_samples < 0:
        raise VaebenchError(
            f"variance.reference_samples must be 0 (no reference) or >= 2, got {v.reference_samples}"
        )
    _choice("variance.reference_estimator", v.reference_estimator, tuple(ESTIMATORS))
    t = c.throughput
    for key in ("batch_size", "repeats"):
        _positive(f"throughput.{key}", getattr(t, key))
    if t.warmup < 0:
        raise VaebenchError(f"throughput.warmup must be >= 0, got {t.warmup}")

    notes = []
    for name in c.estimators:
        need = ESTIMATORS[name].min_samples
        bad = [k for k in c.samples if k < need]
        if len(bad) == len(c.samples) and explicit_estimators:
            raise VaebenchError(
                f"estimator {name!r} needs K >= {need} but samples are {list(c.samples)}; "
                f"add a K >= {need} (e.g. --samples {','.join(map(str, [*c.samples, max(need, 10)]))})"
            )
        if len(bad) == len(c.samples):
            notes.append(f"skipping {name} entirely: it needs K >= {need}, samples are {list(c.samples)}")
        elif bad:
            notes.append(f"skipping {name} at K={','.join(map(str, bad))}: it needs K >= {need}")
    return notes


def _check_device(device: str) -> None:
    if device in ("cpu", "auto"):
        return
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise VaebenchError(
                f"device {device!r} requested but torch sees no CUDA device; use --device cpu (or auto)"
            )
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise VaebenchError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return
    raise VaebenchError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")


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
