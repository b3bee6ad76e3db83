"""The text of report.md: status, bottom line, setup, reading, comparison table and legend, sections per plot,
notes, words.

:func:`render` only formats what it is given (the run's run.json, the resolved configuration, the summary
table, the measures' frames completed to :mod:`vaebench.measures.schema`, and the plots written); nothing
here computes a figure. The bottom line is :mod:`vaebench.report.bottom_line` (the verdicts of
:mod:`vaebench.analysis.verdicts`), the reading's sentences come from :func:`vaebench.report.reading.reading`,
the table and its legend from :mod:`vaebench.report.tables`, the words from :mod:`vaebench.report.glossary`.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from vaebench.analysis import summaries
from vaebench.analysis.settings import KEYS
from vaebench.config import SuiteConfig
from vaebench.estimators import ESTIMATORS
from vaebench.measures import schema
from vaebench.measures.variance.measure import WARM_UP_BASELINE_STEPS, WARM_UP_CALLS
from vaebench.report import bottom_line, glossary, scaling, tables
from vaebench.report.claims import section as claims_section
from vaebench.report.formatting import fmt_number, markdown
from vaebench.report.reading import reading
from vaebench.report.settings import setting_columns


def render(
    run: dict,
    config: SuiteConfig,
    summary: pd.DataFrame,
    frames: dict[str, pd.DataFrame],
    figures: dict[str, str],
    *,
    checkpoint: str | None,
    level: float = 0.95,
    laws: pd.DataFrame | None = None,
    landing: pd.DataFrame | None = None,
    verdicts: list | None = None,
    claims: pd.DataFrame | None = None,
    scaling_plots: dict[str, str] | None = None,
) -> str:
    """The text of report.md (``laws``: :func:`vaebench.analysis.scaling.scaling_laws`, for its section, with
    ``scaling_plots`` by checkpoint; ``verdicts``: :func:`vaebench.analysis.verdicts.verdicts`, for the bottom
    line; ``claims``: :func:`vaebench.checks.claims.claims_table`, for the claims section; ``landing``: the
    STL check's rows)."""
    md = [f"# vaebench report: {config.name}", ""]
    md += _status(run)
    md += bottom_line.section(verdicts or [], run, frames.get("throughput"))
    md += claims_section(claims if claims is not None else pd.DataFrame())
    md += ["## Setup", "", _setup(run, config, checkpoint, frames["variance"]), ""]
    lines = reading(
        summary, frames, checkpoint=checkpoint, data=config.data.name, likelihood=resolved_likelihood(config)
    )
    if lines:
        md += ["## Reading", "", "Computed from the table below (95% intervals).", ""]
        md += [f"- {line}" for line in lines] + [""]
    measures = config.variance.enabled or config.train.enabled or config.throughput.enabled
    md += ["## Comparison", ""] if measures or not summary.empty else []
    if summary.empty and measures:
        md += ["No unit has finished yet.", ""]
    elif summary.empty:
        pass  # a run of the checks only (the scaling preset): its sections follow
    else:
        md += [tables.summary_markdown(summary), "", tables.legend_markdown(summary, level), ""]
        notes = _table_notes(summary)
        md += notes + ([""] if notes else [])
    if "variance" in figures:
        md += [
            "## Gradient variance and SNR against K",
            "",
            f"![variance and SNR against K]({figures['variance']})",
            "",
        ]
    md += scaling.section(laws if laws is not None else pd.DataFrame(), scaling_plots)
    md += scaling.landing_lines(landing if landing is not None else pd.DataFrame())
    variance = frames["variance"]
    if not variance.empty and variance["checkpoint"].nunique() > 1:
        pivot = summaries.variance_by_checkpoint(variance, checkpoints=config.variance.checkpoints)
        labels = [c for c in pivot.columns if c not in KEYS]
        steps = variance.groupby("checkpoint")["step"].first().to_dict()
        cols = setting_columns(pivot)
        cols += [(f"{c} (step {steps.get(c, '?')})", lambda r, c=c: fmt_number(r[c])) for c in labels]
        md += [
            "### Encoder gradient variance along the anchor run",
            "",
            f"Trace of the covariance at each checkpoint of the `{config.variance.anchor_estimator}` anchor "
            "run (the same parameters for every estimator):",
            "",
            markdown(pivot, cols),
            "",
        ]
    if "steps" in figures:
        md += ["## Learning curves", "", "Test ELBO (the plain ELBO for every estimator) over seeds: mean and 95% band; × marks a diverged run.", ""]  # fmt: skip
        md += [f"![test ELBO against steps]({figures['steps']})", "", f"![test ELBO against wall-clock]({figures['wallclock']})", ""]  # fmt: skip
    if "throughput" in figures:
        md += ["## Cost per training step", "", f"![step time]({figures['throughput']})", ""]
    md += _notes(run, frames)
    md += glossary.section()
    md += [
        "## Files",
        "",
        "`verdicts.json` (the bottom line, machine-readable), "
        "`summary.csv` (this table, with every interval bound), `budget.csv` (the settings at equal "
        "wall-clock, at equal steps and their steps to a target, paired by seed), `variance.csv`, `convergence.csv`, "
        "`throughput.csv` (tidy rows: every row carries `estimator`, `sampler`, `num_samples`, `seed`), `run.json` "
        "(configuration, versions, device, git revision). Rebuild this report with "
        "`python -m vaebench report <this folder>`.",
        "",
    ]
    return "\n".join(md)


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


def _setup(run: dict, config: SuiteConfig, checkpoint: str | None, variance: pd.DataFrame) -> str:
    c = config
    d, m, t, v, tp = c.data, c.model, c.train, c.variance, c.throughput
    data = (
        d.name
        + (f", binarize={d.binarize}" if d.binarize != "none" else "")
        + (", dequantized" if d.dequantize else "")
    )
    hidden = "-".join(str(h) for h in m.hidden) or "none (linear)"
    model = (
        f"VAE (Gaussian encoder) with hidden layers {hidden} ({m.activation}), z_dim={m.z_dim}, {_likelihood(c)}"
        if m.name == "gaussian-vae"
        else "the Gaussian toy of Rainforth et al. 2018 (q's variance fixed at 2/3, Z = D), measured at its built "
        "checkpoint (the optimum perturbed by N(0, 0.01²))"
        if m.name == "gaussian-toy"
        else f"`{m.name}` (a plugin's model, z_dim={m.z_dim})"
    )
    text = (
        f"Data: {data}. Model: {model}. "
        f"Estimators: {', '.join(f'`{e}`' for e in c.estimators)}; K in {{{', '.join(map(str, c.samples))}}}; "
        + (f"samplers {', '.join(c.samplers)}; " if tuple(c.samplers) != ("iid",) else "")
        + f"seeds {', '.join(map(str, c.seeds))}. Training: {t.steps} {t.optimizer} steps, batch {t.batch_size}, "
        f"lr {t.lr:g}{' decayed by a cosine to 0' if getattr(t, 'lr_schedule', 'constant') == 'cosine' else ''}"
        + (
            ", the seeds of each setting trained as one program"
            if getattr(t, "stack_seeds", False) and len(c.seeds) > 1
            else ""
        )
        + (", the step compiled (torch.compile)" if getattr(t, "compile", False) else "")
        + f"; test log-likelihood with k={t.ll_samples} importance samples on "
        f"{'the whole test set' if not t.ll_points else f'the first {t.ll_points} test points'}."
    )
    if not t.enabled and v.enabled:  # only the variance measure's anchor run trains
        text += (
            " No estimator was trained (train.enabled = false): the training settings are the anchor run's."
        )
    if not (t.enabled or v.enabled or tp.enabled):  # the scaling preset: the checks only
        text = _checks_setup(c)
    elif c.checks.laws or c.checks.quadrature:
        text += " " + _checks_setup(c)
    if v.enabled:
        text += (
            f" Gradient variance: {v.replicates} replicates per estimator, K and seed, on a minibatch of "
            f"{v.batch_size}, at checkpoints {', '.join(v.checkpoints)} of a `{v.anchor_estimator}` K=1 run "
            f"(the table reports {checkpoint or v.summary_checkpoint})."
        ) + _warm_up(variance)
    if tp.enabled:
        text += (
            f" Step time: {tp.repeats} timed steps per setting after {tp.warmup} warm-up steps, batch "
            f"{tp.batch_size}, the settings of each K timed interleaved in rounds (median per setting, ratios "
            "over rounds)."
        )
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
            f" This folder does not record how the stateful estimators ({listed}) were warmed up: runs before "
            "that was recorded warmed them up on the measured minibatch itself, which flatters their variance."
        )
    counts = variance.loc[variance["estimator"].isin(names), "warm_up_batches"].dropna()
    counts = sorted({int(c) for c in counts if c > 0})
    if not counts:
        return f" The stateful estimators ({listed}) were measured without a warm-up."
    batches = " or ".join(map(str, counts))
    return (
        f" Stateful estimators ({listed}) were warmed up at each checkpoint on {batches} minibatches other than "
        f"the measured one, never on it: statistics set from an independent draw, a learned baseline (NVIL's b(x)) "
        f"fitted for {WARM_UP_BASELINE_STEPS} Adam steps, then {WARM_UP_CALLS} training-mode calls for the running "
        "statistics, the model left unchanged."
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


def _table_notes(summary: pd.DataFrame) -> list[str]:
    notes = []
    summary = schema.complete(summary, schema.SUMMARY)
    if summary["variance_reference"].notna().any():
        refs = sorted(set(summary["variance_reference"].dropna().astype(str)))
        notes.append(f"Bias and cosine in variance.csv are measured against: {', '.join(refs)}.")
    return notes


def _notes(run: dict, frames: dict[str, pd.DataFrame]) -> list[str]:
    notes = list(run.get("notes", []))
    for kind, why in (("variance", "skip_reason"), ("throughput", "reason")):  # the measures that skip
        frame = frames[kind]
        if not frame.empty:
            skipped = frame[frame["status"] == "skipped"]
            # a sampler refused by an estimator: the run's notes say so once
            skipped = skipped[skipped["sampler"] == "iid"]
            for _, row in skipped.drop_duplicates(["estimator", "num_samples"]).iterrows():
                reason = row[why]
                notes.append(f"{kind}: skipped `{row['estimator']}` at K={int(row['num_samples'])}" + (f" ({reason})" if isinstance(reason, str) and reason else ""))  # fmt: skip
    for unit, error in run.get("failed", {}).items():
        notes.append(f"unit {unit} failed: {error}")
    notes = list(dict.fromkeys(notes))
    if not notes:
        return []
    return ["## Notes", "", *[f"- {n}" for n in notes], ""]
