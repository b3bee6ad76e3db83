"""The data dictionary: every column of a results folder's tables, with its meaning, unit and direction.

The schema (:mod:`vaebench.measures.schema`) declares which columns each table has and their roles; this module
says what each one *means*, once: its header in tables (the report's and :mod:`vaebench.report.paper`'s), its
unit, and which way is better. A column ``f_low`` / ``f_high`` is the lower / upper end of the interval of
figure ``f`` (the level is the run's, 95% unless configured) and is described by ``f``'s entry.

One name has one meaning in every table where it occurs (``estimator``, ``num_samples``); a column whose unit
depends on the row (``value``: the metric's or the figure's) says so. The README's "Data dictionary" is
:func:`markdown` pasted in (a test keeps the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass

LOWER, HIGHER = "lower", "higher"


@dataclass(frozen=True)
class Column:
    """What a column holds.

    Attributes:
        name: the column's name on disk.
        header: its header in a table (short, for a reader).
        unit: its unit ("" for a dimensionless number or a label).
        better: ``lower`` or ``higher`` where one direction is better, else "".
        meaning: one sentence.
    """

    name: str
    header: str
    unit: str
    better: str
    meaning: str

    @property
    def direction(self) -> str:
        """``lower is better``, ``higher is better`` or ""."""
        return f"{self.better} is better" if self.better else ""


# (name, header, unit, better, meaning); grouped by the table that introduced the column
# fmt: off
_ROWS: tuple[tuple[str, str, str, str, str], ...] = (
    # --- keys of a setting, and of a row
    ("problem", "problem", "", "", "the problem the row measured: a built-in problem's name (`python -m vaebench list`), else the data set's; an ordinary run's is the one of its data and model (`vaebench.suite.units.run_problem`)"),
    ("estimator", "estimator", "", "", "the gradient estimator's registered name (`python -m vaebench list`)"),
    ("sampler", "sampler", "", "", "how the K draws of ε are made: iid, antithetic or rqmc"),
    ("num_samples", "K", "samples", "", "K, the latent samples per datapoint the estimator draws"),
    ("seed", "seed", "", "", "the seed of the run (model initialisation, data order, draws)"),
    ("objective", "objective", "", "", "what the estimator's training maximises (elbo, iwae, renyi, ...)"),
    ("checkpoint", "checkpoint", "", "", "the anchor run's checkpoint the variance was measured at (init, middle, end, ...)"),
    ("step", "step", "steps", "", "optimizer steps taken"),
    ("run", "run", "", "", "the training run whose parameters were measured"),
    ("status", "status", "", "", "ok, or why the row holds no measurement (skipped, failed)"),
    ("skip_reason", "skipped because", "", "", "why a setting was not measured at this checkpoint"),
    ("reason", "reason", "", "", "why a timed row holds no measurement"),
    ("group", "parameters", "", "", "the parameter group whose gradient is measured: encoder or decoder"),
    # --- variance.csv
    ("warm_up_batches", "warm-up batches", "minibatches", "", "minibatches a stateful estimator (a baseline, a moving average) saw before being measured"),
    ("num_params", "parameters", "count", "", "coordinates of the measured gradient"),
    ("batch_size", "batch", "datapoints", "", "datapoints per minibatch"),
    ("replicates", "replicates", "count", "", "independent gradient estimates R drawn on one minibatch"),
    ("replicates_used", "replicates used", "count", "", "replicates with a finite gradient, from which the figures are formed"),
    ("nan_fraction", "non-finite fraction", "", LOWER, "fraction of replicates with a NaN or infinite gradient"),
    ("trace_var", "encoder grad variance", "squared gradient units", LOWER, "trace of the covariance of one gradient estimate, Σ_p Var(g_p)"),
    ("mean_sq_norm", "E‖g‖²", "squared gradient units", "", "mean squared norm of a gradient estimate, ‖E g‖² + trace_var"),
    ("snr", "encoder SNR", "", HIGHER, "mean over coordinates of |E g_p| / sd g_p (Rainforth et al. 2018)"),
    ("snr_norm", "norm SNR", "", HIGHER, "‖E g‖ over √trace_var, noise-corrected"),
    ("snr_floor", "SNR noise floor", "", "", "√(2/(πR)): the SNR a gradient of mean zero shows with R replicates"),
    ("snr_coordinates", "SNR coordinates", "count", "", "coordinates that varied, over which the SNR is averaged"),
    ("baseline", "baseline gradient", "", "", "the baseline gradient that bias and cosine are measured against"),
    ("bias_norm", "bias ‖E g - g*‖", "gradient units", LOWER, "norm of the mean gradient's distance to the baseline, noise-corrected"),
    ("cosine", "cosine to baseline", "", HIGHER, "mean cosine between a gradient estimate and the baseline gradient"),
    ("mean_error_norm", "‖ḡ - g*‖", "gradient units", LOWER, "raw distance of the replicates' mean to the baseline"),
    ("bias_floor", "bias floor", "gradient units", "", "√(trace_var/R + V*): the mean error an unbiased estimator shows"),
    ("seconds_per_estimate", "s / estimate", "s", LOWER, "seconds per gradient estimate, timed inside the variance unit"),
    ("work_normalized_var", "variance x time", "squared gradient units x s", LOWER, "encoder variance x seconds per gradient estimate (does not reproduce across machines)"),
    ("encoder_scale", "encoder scale", "", "", "scale of the encoder's output at the checkpoint"),
    ("method", "method", "", "", "how the replicates were computed"),
    ("level", "level", "", "", "confidence level of the row's intervals"),
    ("snr_rms", "RMS SNR", "", HIGHER, "root-mean-square per-coordinate SNR, noise-corrected (no floor)"),
    ("dsnr", "directional SNR", "", HIGHER, "Rainforth et al.'s directional SNR: the gradient's length along E g over the rest"),
    ("kl_to_posterior", "KL(q ‖ p(z|x))", "nats", LOWER, "exact KL of the encoder to the true posterior, minibatch mean (closed-form models only)"),
    ("khat_max", "k̂ max", "", LOWER, "largest Pareto k̂ of the importance weights over the minibatch (above 0.7: unreliable)"),
    ("khat_median", "k̂ median", "", LOWER, "median Pareto k̂ of the importance weights"),
    ("khat_over_half", "k̂ > 0.5", "", LOWER, "fraction of datapoints whose k̂ exceeds 0.5"),
    ("khat_over_quarter", "k̂ > 0.25", "", LOWER, "fraction of datapoints whose k̂ exceeds 0.25"),
    ("ess_fraction_min", "ESS/K min", "", HIGHER, "smallest effective sample size of the weights over K"),
    ("ess_fraction_median", "ESS/K median", "", HIGHER, "median effective sample size of the weights over K"),
    ("chi2_max", "χ² max", "", LOWER, "largest χ² divergence estimate of the weights"),
    ("chi2_median", "χ² median", "", LOWER, "median χ² divergence estimate of the weights"),
    ("weight_samples", "weight samples", "count", "", "importance samples per datapoint behind the weight diagnostics"),
    # --- convergence.csv
    ("epoch", "epoch", "epochs", "", "passes over the training set"),
    ("wall_time_s", "training time (s)", "s", "", "seconds in training steps so far (evaluation and compilation excluded)"),
    ("grad_evals", "gradient evaluations", "count", "", "gradient estimates taken so far"),
    ("latent_samples", "latent samples", "count", "", "latent draws made so far"),
    ("metric", "metric", "", "", "what the row's value is: test_elbo, train_loss, test_log_likelihood, ..."),
    ("value", "value", "per metric or figure", "", "the number the row's metric (or figure) takes; its unit is that metric's"),
    ("diverged", "diverged", "", LOWER, "the run was stopped on a non-finite or exploding loss (summary: runs that did)"),
    ("compile_s", "compile (s)", "s", LOWER, "seconds of steps that compiled (torch.compile), kept out of the training time"),
    ("lr", "step size", "", "", "the run's learning rate (with a step-size grid: the rate chosen on the validation split, in summary.csv)"),
    ("trained_as", "trained as", "", "", "the setting whose runs these are, where the estimator declares the same gradient at this K"),
    # --- throughput.csv
    ("device", "device", "", "", "the device the step ran on"),
    ("device_type", "device type", "", "", "cpu or cuda"),
    ("threads", "threads", "count", "", "torch CPU threads"),
    ("variant", "variant", "", "", "how the step ran: eager, compiled, mixed precision"),
    ("compiled", "compiled", "", "", "whether the step was torch.compile'd"),
    ("amp", "mixed precision", "", "", "whether the step ran under automatic mixed precision"),
    ("optimizer", "optimizer", "", "", "the optimizer of the timed step"),
    ("repeats", "repeats", "count", "", "timed steps"),
    ("warmup", "warm-up", "count", "", "untimed steps first"),
    ("step_s_median", "step (s)", "s", LOWER, "median time of one training step: estimator, backward, optimizer"),
    ("step_s_p25", "step p25 (s)", "s", LOWER, "25th percentile of the step time"),
    ("step_s_p75", "step p75 (s)", "s", LOWER, "75th percentile of the step time"),
    ("step_s_iqr", "step IQR (s)", "s", LOWER, "interquartile range of the step time"),
    ("step_s_min", "step min (s)", "s", LOWER, "fastest timed step"),
    ("step_s", "step (s)", "s", LOWER, "the step time; step_s_low / step_s_high bound its median"),
    ("datapoints_per_s", "datapoints / s", "1/s", HIGHER, "training datapoints processed per second"),
    ("latent_samples_per_s", "samples / s", "1/s", HIGHER, "latent samples drawn per second of training"),
    ("peak_memory_bytes", "peak memory", "bytes", LOWER, "peak memory of the step above the baseline"),
    ("memory_baseline_bytes", "memory baseline", "bytes", "", "memory in use before the step"),
    ("memory_kind", "memory kind", "", "", "what the memory figure measures (device allocator, process RSS)"),
    ("flops_per_step", "FLOP / step", "FLOP", "", "floating-point operations of one step (counted)"),
    ("achieved_flops", "FLOP/s", "FLOP/s", HIGHER, "flops_per_step over the median step time"),
    ("matmul_ceiling_flops", "matmul ceiling", "FLOP/s", "", "the measured matrix-multiply rate of this device"),
    ("ceiling_fraction", "of ceiling", "", HIGHER, "achieved FLOP/s over the matrix-multiply ceiling"),
    ("timing_group", "timing group", "", "", "rows of one group were timed interleaved, round-robin"),
    ("rounds", "rounds", "count", "", "rounds of interleaved timing"),
    ("round_steps", "steps / round", "count", "", "steps per round"),
    ("round_s", "round medians (s)", "s", "", "the median step time of each round, space-separated"),
    ("load_before", "load before", "", LOWER, "the machine's 1-minute load average before the timing"),
    ("load_after", "load after", "", LOWER, "the machine's 1-minute load average after the timing"),
    # --- summary.csv
    ("biased", "bias", "", "", "the estimator's declared bias at this K (empty: unbiased)"),
    ("final_test_elbo", "test ELBO", "nats", HIGHER, "plain ELBO of the test set at the end of training, mean over seeds"),
    ("test_log_likelihood", "test log p(x)", "nats", HIGHER, "importance-sampled log-likelihood of the test set at the end of training, mean over seeds"),
    ("test_elbo_rise", "ELBO rise", "nats", "", "change of the test ELBO over a quarter of training while the step size was at least half its peak, steps rise_from_step to rise_to_step (within ±1 nat: levelled off)"),
    ("step_ms", "step (ms)", "ms", LOWER, "median time of one training step on this machine"),
    ("converged", "levelled off", "", "", "whether the test ELBO levelled off before the step size decayed (see the README)"),
    ("snr_at_floor", "SNR at floor", "", "", "the SNR's interval reaches the noise floor: no signal measured, not ranked"),
    ("variance_baseline", "baseline gradient", "", "", "the baseline gradient of the variance figures"),
    ("variance_checkpoint", "variance checkpoint", "", "", "the checkpoint the summary's variance figures come from"),
    ("variance_group", "variance parameters", "", "", "the parameter group of the summary's variance figures"),
    ("runs", "runs", "count", "", "training runs (seeds) of the setting"),
    ("train_time_s", "training time (s)", "s", LOWER, "seconds in training steps, mean over seeds"),
    ("exact_log_likelihood", "exact log p(x)", "nats", HIGHER, "the test log-likelihood in closed form (synthetic data)"),
    ("ll_gap", "log p(x) gap", "nats", LOWER, "exact minus estimated test log-likelihood"),
    ("model_log_likelihood", "true model log p(x)", "nats", HIGHER, "the data-generating model's test log-likelihood"),
    ("bound_gap", "bound gap", "nats", LOWER, "test log-likelihood minus test ELBO"),
    ("rise_from_step", "rise from step", "steps", "", "first step of the window of test_elbo_rise"),
    ("rise_to_step", "rise to step", "steps", "", "last step of the window of test_elbo_rise"),
    ("lr_grid", "step sizes tried", "", "", "the grid of learning rates the setting was trained at (train.lr_grid)"),
    ("lr_edge", "at the grid's edge", "", "", "low or high when the chosen step size is an end of the grid (widen it); empty otherwise"),
    ("valid_elbo", "validation ELBO", "nats", HIGHER, "ELBO of the validation split at the end of training, mean over seeds: what selects the step size"),
    ("step_ratio", "step / yardstick", "", LOWER, "step time over that of the K's yardstick setting, timed interleaved"),
    ("compute_ratio", "variance x time / yardstick", "", LOWER, "encoder variance x step time over the yardstick's: lower wins at equal compute"),
    ("timing_yardstick", "yardstick", "", "", "the setting the K's timing ratios are taken against"),
    ("timing_rounds", "timing rounds", "count", "", "rounds of interleaved timing behind the ratios"),
    # --- scaling.csv, quadrature.csv, claims.csv
    ("figure", "figure", "", "", "which figure the row is about (a law's figure, a budget's figure, a claim's figure)"),
    ("slope", "slope in log K", "", "", "fitted exponent of a figure's power law in K"),
    ("theory", "theory", "per figure", "", "what the theory predicts for the measured figure"),
    ("agrees", "agrees", "", "", "whether the measurement agrees with the theory within its interval and tolerance"),
    ("k_min", "K from", "samples", "", "smallest K of the fit"),
    ("k_max", "K to", "samples", "", "largest K of the fit"),
    ("points", "points", "count", "", "K values in the fit"),
    ("intercept", "intercept", "", "", "the fit's intercept on the log scale"),
    ("correction", "correction", "", "", "the finite-K correction term of the fitted law"),
    ("law", "law", "", "", "the law fitted"),
    ("tolerance", "tolerance", "per figure", "", "how far from the theory still counts as agreeing"),
    ("regime", "regime", "", "", "the weight condition under which the law is expected to hold"),
    ("khat", "k̂", "", LOWER, "Pareto k̂ of the weights where the law was measured"),
    ("verdict", "verdict", "", "", "agrees, fails, or why it could not be judged"),
    ("interval_trusted", "interval trusted", "", "", "whether the interval can be trusted (weights well behaved)"),
    ("f", "f", "", "", "the test function of the 1-D quadrature check"),
    ("k", "k", "", "", "the moment or parameter index of the 1-D check"),
    ("registered", "registered estimator", "", "", "the registered estimator a form of the 1-D check stands for"),
    ("parameter", "parameter", "", "", "the parameter (μ or σ) whose gradient is checked"),
    ("quadrature_var", "exact variance", "", "", "the estimator's variance by quadrature"),
    ("mc_var", "Monte Carlo variance", "", "", "the estimator's variance by Monte Carlo"),
    ("draws", "draws", "count", "", "Monte Carlo draws"),
    ("key", "claim key", "", "", "the claim's short name in vaebench/analysis/claims.py's table"),
    ("claim", "claim", "", "", "a published claim"),
    ("source", "source", "", "", "where it was published"),
    ("where", "where", "", "", "the setting in which it is checked"),
    ("measured", "measured", "per figure", "", "the figure measured for the claim"),
    ("detail", "detail", "", "", "what the verdict rests on"),
    # --- budget.csv
    ("budget", "budget", "", "", "equal compute (in yardstick steps), equal steps, or steps to a target"),
    ("budget_value", "at", "yardstick steps or steps", "", "the budget: compute in yardstick steps, or steps (NaN for a target)"),
    ("seeds", "seeds", "count", "", "seeds behind the row's mean"),
    ("not_reached", "not reached", "count", LOWER, "seeds whose curve never reached the target"),
    ("reference_estimator", "against", "", "", "the best setting's estimator, the row's contrast is taken against"),
    ("reference_sampler", "against (sampler)", "", "", "the best setting's sampler"),
    ("difference", "difference", "per figure", "", "setting minus the best setting, paired by seed"),
    ("paired_seeds", "paired seeds", "count", "", "seeds both settings ran"),
    ("separated", "separated", "", "", "the difference's interval excludes 0"),
)
# fmt: on

COLUMNS: dict[str, Column] = {row[0]: Column(*row) for row in _ROWS}
"""Every column of a results folder's tables, by name."""

_BOUNDS = {"_low": "lower end", "_high": "upper end"}


def describe(column: str) -> Column:
    """The entry of ``column``; an interval bound ``f_low`` / ``f_high`` is described from ``f``'s.

    Raises:
        KeyError: a column no table of vaebench has (naming it).
    """
    if column in COLUMNS:
        return COLUMNS[column]
    for suffix, end in _BOUNDS.items():
        base = column.removesuffix(suffix)
        if column.endswith(suffix) and base in COLUMNS:
            figure = COLUMNS[base]
            return Column(
                column, f"{figure.header} ({end})", figure.unit, "", f"{end} of the interval of {base}"
            )
    raise KeyError(
        f"{column!r} is not a column of vaebench's tables (see vaebench.measures.dictionary.COLUMNS)"
    )


def header(column: str) -> str:
    """The header of ``column`` in a table meant for a reader (report.md, a paper's table)."""
    return describe(column).header


def markdown() -> str:
    """The dictionary as a markdown table (the README's "Data dictionary")."""
    lines = ["| column | header | unit | better | meaning |", "|---|---|---|---|---|"]
    for c in COLUMNS.values():
        lines.append(f"| `{c.name}` | {c.header} | {c.unit or '–'} | {c.better or '–'} | {c.meaning} |")
    return "\n".join(lines)


__all__ = ["COLUMNS", "HIGHER", "LOWER", "Column", "describe", "header", "markdown"]
