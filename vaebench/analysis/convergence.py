"""Learning curves and final figures over seeds: frames of the convergence measure in, summaries out.

- :func:`summarize_convergence`: per setting and final metric, the mean over seeds with a Student-t interval
  (diverged runs counted and left out);
- :func:`summarize_curves`: the learning curves' mean and band over seeds, step by step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.errors import VaebenchError
from vaebench.measures.convergence import FINAL_METRICS, UNIT_COLUMNS
from vaebench.stats import mean_interval


def summarize_convergence(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean over seeds of each final metric per (estimator, sampler, K), with a Student-t interval.

    Diverged runs are counted (``n_diverged``) and left out of the mean: their final numbers describe a
    model frozen at an arbitrary step. The interval needs at least two completed seeds (NaN otherwise).

    Args:
        df: frames of `measure_convergence`, concatenated.
        level: confidence level of the interval.

    Returns:
        Tidy frame with columns estimator, sampler (when ``df`` has one: frames written before samplers
        existed have none), num_samples, objective, metric, value, value_low, value_high, n_seeds (completed
        runs), n_diverged, wall_time_s (mean training seconds of the completed runs), compile_s (their mean
        compile seconds: 0 for eager runs, NaN for frames written before it was recorded).
    """
    _require_columns(df, ("estimator", "num_samples", "seed", "metric", "value", "diverged", "objective"))
    setting = setting_keys(df)
    runs = df.groupby([*setting, "seed"], sort=False)["diverged"].any()
    diverged = runs.groupby(level=list(range(len(setting))), sort=False).sum()
    diverged = dict(zip(diverged.index, diverged.to_numpy(), strict=True))  # setting tuple -> diverged runs
    rows = []
    final = df[df["metric"].isin(FINAL_METRICS)]
    for key, part in final.groupby([*setting, "objective", "metric"], sort=False):
        *values_of_setting, objective, metric = key
        done = part[~part["diverged"]]
        values = done["value"].to_numpy(dtype=float)
        low, high = mean_interval(values, level) if len(values) else (np.nan, np.nan)
        rows.append(
            {
                **dict(zip(setting, values_of_setting, strict=True)),
                "objective": objective,
                "metric": metric,
                "value": values.mean() if len(values) else np.nan,
                "value_low": float(low),
                "value_high": float(high),
                "n_seeds": len(values),
                "n_diverged": int(diverged[tuple(values_of_setting)]),
                "wall_time_s": done["wall_time_s"].mean() if len(values) else np.nan,
                "compile_s": done["compile_s"].mean() if len(values) and "compile_s" in done else np.nan,
            }
        )
    return pd.DataFrame(rows)


def summarize_curves(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Learning curves over seeds: per (estimator, sampler, K, metric, step) the mean and a Student-t band.

    Runs are aligned by step (the same ``eval_every`` gives the same steps); a run that stopped early
    (divergence, a wall-clock budget) contributes up to its last step, and ``n_seeds`` says how many did.

    Args:
        df: frames of `measure_convergence`, concatenated.
        level: confidence level of the band.

    Returns:
        Tidy frame: estimator, sampler (when ``df`` has one), num_samples, objective, metric, step, value,
        value_low, value_high, n_seeds, and the mean cost columns epoch, wall_time_s, grad_evals,
        latent_samples (and yardstick_steps where ``df`` has them: :func:`vaebench.analysis.yardstick.yardstick_steps`).
    """
    _require_columns(df, [c for c in UNIT_COLUMNS if c != "sampler"])
    curves = df[~df["metric"].isin(FINAL_METRICS)]
    rows = []
    keys = [*setting_keys(df), "objective", "metric", "step"]
    for key, part in curves.groupby(keys, sort=True):
        values = part["value"].to_numpy(dtype=float)
        low, high = mean_interval(values, level)
        row = dict(zip(keys, key, strict=True))
        row.update(value=values.mean(), value_low=float(low), value_high=float(high), n_seeds=len(values))
        costs = ("epoch", "wall_time_s", "grad_evals", "latent_samples", "yardstick_steps")
        row.update({c: part[c].mean() for c in costs if c in part})
        rows.append(row)
    return pd.DataFrame(rows)


def setting_keys(df: pd.DataFrame) -> list[str]:
    """The columns that name one setting: estimator, sampler (if the frame has it), K."""
    return [c for c in ("estimator", "sampler", "num_samples") if c in df]


def _require_columns(df: pd.DataFrame, columns) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise VaebenchError(f"expected a measure_convergence frame; missing column(s): {', '.join(missing)}")
