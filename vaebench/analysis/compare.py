r"""Two runs compared: the settings they share, B against A, every change with its interval.

A *setting* is (estimator, sampler, K). For each setting measured in both runs A and B (and, with
``against``, each setting measured in B only set against A's baseline estimators at its K), :func:`compare`
returns one row per figure, each change one :func:`vaebench.analysis.contrast.contrast`:

- gradient variance (``trace_var``: encoder, ``decoder_trace_var``) and signal-to-noise ratio (``snr``,
  ``decoder_snr``), at one checkpoint, pooled over each run's variance seeds as the summary table pools them
  (:func:`vaebench.stats.pooled_mean_interval`), compared as the ratio r = B / A, the two runs' intervals
  (rescaled from each run's level to ours) in quadrature on the log scale (two runs that share seeds, data
  and code measure identical replicates, which makes this conservative, never too narrow);
- final test ELBO and test log-likelihood (``final_test_elbo``, ``test_log_likelihood``), compared as the
  difference B - A in nats over training seeds: **paired by seed** when both runs completed the same seeds,
  at least two; else **unpaired** (Welch); the ``method`` column says which. Diverged runs are left out;
- step time, only as ``step_ratio``: each run's step time over its own yardstick's at that K, timed
  interleaved (:func:`vaebench.analysis.yardstick.step_ratios`), compared as the ratio of the two runs'
  ratios. Seconds of two runs differ with the machine and its load, which a ratio within one run cancels; a
  change of the yardstick's own step shows only against the hand-written step, in each run's report.

**Comparable.** A figure is a function of the parameters it is measured at: the checkpoint (the anchor's
training up to it), the data, the model, the variance's seeds and minibatch; for a step-time ratio, the step
timed and the device (`MEASURED_AT`, less the keys that change only the precision, `PRECISION_ONLY`). Where
the two runs' configurations differ there (:func:`measured_at_other_parameters`), the row's verdict is ``not
comparable``, its change NaN, and its ``method`` names the keys: it is never counted better or worse. Else
the ``verdict`` says whether B is ``better`` or ``worse`` than A beyond the interval (ratio interval
excluding 1, difference interval excluding 0), else ``no clear change``, or ``no interval``.

**Against baselines.** The variance at one checkpoint and seeds, and the test figures of one configuration,
are deterministic across machines, so a setting that only B measured (a new estimator) can be set against a
setting of A (e.g. ``reparam``) at the same K, under the same rule of comparability; the row's ``against``
names A's setting.

:func:`only_in_one` lists the settings measured in one run only; :func:`differences` names every difference
of data and model (what makes a comparison meaningless), :func:`caveats` the other settings and machines
that change what a figure means. The guard (:mod:`vaebench.analysis.guard`) turns the table into a CI check,
and the rendering is in :mod:`vaebench.report.compare`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vaebench import plugins
from vaebench.analysis.contrast import contrast, none
from vaebench.analysis.settings import setting_label
from vaebench.analysis.yardstick import step_ratios
from vaebench.estimators import ESTIMATORS, SAMPLERS
from vaebench.measures.schema import CONVERGENCE, SETTING, THROUGHPUT, VARIANCE, complete
from vaebench.stats import mean_interval, normal_quantile, pooled_mean_interval

FIGURES: dict[str, tuple[str, str]] = {
    # figure: (how B is set against A, which direction is better)
    "trace_var": ("ratio", "lower"),
    "decoder_trace_var": ("ratio", "lower"),
    "snr": ("ratio", "higher"),
    "decoder_snr": ("ratio", "higher"),
    "final_test_elbo": ("difference", "higher"),
    "test_log_likelihood": ("difference", "higher"),
    "step_ratio": ("ratio", "lower"),
}
"""Every figure compared, how (``ratio`` B / A or ``difference`` B - A), and whether lower or higher is better."""

MEASURED_AT: dict[str, tuple[str, ...]] = {
    "variance": ("data", "model", "train", "variance"),
    "test": ("data", "model", "train"),
    "timing": ("data", "model", "throughput", "device"),
}
"""The configuration that fixes the parameters a kind of figure is measured at: the checkpoint (the anchor's
training up to it), the data, the model, the seeds; for a step-time ratio, the step timed and the device."""

PRECISION_ONLY = frozenset({
    "variance.replicates", "variance.enabled", "variance.summary_checkpoint", "variance.checkpoints",
    "variance.baseline_samples", "train.enabled", "train.check_every", "train.eval_every", "train.stack_seeds",
    "train.compile", "throughput.enabled", "throughput.repeats", "throughput.warmup", "variance.seeds",
})  # fmt: skip
"""Keys that change how precisely a figure is measured, or how the program runs, not what it measures (the
test figures of other seeds are compared unpaired; the variance's seeds are compared by `variance_seeds`)."""

_KIND = {"trace_var": "variance", "decoder_trace_var": "variance", "snr": "variance", "decoder_snr": "variance",
         "final_test_elbo": "test", "test_log_likelihood": "test", "step_ratio": "timing"}  # fmt: skip
_TEST_ONLY = ("train.eval_samples", "train.eval_points", "train.ll_samples", "train.ll_points")

COLUMNS = (
    *SETTING, "figure", "against", "contrast", "better", "a", "a_low", "a_high", "b", "b_low", "b_high",
    "change", "change_low", "change_high", "n_a", "n_b", "method", "verdict",
)  # fmt: skip
"""The columns of :func:`compare`'s frame (the setting is B's; ``against``: the label of A's setting it is set
against, its own unless ``--against``; ``a``, ``b``: each run's figure with its own interval; ``change``:
B / A or B - A with its interval, NaN when not comparable; ``n_a``, ``n_b``: seeds or rounds behind each)."""


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
    a: RunResults,
    b: RunResults,
    *,
    checkpoint: str | None = None,
    level: float = 0.95,
    against: Sequence[str] = (),
) -> pd.DataFrame:
    """B against A on every setting both measured (see the module docstring); columns `COLUMNS`.

    Args:
        a, b: the two runs.
        checkpoint: the variance checkpoint compared (default: A's ``variance.summary_checkpoint``, else
            ``end``).
        level: the level of the ``change`` intervals.
        against: estimators of A (iid draws) that each setting measured in B only is set against, at its K.
    """
    checkpoint = checkpoint or _config(a.run).get("variance", {}).get("summary_checkpoint") or "end"
    figures: dict[str, tuple[dict, dict]] = {}
    for group, prefix in (("encoder", ""), ("decoder", "decoder_")):
        va, vb = (_variance(r.variance, group, checkpoint) for r in (a, b))
        for metric in ("trace_var", "snr"):
            figures[f"{prefix}{metric}"] = (va.get(metric, {}), vb.get(metric, {}))
    fa, fb = _finals(a.convergence), _finals(b.convergence)
    for metric in ("final_test_elbo", "test_log_likelihood"):
        figures[metric] = (fa.get(metric, {}), fb.get(metric, {}))
    figures["step_ratio"] = (_step_ratios(a.throughput), _step_ratios(b.throughput))
    rows: list[dict[str, Any]] = []
    for figure, (in_a, in_b) in figures.items():
        changed = measured_at_other_parameters(a.run, b.run, figure, checkpoint)
        for key_b, key_a in _pairs(in_a, in_b, against):
            rows.append(_compared(figure, key_b, key_a, in_a[key_a], in_b[key_b], changed, level))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sort_values([*SETTING, "figure"], key=_rank, kind="stable").reset_index(drop=True)


def _pairs(in_a: dict, in_b: dict, against: Sequence[str]) -> list[tuple[tuple, tuple]]:
    """(B's setting, A's setting): every setting both measured, then each of B's others against A's baselines."""
    pairs = [(key, key) for key in in_b if key in in_a]
    for key in in_b:
        if key in in_a:
            continue
        for name in against:
            base = (name, "iid", key[2])
            if base in in_a and base != key:
                pairs.append((key, base))
    return pairs


def measured_at_other_parameters(
    a: dict[str, Any], b: dict[str, Any], figure: str, checkpoint: str
) -> list[str]:
    """The configuration keys (and data or model differences) that make two runs measure ``figure`` at other
    parameters ([]: comparable). The variance at ``init`` does not depend on training."""
    kind = _KIND[figure]
    ca, cb = _config(a), _config(b)
    found = []
    for section in MEASURED_AT[kind]:
        if kind == "variance" and section == "train" and checkpoint == "init":
            continue
        sa, sb = ca.get(section), cb.get(section)
        if isinstance(sa, dict) or isinstance(sb, dict):
            found += [key for key, _, _ in _diff(f"{section}.", sa or {}, sb or {})]
        elif _plain(sa) != _plain(sb):
            found.append(section)
    ignored = PRECISION_ONLY | (set(_TEST_ONLY) if kind == "variance" else set())
    found = [key for key in found if key not in ignored]
    if kind == "variance" and variance_seeds(a) != variance_seeds(b):
        found.append("the variance seeds")
    return found + (["data or model (see the notes)"] if differences(a, b) else [])


def variance_seeds(run: dict[str, Any]) -> list:
    """The seeds the variance was measured on: ``variance.seeds``, else the run's ``seeds``."""
    config = _config(run)
    return _plain(config.get("variance", {}).get("seeds") or config.get("seeds") or [])


def _rank(column: pd.Series) -> pd.Series:
    """Sort keys: estimators in registry order (others after, by name), samplers as listed, figures as listed."""
    if column.name == "estimator":
        names = [*ESTIMATORS, *sorted(set(column) - set(ESTIMATORS))]
        return column.map({name: i for i, name in enumerate(names)})
    order = {"sampler": SAMPLERS, "figure": FIGURES}.get(column.name)
    return column if order is None else column.map({k: i for i, k in enumerate(order)}).fillna(len(order))


def only_in_one(a: RunResults, b: RunResults) -> pd.DataFrame:
    """The settings measured in one run only: columns ``estimator, sampler, num_samples, only_in, measures``."""
    found = {label: settings(run) for label, run in (("A", a), ("B", b))}
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


def settings(run: RunResults) -> dict[tuple, list[str]]:
    """Every setting a run measured -> the measures that measured it."""
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


def _variance(frame: pd.DataFrame | None, group: str, checkpoint: str) -> dict[str, dict[tuple, tuple]]:
    """metric -> setting -> (value, low, high, seeds, input level) of trace_var and snr pooled over seeds."""
    if frame is None or frame.empty:
        return {}
    rows = complete(frame, VARIANCE)
    rows = rows[(rows["status"] == "ok") & (rows["group"] == group) & (rows["checkpoint"] == checkpoint)]
    out: dict[str, dict[tuple, tuple]] = {"trace_var": {}, "snr": {}}
    for key, g in rows.groupby(list(SETTING), sort=False):
        level = float(g["level"].mean()) if g["level"].notna().any() else 0.95
        for metric in out:
            mean, low, high = pooled_mean_interval(g[metric], g[f"{metric}_low"], g[f"{metric}_high"])
            out[metric][tuple(key)] = (mean, low, high, g["seed"].nunique(), level)
    return out


def _step_ratios(frame: pd.DataFrame | None) -> dict[tuple, tuple]:
    """setting -> (step time over its run's yardstick's, low, high, rounds, level), timed interleaved: the
    only step-time figure two runs can compare (a load over the whole unit cancels in it; seconds do not)."""
    ratios = step_ratios(frame)
    return {
        (r.estimator, r.sampler, int(r.num_samples)): (r.step_ratio, r.step_ratio_low, r.step_ratio_high, int(r.timing_rounds), 0.95)
        for r in ratios.itertuples(index=False)
        if np.isfinite(r.step_ratio)
    }  # fmt: skip


def _finals(frame: pd.DataFrame | None) -> dict[str, dict[tuple, pd.Series]]:
    """metric -> setting -> the final value per completed seed."""
    if frame is None or frame.empty:
        return {}
    rows = complete(frame, CONVERGENCE)
    rows = rows[
        rows["metric"].isin(["final_test_elbo", "test_log_likelihood"]) & ~rows["diverged"].astype(bool)
    ]
    out: dict[str, dict[tuple, pd.Series]] = {}
    for key, g in rows.groupby(["metric", *SETTING], sort=False):
        out.setdefault(key[0], {})[tuple(key[1:])] = g.groupby("seed")["value"].last().astype(float)
    return out


def _compared(
    figure: str, key_b: tuple, key_a: tuple, a, b, changed: list[str], level: float
) -> dict[str, Any]:
    """One row: B's figure of ``key_b`` set against A's of ``key_a`` (:func:`vaebench.analysis.contrast.contrast`)."""
    how, better = FIGURES[figure]
    if how == "ratio":
        own = (a[:3], b[:3])
        n_a, n_b = a[3], b[3]
        c = contrast(_at_level(b, level), _at_level(a, level), "ratio")
        method = "ratio, log-scale errors of both runs' intervals"
        if figure == "step_ratio":
            method = "ratio of each run's step-time ratio to its own yardstick (interleaved rounds)"
    else:
        own = tuple((s.mean(), *mean_interval(s.to_numpy(), level)) for s in (a, b))
        n_a, n_b = len(a), len(b)
        paired = set(a.index) == set(b.index) and len(a) >= 2
        c = contrast(b, a, "paired difference" if paired else "difference", level)
        method = (
            f"paired by seed ({c.n} seeds), Student-t"
            if paired
            else f"unpaired (seeds {_seeds(a)} vs {_seeds(b)}), Welch"
        )
    if changed:
        verdict, method = "not comparable", f"measured at other parameters: {', '.join(changed)}"
        c = none(c.kind)
    elif not (math.isfinite(c.low) and math.isfinite(c.high)):
        verdict = "no interval"
    elif c.separated:
        verdict = "better" if (c.low > c.null) == (better == "higher") else "worse"
    else:
        verdict = "no clear change"
    return {
        **dict(zip(SETTING, key_b, strict=True)),
        "figure": figure,
        "against": setting_label(key_a[0], key_a[1]) + (f" K={key_a[2]}" if key_a[2] != key_b[2] else ""),
        "contrast": "B / A" if how == "ratio" else "B - A",
        "better": better,
        **{f"a{s}": float(x) for s, x in zip(("", "_low", "_high"), own[0], strict=True)},
        **{f"b{s}": float(x) for s, x in zip(("", "_low", "_high"), own[1], strict=True)},
        "change": c.value,
        "change_low": c.low,
        "change_high": c.high,
        "n_a": int(n_a),
        "n_b": int(n_b),
        "method": method,
        "verdict": verdict,
    }


def _at_level(estimate: tuple, level: float) -> tuple[float, float, float]:
    """(value, low, high) with its interval's log errors rescaled from the estimate's own level to ``level``."""
    value, low, high, _, own = estimate
    if not all(math.isfinite(x) and x > 0 for x in (value, low, high)):
        return value, low, high
    scale = normal_quantile(level) / normal_quantile(own)
    return value, value * (low / value) ** scale, value * (high / value) ** scale


def _seeds(values: pd.Series) -> str:
    return ",".join(str(s) for s in sorted(values.index)) or "none"


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
    "throughput": "the step-time ratios",
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
        out.append(f"{key}: {va!r} in A, {vb!r} in B (changes the step-time ratios)")
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
