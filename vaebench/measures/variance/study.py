r"""The variance study: every estimator x K at the same checkpoints of one run, or along each its own run.

Comparing estimators is fair only at the same parameters: :func:`variance_study` takes checkpoints of one
reference training run (initialisation, early, middle, end), loads each into a fresh model, and measures every
estimator x K there on the same minibatch(es), each stateful estimator warmed up at those parameters first on
*other* minibatches (a baseline fitted on the measured batch would learn that batch and flatter its variance).
:func:`variance_along_runs` measures each estimator along its own run instead.

:func:`~vaebench.measures.variance.noise.decompose_noise` (Monte Carlo versus minibatch noise) lives in
:mod:`vaebench.measures.variance.noise`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn

from vaebench.errors import VaebenchError, check_int
from vaebench.estimators import (
    ESTIMATORS,
    SAMPLERS,
    check_num_samples,
    make_estimator,
    unsupported,
)
from vaebench.measures import schema
from vaebench.measures.variance.baseline import (
    DEFAULT_REFERENCE_SAMPLES,
    baseline_target,
    target_baseline,
)
from vaebench.measures.variance.layout import layout
from vaebench.measures.variance.measure import is_stateful, measure_variance, warm_up
from vaebench.measures.variance.noise import NOISE_FIGURES, decompose_noise  # noqa: F401 (old path)
from vaebench.progress import bar as progress_bar

CHECKPOINT_LABELS = ("init", "early", "middle", "end")
"""Labels given to four unlabelled checkpoints, in step order."""

STUDY_COLUMNS = schema.VARIANCE.columns
"""Columns of `variance_study`'s frame: where it was measured, whether it was, how many minibatches (none of
them the measured one) a stateful estimator was warmed up on (0: stateless or not warmed up), and `COLUMNS`."""

WARM_UP_BATCHES = 10
"""Minibatches, other than the measured one, that each stateful estimator is warmed up on (at most)."""


@dataclass(frozen=True)
class Checkpoint:
    """Model parameters to measure at: a label (e.g. ``"middle"``), the training step, the ``state_dict``."""

    label: str
    step: int
    state: Mapping[str, Tensor]


def as_checkpoints(checkpoints) -> list[Checkpoint]:
    """Checkpoints from any of the forms the suite produces.

    Accepted: a sequence of :class:`Checkpoint`; ``{step: state_dict}`` (``TrainResult.checkpoints``; labels
    from `CHECKPOINT_LABELS` when there are four, else ``init``, ``step-<n>``, ``end``); ``{label: (step,
    state_dict)}``; ``{label: {"step": step, "state": state_dict}}``.
    """
    if isinstance(checkpoints, Checkpoint):
        return [checkpoints]
    if isinstance(checkpoints, Mapping):
        items = list(checkpoints.items())
        if all(isinstance(k, int) and not isinstance(k, bool) for k, _ in items):
            steps = sorted(checkpoints)
            labels = _default_labels(steps)
            return [Checkpoint(labels[i], s, checkpoints[s]) for i, s in enumerate(steps)]
        out = []
        for label, value in items:
            if isinstance(value, Mapping) and "state" in value:
                out.append(Checkpoint(str(label), int(value.get("step", -1)), value["state"]))
            elif isinstance(value, tuple | list) and len(value) == 2:
                out.append(Checkpoint(str(label), int(value[0]), value[1]))
            else:
                raise VaebenchError(
                    f"checkpoint {label!r}: expected (step, state_dict) or {{'step': ..., 'state': ...}}, "
                    f"got {type(value).__name__}"
                )
        return out
    if isinstance(checkpoints, Sequence) and all(isinstance(c, Checkpoint) for c in checkpoints):
        return list(checkpoints)
    raise VaebenchError(
        "checkpoints must be Checkpoint objects, {step: state_dict} or {label: (step, state_dict)}, "
        f"got {type(checkpoints).__name__}"
    )


def _default_labels(steps: list[int]) -> list[str]:
    if len(steps) == len(CHECKPOINT_LABELS) and steps[0] == 0:
        return list(CHECKPOINT_LABELS)
    labels = [f"step-{s}" for s in steps]
    if steps and steps[0] == 0:
        labels[0] = "init"
    if len(steps) > 1:
        labels[-1] = "end"
    return labels


def variance_study(
    checkpoints,
    model_factory: Callable[[], nn.Module],
    estimators: Sequence[str],
    samples: Sequence[int],
    data,
    *,
    replicates: int = 100,
    seeds: Sequence[int] = (0,),
    batch_size: int = 128,
    reference: str | None = "auto",
    reference_samples: int = DEFAULT_REFERENCE_SAMPLES,
    warmup: bool = True,
    warmup_data: Tensor | Sequence[Tensor] | None = None,
    estimator_options: Mapping[str, Mapping] | None = None,
    chunk_size: int | None = None,
    level: float = 0.95,
    method: str = "batched",
    resamples: int = 1000,
    timing_repeats: int = 5,
    device: torch.device | str | None = None,
    progress: bool = False,
    run: str = "shared",
    samplers: Sequence[str] = ("iid",),
) -> pd.DataFrame:
    """Measure every estimator x K at each checkpoint, on the same minibatch per seed.

    For each checkpoint, a model from ``model_factory()`` is loaded with its state; for each seed, one
    minibatch is drawn (or taken) and one reference gradient per objective is computed and shared by all
    estimators of that objective; then each estimator is built, warmed up at those parameters on minibatches
    other than the measured one (:func:`~vaebench.measures.variance.measure.warm_up`) and measured with
    :func:`~vaebench.measures.variance.measure.measure_variance`. Combinations that cannot run (K below
    an estimator's minimum, e.g. ``reinforce-loo`` at K = 1, or a sampler that would bias it) are recorded
    with ``status="skipped"`` and the reason, not raised.

    Args:
        checkpoints: see :func:`as_checkpoints`.
        model_factory: builds a model of the checkpoints' architecture.
        estimators: registered estimator names.
        samples: values of K.
        data: a :class:`~vaebench.data.Dataset` (seed s measures on the first minibatch of
            ``data.batches(batch_size, seed=s)`` and warms stateful estimators up on the next
            `WARM_UP_BATCHES` of that epoch: disjoint rows), a sequence of minibatches (seed i measures on the
            i-th, cycling, and warms up on the others), or one minibatch [B, D] (then stateful estimators need
            ``warmup_data``).
        replicates: independent estimates per measurement.
        seeds: one measurement per seed (its own minibatch, noise and bootstrap).
        batch_size: minibatch size when ``data`` is a Dataset.
        reference: ``"auto"`` (exact or high-sample, see ``baseline_gradient``) or None.
        reference_samples: estimates averaged into a sampled reference.
        warmup: warm up stateful estimators at each checkpoint before measuring.
        warmup_data: minibatches to warm stateful estimators up on instead of the automatic choice; required
            when ``data`` is a single minibatch and a stateful estimator is measured. It must not contain the
            measured minibatch.
        estimator_options: estimator name -> options for ``make_estimator``.
        chunk_size, level, method, resamples, timing_repeats: as in ``measure_variance``.
        device: where to measure (default: CPU).
        progress: show a tqdm progress bar.
        run: value of the ``run`` column (``"shared"`` checkpoints, or ``"own"`` from
            :func:`variance_along_runs`).
        samplers: samplers of every estimator (keys of :data:`~vaebench.estimators.SAMPLERS`); each
            (estimator, sampler) pair is measured like a separate estimator.

    Returns:
        Tidy rows, columns `STUDY_COLUMNS`: one per checkpoint x seed x estimator x sampler x K x group.

    Raises:
        VaebenchError: an unknown estimator, a bad K or replicate count, or no minibatch other than the
            measured one to warm a stateful estimator up on.
    """
    points = as_checkpoints(checkpoints)
    names = list(estimators)
    for name in names:
        if name not in ESTIMATORS:
            raise VaebenchError(f"unknown estimator {name!r}; valid names: {', '.join(ESTIMATORS)}")
    for k in samples:
        check_num_samples(k)
    for sampler in samplers:
        if sampler not in SAMPLERS:
            raise VaebenchError(f"unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
    check_int("replicates", replicates, 2, "two replicates are the fewest that estimate a variance")
    if reference not in (None, "auto"):
        raise VaebenchError(f"reference must be 'auto' or None, got {reference!r}")
    options = dict(estimator_options or {})
    stateful = warmup and any(is_stateful(make_estimator(n, **options.get(n, {}))) for n in names)
    measure_options = {
        "chunk_size": chunk_size,
        "level": level,
        "method": method,
        "resamples": resamples,
        "timing_repeats": timing_repeats,
    }
    device = torch.device(device or "cpu")
    total = len(points) * len(seeds) * len(names) * len(samplers) * len(samples)
    bar = progress_bar(total, progress, desc="variance", unit="measurement")
    frames = []
    try:
        for point in points:
            model = model_factory()
            model.load_state_dict(point.state)
            model.to(device)
            groups = list(layout(model).groups)
            for i, seed in enumerate(seeds):
                x = _minibatch(data, batch_size, seed, i).to(device)
                others = _warm_up_batches(data, batch_size, seed, i, warmup_data) if stateful else []
                others = [b.to(device) for b in others]
                references: dict = {}  # one per target, shared
                for name, sampler in ((n, s) for n in names for s in samplers):
                    for k in samples:
                        bar.update(1)
                        reason = unsupported(name, k, sampler)
                        if reason:
                            frame = _skipped(name, k, seed, groups, reason, sampler)
                        else:
                            est = make_estimator(name, sampler=sampler, **options.get(name, {}))
                            warmed = stateful and is_stateful(est)
                            if warmed:
                                warm_up(est, model, others, num_samples=k, seed=seed)
                            ref = None
                            if reference is not None:
                                key = baseline_target(est, k)
                                if key not in references:
                                    references[key] = target_baseline(model, x, key, reference_samples, seed)
                                ref = references[key]
                            frame = measure_variance(
                                model, est, x, k, replicates, reference=ref, seed=seed, **measure_options
                            ).assign(
                                status="ok", skip_reason="", warm_up_batches=len(others) if warmed else 0
                            )
                        frames.append(frame.assign(checkpoint=point.label, step=point.step))
    finally:
        bar.close()
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(STUDY_COLUMNS))
    out["run"] = run
    return schema.conform(out[list(STUDY_COLUMNS)], schema.VARIANCE)


def variance_along_runs(
    runs: Mapping[str, object],
    model_factory: Callable[[], nn.Module],
    samples: Sequence[int],
    data,
    **options,
) -> pd.DataFrame:
    """Each estimator measured along its own training run: ``runs`` maps estimator name -> its checkpoints.

    The counterpart of :func:`variance_study` (which compares at shared parameters): here each estimator is
    measured where its own optimisation took it; rows carry ``run="own"``. Options as in
    :func:`variance_study`.
    """
    frames = [
        variance_study(checkpoints, model_factory, [name], samples, data, run="own", **options)
        for name, checkpoints in runs.items()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(STUDY_COLUMNS))


def _minibatch(data, batch_size: int, seed: int, index: int) -> Tensor:
    if isinstance(data, Tensor):
        if data.dim() != 2:
            raise VaebenchError(f"a minibatch must have shape [B, D], got {list(data.shape)}")
        return data
    if hasattr(data, "batches"):
        return next(iter(data.batches(batch_size, seed=seed)))
    if isinstance(data, Sequence) and data and all(isinstance(b, Tensor) for b in data):
        return _minibatch(data[index % len(data)], batch_size, seed, index)
    raise VaebenchError(
        f"data must be a Dataset, a minibatch tensor [B, D] or a list of them, got {type(data).__name__}"
    )


def _warm_up_batches(data, batch_size: int, seed: int, index: int, given) -> list[Tensor]:
    """Minibatches to warm stateful estimators up on: never the measured one (see `variance_study`)."""
    measured = _minibatch(data, batch_size, seed, index)
    if given is not None:
        batches = [given] if isinstance(given, Tensor) else list(given)
        if not batches or not all(isinstance(b, Tensor) and b.dim() == 2 for b in batches):
            raise VaebenchError("warmup_data must be a minibatch [B, D] or a non-empty list of them")
        if any(b.shape == measured.shape and torch.equal(b, measured) for b in batches):
            raise VaebenchError(
                "warmup_data contains the measured minibatch: a baseline fitted on it flatters its variance; "
                "pass other minibatches"
            )
        return batches
    if hasattr(data, "batches"):
        batches = iter(data.batches(batch_size, seed=seed))
        next(batches)  # the measured one; the rest of the epoch holds other rows
        out = [b for _, b in zip(range(WARM_UP_BATCHES), batches, strict=False)]
        if not out:
            raise VaebenchError(
                f"the training set holds one minibatch of {batch_size}, so there is none other than the measured "
                "one to warm stateful estimators up on; use a smaller variance batch_size"
            )
        return out
    if isinstance(data, Sequence) and not isinstance(data, Tensor) and len(data) > 1:
        own = index % len(data)
        return [b for j, b in enumerate(data) if j != own][:WARM_UP_BATCHES]
    raise VaebenchError(
        "a stateful estimator is warmed up on minibatches other than the measured one, and data holds only "
        "that one: pass a Dataset, a list of minibatches (each is warmed up on the others) or warmup_data="
    )


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
