"""The text of report.md: one screen first (the takeaway, the bottom line, the caveats), then the measured
claims, the comparison table, the setup, the plots, the plan's notes and the folder's files.

:func:`render` only arranges what it is given: the verdicts as ``verdicts.json`` holds them
(:func:`vaebench.analysis.verdicts.records`), the comparison table (``summary.csv``), the claims
(``claims.csv``), the scaling fits (``scaling.csv``), the run's run.json and resolved configuration, and the
plots written. Nothing here computes a figure or a verdict; every number it shows is in one of the folder's
files, which the last section names. The words (separated, paired by seed, levelled off, yardstick, the table's
columns and marks) are defined once, in the README's "Reading the report".
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from vaebench.config import SuiteConfig
from vaebench.estimators import ESTIMATORS
from vaebench.report import bottom_line, tables
from vaebench.report.claims import section as claims_section
from vaebench.report.scaling import verdict_of

FILES = {
    "verdicts.json": "every verdict",
    "summary.csv": "the whole comparison table",
    "budget.csv": "equal compute, equal steps, steps to a target",
    "claims.csv": "every published claim",
    "scaling.csv": "every law in K",
    "variance_by_checkpoint.csv": "variance along the anchor run",
    "stl_landing.csv": "STL at the exact posterior",
    "variance.csv": None,
    "convergence.csv": None,
    "throughput.csv": None,
    "run.json": "configuration, machine, notes",
}
"""The folder's files the report names, in this order, with a word on each (results/README.md has their
columns)."""


def render(
    run: dict,
    config: SuiteConfig,
    summary: pd.DataFrame,
    frames: dict[str, pd.DataFrame],
    figures: dict[str, str],
    *,
    checkpoint: str | None,
    records: list[dict] | None = None,
    claims: pd.DataFrame | None = None,
    laws: pd.DataFrame | None = None,
    scaling_plots: dict[str, str] | None = None,
    written: list[str] | None = None,
    tuning: list[str] | None = None,
) -> str:
    """The text of report.md.

    Args:
        run: run.json (with the folder check's counts).
        config: the run's resolved configuration.
        summary: the comparison table (``summary.csv``).
        frames: the measures' tidy frames (``variance`` for the setup's warm-up, ``throughput`` for the
            timing caveat).
        figures: {figure key: file name} of the plots written (:data:`vaebench.report.writer.FIGURES`).
        checkpoint: the variance checkpoint the table reports.
        records: the verdicts (``verdicts.json``'s ``verdicts``).
        claims: ``claims.csv``.
        laws: ``scaling.csv`` (its fits), with ``scaling_plots`` by checkpoint.
        written: the files of the folder to name at the end (default: every one of `FILES`).
        tuning: with a step-size grid, the convergence verdicts that tuning changed
            (:func:`vaebench.analysis.verdicts.changes`); None without a grid.
    """
    records = records or []
    claims = claims if claims is not None else pd.DataFrame()
    md = [f"# vaebench report: {config.name}", "", bottom_line.takeaway(records, claims), ""]
    md += _status(run)
    md += bottom_line.table(records)
    if tuning is not None:
        md += [_tuning(config, summary, tuning), ""]
    md += bottom_line.caveats(summary, claims, run, frames.get("throughput"))
    md += claims_section(claims)
    measures = config.variance.enabled or config.train.enabled or config.throughput.enabled
    if measures or not summary.empty:
        md += ["## Comparison", ""]
        md += [tables.summary_markdown(summary) if not summary.empty else "No unit has finished yet.", ""]
    md += ["## Setup", "", _setup(config, checkpoint, frames["variance"]), ""]
    md += _laws(laws if laws is not None else pd.DataFrame(), scaling_plots or {})
    md += _plots(figures)
    md += _notes(run)
    names = [n for n in FILES if written is None or n in written]
    listed = ", ".join(f"`{n}`" + (f" ({FILES[n]})" if FILES[n] else "") for n in names)
    md += ["## Files", "", f"{listed}: every number above is in one of them (results/README.md says which "
           "holds what). Rebuild with `python -m vaebench report <this folder>`.", ""]  # fmt: skip
    return "\n".join(md)


def _laws(laws: pd.DataFrame, plots_by: dict[str, str]) -> list[str]:
    """How many fitted laws agree, those that do not by name, and the plots (every fit: ``scaling.csv``)."""
    if laws.empty:
        return []
    words = laws.apply(verdict_of, axis=1).str.partition(":")[0]
    counts = words.value_counts()
    told = ", ".join(f"{word} {n}" for word, n in counts.items())
    odd = laws[words != "agrees"]
    named = "; ".join(
        f"`{r['estimator']}` {r['group']} {r['figure']} at {r['checkpoint']}: {w}"
        for (_, r), w in zip(odd.iterrows(), words[words != "agrees"], strict=True)
    )
    md = [
        "## Scaling laws in K",
        "",
        f"{len(laws)} laws fitted (verdicts: {told})" + (f" ({named})" if named else "") + ".",
    ]
    md.append("")
    for label, name in plots_by.items():
        md += [f"![scaling laws at {label or 'the checkpoint'}]({name})", ""]
    return md


def _plots(figures: dict[str, str]) -> list[str]:
    shown = {
        "variance": "variance and SNR against K",
        "steps": "test ELBO against steps",
        "compute": "test ELBO against compute (yardstick steps)",
        "wallclock": "test ELBO against wall-clock (this machine, under its load)",
        "throughput": "step time",
    }
    lines = [f"![{alt}]({figures[key]})" for key, alt in shown.items() if key in figures]
    return ["## Plots", "", *[x for line in lines for x in (line, "")]] if lines else []


def _status(run: dict) -> list[str]:
    status = run.get("status", "unknown")
    units = run.get("units", {})
    seconds = _wall_clock(run)
    env = run.get("environment", {})
    git = run.get("git") or {}
    rev = (
        f"{git.get('commit', '')[:10]}{' (with uncommitted edits)' if git.get('dirty') else ''}"
        if git
        else "unknown"
    )
    if status == "killed":
        status = KILLED
    torch_version = run.get("versions", {}).get("torch", "?")
    failed = units.get("failed") or len(run.get("failed", {}))
    head = (
        f"Run {run.get('started', '?')}, {status}: {units.get('finished', '?')} of {units.get('total', '?')} "
        f"units finished{f', {failed} failed' if failed else ''}; wall-clock {seconds:.0f} s. "
        f"Device {env.get('device_name', env.get('device', '?'))} "
        f"({env.get('threads', '?')} threads), torch {torch_version}, vaebench revision {rev}."
        if seconds is not None
        else f"Run {run.get('started', '?')}, {status}."
    )
    lines = [head, ""]
    left_out = units.get("left_out") or {}
    if status in ("interrupted", "running", "aborted", KILLED):
        lines += [
            "**Partial report**: the run stopped before finishing every unit; continue it with "
            "`python -m vaebench run --resume --out <this folder>`.",
            "",
        ]
    elif status == "failed":
        lines += ["**Some units failed** (listed under Notes); `--resume` retries them.", ""]
    elif left_out:
        lines += ["**Partial report**: some units are not in the tables; `--resume` runs them.", ""]
    if left_out:
        shown = [f"`{key}` ({why})" for key, why in list(left_out.items())[:8]]
        more = f", and {len(left_out) - 8} more" if len(left_out) > 8 else ""
        lines += [f"Not in these tables ({len(left_out)} units): " + "; ".join(shown) + more + ".", ""]
    return lines


KILLED = "stopped (killed: run.json still says running)"
"""How the report words the status ``killed`` (a run whose process died without a word: SIGKILL, a crash),
which the rebuild of a folder gives it."""


def _wall_clock(run: dict) -> float | None:
    """Seconds of all invocations of the run (a resumed run counts each invocation's time)."""
    total, counted = 0.0, False
    for inv in run.get("invocations", []):
        if inv.get("started") and inv.get("ended"):
            total += (
                datetime.fromisoformat(inv["ended"]) - datetime.fromisoformat(inv["started"])
            ).total_seconds()
            counted = True
    return total if counted else None


def _setup(config: SuiteConfig, checkpoint: str | None, variance: pd.DataFrame) -> str:
    """The run in one paragraph: data, model, training, the variance and the timing measures (run.json has
    the whole configuration)."""
    c = config
    d, m, t, v, tp = c.data, c.model, c.train, c.variance, c.throughput
    if not (t.enabled or v.enabled or tp.enabled):  # the scaling preset: the checks only
        return _checks_setup(c)
    data = (
        d.name
        + (f", binarize={d.binarize}" if d.binarize != "none" else "")
        + (", dequantized" if d.dequantize else "")
    )
    hidden = "-".join(str(h) for h in m.hidden) or "none (linear)"
    model = (
        f"VAE (Gaussian encoder) with hidden layers {hidden} ({m.activation}), z_dim={m.z_dim}, {_likelihood(c)}"
        if m.name == "gaussian-vae"
        else "the Gaussian toy of Rainforth et al. 2018 at its built checkpoint"
        if m.name == "gaussian-toy"
        else f"`{m.name}` (a plugin's model, z_dim={m.z_dim})"
    )
    text = (
        f"Data: {data}. Model: {model}. K in {{{', '.join(map(str, c.samples))}}}"
        + (f", samplers {', '.join(c.samplers)}" if tuple(c.samplers) != ("iid",) else "")
        + f", seeds {', '.join(map(str, c.seeds))}."
    )
    if t.enabled:
        text += (
            f" Training: {t.steps} {t.optimizer} steps, batch {t.batch_size}, lr {t.lr:g}"
            + (" with cosine decay" if getattr(t, "lr_schedule", "constant") == "cosine" else "")
            + (", seeds as one program" if getattr(t, "stack_seeds", False) and len(c.seeds) > 1 else "")
            + (", compiled" if getattr(t, "compile", False) else "")
            + f"; test log p(x) with k={t.ll_samples} on "
            + ("the whole test set." if not t.ll_points else f"the first {t.ll_points} test points.")
        )
    elif v.enabled:  # only the variance measure's anchor run trains
        text += " No estimator was trained (train.enabled = false)."
    if v.enabled:
        text += (
            f" Variance: {v.replicates} replicates on a minibatch of {v.batch_size} at the "
            f"{checkpoint or v.summary_checkpoint} checkpoint of a `{v.anchor_estimator}` K=1 run"
            + _warm_up(variance)
            + "."
        )
    if tp.enabled:
        text += f" Step time: {tp.repeats} timed steps per setting after {tp.warmup} warm-up, batch {tp.batch_size}."
    if c.checks.laws or c.checks.quadrature:
        text += " " + _checks_setup(c)
    return text


def _checks_setup(c: SuiteConfig) -> str:
    """What the checks measured (``[checks]``)."""
    parts = []
    if c.checks.laws:
        parts.append(
            f"the scaling laws of {', '.join(f'`{e}`' for e in c.estimators)} at K in "
            f"{{{', '.join(map(str, c.samples))}}} on the built checkpoints {', '.join(c.checks.laws)} (8 datapoints "
            "each, the replicates of `vaebench.checks.laws`, the weights' k-hat from 4,000 draws per datapoint)"
        )
    if c.checks.landing:
        parts.append("STL's encoder variance along a line to the exact posterior of a linear-Gaussian model")
    if c.checks.quadrature:
        parts.append("the 1-D Gaussian of Mohamed et al. 2020 against exact variances by quadrature")
    return "Checks: " + "; ".join(parts) + "." if parts else ""


def _warm_up(variance: pd.DataFrame) -> str:
    """How the stateful estimators of the variance rows were prepared, from the rows themselves."""
    if variance.empty:
        return ""
    names = [n for n in dict.fromkeys(variance["estimator"]) if n in ESTIMATORS and ESTIMATORS[n].stateful]
    if not names:
        return ""
    listed = ", ".join(f"`{n}`" for n in names)
    if variance["warm_up_batches"].isna().all():
        return (
            f"; how the stateful estimators ({listed}) were warmed up is not recorded: runs before that was "
            "recorded warmed them up on the measured minibatch itself, which flatters their variance"
        )
    counts = variance.loc[variance["estimator"].isin(names), "warm_up_batches"].dropna()
    counts = sorted({int(c) for c in counts if c > 0})
    if not counts:
        return f"; the stateful estimators ({listed}) without a warm-up"
    return (
        f"; {listed} warmed up on {' or '.join(map(str, counts))} other minibatches, never the measured one"
    )


def resolved_likelihood(c: SuiteConfig) -> str:
    """The likelihood the run's model used: ``auto`` resolved as vaebench.data does (Bernoulli for binarized
    data, else Gaussian)."""
    if c.model.likelihood == "auto":
        return "bernoulli" if c.data.binarize != "none" else "gaussian"
    return c.model.likelihood


def _likelihood(c: SuiteConfig) -> str:
    likelihood = resolved_likelihood(c)
    if likelihood == "bernoulli":
        return "Bernoulli likelihood"
    scale = "one learned σ_x per pixel" if c.model.decoder_scale == "learned" else "σ_x(z) from the decoder"
    return f"Gaussian likelihood ({scale}, initialised at {c.model.init_decoder_scale:g})"


def _notes(run: dict) -> list[str]:
    """The plan's notes (a setting skipped, a setting changed, seeds trained apart) and the failed units."""
    notes = list(run.get("notes", []))
    notes += [f"unit {unit} failed: {error}" for unit, error in run.get("failed", {}).items()]
    notes = list(dict.fromkeys(notes))
    return ["## Notes", "", *[f"- {n}" for n in notes], ""] if notes else []


def _tuning(config: SuiteConfig, summary: pd.DataFrame, changed: list[str]) -> str:
    """One sentence on what tuning the step size per setting changed, and one on choices at a grid's end."""
    rates = ", ".join(f"{lr:g}" for lr in config.train.lr_grid)
    said = (
        f"tuning changed {len(changed)} convergence verdict(s) from the shared {config.train.lr:g}: "
        + "; ".join(changed)
        if changed
        else f"no convergence verdict changed from those at the shared {config.train.lr:g}"
    )
    text = f"Every setting is reported at its own step size, chosen on the validation split from {{{rates}}}: {said}."
    edges = int((summary["lr_edge"].fillna("") != "").sum()) if "lr_edge" in summary else 0
    if edges:
        text += (
            f" {edges} setting(s) chose an end of the grid, which should be widened there "
            "(summary.csv's lr_edge)."
        )
    return text
