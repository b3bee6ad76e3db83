"""Estimators at equal budget (vaebench.analysis.budget), and budget.csv in a report folder.

The curves are built by hand and exactly linear in the step, with a fixed number of seconds per step (also
the step time of the interleaved timing), so the test ELBO at any budget, the common budgets, the target and
every crossing are known in closed form (linear interpolation of a straight line is exact).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vaebench import files
from vaebench.analysis import summaries
from vaebench.analysis.budget import BUDGET_COLUMNS, MARGIN, budget
from vaebench.report.writer import write_report

SEEDS = (0, 1, 2)
STEPS = 100
EVERY = 10


def start(seed: int) -> float:
    """The test ELBO at initialisation, shared by every setting of a seed."""
    return -100.0 - seed


def runs_frame(settings: dict) -> pd.DataFrame:
    """Test-ELBO curves: (estimator, K) -> dict(slope=[nats per step, per seed], seconds=per step,
    steps=last step, diverged={seed: its last step}); value = start(seed) + slope · step."""
    rows = []
    for (name, k), spec in settings.items():
        for seed, slope in zip(SEEDS, spec["slope"], strict=True):
            stop = spec.get("diverged", {}).get(seed)
            last = stop if stop is not None else spec.get("steps", STEPS)
            for step in range(0, last + 1, EVERY):
                value = start(seed) + slope * step
                rows.append(
                    (name, k, seed, step, spec["seconds"] * step, step, "test_elbo", value, stop is not None)
                )
            final = start(seed) + slope * last
            for metric, value in (("final_test_elbo", final), ("test_log_likelihood", final + 5)):
                rows.append(
                    (name, k, seed, last, spec["seconds"] * last, last, metric, value, stop is not None)
                )
    cols = [
        "estimator",
        "num_samples",
        "seed",
        "step",
        "wall_time_s",
        "grad_evals",
        "metric",
        "value",
        "diverged",
    ]
    frame = pd.DataFrame(rows, columns=cols)
    return frame.assign(
        sampler="iid", objective="elbo", epoch=frame["step"] / 10, latent_samples=frame["step"]
    )


def timed(settings: dict, load: float = 1.0, rounds: int = 6) -> pd.DataFrame:
    """Throughput rows of the settings timed interleaved (one group per K), each round's median its
    ``seconds`` per step x ``load`` x a wobble shared by the round: every step-time ratio is exact."""
    rows = []
    for (name, k), spec in settings.items():
        seconds = [spec["seconds"] * load * (1 + 0.1 * (r % 3)) for r in range(rounds)]
        rows.append({"estimator": name, "sampler": "iid", "num_samples": k, "batch_size": 100, "status": "ok",
                     "compiled": False, "amp": False, "step_s_median": spec["seconds"] * load,
                     "timing_group": f"K={k}", "rounds": rounds,
                     "round_s": " ".join(f"{t:.12g}" for t in seconds)})  # fmt: skip
    return pd.DataFrame(rows)


def at_budget(settings: dict, **kwargs) -> pd.DataFrame:
    return budget(runs_frame(settings), timed(settings), **kwargs)


# reparam: 1 nat per step (a little more on later seeds), 0.01 s per step. stl: half the gain per step but a
# step four times cheaper (0.0025 s): ahead at equal compute, behind at equal steps.
SPEED = {
    ("reparam", 1): dict(slope=[1.0, 1.01, 1.02], seconds=0.01),
    ("stl", 1): dict(slope=[0.5, 0.5, 0.5], seconds=0.0025),
}


def rows_of(frame: pd.DataFrame, budget_name: str, figure: str = "test_elbo") -> pd.DataFrame:
    part = frame[(frame["budget"] == budget_name) & (frame["figure"] == figure)]
    return part.set_index("estimator")


def test_the_frame_has_the_declared_columns_and_one_row_per_setting_budget_and_figure() -> None:
    found = at_budget(SPEED)
    assert tuple(found.columns) == BUDGET_COLUMNS
    assert len(found) == 2 * 4  # two settings x (compute, steps, steps and compute to the target)
    assert set(found["budget"]) == {"compute", "steps", "target"}
    assert set(budget(runs_frame(SPEED))["budget"]) == {
        "steps",
        "target",
    }  # no interleaved timing: no compute


def test_equal_compute_interpolates_each_curve_at_the_least_compute_of_a_run() -> None:
    found = rows_of(at_budget(SPEED), "compute")
    # reparam is the yardstick; stl's step is 0.25 of it. The least compute: stl, 100 steps = 25 yardstick
    # steps; reparam is at step 25 then (between evaluations).
    assert found["budget_value"].tolist() == pytest.approx([25.0, 25.0])
    reparam = [start(s) + 25 * slope for s, slope in zip(SEEDS, SPEED[("reparam", 1)]["slope"], strict=True)]
    assert found.loc["reparam", "value"] == pytest.approx(np.mean(reparam))
    assert found.loc["stl", "value"] == pytest.approx(np.mean([start(s) + 50 for s in SEEDS]))
    # stl is the best; reparam - stl = 25 (1 + 0.01 s) - 50 per seed: -24.75 on average, on every seed below 0.
    assert (found["reference_estimator"] == "stl").all()
    assert found.loc["reparam", "difference"] == pytest.approx(-24.75)
    assert found.loc["reparam", "difference_high"] < 0 and found.loc["reparam", "separated"] is True
    assert found.loc["stl", "difference"] == 0 and found.loc["stl", "separated"] is False
    assert found.loc["reparam", "paired_seeds"] == 3


def test_a_slow_unit_and_a_busy_machine_leave_every_equal_compute_figure_as_it_was() -> None:
    """Two runs of one configuration under different loads: in the second, stl's training unit ran 5x slower
    (its seconds scaled) and the whole throughput unit 3x slower; the figures, and so the verdicts, agree."""
    quiet = at_budget(SPEED)
    runs = runs_frame(SPEED)
    slow = runs["estimator"] == "stl"
    busy = runs.assign(wall_time_s=runs["wall_time_s"].where(~slow, runs["wall_time_s"] * 5))
    loaded = budget(busy, timed(SPEED, load=3.0))
    pd.testing.assert_frame_equal(quiet, loaded)
    verdicts = ["estimator", "budget", "figure", "reference_estimator", "separated"]
    assert quiet[verdicts].equals(loaded[verdicts])


def test_a_step_ratio_too_noisy_to_tell_leaves_the_equal_compute_comparison_unseparated() -> None:
    """stl's per-round step times swing 2.5x up and down around the same median: its ratio to reparam is still
    0.25, but its interval is wide, and at its ends stl can be ahead or behind: not separated."""
    throughput = timed(SPEED)
    swings = [0.0025 * f * (1 + 0.1 * (r % 3)) for r, f in enumerate((2.5, 0.4, 2.5, 0.4, 1.0, 1.0))]
    noisy = throughput["estimator"] == "stl"
    throughput.loc[noisy, "round_s"] = " ".join(f"{t:.12g}" for t in swings)
    found = rows_of(budget(runs_frame(SPEED), throughput), "compute")
    assert found.loc["stl", "budget_value"] == pytest.approx(25.0, rel=0.01)  # the same point ratio
    assert found.loc["reparam", "difference_high"] < 0  # the interval at the measured ratio excludes 0
    assert found.loc["reparam", "separated"] is False
    quiet = rows_of(at_budget(SPEED), "compute")
    assert quiet.loc["reparam", "separated"] is True


def test_equal_steps_can_reverse_the_verdict_at_equal_compute() -> None:
    frame = at_budget(SPEED)
    steps, compute = rows_of(frame, "steps"), rows_of(frame, "compute")
    assert steps["budget_value"].tolist() == [100.0, 100.0]
    assert (steps["reference_estimator"] == "reparam").all()
    # stl - reparam at step 100 = 50 - 100 (1 + 0.01 s): -51 on average
    assert steps.loc["stl", "difference"] == pytest.approx(-51.0)
    assert steps.loc["stl", "separated"] is True and compute.loc["reparam", "separated"] is True


def test_a_diverged_run_neither_shrinks_the_budget_nor_makes_the_reference() -> None:
    # reinforce climbs fastest, but its seed 1 diverged at step 20 (20 yardstick steps, before the budget of
    # 25): left out.
    spec = {**SPEED, ("reinforce", 1): dict(slope=[3.0, 3.0, 3.0], seconds=0.01, diverged={1: 20})}
    found = rows_of(at_budget(spec), "compute")
    assert found.loc["reinforce", "budget_value"] == pytest.approx(25.0)
    assert found.loc["reinforce", "seeds"] == 2
    assert found.loc["reinforce", "value"] == pytest.approx(np.mean([start(s) + 75 for s in (0, 2)]))
    assert (found["reference_estimator"] == "stl").all()  # reinforce is ahead, but has a diverged run
    assert found.loc["reinforce", "difference"] == pytest.approx(25.0)


def test_the_target_is_reached_by_every_setting_on_average_and_a_seed_that_falls_short_is_not_reached() -> (
    None
):
    # dreg's seed 2 gains only 0.35 nat per step: it ends 35 nats up, short of the target 49 nats up.
    spec = {**SPEED, ("dreg", 1): dict(slope=[0.7, 0.7, 0.35], seconds=0.01)}
    frame = at_budget(spec)
    steps, compute = (
        rows_of(frame, "target", "steps_to_target"),
        rows_of(frame, "target", "compute_to_target"),
    )
    # the worst mean final: stl, 50 nats up from the mean start (-101); the target a margin below it.
    target = -101.0 + 50 - MARGIN
    assert steps["budget_value"].tolist() == pytest.approx([target] * 3)
    # seed s reaches it after (target - start(s)) / slope steps
    gain = [target - start(s) for s in SEEDS]
    assert steps.loc["stl", "value"] == pytest.approx(np.mean([g / 0.5 for g in gain]))
    assert compute.loc["stl", "value"] == pytest.approx(np.mean([0.25 * g / 0.5 for g in gain]))
    reparam = [g / slope for g, slope in zip(gain, SPEED[("reparam", 1)]["slope"], strict=True)]
    assert steps.loc["reparam", "value"] == pytest.approx(np.mean(reparam))
    assert (steps.loc["dreg", "not_reached"], steps.loc["dreg", "seeds"]) == (1, 2)
    assert steps.loc["dreg", "value"] == pytest.approx(np.mean([g / 0.7 for g in gain[:2]]))
    assert steps.loc["stl", "not_reached"] == 0 and steps.loc["reparam", "not_reached"] == 0
    # the fewest steps: reparam; the least compute: stl (a step four times cheaper)
    assert (steps["reference_estimator"] == "reparam").all()
    assert (compute["reference_estimator"] == "stl").all()
    assert steps.loc["dreg", "paired_seeds"] == 2


def test_no_target_when_no_curve_rises() -> None:
    flat = {key: {**spec, "slope": [0.0, 0.0, 0.0]} for key, spec in SPEED.items()}
    assert "target" not in set(budget(runs_frame(flat))["budget"])


def test_a_fixed_margin_on_every_seed_is_separated_even_when_the_seeds_spread_widely() -> None:
    # The seeds' curves lie far apart (slopes 0.2 to 2), stl is 1 nat ahead of reparam at every step of every
    # seed: the separate intervals overlap, the difference paired by seed is exactly 1 with no spread.
    rows = runs_frame({("reparam", 1): dict(slope=[0.2, 1.0, 2.0], seconds=0.01)})
    ahead = rows.assign(estimator="stl", value=rows["value"] + 1.0)
    found = rows_of(budget(pd.concat([rows, ahead], ignore_index=True)), "steps")
    assert found.loc["stl", "value_low"] < found.loc["reparam", "value_high"]  # unpaired: they overlap
    reparam = found.loc["reparam"]
    assert reparam["reference_estimator"] == "stl"
    assert (reparam["difference"], reparam["difference_low"], reparam["difference_high"]) == pytest.approx(
        (-1.0, -1.0, -1.0)
    )
    assert reparam["separated"] is True


def test_biased_settings_get_rows_but_are_never_the_reference() -> None:
    spec = {
        ("reparam", 4): dict(slope=[1.0, 1.01, 1.02], seconds=0.01),
        ("iwae-stl", 4): dict(slope=[2.0, 2.0, 2.0], seconds=0.01),  # biased at K > 1, and ahead
    }
    found = rows_of(budget(runs_frame(spec)), "steps")
    assert (found["reference_estimator"] == "reparam").all()
    assert found.loc["iwae-stl", "biased"] != "" and found.loc["reparam", "biased"] == ""


# ------------------------------------------------------------------------------------------------ report


def test_the_readme_defines_the_budgets_and_the_report_writes_budget_csv(tmp_path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "**equal compute**" in readme and "**steps to reach a target**" in readme
    files.write_csv(tmp_path / "convergence.csv", runs_frame(SPEED))
    text = write_report(tmp_path).read_text()
    written = pd.read_csv(tmp_path / "budget.csv")
    assert tuple(written.columns) == BUDGET_COLUMNS and len(written) == 6  # no timing: no compute budget
    assert "`budget.csv`" in text  # the report names the file; its rows are not restated


def test_the_timing_verdicts_and_ratios_do_not_move_with_a_slow_unit_or_a_busy_machine() -> None:
    """The bottom line's timing questions read the same interleaved ratios as the equal-compute budget: the
    loaded run of the test above states the same verdicts, every field equal."""
    from vaebench.analysis import verdicts

    def stated(convergence: pd.DataFrame, throughput: pd.DataFrame) -> list[dict]:
        summary = summaries.summary_table(None, convergence, throughput)
        return verdicts.records(verdicts.verdicts(summary, convergence, throughput))

    runs = runs_frame(SPEED)
    busy = runs.assign(wall_time_s=runs["wall_time_s"] * np.where(runs["estimator"] == "stl", 5.0, 1.0))
    quiet, loaded = stated(runs, timed(SPEED)), stated(busy, timed(SPEED, load=3.0))
    words = ("question", "K", "winner", "best", "against", "separated", "not_separated", "reason", "notes")
    assert [{w: r[w] for w in words} for r in quiet] == [{w: r[w] for w in words} for r in loaded]
    assert [r["value"] or 0.0 for r in quiet] == pytest.approx([r["value"] or 0.0 for r in loaded], rel=1e-9)
    assert any(r["question"] == verdicts.QUESTIONS[3] and r["winner"] == "stl" for r in quiet)
