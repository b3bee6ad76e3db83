r"""Each setting at its own best step size: the learning rate chosen on the validation split, never the test set.

A step-size grid trains every (estimator, sampler, K) at each rate η of a grid, over the same seeds (the
slices of one stacked program, :mod:`vaebench.train.seeds`). Comparing estimators at one shared η compares
them at a rate that may suit one and not another (an estimator with ten times the variance may want a
tenth of the step); Agrawal, Sheldon & Domke (2020) tune it per method. Here, per setting,

    η* = argmax_η  mean over seeds s of  valid_elbo(η, s),

over the rates η at which no seed diverged (a diverged slice is never chosen, nor is its rate: choosing η
keeps every seed of it); ties go to the smaller rate. The objective is the final ELBO of the validation split
(:meth:`vaebench.data.Dataset.with_validation`), carved from the training data: the choice reads only the
``valid_elbo`` rows and the ``diverged`` flags, so no test figure can move it, and the test figures are then
read at η* as an untuned run's are. A choice at the smallest or largest rate of its grid is flagged
(``lr_edge``): the optimum may lie outside the grid, which should be widened on that side.

:func:`select_lr` returns the choices (one row per setting) and the convergence rows of the chosen rate, which
the summaries (:mod:`vaebench.analysis.convergence`) turn into the tuned test figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaebench.analysis.convergence import setting_keys
from vaebench.errors import VaebenchError
from vaebench.stats import mean_interval

VALID_METRIC = "valid_elbo"
"""The final metric the rate is selected on (:data:`vaebench.measures.convergence.FINAL_METRICS`)."""

CHOICE_COLUMNS: tuple[str, ...] = (
    "lr",
    "valid_elbo",
    "valid_elbo_low",
    "valid_elbo_high",
    "valid_seeds",
    "lr_grid",
    "excluded",
    "lr_edge",
)
"""Columns of a choice after the setting's keys: the chosen rate (NaN when every rate diverged), its mean
validation ELBO over seeds with a Student-t interval and the seeds it averages, ``lr_grid`` (its rates, ascending,
space-separated), the rates left out because a seed diverged at them, and ``lr_edge``: ``"low"`` or ``"high"``
when the choice is the smallest or largest rate of the grid, else ``""``."""


def select_lr(df: pd.DataFrame, level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rate each setting is chosen at, and the convergence rows of that rate (module docstring).

    Args:
        df: convergence rows (:func:`vaebench.measures.convergence.measure_convergence`, concatenated) with an
            ``lr`` column, trained on data with a validation split (their ``valid_elbo`` rows).
        level: confidence level of the validation ELBO's interval.

    Returns:
        ``(choices, tuned)``: one row per setting, columns the setting's keys then `CHOICE_COLUMNS`; and the
        rows of ``df`` at each setting's chosen rate (none for a setting whose every rate diverged).

    Raises:
        VaebenchError: a frame without an ``lr`` column or without validation rows.
    """
    missing = [
        c for c in ("estimator", "num_samples", "seed", "metric", "value", "diverged", "lr") if c not in df
    ]
    if missing:
        raise VaebenchError(
            f"select_lr needs convergence rows of a step-size grid; missing column(s): {', '.join(missing)}"
        )
    setting = setting_keys(df)
    valid = df[df["metric"] == VALID_METRIC]
    if valid.empty:
        raise VaebenchError(
            f"select_lr found no {VALID_METRIC} rows: train with a validation split (data.valid_fraction > 0), "
            "never select on the test set"
        )
    diverged = df.groupby([*setting, "lr"], sort=False)["diverged"].any()
    grids = df.groupby(setting, sort=False)["lr"].unique()
    rows = []
    for key, part in valid.groupby(setting, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        grid = sorted(grids[key if len(key) > 1 else key[0]])
        excluded = [lr for lr in grid if diverged[(*key, lr)]]
        means = {
            lr: part.loc[part["lr"] == lr, "value"].to_numpy(dtype=float) for lr in grid if lr not in excluded
        }
        finite = {lr: v for lr, v in means.items() if len(v) and np.isfinite(v).all()}
        chosen = max(finite, key=lambda lr: (finite[lr].mean(), -lr)) if finite else np.nan
        values = finite.get(chosen, np.array([]))
        low, high = mean_interval(values, level) if len(values) else (np.nan, np.nan)
        edge = "" if not finite or len(grid) < 2 else {grid[0]: "low", grid[-1]: "high"}.get(chosen, "")
        rows.append(
            {
                **dict(zip(setting, key, strict=True)),
                "lr": chosen,
                "valid_elbo": values.mean() if len(values) else np.nan,
                "valid_elbo_low": float(low),
                "valid_elbo_high": float(high),
                "valid_seeds": len(values),
                "lr_grid": " ".join(f"{lr:g}" for lr in grid),
                "excluded": " ".join(f"{lr:g}" for lr in excluded),
                "lr_edge": edge,
            }
        )
    choices = pd.DataFrame(rows, columns=[*setting, *CHOICE_COLUMNS])
    picked = df.merge(choices[[*setting, "lr"]].dropna(subset=["lr"]), on=[*setting, "lr"], how="inner")
    return choices, picked[list(df.columns)]


def tuned_rows(convergence: pd.DataFrame) -> pd.DataFrame:
    """The convergence rows every reader of a run uses: with a step-size grid those of each setting's chosen
    rate (`select_lr`), else the rows as they are."""
    if convergence.empty or "lr" not in convergence or convergence["lr"].isna().all():
        return convergence
    return select_lr(convergence)[1]


def shared_rows(convergence: pd.DataFrame, lr: float) -> pd.DataFrame:
    """The rows of a step-size grid at the shared rate ``lr`` (``train.lr``): the untuned comparison."""
    return convergence[convergence["lr"] == lr]


__all__ = ["CHOICE_COLUMNS", "VALID_METRIC", "select_lr", "shared_rows", "tuned_rows"]
