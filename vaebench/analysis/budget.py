r"""Estimators compared at equal budget along the learning curve: what unconverged runs can still say.

A final test ELBO compares converged models only if the curves have converged
(:mod:`vaebench.analysis.plateau`); before that it compares whoever started fastest, *at whatever budget each
run happened to get*. Held at one budget, the comparison is true for that budget whether or not training had
finished. Per K, over the runs that did not diverge (a diverged run stops early and would shrink every budget):

- **equal compute**: the budget is C = min over runs (settings x seeds) of the compute spent at the run's
  last curve point, in **yardstick-step equivalents**: steps x the setting's step-time ratio to its K's
  yardstick, measured interleaved (:func:`vaebench.analysis.yardstick.yardstick_steps`). Steps are
  deterministic and the ratio is measured in rounds that a load over the machine slows alike, so C and every
  figure at C are the same on a busy machine and an idle one; the training seconds of each unit are not (the
  seeds of a setting train in one unit, so pairing by seed cannot remove the load either), and they only
  draw what happened (the report's wall-clock plot). Every run reaches C, so each run's test ELBO at C is
  *interpolated* linearly on its own curve, never extrapolated; one C for every seed keeps the per-seed
  differences differences of one quantity. Settings whose steps were not timed interleaved get no row here;
- **equal steps**: the same with the step: S = min over runs of the last curve step, the value at S
  interpolated on step → value (exact at a recorded step when every run evaluates on the same grid);
- **steps to a target**: the target test ELBO is

      target = w - m,     m = `MARGIN` (1 nat)

  with w the lowest over settings of the mean over seeds of the final test ELBO (each setting's last curve
  point): the step at which a run comes within m of where the slowest setting ended. Every setting's mean
  curve ends at or above w, so every compared setting reaches the target on average; a target at the *best*
  setting's final value would be out of reach of the others, and one at w itself would be missed by about
  half the seeds of the worst setting. The margin is the plateau test's tolerance
  (:data:`vaebench.analysis.plateau.TOLERANCE`), the size of the differences comparisons turn on; a target
  placed as a fraction of the way from the initial test ELBO (several hundred nats below) would be reached in
  the first few dozen steps by every setting and say nothing about the rest of training. A seed whose curve
  never reaches the target is counted in ``not_reached`` and left out of its setting's mean. Each run's first
  crossing is interpolated linearly between the two evaluations around it, in steps and in yardstick-step
  equivalents (``compute_to_target``). No target is set where it would lie at or below the mean initial
  test ELBO (no setting rose by more than m).

Each figure is the mean over seeds with a Student-t interval (:func:`vaebench.stats.mean_interval`), and is
set against the **reference**: the best unbiased setting for that budget and figure (the highest test ELBO;
the fewest steps or yardstick steps to the target), chosen among the settings with no diverged run and, for
the target, none that missed it. The difference d = setting - reference is **paired by seed** (runs of a seed
share the initialisation and the data order; :func:`vaebench.analysis.contrast.contrast`), d̄ ±
t_{1-α/2, n-1} s_d / √n over the n seeds both ran (and, for the target, both reached); it is **separated**
when that interval excludes 0, and at equal compute only if it does so, on the same side, with the two
settings' step-time ratios at either end of their intervals (one at its low end and the other at its high
end, then the reverse; the budget recomputed for the pair at each), so that the ratios' round-to-round
spread cannot flip a separated comparison. The reference is the best and not the K's yardstick because the question is
who is ahead at that budget, as in the bottom line (:mod:`vaebench.analysis.verdicts`), whose equal-compute
question rests on the same interleaved step-time ratios; like there, a best picked by its mean is the
favourite of a noisy ranking, so "not separated" is the answer the data can always give. The figures
themselves (means and intervals) are those at the measured ratios.

Settings whose estimator declares a bias at K (``iwae-stl`` at K > 1) get their rows (``biased``), but are
never the reference.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from vaebench.analysis.contrast import contrast
from vaebench.analysis.plateau import TOLERANCE
from vaebench.analysis.settings import KEYS, bias_note, order_estimators, truth, with_sampler
from vaebench.analysis.yardstick import step_ratios, yardstick_steps
from vaebench.stats import mean_interval

MARGIN = TOLERANCE
"""Nats below the worst setting's final test ELBO where the target lies (the plateau test's tolerance)."""

BUDGETS = ("compute", "steps", "target")
"""What is held equal: compute (yardstick-step equivalents), steps, or the test ELBO to reach."""

BUDGET_COLUMNS = (
    "estimator",
    "sampler",
    "num_samples",
    "budget",
    "budget_value",
    "figure",
    "value",
    "value_low",
    "value_high",
    "seeds",
    "not_reached",
    "reference_estimator",
    "reference_sampler",
    "difference",
    "difference_low",
    "difference_high",
    "paired_seeds",
    "separated",
    "biased",
)
"""Columns of `budget`'s frame, one row per setting x K x budget x figure:

- ``budget``: one of `BUDGETS`; ``budget_value``: the common budget at that K (yardstick-step equivalents, a
  step, or the target test ELBO in nats);
- ``figure``: ``test_elbo`` (at the budget) for ``compute`` and ``steps``; ``steps_to_target`` and
  ``compute_to_target`` (yardstick-step equivalents) for ``target``;
- ``value`` with ``value_low``/``value_high``: the mean over seeds and its Student-t interval; ``seeds``: the
  runs behind it; ``not_reached``: seeds whose curve never reached the target (0 for the other budgets);
- ``reference_estimator``, ``reference_sampler``: the best setting for this budget and figure;
- ``difference`` (setting - reference) with its interval, paired by seed over ``paired_seeds`` seeds;
  ``separated``: whether that interval excludes 0 (None without an interval; False for the reference);
- ``biased``: the estimator's declared bias at K (empty when unbiased); biased rows are never the reference.
"""

BUDGET_FIGURES = {
    "compute": ("test_elbo",),
    "steps": ("test_elbo",),
    "target": ("steps_to_target", "compute_to_target"),
}
"""The figures of each budget."""

HIGHER_IS_BETTER = {"test_elbo": True, "steps_to_target": False, "compute_to_target": False}

Runs = dict[tuple, dict[int, pd.DataFrame]]
"""A K's curves: setting key (estimator, sampler, K) -> seed -> its test-ELBO rows sorted by step."""


def budget(
    convergence: pd.DataFrame,
    throughput: pd.DataFrame | None = None,
    *,
    margin: float = MARGIN,
    level: float = 0.95,
) -> pd.DataFrame:
    """Every setting's test ELBO at equal compute and at equal steps, and its cost to a target, per K.

    Args:
        convergence: tidy rows of the convergence measure (``estimator, num_samples, seed, step, metric,
            value``, and ``diverged``: those runs are left out); only the ``test_elbo`` curve is read, never
            its seconds.
        throughput: tidy rows of the throughput measure, for the step-time ratios of the compute budget
            (None: no compute budget).
        margin: nats below the worst setting's mean final test ELBO where the target lies.
        level: level of the intervals.

    Returns:
        One row per setting x K x budget x figure, columns `BUDGET_COLUMNS` (module docstring); empty when
        there is no curve.
    """
    curves, diverged = _curves(convergence)
    ratios = step_ratios(throughput)
    curves = yardstick_steps(curves, ratios)
    spans = {
        tuple(r[:3]): (r[3], r[4])
        for r in ratios[[*KEYS, "step_ratio_low", "step_ratio_high"]].itertuples(index=False)
    }
    out = []
    for k in sorted(curves["num_samples"].unique()):
        at_k = curves[curves["num_samples"] == k]
        order = order_estimators(at_k[KEYS].drop_duplicates())
        runs: Runs = {
            key: {int(s): run.sort_values("step") for s, run in at_k[_is(at_k, key)].groupby("seed")}
            for key in (tuple(r) for r in order[KEYS].itertuples(index=False))
        }
        unfit = {key for key in runs if key in diverged or bias_note(key[0], key[2])}
        for name, column in (("compute", "yardstick_steps"), ("steps", "step")):
            ends = [run[column].iloc[-1] for seeds in runs.values() for run in seeds.values()]
            at = float(np.nanmin(ends)) if np.isfinite(ends).any() else math.nan
            if not np.isfinite(at):
                continue
            figures = {key: _at(seeds, column, at) for key, seeds in runs.items()}
            rows = _rows(name, at, "test_elbo", figures, {}, unfit, level)
            if name == "compute":  # settings not timed interleaved have no compute to compare
                rows = _held(
                    [r for r in rows if figures[_key(r)]],
                    lambda a, b, runs=runs: _ahead(runs, spans, a, b, level),
                )
            out += rows
        target = _target(runs, margin)
        if not np.isfinite(target):
            continue
        reached = {
            key: {s: _crossing(run, target) for s, run in seeds.items()} for key, seeds in runs.items()
        }
        missed = {key: sum(v is None for v in seeds.values()) for key, seeds in reached.items()}
        late = unfit | {key for key, n in missed.items() if n}
        for i, figure in enumerate(BUDGET_FIGURES["target"]):
            figures = {
                key: {s: v[i] for s, v in seeds.items() if v is not None and np.isfinite(v[i])}
                for key, seeds in reached.items()
            }
            rows = _rows("target", target, figure, figures, missed, late, level)
            if figure == "compute_to_target":
                reached_steps = {
                    key: {s: v[0] for s, v in seeds.items() if v is not None}
                    for key, seeds in reached.items()
                }
                rows = _held(rows, lambda a, b, n=reached_steps: _sooner(n, spans, a, b, level))
            out += rows
    frame = pd.DataFrame(out, columns=list(BUDGET_COLUMNS))
    frame["separated"] = frame["separated"].map(truth).astype(object)  # True, False or None, not numpy bools
    return frame


def _curves(convergence: pd.DataFrame) -> tuple[pd.DataFrame, set[tuple]]:
    """The test-ELBO rows of the runs that did not diverge, and the settings with a diverged run."""
    rows = with_sampler(convergence)
    rows = rows[rows["metric"] == "test_elbo"] if rows is not None and not rows.empty else pd.DataFrame()
    if rows.empty:
        return pd.DataFrame(columns=[*KEYS, "seed", "step", "value"]), set()
    rows = rows.assign(num_samples=rows["num_samples"].astype(int))
    bad = pd.Series(False, index=rows.index)
    if "diverged" in rows:
        bad = rows["diverged"].map(lambda v: truth(v) is True).astype(bool)
    diverged = {tuple(r) for r in rows.loc[bad, KEYS].drop_duplicates().itertuples(index=False)}
    return rows[~bad], diverged


def _is(frame: pd.DataFrame, key: tuple) -> pd.Series:
    name, sampler, k = key
    return (frame["estimator"] == name) & (frame["sampler"] == sampler) & (frame["num_samples"] == k)


def _at(seeds: dict[int, pd.DataFrame], column: str, at: float) -> dict[int, float]:
    """Each seed's test ELBO at ``column`` = ``at``, linearly interpolated on its curve (``at`` within it)."""
    found = {}
    for seed, run in seeds.items():
        x, y = run[column].to_numpy(float), run["value"].to_numpy(float)
        keep = np.isfinite(x) & np.isfinite(y)
        if keep.any() and x[keep][-1] >= at:
            found[seed] = float(np.interp(at, x[keep], y[keep]))
    return found


def _target(runs: Runs, margin: float) -> float:
    """w - margin, w the lowest mean final test ELBO; NaN if that is not above the mean initial test ELBO."""
    starts = [run["value"].iloc[0] for seeds in runs.values() for run in seeds.values()]
    finals = [np.mean([run["value"].iloc[-1] for run in seeds.values()]) for seeds in runs.values() if seeds]
    if not finals:
        return math.nan
    start, target = float(np.mean(starts)), float(np.min(finals)) - margin
    if not (np.isfinite(start) and np.isfinite(target)) or target <= start:
        return math.nan
    return target


def _crossing(run: pd.DataFrame, target: float) -> tuple[float, float] | None:
    """(step, yardstick steps) where the curve first reaches ``target``, interpolated; None if it never does."""
    values = run["value"].to_numpy(float)
    hits = np.flatnonzero(values >= target)
    if hits.size == 0:
        return None
    i = int(hits[0])
    steps, compute = run["step"].to_numpy(float), run["yardstick_steps"].to_numpy(float)
    if i == 0:
        return float(steps[0]), float(compute[0])
    share = (target - values[i - 1]) / (values[i] - values[i - 1])
    return tuple(float(x[i - 1] + share * (x[i] - x[i - 1])) for x in (steps, compute))


def _rows(
    name: str,
    at: float,
    figure: str,
    figures: dict[tuple, dict[int, float]],
    missed: dict[tuple, int],
    unfit: set[tuple],
    level: float,
) -> list[dict]:
    """One budget's rows at one K: each setting's mean figure and its paired difference to the best."""
    higher = HIGHER_IS_BETTER[figure]
    means = {key: float(np.mean(list(v.values()))) for key, v in figures.items() if v}
    candidates = {key: m for key, m in means.items() if key not in unfit}
    reference = (max if higher else min)(candidates, key=candidates.get) if candidates else None
    out = []
    for key, per_seed in figures.items():
        values = np.array(list(per_seed.values()), dtype=float)
        low, high = (float(v) for v in mean_interval(values, level)) if values.size else (math.nan, math.nan)
        diff, diff_low, diff_high, paired = _paired(per_seed, figures.get(reference, {}), level)
        separated = None if not np.isfinite(diff_low) else bool(diff_low > 0 or diff_high < 0)
        if key == reference:
            diff, diff_low, diff_high, separated = 0.0, 0.0, 0.0, False
        out.append(
            dict(zip(KEYS, key, strict=True))
            | {
                "budget": name,
                "budget_value": at,
                "figure": figure,
                "value": means.get(key, math.nan),
                "value_low": low,
                "value_high": high,
                "seeds": len(per_seed),
                "not_reached": missed.get(key, 0),
                "reference_estimator": reference[0] if reference else None,
                "reference_sampler": reference[1] if reference else None,
                "difference": diff,
                "difference_low": diff_low,
                "difference_high": diff_high,
                "paired_seeds": paired,
                "separated": separated,
                "biased": bias_note(key[0], key[2]),
            }
        )
    return out


def _key(row: dict) -> tuple:
    return row["estimator"], row["sampler"], row["num_samples"]


def _held(rows: list[dict], holds) -> list[dict]:
    """``rows`` with ``separated`` kept only where ``holds(setting, reference)`` (the separation survives the
    step-time ratios' intervals), else False."""
    for row in rows:
        if row["separated"] and row["reference_estimator"] is not None:
            reference = (row["reference_estimator"], row["reference_sampler"], row["num_samples"])
            row["separated"] = bool(holds(_key(row), reference))
    return rows


def _ends(spans: dict, a: tuple, b: tuple) -> list[tuple[float, float]]:
    """The two ends of the ratios' intervals that favour a, then b: (a's low, b's high), (a's high, b's low)."""
    (a_low, a_high), (b_low, b_high) = spans.get(a, (math.nan,) * 2), spans.get(b, (math.nan,) * 2)
    return [(a_low, b_high), (a_high, b_low)]


def _ahead(runs: Runs, spans: dict, a: tuple, b: tuple, level: float) -> bool:
    """Whether a - b at equal compute keeps its sign, separated, with each ratio at either end of its interval
    (at each end, the budget is the least compute of the two settings' runs there)."""
    signs = set()
    for ra, rb in _ends(spans, a, b):
        if not all(math.isfinite(r) and r > 0 for r in (ra, rb)):
            return False
        at = min(min(run["step"].iloc[-1] * r for run in runs[key].values()) for key, r in ((a, ra), (b, rb)))
        steps = [{s: float(np.interp(at / r, run["step"], run["value"])) for s, run in runs[key].items()}
                 for key, r in ((a, ra), (b, rb))]  # fmt: skip
        d = contrast(*steps, "paired difference", level)
        if not d.separated:
            return False
        signs.add(d.value > 0)
    return len(signs) == 1


def _sooner(reached: dict, spans: dict, a: tuple, b: tuple, level: float) -> bool:
    """Whether a - b in yardstick steps to the target keeps its sign, separated, with each ratio at either end."""
    signs = set()
    for ra, rb in _ends(spans, a, b):
        if not all(math.isfinite(r) and r > 0 for r in (ra, rb)):
            return False
        d = contrast(*({s: n * r for s, n in reached[key].items()} for key, r in ((a, ra), (b, rb))),
                     "paired difference", level)  # fmt: skip
        if not d.separated:
            return False
        signs.add(d.value > 0)
    return len(signs) == 1


def _paired(a: dict[int, float], b: dict[int, float], level: float) -> tuple[float, float, float, int]:
    """mean over the seeds both have of a_s - b_s, with its Student-t interval (NaN with fewer than two)."""
    c = contrast(a, b, "paired difference", level)
    return c.value, c.low, c.high, c.n
