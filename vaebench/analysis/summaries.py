"""The comparison table and its parts: the measures' tidy frames pivoted to one row per (estimator, sampler, K).

A *setting* is an estimator with its sampler (``iid`` unless the run asked for others; frames written before
samplers existed count as ``iid``) at one K. The comparison table (:func:`summary_table`) joins, per setting:

- gradient variance of the encoder (trace of the covariance of the minibatch gradient estimate) and its
  signal-to-noise ratio, at one checkpoint of the anchor run, with intervals; ``snr_at_floor`` flags
  an SNR whose interval reaches ``snr_floor`` = √(2/(πR)), the SNR a zero-mean gradient shows with R
  replicates (no signal measured);
- final test ELBO and test log-likelihood (importance-sampled, k samples), mean over seeds with a Student-t
  interval; the rise of the test ELBO over a quarter of training before the learning rate's decay dominates,
  and whether it had converged (``converged``, see :mod:`vaebench.analysis.plateau`);
- the median training-step time and its interval;
- work-normalised variance (variance x seconds per estimate, timed inside the variance unit), with interval;
- where the settings of a K were timed interleaved (:mod:`vaebench.analysis.yardstick`): ``step_ratio``, the step
  time over that of the K's yardstick setting (``timing_yardstick``, e.g. ``reparam``), and
  ``compute_ratio``, variance x step time over the yardstick's (lower: less gradient variance at equal compute), each with an
  interval over the ``timing_rounds`` rounds: ratios measured in one unit reproduce where absolute times and
  the work-normalised variance do not;
- the estimator's objective ("elbo" or "iwae"): IWAE-type estimators optimise a different bound, so their
  training objective is not comparable with the ELBO rows even though the test ELBO and log-likelihood are;
- ``biased``: the estimator's declared bias at this K (``iwae-stl`` for K > 1), empty for unbiased rows.

Variance figures measured for several seeds (each seed: its own minibatch, the same for every estimator)
are averaged over the seeds with :func:`vaebench.stats.pooled_mean_interval`: the target is the average over
those minibatches, and the interval is the Monte Carlo error of that average. The report renders these
tables (:mod:`vaebench.report.tables`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from vaebench.analysis import yardstick
from vaebench.analysis.contrast import contrast
from vaebench.analysis.convergence import summarize_convergence
from vaebench.analysis.plateau import plateau
from vaebench.analysis.selection import select_lr
from vaebench.analysis.settings import KEYS, bias_note, order_estimators, truth
from vaebench.estimators import ESTIMATORS
from vaebench.measures.schema import CONVERGENCE, SUMMARY, THROUGHPUT, VARIANCE, complete, conform
from vaebench.stats import pooled_mean_interval

VARIANCE_METRICS = ("trace_var", "snr", "work_normalized_var", "mean_sq_norm", "snr_norm")
"""Variance figures pooled over seeds by :func:`variance_by_k` (each with its `_low`/`_high`)."""

SUMMARY_VARIANCE = tuple(
    c for f in ("trace_var", "snr", "work_normalized_var") for c in (f, f"{f}_low", f"{f}_high")
)
"""The variance figures the comparison table carries."""


def _measured(variance: pd.DataFrame) -> pd.DataFrame:
    """Variance rows that hold a measurement (not the records of skipped combinations)."""
    return _ok(variance)


def _ok(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows whose ``status`` is ``"ok"`` (of a frame completed to its schema: older rows count as ok)."""
    return rows[rows["status"] == "ok"]


def variance_by_k(
    variance: pd.DataFrame, *, group: str = "encoder", checkpoint: str | None = None, level: float = 0.95
) -> pd.DataFrame:
    """One row per (estimator, sampler, K) of the variance measure at one checkpoint and parameter group.

    Args:
        variance: tidy rows of the variance study (``estimator, num_samples, seed, group, checkpoint,
            trace_var, trace_var_low, trace_var_high, snr, ...``).
        group: ``encoder``, ``decoder`` or ``all``.
        checkpoint: which checkpoint; None keeps all rows (when the frame has one checkpoint).
        level: unused (the pooled interval has the level of the measure's own intervals).

    Returns:
        Columns ``estimator, sampler, num_samples, objective, baseline, seeds`` and each of `VARIANCE_METRICS`
        present, with ``_low``/``_high``.
    """
    rows = _measured(complete(variance, VARIANCE))
    rows = rows[rows["group"] == group]
    if checkpoint is not None:
        rows = rows[rows["checkpoint"] == checkpoint]
    out = []
    for (name, sampler, k), g in rows.groupby(KEYS, sort=False):
        rec: dict = {"estimator": name, "sampler": sampler, "num_samples": k}
        rec["objective"], rec["baseline"] = g["objective"].iloc[0], g["baseline"].iloc[0]
        rec["seeds"] = g["seed"].nunique()
        rec["snr_floor"] = float(g["snr_floor"].mean())  # the floor of the seeds' mean SNR
        for metric in VARIANCE_METRICS:
            mean, low, high = pooled_mean_interval(g[metric], g[f"{metric}_low"], g[f"{metric}_high"])
            rec[metric], rec[f"{metric}_low"], rec[f"{metric}_high"] = mean, max(low, 0.0), high
        out.append(rec)
    frame = pd.DataFrame(out, columns=None if out else KEYS)
    return order_estimators(frame) if out else frame


def variance_by_checkpoint(
    variance: pd.DataFrame, *, group: str = "encoder", checkpoints: Sequence[str] = ()
) -> pd.DataFrame:
    """The encoder variance and SNR of every setting at each checkpoint of the anchor run, pooled over seeds
    (:func:`variance_by_k` at each): one row per (estimator, sampler, K, checkpoint), with the checkpoint's
    ``step``, checkpoints in ``checkpoints``' order (else as measured)."""
    rows = _measured(complete(variance, VARIANCE))
    rows = rows[rows["group"] == group]
    labels = [c for c in checkpoints if c in set(rows["checkpoint"])] or list(
        dict.fromkeys(rows["checkpoint"])
    )
    figures = [c for f in ("trace_var", "snr") for c in (f, f"{f}_low", f"{f}_high")]
    frames = []
    for label in labels:
        part = variance_by_k(rows, group=group, checkpoint=label)
        step = rows.loc[rows["checkpoint"] == label, "step"].iloc[0]
        frames.append(part[[*KEYS, *figures]].assign(checkpoint=label, step=step, _order=len(frames)))
    if not frames:
        return pd.DataFrame(columns=[*KEYS, "checkpoint", "step", *figures])
    table = pd.concat(frames, ignore_index=True)
    settings = order_estimators(table[KEYS].drop_duplicates()).assign(_setting=lambda f: range(len(f)))
    table = table.merge(settings, on=KEYS).sort_values(["_setting", "_order"], kind="stable")
    return table[[*KEYS, "checkpoint", "step", *figures]].reset_index(drop=True)


def convergence_by_k(
    convergence: pd.DataFrame, level: float = 0.95, schedule: str = "constant"
) -> pd.DataFrame:
    """Final test ELBO and test log-likelihood per (estimator, sampler, K): mean over seeds, Student-t interval.

    A pivot of :func:`vaebench.measures.convergence.summarize_convergence` (diverged runs are left out of
    the means and counted), joined with :func:`vaebench.analysis.plateau.plateau`.

    Returns:
        Columns ``estimator, sampler, num_samples, objective, runs, diverged``, ``train_time_s`` (mean training
        seconds), ``compile_s`` (mean seconds of the steps that compiled, kept out of ``train_time_s``: 0
        for eager runs; for seeds trained as one program, each seed's share of its one compilation),
        ``trained_as`` (whose runs these are, when the setting was trained once as another: the
        convergence table's column; empty for its own runs), for each final metric present (``final_test_elbo``, ``test_log_likelihood``, and on
        synthetic data ``exact_log_likelihood``, ``ll_gap``...) the mean with ``_low``/``_high``, and where
        the curves allow it ``test_elbo_rise`` (with ``_low``/``_high``), ``rise_from_step``,
        ``rise_to_step`` and ``converged``.
    """
    convergence = complete(convergence, CONVERGENCE)
    choices = None
    if convergence["lr"].notna().any():  # a step-size grid: each setting at the rate chosen on validation
        choices, convergence = select_lr(convergence, level)
    long = summarize_convergence(convergence, level)
    if long.empty:
        return pd.DataFrame(columns=KEYS)
    out = []
    for (name, sampler, k), g in long.groupby(KEYS, sort=False):
        rec: dict = {
            "estimator": name,
            "sampler": sampler,
            "num_samples": k,
            "objective": g["objective"].iloc[0],
        }
        rec["runs"] = int(g["n_seeds"].max() + g["n_diverged"].max())
        rec["diverged"] = int(g["n_diverged"].max())
        rec["train_time_s"] = g["wall_time_s"].iloc[0]
        rec["compile_s"] = g["compile_s"].iloc[0]
        for _, row in g.iterrows():
            m = row["metric"]
            rec[m], rec[f"{m}_low"], rec[f"{m}_high"] = row["value"], row["value_low"], row["value_high"]
        out.append(rec)
    table = pd.DataFrame(out)
    trained_as = convergence["trained_as"].astype(object).where(convergence["trained_as"].notna(), "")
    shared = trained_as.groupby([convergence[k] for k in KEYS], sort=False).first().rename("trained_as")
    table = table.merge(shared.reset_index(), on=KEYS, how="left")
    if choices is not None:
        table = table.merge(choices[[*KEYS, "lr", "lr_grid", "lr_edge"]], on=KEYS, how="left")
    levelled = plateau(convergence, level=level, schedule=schedule).drop(columns="rise_seeds")
    if not levelled.empty:
        table = table.merge(levelled, on=KEYS, how="left")
        table["converged"] = table["converged"].map(truth).astype(object)
    return order_estimators(table)


def paired_difference(
    convergence: pd.DataFrame,
    metric: str,
    a: tuple[str, str, int],
    b: tuple[str, str, int],
    level: float = 0.95,
) -> tuple[float, float, float, int]:
    """Mean over seeds of ``metric`` of run ``a`` minus run ``b``, paired by seed, with a Student-t interval.

    Runs of one seed share the model's initialisation and the data order, so the per-seed difference
    removes that shared variation: a much sharper comparison than two separate intervals
    (:func:`vaebench.analysis.contrast.contrast`, ``paired difference``). Seeds where either run diverged are
    left out.

    Args:
        convergence: tidy rows of the convergence measure.
        metric: a final metric, e.g. ``test_log_likelihood``.
        a, b: the two settings' keys (estimator, sampler, K).
        level: interval level.

    Returns:
        (mean difference, low, high, number of seeds); NaN interval with fewer than two seeds.
    """
    c = contrast(
        per_seed(convergence, metric, a), per_seed(convergence, metric, b), "paired difference", level
    )
    return c.value, c.low, c.high, c.n


def per_seed(convergence: pd.DataFrame, metric: str, key: tuple[str, str, int]) -> pd.Series:
    """The last value of ``metric`` of each seed of one setting (estimator, sampler, K) that did not diverge."""
    rows = complete(convergence[convergence["metric"] == metric], CONVERGENCE)
    name, sampler, k = key
    r = rows[(rows["estimator"] == name) & (rows["num_samples"] == k) & (rows["sampler"] == sampler)]
    r = r[~r["diverged"].astype(bool)]
    return r.groupby("seed")["value"].last()


def _registry_objective(name: str) -> str:
    cls = ESTIMATORS.get(name)
    return cls.objective if cls is not None else ""


def throughput_by_k(throughput: pd.DataFrame, batch_size: int | None = None) -> pd.DataFrame:
    """Step time in milliseconds per (estimator, sampler, K) at one batch size (the largest by default).

    Returns:
        Columns ``estimator, sampler, num_samples, batch_size, step_ms, step_ms_low, step_ms_high`` and, when
        present, ``datapoints_per_s`` and ``ceiling_fraction``.
    """
    rows = _ok(complete(throughput, THROUGHPUT))  # not the hand-written row skipped on data outside [0, 1]
    rows = rows[~rows["compiled"].astype(bool) & ~rows["amp"].astype(bool)]
    rows = rows[np.isfinite(rows["step_s_median"].astype(float))]
    if rows.empty:
        return pd.DataFrame(columns=KEYS)
    if rows["batch_size"].notna().any():  # NaN: a folder from before batch sizes were recorded
        size = batch_size if batch_size is not None else rows["batch_size"].max()
        rows = rows[rows["batch_size"] == size]
    rows = rows.groupby(KEYS, sort=False).first().reset_index()
    out = rows[[*KEYS, "batch_size"]].copy()
    out["step_ms"] = 1e3 * rows["step_s_median"]
    out["step_ms_low"] = 1e3 * rows["step_s_low"]
    out["step_ms_high"] = 1e3 * rows["step_s_high"]
    out[["datapoints_per_s", "ceiling_fraction"]] = rows[["datapoints_per_s", "ceiling_fraction"]]
    return order_estimators(out)


def summary_table(
    variance: pd.DataFrame | None,
    convergence: pd.DataFrame | None,
    throughput: pd.DataFrame | None,
    *,
    checkpoint: str | None = None,
    group: str = "encoder",
    batch_size: int | None = None,
    schedule: str = "constant",
) -> pd.DataFrame:
    """The comparison table: one row per (estimator, sampler, K) joining the three measures (outer join).

    Args:
        variance, convergence, throughput: the tidy frames (None or empty when not measured).
        checkpoint: the variance checkpoint reported; None when the frame has only one.
        group: the parameter group reported (``encoder`` by default: where the estimators differ).
        batch_size: the throughput batch size reported (default: the largest measured).
        schedule: the runs' learning-rate schedule (``train.lr_schedule``), for whether they converged.

    Returns:
        Columns ``estimator, sampler, num_samples, objective, biased`` then, where measured: ``trace_var, snr,
        final_test_elbo, test_log_likelihood, test_elbo_rise, step_ms, work_normalized_var`` each with
        ``_low``/``_high``, ``snr_floor, snr_at_floor`` (the SNR's interval reaches the floor: no signal
        measured), ``converged`` (:mod:`vaebench.analysis.plateau`), ``runs, diverged,
        variance_baseline, variance_checkpoint, variance_group``, and where the steps were timed
        interleaved ``step_ratio, compute_ratio`` (with ``_low``/``_high``), ``timing_yardstick`` and
        ``timing_rounds``.
    """
    measured = {
        kind: frame is not None and not frame.empty
        for kind, frame in (("variance", variance), ("convergence", convergence), ("throughput", throughput))
    }
    parts = []
    if measured["variance"]:
        v = variance_by_k(variance, group=group, checkpoint=checkpoint)
        v = v[[*KEYS, *SUMMARY_VARIANCE, "snr_floor", "objective", "baseline"]]
        v = v.rename(columns={"baseline": "variance_baseline", "objective": "objective_v"})
        v["variance_checkpoint"] = checkpoint
        v["variance_group"] = group
        parts.append(v)
    if measured["convergence"]:
        parts.append(convergence_by_k(convergence, schedule=schedule))
    if measured["throughput"]:
        parts.append(
            throughput_by_k(throughput, batch_size)[[*KEYS, "step_ms", "step_ms_low", "step_ms_high"]]
        )
        ratios = yardstick.step_ratios(throughput, batch_size)
        if not ratios.empty:
            parts.append(ratios)
    if not parts:
        return pd.DataFrame(columns=[*KEYS, "objective"])
    table = parts[0]
    for part in parts[1:]:
        table = table.merge(part, on=KEYS, how="outer")
    if "step_ratio" in table:
        table = yardstick.with_compute_ratios(table)
    if measured["variance"]:
        known = np.isfinite(table["snr_low"]) & np.isfinite(table["snr_floor"])
        at_floor = (table["snr_low"] <= table["snr_floor"]).map(bool).astype(object)
        table["snr_at_floor"] = at_floor.where(known, None)
    # The objective from the convergence rows, else the variance rows, else the registry.
    objective = table["estimator"].map(_registry_objective).astype(object)
    for column, kind in (("objective_v", "variance"), ("objective", "convergence")):
        if measured[kind]:
            found = table.pop(column).astype(object)
            objective = found.where(found.notna(), objective)
    table["objective"] = objective
    table["biased"] = [bias_note(n, k) for n, k in zip(table["estimator"], table["num_samples"], strict=True)]
    # Which optional columns are present depends on what was measured (see vaebench.measures.schema.SUMMARY).
    return order_estimators(conform(table[[c for c in SUMMARY.columns if c in table]], SUMMARY))
