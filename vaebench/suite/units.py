"""Units of work of the suite: what they are, in which order they run, and how each one is computed.

A unit is the smallest piece of the suite that is saved on its own as soon as it finishes:

- ``reference``: one training run of the reference estimator (K = 1, the first seed) that keeps checkpoints
  at the fractions of `vaebench.config.CHECKPOINTS` (init, early, middle, end): every estimator's gradient
  variance is measured at these same parameters, so estimators are compared on equal footing;
- ``variance/<checkpoint>``: every estimator x K x seed at one checkpoint (`variance_study`);
- ``convergence/<estimator>-K<k>-s<seed>`` (``<estimator>@<sampler>-K<k>-s<seed>`` for a sampler other than
  iid, so the names of older results folders stay valid): one training run and its final test ELBO and log-likelihood
  (`measure_convergence`), self-contained and deterministic given its arguments;
- ``throughput/<estimator>-K<k>`` (``<estimator>@<sampler>-K<k>``) and ``throughput/reference``: the training-step time
  (`measure_throughput`; the hand-written pytorch/examples step as the reference row).

Each unit has a relative cost (``weight``), from which the progress bar's ETA is computed.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
import torch

from vaebench import rng
from vaebench.config import CHECKPOINTS, SuiteConfig
from vaebench.data import Dataset, load_dataset
from vaebench.estimators import ESTIMATORS, make_estimator, runnable
from vaebench.model import GaussianVAE
from vaebench.suite import store

REFERENCE_FILE = Path("units") / "reference" / "checkpoints.pt"
PARTIAL = Path("partial")
"""Where running training units keep their state (`vaebench.checkpoint`), removed when the unit is saved."""


@dataclass(frozen=True)
class Unit:
    """One unit of work.

    Attributes:
        kind: ``reference``, ``variance``, ``convergence`` or ``throughput``.
        name: unique within its kind, used as the file name.
        estimator: the estimator (convergence, throughput), else None.
        num_samples: K (convergence, throughput), else None.
        seed: the seed (convergence), else None.
        checkpoint: the checkpoint label (variance), else None.
        weight: relative cost, for the ETA.
        sampler: the estimator's sampler (convergence, throughput).
    """

    kind: str
    name: str
    estimator: str | None = None
    num_samples: int | None = None
    seed: int | None = None
    checkpoint: str | None = None
    weight: float = 1.0
    sampler: str = "iid"

    @property
    def path(self) -> Path:
        """Where the unit's result goes, relative to the results folder."""
        if self.kind == "reference":
            return REFERENCE_FILE
        return Path("units") / self.kind / f"{self.name}.csv"

    @property
    def error_path(self) -> Path:
        """Where a failure of the unit is recorded, relative to the results folder."""
        return self.path.with_suffix(".error")

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def key(self) -> str:
        """``kind/name``: how messages, manifests and run.json name the unit."""
        return f"{self.kind}/{self.name}"


class Skipped(Exception):
    """A unit that cannot be measured, for a reason that would recur on every retry (it is saved, with no rows,
    and its reason becomes a note of the run rather than a failure)."""


def pairs(config: SuiteConfig) -> list[tuple[str, int, str]]:
    """The (estimator, K, sampler) combinations of ``config`` that can run (`vaebench.estimators.runnable`)."""
    return runnable(config.estimators, config.samples, config.samplers)


def setting_name(name: str, sampler: str) -> str:
    """The estimator's part of a unit name: ``name`` for iid draws, else ``name@sampler``."""
    return name if sampler == "iid" else f"{name}@{sampler}"


def checkpoint_steps(config: SuiteConfig) -> dict[str, int]:
    """Checkpoint label -> step of the reference run."""
    return {label: round(CHECKPOINTS[label] * config.train.steps) for label in config.variance.checkpoints}


def plan(config: SuiteConfig, test_points: int = 360) -> list[Unit]:
    """All units of a run, in execution order: reference, variance, convergence, throughput.

    ``test_points`` (the test set's size) only scales the weight of the log-likelihood evaluation.

    Weights are rough costs (about 300 per second on one CPU core, calibrated on the default preset) so that
    the progress bar's ETA is sensible from the first unit.
    """
    units: list[Unit] = []
    steps = config.train.steps
    points = min(config.train.ll_points or test_points, test_points)
    ll_cost = config.train.ll_samples * points / (50 * config.train.batch_size)
    if config.variance.enabled:
        units.append(Unit("reference", "checkpoints", weight=1.6 * steps))
        v = config.variance
        per_checkpoint = len(v.seeds) * sum(
            50 + 0.01 * v.replicates * v.batch_size * (1 + 0.2 * (k - 1)) for _, k, _ in pairs(config)
        )
        for label in v.checkpoints:
            units.append(Unit("variance", label, checkpoint=label, weight=per_checkpoint))
    for name, k, sampler in pairs(config) if config.train.enabled else []:
        for seed in config.seeds:
            cost = steps * (1 + 0.1 * (k - 1)) * (1.2 if ESTIMATORS[name].stateful else 1.0) + ll_cost
            label = f"{setting_name(name, sampler)}-K{k}-s{seed}"
            units.append(Unit("convergence", label, name, k, seed, weight=cost, sampler=sampler))
    if config.throughput.enabled:
        reps = (config.throughput.repeats + config.throughput.warmup) * config.throughput.batch_size / 100
        if len(config.model.hidden) == 1:
            units.append(Unit("throughput", "reference", "reference", 1, weight=reps))
        for name, k, sampler in pairs(config):
            label, cost = f"{setting_name(name, sampler)}-K{k}", reps * (1 + 0.15 * (k - 1))
            units.append(Unit("throughput", label, name, k, weight=cost, sampler=sampler))
    return units


class Context:
    """What the units of one run share: the data set and how to build the model (loaded lazily, once)."""

    def __init__(self, config: SuiteConfig, out: str | Path):
        self.config = config
        self.out = Path(out)
        self.device = torch.device(config.device)

    @cached_property
    def dataset(self) -> Dataset:
        d = self.config.data
        return load_dataset(
            d.name,
            d.root,
            binarize=None if d.binarize == "none" else d.binarize,
            dequantize=d.dequantize,
            seed=d.seed,
        )

    @property
    def likelihood(self) -> str:
        chosen = self.config.model.likelihood
        return self.dataset.likelihood if chosen == "auto" else chosen

    def model_factory(self, seed: int = 0) -> GaussianVAE:
        """A fresh model, initialised from ``seed``."""
        m = self.config.model
        return GaussianVAE(
            self.dataset.x_dim,
            m.z_dim,
            hidden=m.hidden,
            likelihood=self.likelihood,
            decoder_scale=m.decoder_scale,
            activation=m.activation,
            min_scale=m.min_scale,
            init_decoder_scale=m.init_decoder_scale,
            seed=seed,
        )

    def checkpointer(self, unit: Unit):
        """The saver of ``unit``'s training state (`vaebench.checkpoint`), or None (``save_every_s = 0``)."""
        from vaebench.checkpoint import Checkpointer
        from vaebench.suite.integrity import config_hash

        if not self.config.save_every_s:
            return None
        path = self.out / partial_path(unit)
        return Checkpointer(path, self.config.save_every_s, key=f"{config_hash(self.config)}:{unit.key}")

    def train_options(self) -> dict:
        t = self.config.train
        return {
            "steps": t.steps,
            "batch_size": t.batch_size,
            "lr": t.lr,
            "optimizer": t.optimizer,
            "eval_every": t.eval_every,
            "eval_samples": t.eval_samples,
            "eval_points": t.eval_points or None,
            "device": self.device,
        }


# ------------------------------------------------------------------------------------------------ execution


def execute(unit: Unit, ctx: Context) -> pd.DataFrame | dict:
    """Compute one unit: a tidy frame, or for the reference unit the checkpoints to save."""
    return RUNNERS[unit.kind](unit, ctx)


def _reference(unit: Unit, ctx: Context) -> dict:
    from vaebench.training import train

    config = ctx.config
    seed = config.seeds[0]
    steps = checkpoint_steps(config)
    options = ctx.train_options()
    result = train(
        ctx.model_factory(seed),
        config.variance.reference_estimator,
        ctx.dataset,
        num_samples=1,
        seed=seed,
        checkpoint_at=sorted(set(steps.values())),
        checkpoint=ctx.checkpointer(unit),
        **options,
    )
    checkpoints = {
        label: {"step": step, "state": result.checkpoints[step]}
        for label, step in steps.items()
        if step in result.checkpoints
    }
    return {
        "estimator": config.variance.reference_estimator,
        "seed": seed,
        "diverged_step": result.diverged_step,
        "checkpoints": checkpoints,
    }


def load_reference(ctx: Context) -> dict:
    """The reference run's checkpoints saved by the reference unit."""
    return torch.load(ctx.out / REFERENCE_FILE, map_location="cpu", weights_only=True)


def _variance(unit: Unit, ctx: Context) -> pd.DataFrame:
    from vaebench.measures.variance import variance_study

    config = ctx.config
    reference = load_reference(ctx)
    if unit.checkpoint not in reference["checkpoints"]:
        step = checkpoint_steps(config)[unit.checkpoint]
        raise Skipped(
            f"not measured: the reference run ({reference['estimator']}, K=1, seed {reference['seed']}) "
            f"diverged at step {reference['diverged_step']}, before the {unit.checkpoint!r} checkpoint (step {step})"
        )
    saved = reference["checkpoints"][unit.checkpoint]
    frame = variance_study(
        {unit.checkpoint: (saved["step"], saved["state"])},
        lambda: ctx.model_factory(reference["seed"]),
        list(config.estimators),
        list(config.samples),
        ctx.dataset,
        replicates=config.variance.replicates,
        seeds=list(config.variance.seeds),
        batch_size=config.variance.batch_size,
        reference="auto" if config.variance.reference_samples else None,
        reference_samples=max(config.variance.reference_samples, 2),
        device=ctx.device,
        samplers=list(config.samplers),
    )
    return frame


def _convergence(unit: Unit, ctx: Context) -> pd.DataFrame:
    from vaebench.measures.convergence import measure_convergence

    t = ctx.config.train
    return measure_convergence(
        ctx.model_factory,
        unit.estimator,
        ctx.dataset,
        estimator_options={"sampler": unit.sampler},
        num_samples=unit.num_samples,
        seed=unit.seed,
        ll_samples=t.ll_samples,
        ll_points=t.ll_points or None,
        checkpoint=ctx.checkpointer(unit),
        **ctx.train_options(),
    )


def _throughput(unit: Unit, ctx: Context) -> pd.DataFrame:
    from vaebench.measures import throughput

    config = ctx.config
    t = config.throughput
    seed = config.seeds[0]
    x = ctx.dataset.train[: t.batch_size]
    if ctx.dataset.binarize == "dynamic":
        x = torch.bernoulli(x, generator=rng.generator(seed, "throughput.data"))
    common = {"repeats": t.repeats, "warmup": t.warmup, "device": ctx.device, "seed": seed}
    if unit.estimator == "reference":
        if x.numel() and (x.min() < 0 or x.max() > 1):
            return pd.DataFrame([{
                "estimator": "reference", "num_samples": 1, "seed": seed, "batch_size": int(x.shape[0]),
                "device": str(ctx.device), "status": "skipped", "reason": REFERENCE_STEP_NEEDS,
            }])  # fmt: skip
        model = ctx.model_factory(seed)
        return throughput.measure_handwritten(x, hidden=model.hidden[0], z_dim=model.z_dim, **common)
    model = ctx.model_factory(seed)
    estimator = make_estimator(unit.estimator, sampler=unit.sampler)
    return throughput.measure_throughput(model, estimator, x, unit.num_samples, **common)


REFERENCE_STEP_NEEDS = (
    "the pytorch/examples reference step has a Bernoulli likelihood (binary cross-entropy), which needs data "
    "in [0, 1]; this data set is not"
)

RUNNERS: dict[str, Callable[[Unit, Context], pd.DataFrame | dict]] = {
    "reference": _reference,
    "variance": _variance,
    "convergence": _convergence,
    "throughput": _throughput,
}


def save(unit: Unit, result: pd.DataFrame | dict, out: Path, digest: str, inputs: dict | None = None) -> str:
    """Write a finished unit atomically: its data file, then its manifest; clear any earlier failure record.

    Args:
        unit: the unit.
        result: what :func:`execute` returned.
        out: the results folder.
        digest: the configuration's hash (:func:`vaebench.suite.integrity.config_hash`).
        inputs: what the result depends on ({"reference": sha256} for a variance unit).

    Returns:
        The SHA-256 of the data file.
    """
    from vaebench.suite import faults, integrity

    if unit.kind == "reference":
        buffer = io.BytesIO()
        torch.save(result, buffer)
        payload, rows = buffer.getvalue(), len(result["checkpoints"])
    else:
        frame = _with_keys(unit, result)
        payload, rows = frame.to_csv(index=False).encode(), len(frame)
    store.write_bytes(out / unit.path, payload)
    faults.point("saved")
    record = integrity.manifest(unit, payload, rows, digest, inputs)
    store.write_text(out / integrity.manifest_path(unit), record)
    (out / unit.error_path).unlink(missing_ok=True)
    return json.loads(record)["sha256"]


def _with_keys(unit: Unit, frame: pd.DataFrame) -> pd.DataFrame:
    """Make sure every row carries estimator, sampler, num_samples and seed (the house data contract)."""
    frame = frame.copy()
    for column, value in (
        ("sampler", unit.sampler if unit.estimator is not None else None),
        ("estimator", unit.estimator),
        ("num_samples", unit.num_samples),
        ("seed", unit.seed),
    ):
        if column not in frame and value is not None:
            frame.insert(0, column, value)
    return frame


def partial_path(unit: Unit) -> Path:
    """Where a running training unit keeps its state, relative to the results folder."""
    return PARTIAL / unit.kind / f"{unit.name}.pt"


def total_weight(units: list[Unit]) -> float:
    return math.fsum(u.weight for u in units)
