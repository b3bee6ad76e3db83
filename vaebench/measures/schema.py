"""The results schema: the columns of every measure's tidy frame, declared once.

Every measure returns a long-form frame whose columns play one of three roles:

- *keys* name what a row measured: the setting (``estimator``, ``sampler``, ``num_samples``), the ``seed``,
  and where they apply the variance ``checkpoint`` and parameter ``group``, the convergence ``step`` and
  ``metric``, the scaling law's ``figure``;
- *figures* are numbers reported with an interval: a figure ``f`` always comes with ``f_low`` and ``f_high``
  (the interval of that row's own estimate; NaN where it could not be formed), so a table or a plot never
  shows a number without its uncertainty;
- everything else is a *value*: counts, the row's provenance (device, method, level), a status.

A :class:`Table` lists the columns in their on-disk order (the CSVs keep that order) with their roles, and
the *optional* ones, each with the reason it may be absent and, where the reader can assume one, a default.
A column is optional because the configuration decides it (the summary has variance columns only when the
variance measure ran). A results folder of another layout is refused before it is read
(:data:`vaebench.provenance.RESULTS_VERSION`), so no column is optional for an older folder's sake.

Two checks use the declarations:

- :func:`conform` on a measure's output, inside vaebench: a column missing or undeclared is a bug in vaebench
  (a measure drifted from its declaration), raised as :class:`SchemaError`;
- :func:`complete` on a frame read back from disk: every declared column the frame lacks is added with its
  default (NaN where none is declared: not measured), and missing values of columns with a default are
  filled. The report reads completed frames (a partial run's, or a hand-built one), so it asks whether a
  number was *measured*, never whether a column *is there*.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd


class SchemaError(AssertionError):
    """A measure returned a frame that does not match its declaration here: a bug in vaebench, not bad input."""


@dataclass(frozen=True)
class OptionalColumn:
    """Why a column may be absent, and what a reader assumes then (NaN: nothing was measured)."""

    reason: str
    default: object = math.nan


@dataclass(frozen=True)
class Table:
    """The declared columns of one measure's frame.

    Attributes:
        name: the measure (``variance``, ``convergence``, ``throughput``, ``summary``, ``scaling``).
        columns: every column, in on-disk order.
        keys: the columns that name what a row measured.
        figures: the columns reported with ``_low``/``_high`` bounds (the bounds are in ``columns`` too).
        optional: columns that may be absent, with the reason and the default a reader assumes.
        essential: columns a results file must have to be read at all (its keys and main figure).
    """

    name: str
    columns: tuple[str, ...]
    keys: tuple[str, ...]
    figures: tuple[str, ...] = ()
    optional: Mapping[str, OptionalColumn] = field(default_factory=dict)
    essential: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        declared = set(self.columns)
        bounds = [c for f in self.figures for c in (f, f"{f}_low", f"{f}_high")]
        for what, names in (
            ("key", self.keys),
            ("figure", bounds),
            ("optional", self.optional),
            ("essential", self.essential),
        ):
            stray = [c for c in names if c not in declared]
            if stray:
                raise SchemaError(f"table {self.name}: {what} column(s) {stray} are not among its columns")

    @property
    def measured(self) -> tuple[str, ...]:
        """The columns of a measure's own frame, in order: all but ``problem``, which the suite adds."""
        return tuple(c for c in self.columns if c != "problem")

    @property
    def required(self) -> tuple[str, ...]:
        """The columns every frame of this measure has."""
        return tuple(c for c in self.columns if c not in self.optional)


def _triples(*figures: str) -> tuple[str, ...]:
    return tuple(c for f in figures for c in (f, f"{f}_low", f"{f}_high"))


# fmt: off
SETTING = ("estimator", "sampler", "num_samples")
"""The key columns of a setting: an estimator with its sampler at one K."""

_UNSAID = "a frame built by hand (a test's, a plugin's) may leave it out"

SAMPLER = OptionalColumn(f"{_UNSAID}: its rows drew iid samples", "iid")
MEASURED = OptionalColumn(f"{_UNSAID}: its rows were measured", "ok")
PROBLEM = OptionalColumn(
    "the suite writes it as it combines the units (vaebench.suite.units.run_problem); a measure's own frame, "
    "which measures one setting on one model, leaves it out", "",
)

VARIANCE_FIGURES = ("trace_var", "mean_sq_norm", "snr", "snr_norm", "bias_norm", "cosine", "snr_rms", "dsnr")
"""Figures of the gradient-noise measure, with their bootstrap or jackknife intervals
(:mod:`vaebench.measures.variance.summary` states their maths)."""

WEIGHT_COLUMNS = (
    "khat_max", "khat_median", "khat_over_half", "khat_over_quarter",
    "ess_fraction_min", "ess_fraction_median", "chi2_max", "chi2_median", "weight_samples",
)
"""The importance-weight diagnostics of a variance row's minibatch (:mod:`vaebench.measures.weights`)."""

ROW_DIAGNOSTICS = (*_triples("snr_rms", "dsnr"), "kl_to_posterior", *WEIGHT_COLUMNS)
"""The diagnostics at the end of a variance row: the noise-corrected per-coordinate SNR and Rainforth et al.'s
directional SNR with their intervals, the exact KL(q ‖ p(z|x)) averaged over the minibatch (NaN where the model
has no closed-form posterior), and the weight diagnostics."""

MEASURE_VARIANCE_COLUMNS = (
    "estimator", "sampler", "objective", "num_samples", "seed", "group",
    "num_params", "batch_size", "replicates", "replicates_used", "nan_fraction",
    *_triples(*VARIANCE_FIGURES[:4]),
    "snr_floor", "snr_coordinates",
    "baseline",  # the name of the baseline gradient the bias and cosine are measured against
    *_triples(*VARIANCE_FIGURES[4:6]),
    "mean_error_norm", "bias_floor", "seconds_per_estimate",
    *_triples("work_normalized_var"),
    "encoder_scale", "method", "level",
    *ROW_DIAGNOSTICS,
)
"""Columns of `measure_variance`'s frame (one estimator, K and minibatch at the model's parameters)."""

VARIANCE = Table(
    "variance",
    columns=("problem", "checkpoint", "step", "run", "status", "skip_reason", "warm_up_batches", *MEASURE_VARIANCE_COLUMNS),
    keys=("problem", "checkpoint", "estimator", "sampler", "num_samples", "seed", "group"),
    figures=(*VARIANCE_FIGURES, "work_normalized_var"),
    optional={
        "problem": PROBLEM,
        "sampler": SAMPLER,
        "status": MEASURED,
        "baseline": OptionalColumn("the name of the baseline gradient; absent where no baseline was measured", None),
    },
    essential=("estimator", "num_samples", "seed", "checkpoint", "group", "trace_var"),
)
"""variance.csv: the suite's variance units' rows, one per checkpoint x seed x estimator x sampler x K x group."""

CONVERGENCE = Table(
    "convergence",
    columns=(
        "problem", *SETTING[:2], "num_samples", "seed", "lr", "step", "epoch", "wall_time_s", "grad_evals",
        "latent_samples", "metric", "value", "objective", "diverged", "compile_s", "trained_as",
    ),
    keys=("problem", *SETTING, "seed", "lr", "step", "metric"),
    optional={
        "problem": PROBLEM,
        "sampler": SAMPLER,
        "lr": OptionalColumn("only with a step-size grid (train.lr_grid); NaN: every run at train.lr"),
        "diverged": OptionalColumn(f"{_UNSAID}: none of its runs was stopped", False),
        "trained_as": OptionalColumn("each setting's rows are its own runs", ""),
    },
    essential=("estimator", "num_samples", "seed", "step", "metric", "value"),
)
"""convergence.csv: `measure_convergence`'s rows, one per recorded step x metric of one training run. Its
``value`` is one run's number; the intervals over seeds are formed by the summaries. ``trained_as`` names
the estimator whose runs a setting's rows are when its estimator declares the same gradient at this K
(`Estimator.same_gradient`: ``iwae`` at K = 1 is ``reparam``'s run, trained once; empty: its own runs).
``compile_s`` is the run's seconds in steps that compiled (`TrainResult.compile_time_s`, kept out of
``wall_time_s``; 0 for an eager run), the same on every row of the run; seeds trained as one program compiled
once, and each seed's rows carry its share (the compile seconds / S), so the seeds' rows sum to what the
compilation took, as their ``wall_time_s`` do. ``lr`` (a run with a step-size grid, ``train.lr_grid``) is the
run's learning rate: each (seed, lr) is a run of its own, and the setting's rate is chosen on the validation
split (:mod:`vaebench.analysis.selection`)."""

THROUGHPUT_FIGURES = ("step_s", "datapoints_per_s", "latent_samples_per_s", "ceiling_fraction")

INTERLEAVED = ("timing_group", "rounds", "round_steps", "round_s", "load_before", "load_after")
"""The interleaved timing at the end of a throughput row: the steps timed together in rounds
(``timing_group``: rows of one group were timed round-robin, "" for a row timed alone), how many rounds and
steps per round, ``round_s`` (the median step time of each round, in round order, as space-separated
seconds: what the ratios between the rows of a group are formed from, :mod:`vaebench.analysis.yardstick`), and
the machine's 1-minute load average just before and after the timing."""

THROUGHPUT = Table(
    "throughput",
    columns=(
        "problem", *SETTING, "batch_size", "seed", "device", "device_type", "threads", "variant", "compiled", "amp",
        "optimizer", "repeats", "warmup", "status", "reason",
        "step_s_median", "step_s_p25", "step_s_p75", "step_s_iqr", "step_s_min", "step_s_low", "step_s_high",
        *_triples("datapoints_per_s", "latent_samples_per_s"),
        "peak_memory_bytes", "memory_baseline_bytes", "memory_kind", "flops_per_step", "achieved_flops",
        "matmul_ceiling_flops", *_triples("ceiling_fraction"), "objective", *INTERLEAVED, "compile_s",
    ),
    keys=("problem", *SETTING, "batch_size", "seed", "variant"),
    # step_s is reported as its median: step_s_median, step_s_low, step_s_high
    figures=("datapoints_per_s", "latent_samples_per_s", "ceiling_fraction"),
    optional={
        "problem": PROBLEM,
        "sampler": SAMPLER,
        "status": MEASURED,
        "variant": OptionalColumn(f"{_UNSAID}: its rows ran eagerly", "eager"),
        "compiled": OptionalColumn(f"{_UNSAID}: its rows ran eagerly", False),
        "amp": OptionalColumn(f"{_UNSAID}: its rows ran in float32", False),
        "timing_group": OptionalColumn(f"{_UNSAID}: each row was timed alone", ""),
    },
    essential=("estimator", "num_samples", "seed"),
)
"""throughput.csv: one row per timed setting; the hand-written pytorch/examples step is the row whose
``estimator`` is ``"handwritten"`` (:data:`HANDWRITTEN`). Rows of one ``timing_group`` were timed
interleaved. ``compile_s``: a compiled row's first call of its step, which compiles it, timed alone before the
warm-up (seconds; 0 for an eager row)."""

HANDWRITTEN = "handwritten"
"""The ``estimator`` value of the throughput row timing the hand-written pytorch/examples step."""

BASELINE_COLUMN = "baseline"
"""The variance table's column naming the baseline gradient that bias and cosine are measured against."""

ANCHOR_UNIT = "anchor"
"""The unit kind (on disk: ``units/anchor/checkpoints.pt``) of the anchor run, the one training run whose
checkpoints every setting's gradient variance is measured at, and the key of its SHA-256 among a variance
unit's manifest ``inputs``. ("Reference" names only the committed reference runs of ``results/reference/``.)"""

_VARIANCE_RAN = "only when the variance measure ran"
_TRAINED = "only when estimators were trained (the convergence measure ran)"
_TIMED = "only when the throughput measure ran"
_EXTRA_FINAL = "only on data or models with an exact log-likelihood (synthetic data, linear-Gaussian models)"

SUMMARY_FIGURES = (
    "trace_var", "snr", "final_test_elbo", "test_log_likelihood", "test_elbo_rise", "step_ms",
    "work_normalized_var", "exact_log_likelihood", "ll_gap", "model_log_likelihood", "bound_gap",
    "step_ratio", "compute_ratio",
)
"""Figures of the comparison table: the seven of every run, those of synthetic data (after the counts), then
the timing ratios of interleaved steps."""

TIMING_RATIOS = (*_triples("step_ratio", "compute_ratio"), "timing_yardstick", "timing_rounds")
"""Summary columns of the interleaved timing (:mod:`vaebench.analysis.yardstick`): the step time and the variance
x step time of a setting over those of its K's ``timing_yardstick`` setting, with intervals over the
``timing_rounds`` rounds."""

SUMMARY = Table(
    "summary",
    columns=(
        *SETTING, "objective", "biased", *_triples(*SUMMARY_FIGURES[:7]), "snr_floor", "snr_at_floor",
        "converged", "variance_baseline", "variance_checkpoint", "variance_group", "runs", "diverged",
        "train_time_s", "compile_s", "trained_as", *_triples(*SUMMARY_FIGURES[7:11]), "rise_from_step", "rise_to_step", *TIMING_RATIOS,
        "lr", "lr_grid", "lr_edge", *_triples("valid_elbo"),
    ),
    keys=SETTING,
    figures=SUMMARY_FIGURES,
    optional={
        **{c: OptionalColumn(_VARIANCE_RAN) for c in (*_triples("trace_var", "snr", "work_normalized_var"),
                                                 "snr_floor", "snr_at_floor", "variance_checkpoint",
                                                 "variance_group")},
        "variance_baseline": OptionalColumn(f"{_VARIANCE_RAN} and a baseline gradient was measured", None),
        **{c: OptionalColumn(_TRAINED) for c in (*_triples("final_test_elbo", "test_log_likelihood"), "runs",
                                            "diverged", "train_time_s", "compile_s", "trained_as")},
        **{c: OptionalColumn(f"{_TRAINED}, with curves long enough to judge the last quarter")
           for c in (*_triples("test_elbo_rise"), "rise_from_step", "rise_to_step", "converged")},
        **{c: OptionalColumn(_EXTRA_FINAL) for c in _triples("exact_log_likelihood", "ll_gap", "model_log_likelihood",
                                                        "bound_gap")},
        **{c: OptionalColumn(_TIMED) for c in _triples("step_ms")},
        **{c: OptionalColumn(f"{_TIMED} with settings timed interleaved") for c in TIMING_RATIOS},
        **{c: OptionalColumn(f"{_TRAINED} over a step-size grid (train.lr_grid)")
           for c in ("lr", "lr_grid", "lr_edge")},
        **{c: OptionalColumn(f"{_TRAINED} with a validation split (data.valid_fraction)")
           for c in _triples("valid_elbo")},
    },
    essential=SETTING,
)
"""summary.csv: one row per setting joining the measures (:func:`vaebench.analysis.summaries.summary_table`).
With a step-size grid its convergence figures are those of the rate chosen on the validation split (``lr``,
among ``lr_grid``; ``lr_edge`` "low" or "high" when it is an end of the grid: :mod:`vaebench.analysis.selection`)."""

SCALING = Table(
    "scaling",
    columns=(
        "estimator", "sampler", "group", "figure", "checkpoint", *_triples("slope"), "theory", "agrees",
        "k_min", "k_max", "points", "intercept", "correction", "law",
        "tolerance", "regime", "khat", "verdict", "interval_trusted",
    ),
    keys=("estimator", "sampler", "group", "figure", "checkpoint"),
    figures=("slope",),
    essential=("estimator", "group", "figure", "slope"),
)
"""scaling.csv: one fitted law in K per row (:func:`vaebench.analysis.scaling.scaling_laws`)."""

QUADRATURE = Table(
    "quadrature",
    columns=(
        "f", "k", "estimator", "registered", "parameter", "quadrature_var", *_triples("mc_var"), "agrees",
        "draws", "level",
    ),
    keys=("f", "k", "estimator", "parameter"),
    figures=("mc_var",),
    essential=("f", "k", "estimator", "parameter", "quadrature_var", "mc_var"),
)
"""quadrature.csv: the 1-D Gaussian check of Mohamed et al. 2020, one row per (f, k, estimator form, parameter)
(:func:`vaebench.checks.gaussian_1d.gaussian_1d_check`)."""

CLAIMS = Table(
    "claims",
    columns=(
        "key", "claim", "source", "where", "figure", *_triples("measured"), "theory", "tolerance", "verdict",
        "detail",
    ),
    keys=("key",),
    figures=("measured",),
    essential=("claim", "source", "verdict"),
)
"""claims.csv: one published claim per row, its measured figure and verdict (:mod:`vaebench.analysis.claims`)."""

# fmt: on
TABLES: dict[str, Table] = {
    t.name: t for t in (VARIANCE, CONVERGENCE, THROUGHPUT, SUMMARY, SCALING, QUADRATURE, CLAIMS)
}
"""Every declared table by measure name."""


def table(name: str | Table) -> Table:
    """The declaration of ``name`` (a `Table` passes through)."""
    return name if isinstance(name, Table) else TABLES[name]


def conform(frame: pd.DataFrame, name: str | Table) -> pd.DataFrame:
    """``frame`` unchanged if its columns match the declaration of measure ``name``; else `SchemaError`.

    Every required column must be present and every present column declared. Cheap (it looks at the column
    names only), so measures call it on what they return.

    Raises:
        SchemaError: the frame drifted from its declaration (a bug in vaebench).
    """
    spec = table(name)
    present = list(frame.columns)
    missing = [c for c in spec.required if c not in present]
    stray = [c for c in present if c not in spec.columns]
    if missing or stray:
        parts = ([f"missing {missing}"] if missing else []) + ([f"undeclared {stray}"] if stray else [])
        raise SchemaError(
            f"internal error: the {spec.name} measure returned a frame that does not match its declaration in "
            f"vaebench.measures.schema ({'; '.join(parts)}); this is a bug in vaebench"
        )
    return frame


def complete(frame: pd.DataFrame | None, name: str | Table) -> pd.DataFrame | None:
    """``frame`` with every declared column: absent ones added with their default, gaps of defaulted ones filled.

    For frames read back from disk (partial runs) and hand-built ones: afterwards every
    declared column is there, NaN where nothing was measured. Undeclared columns are kept. An empty or None
    frame is returned as is.
    """
    if frame is None or frame.empty:
        return frame
    spec = table(name)
    added = {}
    for column in spec.columns:
        default = spec.optional[column].default if column in spec.optional else math.nan
        if column not in frame:
            added[column] = default
        elif _has_default(default) and frame[column].isna().any():
            added[column] = frame[column].astype(object).where(frame[column].notna(), default)
    return frame.assign(**added) if added else frame


def _has_default(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
