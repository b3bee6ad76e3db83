r"""Two runs compared: the settings they share, B against A, every change with its interval.

A *setting* is (estimator, sampler, K). For each setting measured in both runs A and B, :func:`compare`
returns one row per figure:

- gradient variance (``trace_var``: encoder, ``decoder_trace_var``) and signal-to-noise ratio (``snr``,
  ``decoder_snr``), at one checkpoint, pooled over each run's variance seeds as the summary table pools them
  (:func:`vaebench.stats.pooled_mean_interval`), compared as the ratio r = B / A. Each run's interval is a
  bootstrap (or jackknife) interval, turned into errors on the log scale, d⁻ = log v - log low and
  d⁺ = log high - log v, which add in quadrature as the two runs' estimates are independent:

      log r ∓ √((d⁻_B)² + (d⁺_A)²),  log r ± √((d⁺_B)² + (d⁻_A)²)      (rescaled from the runs' level to ours)

  (two runs that share seeds, data and code measure identical replicates, which makes this interval
  conservative, never too narrow);
- final test ELBO and test log-likelihood (``final_test_elbo``, ``test_log_likelihood``), compared as the
  difference B - A in nats over training seeds: **paired by seed** (the mean of the per-seed differences,
  Student-t interval) when both runs completed the same seeds, at least two; else **unpaired** (Welch's
  interval, :func:`vaebench.stats.welch_interval`); the ``method`` column says which. Diverged runs are left
  out, as in the summary table;
- training-step time (``step_ms``), the ratio B / A of the medians at the largest batch size both timed (none
  when they timed no batch size in common), the interval formed from their bootstrap intervals as for the
  variance. The hand-written pytorch/examples step
  (estimator ``reference``) is a setting too: its ratio is how much faster B's machine is, on its own.

Each row's ``verdict`` says whether B is ``better`` or ``worse`` than A beyond the interval (ratio interval
excluding 1, difference interval excluding 0), else ``no clear change``, or ``no interval``. :func:`only_in_one`
lists the settings measured in one run only; :func:`differences` names every difference of data and model
(what makes a comparison meaningless), :func:`caveats` the other settings and machines that change what a
figure means. The guard (:mod:`vaebench.analysis.guard`) turns the table into a CI check, and the rendering
is in :mod:`vaebench.report.compare`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vaebench import plugins
from vaebench.estimators import ESTIMATORS, SAMPLERS
from vaebench.measures.schema import CONVERGENCE, SETTING, THROUGHPUT, VARIANCE, complete
from vaebench.stats import mean_interval, normal_quantile, pooled_mean_interval, welch_interval

FIGURES: dict[str, tuple[str, str]] = {
    # figure: (how B is set against A, which direction is better)
    "trace_var": ("ratio", "lower"),
    "decoder_trace_var": ("ratio", "lower"),
    "snr": ("ratio", "higher"),
    "decoder_snr": ("ratio", "higher"),
    "final_test_elbo": ("difference", "higher"),
    "test_log_likelihood": ("difference", "higher"),
    "step_ms": ("ratio", "lower"),
}
"""Every figure compared, how (``ratio`` B / A or ``difference`` B - A), and whether lower or higher is better."""

COLUMNS = (
    *SETTING, "figure", "contrast", "better", "a", "a_low", "a_high", "b", "b_low", "b_high",
    "change", "change_low", "change_high", "n_a", "n_b", "method", "verdict",
)  # fmt: skip
"""The columns of :func:`compare`'s frame (``a``, ``b``: each run's figure with its own interval; ``change``:
B / A or B - A with its interval; ``n_a``, ``n_b``: seeds (or 1 timed setting) behind each)."""


@dataclass(frozen=True)
class RunResults:
    """What the comparison reads of one results folder (read through the report's integrity checks).

    Attributes:
        run: its run.json, as a dict.
        variance, convergence, throughput: its tidy frames; None or empty when not measured.
    """

    run: dict[str, Any]
    variance: pd.DataFrame | None = None
    convergence: pd.DataFrame | None = None
    throughput: pd.DataFrame | None = None


def compare(
    a: RunResults, b: RunResults, *, checkpoint: str | None = None, level: float = 0.95
) -> pd.DataFrame:
    """B against A on every setting both measured (see the module docstring); columns `COLUMNS`.

    Args:
        a, b: the two runs.
        checkpoint: the variance checkpoint compared (default: A's ``variance.summary_checkpoint``, else
            ``end``).
        level: the level of the ``change`` intervals.
    """
    checkpoint = checkpoint or _config(a.run).get("variance", {}).get("summary_checkpoint") or "end"
    rows: list[dict[str, Any]] = []
    for group, prefix in (("encoder", ""), ("decoder", "decoder_")):
        va, vb = (_variance(r.variance, group, checkpoint) for r in (a, b))
        for metric in ("trace_var", "snr"):
            rows += _ratios(f"{prefix}{metric}", va, vb, metric, level)
    fa, fb = _finals(a.convergence), _finals(b.convergence)
    for metric in ("final_test_elbo", "test_log_likelihood"):
        rows += _differences(metric, fa, fb, level)
    ta, tb = _step_times(a.throughput, b.throughput)
    rows += _ratios("step_ms", ta, tb, "step_ms", level)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sort_values([*SETTING, "figure"], key=_rank, kind="stable").reset_index(drop=True)


def _rank(column: pd.Series) -> pd.Series:
    """Sort keys: estimators in registry order (others after, by name), samplers as listed, figures as listed."""
    if column.name == "estimator":
        names = [*ESTIMATORS, *sorted(set(column) - set(ESTIMATORS))]
        return column.map({name: i for i, name in enumerate(names)})
    order = {"sampler": SAMPLERS, "figure": FIGURES}.get(column.name)
    return column if order is None else column.map({k: i for i, k in enumerate(order)}).fillna(len(order))


def only_in_one(a: RunResults, b: RunResults) -> pd.DataFrame:
    """The settings measured in one run only: columns ``estimator, sampler, num_samples, only_in, measures``."""
    found = {label: _settings(run) for label, run in (("A", a), ("B", b))}
    rows = []
    for label, other in (("A", "B"), ("B", "A")):
        for key, measures in found[label].items():
            if key not in found[other]:
                rows.append(
                    {
                        **dict(zip(SETTING, key, strict=True)),
                        "only_in": label,
                        "measures": ", ".join(measures),
                    }
                )
    return pd.DataFrame(rows, columns=[*SETTING, "only_in", "measures"])


def _settings(run: RunResults) -> dict[tuple, list[str]]:
    out: dict[tuple, list[str]] = {}
    for kind, frame, spec in (
        ("variance", run.variance, VARIANCE),
        ("convergence", run.convergence, CONVERGENCE),
        ("throughput", run.throughput, THROUGHPUT),
    ):
        if frame is None or frame.empty:
            continue
        rows = complete(frame, spec)
        for key in rows[list(SETTING)].drop_duplicates().itertuples(index=False):
            out.setdefault(tuple(key), []).append(kind)
    return out


# ------------------------------------------------------------------------------------------------ figures


def _variance(frame: pd.DataFrame | None, group: str, checkpoint: str) -> dict[tuple, tuple]:
    """Setting -> (value, low, high, seeds, input level) of trace_var and snr pooled over variance seeds."""
    if frame is None or frame.empty:
        return {}
    rows = complete(frame, VARIANCE)
    rows = rows[(rows["status"] == "ok") & (rows["group"] == group) & (rows["checkpoint"] == checkpoint)]
    out = {}
    for key, g in rows.groupby(list(SETTING), sort=False):
        level = float(g["level"].mean()) if g["level"].notna().any() else 0.95
        for metric in ("trace_var", "snr"):
            mean, low, high = pooled_mean_interval(g[metric], g[f"{metric}_low"], g[f"{metric}_high"])
            out[(metric, *key)] = (mean, low, high, g["seed"].nunique(), level)
    return out


def _step_times(a: pd.DataFrame | None, b: pd.DataFrame | None) -> tuple[dict, dict]:
    """Setting -> (median ms, low, high, 1, level) at the largest batch size both runs timed."""
    frames = [_timed(f) for f in (a, b)]
    if any(f.empty for f in frames):
        return {}, {}
    sizes = [set(f["batch_size"].dropna()) for f in frames]
    common = sizes[0] & sizes[1]
    if not common and any(sizes):  # timed at other batch sizes only: not comparable (a caveat says so)
        return {}, {}
    out = []
    for f in frames:
        if common:  # else neither folder recorded its batch size (written before it was)
            f = f[f["batch_size"] == max(common)]
        f = f.groupby(list(SETTING), sort=False).first()
        out.append({("step_ms", *key): (1e3 * r.step_s_median, 1e3 * r.step_s_low, 1e3 * r.step_s_high, 1, 0.95)
                    for key, r in f.iterrows()})  # fmt: skip
    return out[0], out[1]


def _timed(frame: pd.DataFrame | None) -> pd.DataFrame:
    if frame is None or frame.empty:
        return pd.DataFrame(columns=[*SETTING, "batch_size"])
    rows = complete(frame, THROUGHPUT)
    rows = rows[(rows["status"] == "ok") & ~rows["compiled"].astype(bool) & ~rows["amp"].astype(bool)]
    return rows[np.isfinite(rows["step_s_median"].astype(float))]


def _ratios(figure: str, a: dict, b: dict, metric: str, level: float) -> list[dict[str, Any]]:
    z = normal_quantile(level)
    rows = []
    for key in [k for k in a if k[0] == metric and k in b]:
        (va, la, ha, na, level_a), (vb, lb, hb, nb, level_b) = a[key], b[key]
        ratio = vb / va if va > 0 and vb > 0 else math.nan
        low = high = math.nan
        if all(x > 0 and math.isfinite(x) for x in (va, la, ha, vb, lb, hb)):
            da = np.log([va / la, ha / va]) * z / normal_quantile(level_a)  # A's log errors (below, above)
            db = np.log([vb / lb, hb / vb]) * z / normal_quantile(level_b)
            low = ratio * math.exp(-math.hypot(db[0], da[1]))
            high = ratio * math.exp(math.hypot(db[1], da[0]))
        method = (
            "ratio of medians, log-scale errors of both intervals"
            if figure == "step_ms"
            else ("ratio, log-scale errors of both runs' intervals")
        )
        rows.append(_row(key[1:], figure, (va, la, ha), (vb, lb, hb), (ratio, low, high), na, nb, method))
    return rows


def _finals(frame: pd.DataFrame | None) -> dict[tuple, pd.Series]:
    """(metric, setting) -> the final value per completed seed."""
    if frame is None or frame.empty:
        return {}
    rows = complete(frame, CONVERGENCE)
    rows = rows[
        rows["metric"].isin(["final_test_elbo", "test_log_likelihood"]) & ~rows["diverged"].astype(bool)
    ]
    return {
        (key[0], *key[1:]): g.groupby("seed")["value"].last().astype(float)
        for key, g in rows.groupby(["metric", *SETTING], sort=False)
    }


def _differences(metric: str, a: dict, b: dict, level: float) -> list[dict[str, Any]]:
    rows = []
    for key in [k for k in a if k[0] == metric and k in b]:
        sa, sb = a[key], b[key]
        own = [(s.mean(), *mean_interval(s.to_numpy(), level)) for s in (sa, sb)]
        if set(sa.index) == set(sb.index) and len(sa) >= 2:
            diff = (sb - sa).to_numpy()
            low, high = mean_interval(diff, level)
            change = (float(diff.mean()), float(low), float(high))
            method = f"paired by seed ({len(diff)} seeds), Student-t"
        else:
            d, low, high, _ = welch_interval(sa.to_numpy(), sb.to_numpy(), level)
            change = (d, low, high)
            method = f"unpaired (seeds {_seeds(sa)} vs {_seeds(sb)}), Welch"
        rows.append(_row(key[1:], metric, own[0], own[1], change, len(sa), len(sb), method))
    return rows


def _seeds(values: pd.Series) -> str:
    return ",".join(str(s) for s in sorted(values.index)) or "none"


def _row(setting, figure, a, b, change, n_a, n_b, method) -> dict[str, Any]:
    contrast, better = FIGURES[figure]
    none = 1.0 if contrast == "ratio" else 0.0
    value, low, high = (float(x) for x in change)
    if not (math.isfinite(low) and math.isfinite(high)):
        verdict = "no interval"
    elif low > none or high < none:
        verdict = "better" if (low > none) == (better == "higher") else "worse"
    else:
        verdict = "no clear change"
    return {
        **dict(zip(SETTING, setting, strict=True)),
        "figure": figure,
        "contrast": "B / A" if contrast == "ratio" else "B - A",
        "better": better,
        **{f"a{s}": float(x) for s, x in zip(("", "_low", "_high"), a[:3], strict=True)},
        **{f"b{s}": float(x) for s, x in zip(("", "_low", "_high"), b[:3], strict=True)},
        "change": value,
        "change_low": low,
        "change_high": high,
        "n_a": int(n_a),
        "n_b": int(n_b),
        "method": method,
        "verdict": verdict,
    }


# ------------------------------------------------------------------------------------------------ configurations


def _config(run: dict[str, Any]) -> dict[str, Any]:
    return run.get("config") or {}


def _diff(prefix: str, a: dict, b: dict) -> list[tuple[str, Any, Any]]:
    keys = list(dict.fromkeys([*a, *b]))
    return [(f"{prefix}{k}", a.get(k), b.get(k)) for k in keys if _plain(a.get(k)) != _plain(b.get(k))]


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Every difference of data and model between two runs' run.json, one phrase each ([]: comparable).

    Reads ``config.data`` and ``config.model``, the data's SHA-256 in ``data.sha256`` when run.json records it,
    and the model and data-set plugins in ``plugins`` (their records, :mod:`vaebench.plugins`). ``data.root``
    (where IDX files were found) counts only when the data's SHA-256 is not recorded in both.
    """
    ca, cb = _config(a), _config(b)
    found = _diff("data.", ca.get("data", {}), cb.get("data", {})) + _diff(
        "model.", ca.get("model", {}), cb.get("model", {})
    )
    sha_a, sha_b = ((r.get("data") or {}).get("sha256") for r in (a, b))
    if sha_a and sha_b:
        found = [f for f in found if f[0] != "data.root"]
        if sha_a != sha_b:
            found.append(("data sha256", sha_a[:12], sha_b[:12]))
    out = [f"{key}: {va!r} in A, {vb!r} in B" for key, va, vb in found]
    kinds = ("model", "dataset")
    records = [[r for r in (run.get("plugins") or []) if r.get("kind") in kinds] for run in (a, b)]
    return out + plugins.changes(records[0], records[1])


CAVEAT_SECTIONS = {
    "train": "the test ELBO and log-likelihood",
    "variance": "the variance and SNR",
    "throughput": "the step times",
}
"""Configuration sections whose differences change what a figure means, and the figures they touch."""


def caveats(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Differences that do not make a comparison meaningless but change what some figures mean.

    Training, variance and throughput settings (each named with the figures it touches), the device and thread
    count, the machine (which every step time compares too), the torch version, and estimator plugins whose
    source or version differs between the runs (the same name, other code).
    """
    ca, cb = _config(a), _config(b)
    out = []
    for section, figures in CAVEAT_SECTIONS.items():
        for key, va, vb in _diff(f"{section}.", ca.get(section, {}), cb.get(section, {})):
            out.append(f"{key}: {va!r} in A, {vb!r} in B (changes {figures})")
    for key, va, vb in _diff(
        "", {k: ca.get(k) for k in ("device", "threads")}, {k: cb.get(k) for k in ("device", "threads")}
    ):
        out.append(f"{key}: {va!r} in A, {vb!r} in B (changes the step times)")
    machine = [(r.get("environment") or {}).get("device_name") for r in (a, b)]
    if machine[0] != machine[1]:
        out.append(
            f"machine: {machine[0]!r} in A, {machine[1]!r} in B (the step-time ratios compare machines too)"
        )
    torch_versions = [(r.get("versions") or {}).get("torch") for r in (a, b)]
    if torch_versions[0] != torch_versions[1]:
        out.append(f"torch {torch_versions[0]} in A, {torch_versions[1]} in B")
    records = [[r for r in (run.get("plugins") or []) if r.get("kind") == "estimator"] for run in (a, b)]
    names = {r["name"] for r in records[0]} & {r["name"] for r in records[1]}
    out += plugins.changes(*([r for r in rs if r["name"] in names] for rs in records))
    return out
