"""Tests for vaebench.report: pivots to the comparison table, plots, and a reading that matches the numbers.

The frames here are built by hand with the columns the measures produce, so the numbers (and therefore
every sentence of the reading) are known in advance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

from vaebench import files
from vaebench.analysis import summaries, verdicts
from vaebench.report import formatting, plots, tables
from vaebench.report.reading import reading
from vaebench.report.writer import FIGURES, write_report
from vaebench.stats import pooled_mean_interval

NAMES = ["reparam", "reinforce", "iwae"]
KS = [1, 10]
SEEDS = [0, 1]
# Encoder trace variance at K=1 (divided by K at K=10) and final test log-likelihood per estimator.
VARIANCE = {"reparam": 1.0, "reinforce": 100.0, "iwae": 2.0}
LOGLIK = {"reparam": -30.0, "reinforce": -40.0, "iwae": -25.0}
STEP_S = {"reparam": 0.001, "reinforce": 0.0012, "iwae": 0.0015}
OBJECTIVE = {"reparam": "elbo", "reinforce": "elbo", "iwae": "iwae"}


def variance_frame() -> pd.DataFrame:
    rows = []
    for name in NAMES:
        for k in KS:
            for seed in SEEDS:
                for checkpoint, step in (("init", 0), ("end", 20)):
                    for group, scale in (("encoder", 1.0), ("decoder", 0.5), ("all", 1.5)):
                        v = (
                            VARIANCE[name]
                            / k
                            * scale
                            * (1 + 0.01 * seed)
                            * (2.0 if checkpoint == "init" else 1.0)
                        )
                        snr = 1.0 / np.sqrt(v)
                        rows.append(
                            dict(estimator=name, num_samples=k, seed=seed, checkpoint=checkpoint, step=step,
                                 group=group, trace_var=v, trace_var_low=0.9 * v, trace_var_high=1.1 * v,
                                 snr=snr, snr_low=0.9 * snr, snr_high=1.1 * snr, snr_norm=snr,
                                 work_normalized_var=v * STEP_S[name], work_normalized_var_low=0.9 * v * STEP_S[name],
                                 work_normalized_var_high=1.1 * v * STEP_S[name], objective=OBJECTIVE[name],
                                 reference="reparam-1000", status="ok")
                        )  # fmt: skip
    return pd.DataFrame(rows)


def convergence_frame() -> pd.DataFrame:
    rows = []
    for name in NAMES:
        for k in KS:
            for seed in SEEDS:
                diverged = name == "reinforce" and k == 1 and seed == 1
                last = 10 if diverged else 20
                for step in range(0, last + 1, 10):
                    elbo = LOGLIK[name] - 5 - 50 / (1 + step) + 0.1 * seed
                    for metric, value in (("test_elbo", elbo), ("train_objective", elbo)):
                        if metric == "train_objective" and step == 0:
                            continue
                        obj = "elbo" if metric == "test_elbo" else OBJECTIVE[name]
                        rows.append((name, k, seed, step, step / 10, 0.01 * step, step, 100 * k * step, metric, value, obj, diverged))  # fmt: skip
                final = LOGLIK[name] + 0.1 * seed + (0.5 if k == 10 else 0.0)
                for metric, value in (("final_test_elbo", final - 5), ("test_log_likelihood", final)):
                    rows.append((name, k, seed, last, last / 10, 0.01 * last, last, 100 * k * last, metric, value, OBJECTIVE[name], diverged))  # fmt: skip
    cols = ["estimator", "num_samples", "seed", "step", "epoch", "wall_time_s", "grad_evals", "latent_samples",
            "metric", "value", "objective", "diverged"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def throughput_frame() -> pd.DataFrame:
    rows = [
        dict(estimator="reference", num_samples=1, seed=0, batch_size=100, status="ok", variant="eager",
             step_s_median=0.0009, step_s_low=0.00085, step_s_high=0.00095)
    ]  # fmt: skip
    for name in NAMES:
        for k in KS:
            t = STEP_S[name] * (1 + 0.1 * (k - 1))
            rows.append(dict(estimator=name, num_samples=k, seed=0, batch_size=100, status="ok", variant="eager",
                             step_s_median=t, step_s_low=0.95 * t, step_s_high=1.05 * t))  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {
        "variance": variance_frame(),
        "convergence": convergence_frame(),
        "throughput": throughput_frame(),
    }


@pytest.fixture(scope="module")
def summary(frames) -> pd.DataFrame:
    throughput = frames["throughput"][frames["throughput"]["estimator"] != "reference"]
    return summaries.summary_table(frames["variance"], frames["convergence"], throughput, checkpoint="end")


def test_summary_has_one_row_per_estimator_and_k(summary: pd.DataFrame) -> None:
    assert list(zip(summary["estimator"], summary["num_samples"], strict=True)) == [
        (n, k) for n in NAMES for k in KS
    ]
    for metric in (
        "trace_var",
        "snr",
        "final_test_elbo",
        "test_log_likelihood",
        "step_ms",
        "work_normalized_var",
    ):
        for column in (metric, f"{metric}_low", f"{metric}_high"):
            assert column in summary, column
            # one interval is missing: reinforce at K=1 has a single finished seed
            assert summary[column].notna().sum() >= len(summary) - 1, column
    assert summary.set_index("estimator")["objective"].to_dict() == OBJECTIVE


def test_summary_pools_seeds_at_the_chosen_checkpoint(summary: pd.DataFrame, frames) -> None:
    row = summary[(summary["estimator"] == "reinforce") & (summary["num_samples"] == 10)].iloc[0]
    v = frames["variance"]
    part = v[(v["estimator"] == "reinforce") & (v["num_samples"] == 10) & (v["checkpoint"] == "end") & (v["group"] == "encoder")]  # fmt: skip
    expected = pooled_mean_interval(part["trace_var"], part["trace_var_low"], part["trace_var_high"])
    assert row["trace_var"] == pytest.approx(expected[0])
    assert (row["trace_var_low"], row["trace_var_high"]) == pytest.approx(expected[1:])
    assert row["trace_var"] == pytest.approx(100.0 / 10 * 1.005)  # mean over the seeds' 1.00x and 1.01x
    assert row["step_ms"] == pytest.approx(1e3 * 0.0012 * 1.9)


def test_diverged_runs_are_counted_and_left_out_of_the_means(summary: pd.DataFrame) -> None:
    row = summary[(summary["estimator"] == "reinforce") & (summary["num_samples"] == 1)].iloc[0]
    assert (row["runs"], row["diverged"]) == (2, 1)
    assert row["test_log_likelihood"] == pytest.approx(LOGLIK["reinforce"])  # seed 0 only
    assert np.isnan(row["test_log_likelihood_low"])  # one finished seed: no interval
    assert summary["diverged"].sum() == 1


def test_reading_matches_the_table(summary: pd.DataFrame, frames) -> None:
    lines = reading(summary, frames, checkpoint="end")
    text = "\n".join(lines)
    # Every claim is checked against the numbers built above (the verdicts per K are in test_verdicts.py).
    assert (
        "Encoder gradient variance at K=1 (at the end checkpoint) spans 100× over the 3 unbiased settings, from "
        "`reparam`, 1.00 [0.93, 1.1], to `reinforce`, 100 [93, 108]." in text  # pooled over the 2 seeds
    )
    assert "score-function estimators (`reinforce`) have 100× the encoder variance of `reparam`" in text
    assert (
        "From K=1 to K=10 the encoder variance changes by: `reparam` 0.10×, `reinforce` 0.10×, `iwae` 0.10×"
        in text
    )
    # These steps were timed one setting at a time (no rounds): their times are stated, never compared.
    assert (
        "Median step time at K=1 on this machine: from 1.00 ms (`reparam`) to 1.50 ms (`iwae`), each setting "
        "timed alone, so these times are not compared" in text
    )
    assert "Fastest" not in text and "faster" not in text
    assert "takes 1.1× that (timed in separate units)" in text  # reparam 1.0 ms vs the 0.9 ms reference
    assert "1 of 12 training runs diverged" in text and "`reinforce` K=1 (1/2)" in text
    # Paired by seed: iwae beats both others at K=10 (differences of exactly 5 and 15 nats, every seed).
    assert "Best final test ELBO at K=10: `iwae`, -29.45 ± 0.64 nats; paired by seed" in text
    assert "it is ahead of 2 of the other 2." in text
    # reinforce at K=1 has one finished seed: no paired interval, so it is not separated from the best.
    assert (
        "Best final test ELBO at K=1: `iwae`" in text
        and "ahead of 1 of the other 2; not separated from it: `reinforce`" in text
    )
    # ... and for the same reason no setting can be recommended: the best is not separated from every other.
    assert (
        "No estimator is separated from the best by test log-likelihood: `iwae` at K=10 has the highest "
        "(-24.45 ± 0.64 nats), but paired by seed it is not separated from `reinforce` K=1, so these runs do "
        "not single out one setting."
    ) in text
    assert "Recommendation" not in text
    assert "beyond 1e10; left out of the means" in text


def test_reading_says_when_intervals_overlap() -> None:
    close = pd.DataFrame(
        dict(estimator=["reparam", "stl"], num_samples=[1, 1], trace_var=[1.0, 1.05], trace_var_low=[0.8, 0.85],
             trace_var_high=[1.2, 1.25], test_log_likelihood=[-30.0, -30.1], test_log_likelihood_low=[-31.0, -31.1],
             test_log_likelihood_high=[-29.0, -29.1])
    )  # fmt: skip
    text = "\n".join(reading(close, {}, checkpoint=None))
    # a span, with no claim that either is lower (that is a verdict's, with its ratio interval)
    assert "spans 1.1× over the 2 unbiased settings, from `reparam`, 1.00 [0.80, 1.2], to `stl`" in text
    assert "overlap" not in text and "Lowest" not in text


def test_plots_take_and_return_axes(frames, summary: pd.DataFrame) -> None:
    by_k = summaries.variance_by_k(frames["variance"], checkpoint="end")
    ax = plots.plot_against_k(by_k, "trace_var")
    assert isinstance(ax, Axes) and ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.get_lines()) >= len(NAMES)
    _, (left, right) = plots.figure(2)
    assert plots.plot_curves(frames["convergence"], num_samples=1, ax=left) is left
    assert plots.plot_curves(frames["convergence"], num_samples=1, x="wall_time_s", ax=right) is right
    assert plots.plot_throughput(frames["throughput"]) is not None
    assert plots.estimator_color("reparam") == plots.estimator_color("reparam")
    assert plots.estimator_color("reparam") != plots.estimator_color("reinforce")
    assert len(plots.estimator_color("my-new-estimator")) >= 3


def write_folder(tmp_path: Path, frames, status: str = "complete") -> Path:
    for kind, frame in frames.items():
        files.write_csv(tmp_path / f"{kind}.csv", frame)
    run = {"status": status, "started": "2026-01-01T00:00:00+00:00", "units": {"total": 9, "finished": 5},
           "invocations": [{"started": "2026-01-01T00:00:00+00:00", "ended": "2026-01-01T00:01:40+00:00"}],
           "environment": {"device": "cpu", "threads": 1}, "versions": {"torch": "2.x"}, "git": None,
           "notes": ["skipping reinforce-loo at K=1: it needs K >= 2"]}  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps(run))
    return tmp_path


def test_write_report_makes_every_file(tmp_path: Path, frames) -> None:
    out = write_folder(tmp_path, frames)
    path = write_report(out)
    assert path == out / "report.md"
    for key, name in FIGURES.items():
        if key != "compute":  # drawn only where the steps were timed interleaved, which these frames were not
            assert (out / name).stat().st_size > 1000, name
    text = path.read_text()
    assert (
        "| estimator | K | objective | encoder grad variance | encoder SNR | test ELBO | test log p(x)"
        in text
    )
    for name in NAMES:
        assert f"| `{name}` | 1 |" in text
    assert "wall-clock 100 s" in text and "## Reading" in text and "Partial report" not in text
    assert "skipping reinforce-loo at K=1" in text
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(NAMES) * len(KS)


def test_the_report_says_how_stateful_estimators_were_prepared(tmp_path: Path, frames) -> None:
    nvil = frames["variance"].query("estimator == 'reinforce'").assign(estimator="reinforce-nvil")
    variance = pd.concat([frames["variance"], nvil], ignore_index=True)
    variance["warm_up_batches"] = np.where(variance["estimator"] == "reinforce-nvil", 10, 0)
    text = write_report(write_folder(tmp_path / "new", {"variance": variance})).read_text()
    assert (
        "Stateful estimators (`reinforce-nvil`) were warmed up at each checkpoint on 10 minibatches other than "
        "the measured one, never on it: statistics set from an independent draw, a learned baseline (NVIL's "
        "b(x)) fitted for 200 Adam steps, then 20 training-mode calls"
    ) in text
    old = write_folder(tmp_path / "old", {"variance": variance.drop(columns="warm_up_batches")})
    assert "does not record how the stateful estimators (`reinforce-nvil`) were warmed up" in (
        write_report(old).read_text()
    )


def test_partial_report_says_so(tmp_path: Path, frames) -> None:
    partial = {"convergence": frames["convergence"].query("estimator == 'reparam'")}
    out = write_folder(tmp_path, partial, status="interrupted")
    text = write_report(out).read_text()
    assert "**Partial report**" in text and "--resume" in text
    assert (out / FIGURES["steps"]).is_file() and not (out / FIGURES["variance"]).exists()


def test_the_header_counts_finished_units_and_names_those_left_out(tmp_path: Path, frames) -> None:
    out = write_folder(tmp_path, {"convergence": frames["convergence"]}, status="failed")
    left_out = {"convergence/x-K1-s0": "failed: RuntimeError: boom", "variance/end": "not run"}
    text = write_report(out, units={"total": 9, "finished": 7, "failed": 1, "left_out": left_out}).read_text()
    assert "failed: 7 of 9 units finished, 1 failed;" in text  # not "failed: 7 of 9 units"
    assert (
        "Not in these tables (2 units): `convergence/x-K1-s0` (failed: RuntimeError: boom); `variance/end` (not run)."
        in text
    )


def test_empty_folder_gives_a_report_without_numbers(tmp_path: Path) -> None:
    text = write_report(tmp_path).read_text()
    assert "No unit has finished yet." in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((1234.5,), "1234"),
        ((0.012345,), "0.0123"),
        ((2.5e7,), "2.50e+07"),
        ((float("nan"),), "–"),
        ((0.0,), "0"),
    ],
)
def test_fmt_number(args, expected) -> None:
    assert formatting.fmt_number(*args) == expected


def test_fmt_interval() -> None:
    assert formatting.fmt_interval(-25.31, -25.73, -24.89, symmetric=True) == "-25.31 ± 0.42"
    assert formatting.fmt_interval(1200.0, 1100.0, 1400.0) == "1200 [1100, 1400]"
    assert formatting.fmt_interval(3.0, float("nan"), float("nan")) == "3.00"


def test_markdown_escapes_pipes() -> None:
    frame = pd.DataFrame({"a": ["x|y"]})
    assert formatting.markdown(frame, [("a", lambda r: r["a"])]).splitlines()[-1] == "| x\\|y |"


def test_paired_difference_pairs_runs_by_seed(frames) -> None:
    conv = frames["convergence"]
    diff, low, high, n = summaries.paired_difference(
        conv, "test_log_likelihood", ("iwae", "iid", 10), ("reparam", "iid", 1)
    )
    assert (diff, n) == (pytest.approx(5.5), 2)
    assert (low, high) == (pytest.approx(5.5), pytest.approx(5.5))  # the seeds' offsets cancel exactly
    # a diverged seed is left out: one pair remains, so there is no interval
    diff, low, _, n = summaries.paired_difference(
        conv, "test_log_likelihood", ("reparam", "iid", 1), ("reinforce", "iid", 1)
    )
    assert (diff, n) == (pytest.approx(10.0), 1) and np.isnan(low)


# --- what the numbers cannot show: noise floor, unconverged curves, diverged runs, no separation -------------


def runs_frame(settings: dict, steps: int = 100, every: int = 10) -> pd.DataFrame:
    """Convergence rows of 3 seeds per setting: (estimator, K) -> dict(ll=[per seed], slope=nats per step over
    the last quarter (each seed x (0.9, 1.0, 1.1)), diverged=[seeds])."""
    rows = []
    for (name, k), spec in settings.items():
        for seed, ll in enumerate(spec["ll"]):
            diverged = seed in spec.get("diverged", ())
            slope = spec.get("slope", 0.0) * (0.9 + 0.1 * seed)
            for step in range(0, steps + 1, every):
                elbo = ll - 5 + slope * (step - steps)  # exactly linear: its fitted rise is known
                rows.append((name, k, seed, step, step / 10, 0.01 * step, step, 100 * k * step, "test_elbo", elbo, "elbo", diverged))  # fmt: skip
            for metric, value in (("final_test_elbo", ll - 5), ("test_log_likelihood", ll)):
                rows.append((name, k, seed, steps, steps / 10, 0.01 * steps, steps, 100 * k * steps, metric, value, "elbo", diverged))  # fmt: skip
    cols = ["estimator", "num_samples", "seed", "step", "epoch", "wall_time_s", "grad_evals", "latent_samples",
            "metric", "value", "objective", "diverged"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def read(convergence: pd.DataFrame, variance: pd.DataFrame | None = None) -> tuple[pd.DataFrame, str]:
    summary = summaries.summary_table(variance, convergence, None)
    return summary, "\n".join(reading(summary, {"convergence": convergence}, checkpoint=None))


SEPARATED = {
    ("reparam", 1): dict(ll=[-30.0, -29.0, -28.0], slope=0.4),  # rises 9, 10, 11 nats over the last quarter
    ("stl", 1): dict(ll=[-31.0, -30.2, -28.8]),  # flat; reparam - stl = 1.0, 1.2, 0.8 per seed
}


def test_a_recommendation_needs_separation_and_says_when_runs_had_not_converged():
    summary, text = read(runs_frame(SEPARATED))
    row = summary.set_index("estimator").loc["reparam"]
    # rises 9, 10, 11: mean 10, Student-t half-width t(0.975, 2) * 1 / sqrt(3) = 2.48
    assert row["test_elbo_rise"] == pytest.approx(10.0)
    assert (row["test_elbo_rise_low"], row["test_elbo_rise_high"]) == pytest.approx((7.516, 12.484), abs=1e-3)
    assert row["converged"] is False and summary.set_index("estimator").loc["stl", "converged"] is True
    assert (row["rise_from_step"], row["rise_to_step"]) == (80.0, 100.0)
    assert (
        "Not converged: over the last quarter of training (steps 80–100) the test ELBO of 1 of 2 settings "
        "moved by more than 1 nat or could not be shown to move by less (mean change 10.0 to 10.0 nats; "
        "`reparam` K=1). The test figures below compare early training, not converged models"
    ) in text
    # reparam - stl paired: 1.0 ± 0.50 (t(2) x 0.2 / sqrt(3)): separated, so it is recommended, with the caveat.
    assert (
        "Recommendation for this model and data: `reparam` at K=1, the best test log-likelihood of all 2 "
        "unbiased settings and separated from every other when paired by seed, at the cheapest K. This rests on runs that "
        "had not converged (`reparam`'s test ELBO still moved by 10.0 ± 2.5 nats over the last quarter of "
        "training): it ranks early training, not converged models."
    ) in text
    assert "| ELBO rise, last quarter |" in tables.summary_markdown(summary)


def test_levelled_off_curves_are_said_to_be():
    flat = {key: {**spec, "slope": 0.0} for key, spec in SEPARATED.items()}
    _, text = read(runs_frame(flat))
    assert "Every setting's test ELBO changed by less than 1 nat over the last quarter of training" in text
    assert "Not converged" not in text and "had not converged" not in text
    # The best levelled off, another did not: the recommendation still says what it rests on.
    mixed = {("reparam", 1): flat[("reparam", 1)], ("stl", 1): {**SEPARATED[("stl", 1)], "slope": 0.4}}
    _, text = read(runs_frame(mixed))
    assert (
        "`reparam`'s curves had levelled off; those of `stl` K=1 had not (their test ELBO still moved by more "
        "than 1 nat over the last quarter of training): their places rank early training"
    ) in text
    assert "This rests on runs that had not converged" not in text
    # the bottom line's verdict names the ones that had not, and says the leader's had levelled off
    summary = summaries.summary_table(None, runs := runs_frame(mixed), None)
    (quality,) = [v for v in verdicts.verdicts(summary, runs) if v.question == verdicts.QUESTIONS[2]]
    assert quality.notes == (
        "the leader's curves and those of the settings not separated from it had levelled off; `stl` had "
        "not: their places rank early training",
    )


def test_no_recommendation_without_separation():
    tied = {**SEPARATED, ("dreg", 1): dict(ll=[-30.5, -28.7, -28.4])}  # reparam - dreg: 0.5, -0.3, 0.4
    _, text = read(runs_frame(tied))
    assert "Recommendation" not in text
    assert (
        "No estimator is separated from the best by test log-likelihood: `reparam` at K=1 has the highest "
        "(-29.0 ± 2.5 nats), but paired by seed it is not separated from `dreg` K=1, so these runs do not single "
        "out one setting. This rests on runs that had not converged"
    ) in text


def test_an_estimator_with_diverged_runs_is_never_best_unannounced():
    # stl's mean over its two finished seeds beats everything, but its third run diverged.
    spec = {**SEPARATED, ("stl", 1): dict(ll=[-20.0, -21.0, -500.0], diverged=[2])}
    _, text = read(runs_frame(spec))
    assert (
        "Best final test ELBO at K=1: `stl`, -25.5 ± 6.4 nats (but 1 of 3 of its runs diverged and are "
        "left out of this mean)"
    ) in text
    assert (
        "`stl` at K=1 has the highest mean test log-likelihood, but 1 of 3 of its runs diverged (left out of "
        "that mean), so it is not recommended. No estimator is separated from the best"
    ) in text


def test_snr_at_the_noise_floor_is_flagged_and_not_ranked():
    # R = 100 replicates: floor sqrt(2 / (100 pi)) = 0.0798. reinforce's SNR interval reaches it at K=1 only.
    floor = math.sqrt(2 / (math.pi * 100))
    rows = []
    for name, k, snr, low, high in [
        ("reparam", 1, 0.9, 0.8, 1.0),
        ("reparam", 10, 0.5, 0.45, 0.55),
        ("reinforce", 1, 0.084, 0.039, 0.13),
        ("reinforce", 10, 0.06, 0.03, 0.09),
        ("stl", 1, 0.3, 0.25, 0.35),
        ("stl", 10, 0.2, 0.15, 0.25),
    ]:
        rows.append(dict(estimator=name, num_samples=k, seed=0, checkpoint="end", group="encoder", trace_var=1.0,
                         trace_var_low=0.9, trace_var_high=1.1, snr=snr, snr_low=low, snr_high=high,
                         snr_floor=floor, objective="elbo", status="ok"))  # fmt: skip
    summary = summaries.summary_table(pd.DataFrame(rows), None, None)
    flagged = summary[summary["snr_at_floor"].astype(bool)]
    assert list(zip(flagged["estimator"], flagged["num_samples"], strict=True)) == [
        ("reinforce", 1),
        ("reinforce", 10),
    ]
    assert summary["snr_floor"].iloc[0] == pytest.approx(0.0798, abs=1e-4)
    table = tables.summary_markdown(summary)
    assert "| `reinforce` | 1 | elbo | 1.00 [0.90, 1.1] | 0.0840 [0.039, 0.13] (noise floor) |" in table
    assert "| `reparam` | 1 | elbo | 1.00 [0.90, 1.1] | 0.900 [0.80, 1.0] |" in table
    assert "its interval reaches √(2/(πR)) = 0.0798" in tables.legend_markdown(summary)
    text = "\n".join(reading(summary, {}, checkpoint="end"))
    assert (
        "Encoder SNR indistinguishable from no signal (its interval reaches √(2/(πR)) = 0.0798, the SNR a "
        "gradient of mean zero shows with R replicates): `reinforce` K=1, `reinforce` K=10; these SNRs are not "
        "ranked."
    ) in text
    # Falling SNR is reported only between measured signals: reparam and stl, not reinforce.
    assert (
        "Encoder SNR falls as K grows from 1 to 10 for: `reparam`" in text and "`stl` (0.300 → 0.200" in text
    )
    assert "`reinforce` (0.0840" not in text


def test_curves_are_framed_by_the_runs_that_did_not_diverge():
    conv = runs_frame(SEPARATED)
    bad = (conv["estimator"] == "stl") & (conv["seed"] == 2)
    conv.loc[bad, "diverged"] = True
    conv.loc[bad & (conv["metric"] == "test_elbo") & (conv["step"] == 100), "value"] = -1e10  # absurd, finite
    ax = plots.plot_curves(conv, num_samples=1)
    assert ax.get_ylim()[0] > -100


def test_a_sampler_makes_its_own_setting_named_in_tables_and_reading(frames, tmp_path: Path) -> None:
    # reparam with RQMC draws: half the variance, 1 nat better; the older frames have no sampler column.
    rqmc = {}
    for kind, frame in frames.items():
        mine = frame[frame["estimator"] == "reparam"].assign(sampler="rqmc")
        if kind == "variance":
            mine = mine.assign(**{c: mine[c] / 2 for c in ("trace_var", "trace_var_low", "trace_var_high")})
        if kind == "convergence":
            mine = mine.assign(value=mine["value"] + 1.0)
        rqmc[kind] = pd.concat([frame, mine], ignore_index=True)
    throughput = rqmc["throughput"][rqmc["throughput"]["estimator"] != "reference"]
    summary = summaries.summary_table(rqmc["variance"], rqmc["convergence"], throughput, checkpoint="end")
    assert list(zip(summary["estimator"], summary["sampler"], summary["num_samples"], strict=True)) == [
        (n, s, k) for n in NAMES for s in (("iid", "rqmc") if n == "reparam" else ("iid",)) for k in KS
    ]
    row = summary.set_index(["estimator", "sampler", "num_samples"]).loc[("reparam", "rqmc", 10)]
    assert row["trace_var"] == pytest.approx(VARIANCE["reparam"] / 10 / 2 * 1.005)
    diff, *_ = summaries.paired_difference(
        rqmc["convergence"], "test_log_likelihood", ("reparam", "rqmc", 1), ("reparam", "iid", 1)
    )
    assert diff == pytest.approx(1.0)
    assert "| estimator | sampler | K |" in tables.summary_markdown(summary)
    text = "\n".join(reading(summary, {"convergence": rqmc["convergence"]}, checkpoint="end"))
    assert (
        "Encoder gradient variance at K=1 (at the end checkpoint) spans 200× over the 4 unbiased settings, from `reparam (rqmc)`"
        in text
    )
    # An all-iid summary (the old frames) keeps its old table: no sampler column.
    plain = summaries.summary_table(frames["variance"], frames["convergence"], None, checkpoint="end")
    assert set(plain["sampler"]) == {"iid"} and "| sampler |" not in tables.summary_markdown(plain)
    # Plots name the sampler in the legend.
    ax = plots.plot_against_k(summaries.variance_by_k(rqmc["variance"], checkpoint="end"), "trace_var")
    assert "reparam (rqmc)" in [t.get_text() for t in ax.legend().get_texts()]


# --- the plots' looks: a colour per family, a style per member, identical rows shown as shared --------------


def test_each_family_has_one_colour_and_each_member_its_own_marker() -> None:
    from vaebench.estimators import BUILTIN_ESTIMATORS
    from vaebench.report import styles

    families: dict = {}
    for name in BUILTIN_ESTIMATORS:
        families.setdefault(styles.colour_group(name), []).append(name)
    assert set(families) == set(styles.FAMILY_COLORS)  # every colour is used by a built-in
    assert {"miwae", "ciwae", "piwae", "dreg"} <= set(
        families[("iwae", "pathwise")]
    )  # the mixtures are IWAE's
    colours = {kin: {styles.color(n) for n in members} for kin, members in families.items()}
    assert all(len(c) == 1 for c in colours.values())  # one colour per family...
    assert len({next(iter(c)) for c in colours.values()}) == len(families)  # ...each its own
    assert styles.UNKNOWN_COLOR not in {next(iter(c)) for c in colours.values()}
    for members in families.values():  # distinct marker and line style within a family
        looks = [styles.member_style(n) for n in members]
        assert len(set(looks)) == len(looks)
    # the formerly clashing pairs are apart now
    assert styles.color("vimco") != styles.color("reinforce-ma")
    assert styles.color("iwae-stl") != styles.color("reparam-analytic-kl")
    # fixed whatever else a run measured: the look is a function of the name alone
    assert styles.style("dreg") == styles.style("dreg") and styles.style("stl", "rqmc")["fillstyle"] == "left"


def test_a_plugin_estimator_takes_its_family_colour_and_a_free_style(monkeypatch: pytest.MonkeyPatch) -> None:
    from vaebench.estimators import ESTIMATORS
    from vaebench.report import styles

    monkeypatch.setitem(ESTIMATORS, "my-pathwise", ESTIMATORS["reparam"])
    assert styles.color("my-pathwise") == styles.color("reparam")
    builtin = {styles.member_style(n) for n in ("reparam", "reparam-analytic-kl", "stl", "reparam-cv")}
    assert styles.member_style("my-pathwise") not in builtin
    assert styles.color("never-registered") == styles.UNKNOWN_COLOR


def test_identical_rows_share_one_legend_entry() -> None:
    from vaebench.report import styles

    frame = pd.DataFrame(
        dict(estimator=["reparam", "reparam", "iwae", "iwae", "reinforce-loo", "vargrad"],
             sampler="iid", num_samples=[1, 4, 1, 4, 4, 4], trace_var=[10.0, 2.5, 10.0, 4.0, 7.0, 7.0 * (1 + 1e-7)])
    )  # fmt: skip
    hidden, labels = styles.shared_labels(frame, ["trace_var"])
    assert hidden == {("vargrad", "iid")}  # the same everywhere: drawn once...
    assert labels[("reinforce-loo", "iid")] == "reinforce-loo = vargrad"  # ...and named as shared
    assert labels[("iwae", "iid")] == "iwae (= reparam at K=1)"  # the same at K=1 only
    ax = plots.plot_against_k(frame, "trace_var")
    texts = [t.get_text() for t in ax.legend().get_texts()]
    assert "reinforce-loo = vargrad" in texts and "vargrad" not in texts


def test_laws_are_fitted_only_on_three_k_or_more(tmp_path: Path, frames) -> None:
    # K in {1, 10}: through two points every law fits; the report says nothing about laws
    out = write_folder(tmp_path / "two", {"variance": frames["variance"]})
    text = write_report(out).read_text()
    assert "Scaling laws" not in text and "slope" not in text and not (out / "scaling.csv").exists()
    three = pd.concat(
        [frames["variance"], frames["variance"].query("num_samples == 10").assign(
            num_samples=100, trace_var=lambda f: f["trace_var"] / 10, trace_var_low=lambda f: f["trace_var_low"] / 10,
            trace_var_high=lambda f: f["trace_var_high"] / 10)],
        ignore_index=True,
    )  # fmt: skip
    text = write_report(write_folder(tmp_path / "three", {"variance": three})).read_text()
    assert "## Scaling laws in K" in text and "on at least 3 values of K" in text
    assert "`reparam` encoder trace_var: slope -1.00" in text and "**agrees**" in text


@pytest.mark.parametrize(
    ("diff", "low", "high", "words"),
    [
        (-2.0, -3.0, -1.0, "behind it by 2.00 [1.00, 3.00] nats"),
        (0.5, -0.5, 1.5, "ahead of it by 0.500 [-0.500, 1.50] nats"),
        (0.0, -1.0, 1.0, "level with it"),
    ],
)
def test_the_gap_to_the_recommended_setting_follows_its_sign(diff, low, high, words) -> None:
    from vaebench.report.verdict import _signed_gap

    assert _signed_gap(diff, low, high) == words


def test_a_recommendation_at_a_larger_k_states_the_cheapest_ks_gap_in_words_that_follow_its_sign():
    # reparam at K=5 beats everything (separated); at the cheapest K=1 the best (stl) is behind it
    settings = {
        ("reparam", 5): dict(ll=[-28.0, -27.0, -26.0]),
        ("stl", 1): dict(ll=[-30.0, -29.1, -27.9]),
        ("reparam", 1): dict(ll=[-31.0, -30.0, -29.0]),
    }
    _, text = read(runs_frame(settings))
    assert "Recommendation for this model and data: `reparam` at K=5" in text
    assert (
        "At the cheapest K=1 the best is `stl`: behind it by 2.00 [1.75, 2.25] nats, paired over 3 seeds"
        in text
    )
    assert "cheaper" not in text  # the old sentence called the ratio "cheaper" whatever its value
