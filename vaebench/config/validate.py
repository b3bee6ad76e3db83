"""A configuration checked before any work: each field against its constraints, then what relates fields.

Each field's type and range are declared at the field (:mod:`vaebench.config.sections`, checked by
:func:`vaebench.config.constraints.check_fields`). What is left here relates several fields or the loaded
data: pixel settings on data that are not pixels, the checkpoint the summary reads, the anchor estimator at
K = 1, a built model's one checkpoint, a configuration that measures nothing, and the (estimator, K, sampler)
combinations that will be skipped (notes) or leave nothing to run (an error).
"""

from __future__ import annotations

from vaebench.config.constraints import check_fields
from vaebench.config.sections import REAL_VALUED, SuiteConfig, real_valued
from vaebench.data import Dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, runnable, unsupported
from vaebench.plugins.registry import BUILT_CHECKPOINTS


def validate(config: SuiteConfig, explicit_estimators: bool = False) -> list[str]:
    """Check values beyond their types; return notes on the (estimator, K) pairs that will be skipped.

    An estimator that needs more samples than some K (reinforce-loo needs K >= 2) skips that K with a note.
    If it can run at none of the requested K it is an error when the user named it, and a note when it came
    from the default list of all estimators.

    Raises:
        VaebenchError: naming the key, the bad value and the valid choices.
    """
    c = config
    check_fields(c)
    if c.data.binarize != "none" and c.data.dequantize:
        raise VaebenchError(
            f"data.binarize {c.data.binarize!r} needs data.dequantize = false (dequantization is for grey "
            "levels; the digits presets turn it on)"
        )
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
    if c.train.lr_grid:
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
    v = c.variance
    if v.summary_checkpoint not in v.checkpoints:
        raise VaebenchError(
            f"variance.summary_checkpoint {v.summary_checkpoint!r} is not valid; choose one of: "
            f"{', '.join(v.checkpoints)} (the measured variance.checkpoints)"
        )
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
    if not (v.enabled or c.train.enabled or c.throughput.enabled or c.checks.laws or c.checks.landing
            or c.checks.quadrature):  # fmt: skip
        raise VaebenchError(
            "this configuration measures nothing: variance, train and throughput are disabled and no check is "
            "asked for; enable one (e.g. [variance] enabled = true) or run --preset scaling for the checks"
        )

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
