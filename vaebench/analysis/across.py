r"""Conclusions across problems: scale-free scores, aggregates with stratified bootstrap intervals, transfer.

Frames in, frames out (no training, no plotting). The input is tidy: one row per problem x estimator x K x
seed with a ``score``, *higher is better*, on a scale shared by the problems. Two scores are built here:

- :func:`variance_time_scores`: s = -log(v_e / v_ref), v = gradient variance x seconds per estimate (the
  work-normalised variance) of estimator e and of the reference (``reparam``) at the same problem, K and seed.
  A variance ratio has no unit, so problems whose gradients differ by orders of magnitude are comparable;
- :func:`figure_scores`: a problem's ranking figure, turned so that higher is better. It is not comparable
  across problems in level, only in order, so it feeds the paired, order-based statistics below (probability
  of improvement, transfer), never the interquartile mean.

Aggregates (Agarwal, Schwarzer, Castro, Courville & Bellemare 2021, "Deep RL at the edge of the statistical
precipice", NeurIPS; the rliable library), for each estimator at each K:

- ``iqm``: the interquartile mean of the scores over all problems x seeds (the mean of the middle 50%,
  ``scipy.stats.trim_mean(·, 0.25)``): robust to one outlying problem, less noisy than the median;
- ``probability_of_improvement`` P(A > B): per problem, the fraction of seeds on which A's score exceeds B's,
  **paired by seed** (ties count ½), averaged over problems with equal weight. Over ``reparam``, and over the
  best other estimator (the highest IQM at that K besides A itself);
- ``profile``: performance profiles (Dolan & Moré 2002): the fraction of problems on which the estimator's
  seed-mean score is within log τ of the best estimator's, i.e. (for variance-time scores) its variance x time
  within a factor τ of the best.

Intervals: a **stratified bootstrap over problems and seeds**: each resample draws the problems with
replacement and, within each drawn problem, its seeds with replacement (the same seeds for every estimator,
so pairs stay paired), and recomputes the statistic; percentile interval at ``level``. The draws come from
stream ``across.bootstrap`` of :mod:`vaebench.rng`.

Transfer (:func:`transfer`): for each pair of the leading estimators at each K, on how many problems A is
*separated* ahead of B (the Student-t interval of the paired per-seed differences excludes 0 in A's favour),
B ahead, or neither; a verdict names an estimator "across these problems" only when it is ahead on a majority
of the problems compared and behind on none. :func:`takeaway` turns the table into the verdict across problems:
the estimator to use at a K when it is so against every other leader there, else the pair that comes closest.

Why not the ``rliable`` package: its statistics are a few lines each here, while rliable 1.2.0 brings arch
(< 8), seaborn and absl-py, draws its bootstrap from numpy's global or its own seeded generators (vaebench
draws every random number from a named stream of :mod:`vaebench.rng`), has no probability of improvement
paired by seed (its version is the Mann-Whitney statistic over all pairs of runs), and resamples runs within
tasks only, never the tasks themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from vaebench import rng
from vaebench.errors import VaebenchError
from vaebench.stats import mean_interval, percentile_interval

KEYS = ("problem", "estimator", "num_samples", "seed")
"""The columns that identify a score."""

TAUS = (1.0, 1.5, 2.0, 4.0, 10.0)
"""Factors τ of the performance profiles."""

ACROSS_COLUMNS = (
    "statistic",
    "estimator",
    "num_samples",
    "versus",
    "tau",
    "value",
    "low",
    "high",
    "problems",
    "seeds",
)
"""The columns of :func:`across` (``across.csv``)."""


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise VaebenchError(f"{what} needs columns {', '.join(columns)}; missing: {', '.join(missing)}")


def variance_time_scores(frame: pd.DataFrame, reference: str = "reparam") -> pd.DataFrame:
    """s = -log(v / v_ref) at the same problem, K and seed, from a frame with ``KEYS`` and ``value`` (v > 0).

    Rows without a reference at their problem, K and seed are dropped (and so is a problem's K where the
    reference did not run); the reference's own rows score 0.
    """
    _require(frame, [*KEYS, "value"], "variance_time_scores")
    if (frame["value"] <= 0).any():
        raise VaebenchError("variance x time must be positive to take its log")
    ref = frame[frame["estimator"] == reference].set_index(["problem", "num_samples", "seed"])["value"]
    if ref.empty:
        raise VaebenchError(f"no rows of the reference estimator {reference!r}: nothing to score against")
    joined = frame.join(ref.rename("reference"), on=["problem", "num_samples", "seed"], how="inner")
    out = joined[list(KEYS)].copy()
    out["score"] = -np.log(joined["value"].to_numpy() / joined["reference"].to_numpy())
    return out.reset_index(drop=True)


def figure_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """A problem's ranking figure as a score, higher better: ``value`` where ``higher_is_better``, else -value."""
    _require(frame, [*KEYS, "value", "higher_is_better"], "figure_scores")
    out = frame[list(KEYS)].copy()
    out["score"] = np.where(frame["higher_is_better"].astype(bool), frame["value"], -frame["value"])
    return out.reset_index(drop=True)


class _Cube:
    """Scores as an array [problem, seed, estimator, K] (NaN where a run is missing), and its resamples."""

    def __init__(self, scores: pd.DataFrame):
        _require(scores, [*KEYS, "score"], "the cross-problem analysis")
        if scores.duplicated(list(KEYS)).any():
            raise VaebenchError("scores hold duplicate rows for one problem, estimator, K and seed")
        self.problems = sorted(scores["problem"].unique())
        self.seeds = sorted(scores["seed"].unique())
        self.estimators = list(dict.fromkeys(scores["estimator"]))
        self.ks = sorted(scores["num_samples"].unique())
        axes = (self.problems, self.seeds, self.estimators, self.ks)
        index = [
            pd.Index(a).get_indexer(scores[c])
            for a, c in zip(axes, ("problem", "seed", "estimator", "num_samples"), strict=True)
        ]
        self.values = np.full([len(a) for a in axes], np.nan)
        self.values[tuple(index)] = scores["score"].to_numpy(dtype=float)

    def resamples(self, count: int, seed: int):
        """``count`` cubes resampled over problems, then seeds within each drawn problem."""
        gen = rng.numpy_generator(seed, "across.bootstrap")
        p, s = self.values.shape[:2]
        for _ in range(count):
            problems = gen.integers(0, p, p)
            seeds = gen.integers(0, s, (p, s))
            yield self.values[problems[:, None], seeds]


def _iqm(values: np.ndarray) -> np.ndarray:
    """IQM over problems x seeds of a cube [P, S, E, K] -> [E, K] (NaN where no score)."""
    flat = values.reshape(-1, *values.shape[2:])
    out = np.full(values.shape[2:], np.nan)
    for e, k in np.ndindex(out.shape):
        column = flat[:, e, k]
        column = column[np.isfinite(column)]
        if column.size:
            out[e, k] = scipy_stats.trim_mean(column, 0.25)
    return out


def _improvement(values: np.ndarray, a: int, b: int, k: int) -> float:
    """P(A > B) at K index k: per problem the paired fraction of seeds (ties ½), then the mean over problems."""
    x, y = values[:, :, a, k], values[:, :, b, k]
    both = np.isfinite(x) & np.isfinite(y)
    wins = np.where(both, (x > y) + 0.5 * (x == y), 0.0)
    counted = both.sum(1)
    per_problem = wins.sum(1)[counted > 0] / counted[counted > 0]
    return float(per_problem.mean()) if per_problem.size else math.nan


def _profile(values: np.ndarray, tau: float) -> np.ndarray:
    """Fraction of problems where each estimator's seed-mean score is within log τ of the best: [E, K]."""
    finite = np.isfinite(values)
    count = finite.sum(1)
    mean = np.where(
        count > 0, np.where(finite, values, 0.0).sum(1) / np.maximum(count, 1), np.nan
    )  # [P, E, K]
    best = np.where(np.isfinite(mean), mean, -np.inf).max(1, keepdims=True)
    ran = np.isfinite(mean)
    within = ran & (best - mean <= math.log(tau) + 1e-12)
    counted = ran.sum(0)
    return np.where(counted > 0, within.sum(0) / np.maximum(counted, 1), np.nan)


def across(
    scores: pd.DataFrame,
    reference: str = "reparam",
    *,
    profiles: bool = True,
    taus: Sequence[float] = TAUS,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every aggregate across problems with its stratified bootstrap interval (``across.csv``).

    Args:
        scores: ``KEYS`` and ``score`` (higher better), from :func:`variance_time_scores` or
            :func:`figure_scores`.
        reference: the estimator the probability of improvement is first taken against.
        profiles: include the performance profiles (meaningful for scores that are log-ratios).
        taus: the profiles' factors τ.
        level: the intervals' level.
        resamples: bootstrap resamples.
        seed: the bootstrap's seed.

    Returns:
        `ACROSS_COLUMNS`: ``statistic`` (``iqm``, ``probability_of_improvement``, ``profile``), ``estimator``,
        ``num_samples``, ``versus`` (the other estimator of a probability of improvement), ``tau`` (of a
        profile), ``value``, ``low``, ``high``, and the ``problems`` and ``seeds`` they rest on.
    """
    cube = _Cube(scores)
    iqm = _iqm(cube.values)
    pairs = []  # (estimator index, other index, K index)
    for k in range(len(cube.ks)):
        for a in range(len(cube.estimators)):
            if not np.isfinite(iqm[a, k]):
                continue
            others = [b for b in range(len(cube.estimators)) if b != a and np.isfinite(iqm[b, k])]
            if reference in cube.estimators and cube.estimators.index(reference) in others:
                pairs.append((a, cube.estimators.index(reference), k))
            if others:
                best = max(others, key=lambda b: iqm[b, k])
                if cube.estimators[best] != reference:
                    pairs.append((a, best, k))
    taus = list(taus) if profiles else []

    def statistics(values: np.ndarray) -> list[np.ndarray]:
        return [
            _iqm(values),
            np.array([_improvement(values, *p) for p in pairs]),
            *[_profile(values, t) for t in taus],
        ]

    point = statistics(cube.values)
    draws = [statistics(v) for v in cube.resamples(resamples, seed)]
    interval = [_intervals(np.stack([d[i] for d in draws]), level) for i in range(len(point))]
    common = {"problems": len(cube.problems), "seeds": len(cube.seeds)}

    def per_setting(statistic: str, values: np.ndarray, bounds: np.ndarray, **extra) -> list[dict]:
        """One row per (estimator, K) with a finite value, its interval from ``bounds`` [2, E, K]."""
        return [
            {"statistic": statistic, "estimator": cube.estimators[e], "num_samples": cube.ks[k], **extra,
             "value": value, "low": bounds[0, e, k], "high": bounds[1, e, k]}
            for (e, k), value in np.ndenumerate(values)
            if np.isfinite(value)
        ]  # fmt: skip

    rows = per_setting("iqm", point[0], interval[0])
    for i, (a, b, k) in enumerate(pairs):
        low, high = interval[1][:, i]
        rows.append(
            {
                "statistic": "probability_of_improvement",
                "estimator": cube.estimators[a],
                "num_samples": cube.ks[k],
                "versus": cube.estimators[b],
                "value": point[1][i],
                "low": low,
                "high": high,
            }
        )
    for t, tau in enumerate(taus):
        rows += per_setting("profile", point[2 + t], interval[2 + t], tau=tau)
    out = pd.DataFrame(rows, columns=[c for c in ACROSS_COLUMNS if c not in common])
    return out.assign(**common)[list(ACROSS_COLUMNS)]


def _intervals(draws: np.ndarray, level: float) -> np.ndarray:
    """Percentile intervals of bootstrap draws [R, ...] -> [2, ...] (low, high)."""
    flat = draws.reshape(draws.shape[0], -1)
    out = np.array([percentile_interval(flat[:, j], level) for j in range(flat.shape[1])]).reshape(-1, 2)
    return out.T.reshape(2, *draws.shape[1:])


def leaders(table: pd.DataFrame, count: int = 3) -> dict[int, list[str]]:
    """The ``count`` estimators of highest IQM at each K of an :func:`across` table."""
    iqm = table[table["statistic"] == "iqm"].sort_values("value", ascending=False)
    return {int(k): list(g["estimator"].head(count)) for k, g in iqm.groupby("num_samples")}


TRANSFER_COLUMNS = ("num_samples", "a", "b", "a_ahead", "b_ahead", "neither", "problems", "winner", "verdict")


def transfer(scores: pd.DataFrame, leading: dict[int, list[str]], level: float = 0.95) -> pd.DataFrame:
    """For each pair of ``leading`` estimators at each K: on how many problems each is separated ahead.

    On a problem, A is separated ahead of B when the Student-t interval (at ``level``) of the per-seed paired
    differences of their scores lies above 0 (at least two shared seeds); behind when below; else neither.

    Returns:
        `TRANSFER_COLUMNS`, with ``winner`` the estimator named (or "") and ``verdict`` a sentence: "<A> ahead of <B> across these problems ..." only when
        A is ahead on a majority of the ``problems`` compared and behind on none (either way round), else
        "not separated across these problems".
    """
    _require(scores, [*KEYS, "score"], "transfer")
    rows = []
    for k, names in leading.items():
        at_k = scores[scores["num_samples"] == k]
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                counts = {"a": 0, "b": 0, "neither": 0}
                for _, g in at_k.groupby("problem"):
                    wide = g.pivot_table(index="seed", columns="estimator", values="score")
                    if a not in wide or b not in wide:
                        continue
                    diff = (wide[a] - wide[b]).dropna().to_numpy()
                    low, high = (
                        (x.item() for x in mean_interval(diff, level))
                        if diff.size >= 2
                        else (math.nan, math.nan)
                    )
                    counts["a" if low > 0 else "b" if high < 0 else "neither"] += 1
                n = sum(counts.values())
                rows.append(
                    {
                        "num_samples": k,
                        "a": a,
                        "b": b,
                        "a_ahead": counts["a"],
                        "b_ahead": counts["b"],
                        "neither": counts["neither"],
                        "problems": n,
                        "winner": _winner(a, b, counts, n),
                        "verdict": _verdict(a, b, k, counts, n),
                    }
                )
    return pd.DataFrame(rows, columns=list(TRANSFER_COLUMNS))


def _winner(a: str, b: str, counts: dict[str, int], n: int) -> str:
    """The estimator ahead on a majority of the ``n`` problems and behind on none, else ""."""
    for win, ahead, behind in ((a, counts["a"], counts["b"]), (b, counts["b"], counts["a"])):
        if ahead > n / 2 and behind == 0:
            return win
    return ""


def _verdict(a: str, b: str, k: int, counts: dict[str, int], n: int) -> str:
    win = _winner(a, b, counts, n)
    if win:
        lose, ahead = (b, counts["a"]) if win == a else (a, counts["b"])
        return f"{win} ahead of {lose} at K={k} across these problems (separated on {ahead} of {n}, behind on none)"
    return (
        f"{a} and {b} at K={k}: not separated across these problems ({a} ahead on {counts['a']}, {b} on "
        f"{counts['b']}, neither on {counts['neither']})"
    )


def takeaway(moves: pd.DataFrame, problems: int) -> str:
    """The verdict across problems, from a :func:`transfer` table over ``problems`` problems.

    An estimator is named to use "across these problems" at a K when it is the ``winner`` of every pair it is
    in there (ahead of each other leading estimator on a majority of the problems compared, behind on none).
    Otherwise none transfers, and the pair that comes closest is named: the fewest problems that would have
    to change for it to transfer (those short of a majority, plus those on which it is behind), ties to the
    one ahead on more problems; the pairs that do transfer follow.
    """
    if moves.empty:
        return f"No two estimators to compare across these {problems} problems"
    used = []
    for k, at_k in moves.groupby("num_samples", sort=True):
        for name in dict.fromkeys([*at_k["a"], *at_k["b"]]):
            mine = at_k[(at_k["a"] == name) | (at_k["b"] == name)]
            if (mine["winner"] == name).all():
                beaten = [b if a == name else a for a, b in zip(mine["a"], mine["b"], strict=True)]
                used.append(f"{name} at K={k} (ahead of {', '.join(beaten)})")
    if used:
        return (
            f"Across these {problems} problems, use {'; '.join(used)}: separated ahead on a majority of the "
            "problems compared and behind on none"
        )
    text = (
        f"No estimator transfers across these {problems} problems (at no K is one separated ahead of every other "
        "leading estimator on a majority of the problems compared and behind on none)"
    )
    open_pairs = moves[moves["winner"] == ""]
    if len(open_pairs):
        sides = [
            (r["a"], r["b"], r["a_ahead"], r["b_ahead"]) if r["a_ahead"] - r["b_ahead"] >= r["b_ahead"] - r["a_ahead"]
            else (r["b"], r["a"], r["b_ahead"], r["a_ahead"])
            for _, r in open_pairs.iterrows()
        ]  # fmt: skip
        short = [max(0, int(n) // 2 + 1 - ahead) + behind for (_, _, ahead, behind), n in
                 zip(sides, open_pairs["problems"], strict=True)]  # fmt: skip
        best = min(range(len(sides)), key=lambda i: (short[i], -sides[i][2]))
        a, b, ahead, behind = sides[best]
        r = open_pairs.iloc[best]
        text += (
            f"; closest: {a} over {b} at K={int(r['num_samples'])}, ahead on {ahead} of {int(r['problems'])} "
            f"problems and behind on {behind}"
        )
    done = moves[moves["winner"] != ""]
    if len(done):
        pairs = [
            f"{r['winner']} over {r['b'] if r['winner'] == r['a'] else r['a']} at K={int(r['num_samples'])}"
            for _, r in done.iterrows()
        ]
        text += f". Pairs that transfer: {', '.join(pairs)}"
    return text


def per_problem(merit: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Each problem's ranking figure per estimator and K: the mean over seeds with its Student-t interval, best
    first (``merit``: the rows of ``merit.csv`` with ``ranks`` true), and whether its interval lies apart from
    the best's (``behind_best``)."""
    _require(merit, [*KEYS, "figure", "value", "higher_is_better"], "per_problem")
    rows = []
    for (problem, figure, higher, estimator, k), group in merit.groupby(
        ["problem", "figure", "higher_is_better", "estimator", "num_samples"], sort=False
    ):
        values = group["value"].dropna().to_numpy(dtype=float)
        low, high = mean_interval(values, level) if len(values) > 1 else (np.nan, np.nan)
        rows.append({"problem": problem, "figure": figure, "higher_is_better": bool(higher),
                     "estimator": estimator, "num_samples": int(k),
                     "value": float(values.mean()) if len(values) else np.nan,
                     "low": float(low), "high": float(high), "seeds": len(values)})  # fmt: skip
    out = pd.DataFrame(rows)
    frames = []
    for _, group in out.groupby("problem", sort=False):
        higher = bool(group["higher_is_better"].iloc[0])
        group = group.sort_values("value", ascending=not higher)
        best = group.iloc[0]
        group["behind_best"] = group["high"] < best["low"] if higher else group["low"] > best["high"]
        frames.append(group)
    return pd.concat(frames, ignore_index=True)
