"""Conclusions across problems: the aggregates rank a planted loser last, call identical estimators even, and
the transfer verdict names an estimator only when it is ahead on a majority of problems and behind on none."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vaebench import rng
from vaebench.analysis.across import (
    ACROSS_COLUMNS,
    across,
    figure_scores,
    leaders,
    takeaway,
    transfer,
    variance_time_scores,
)
from vaebench.errors import VaebenchError
from vaebench.report.across import across_section, plot_improvement

PROBLEMS = ("digits", "blr-breast-cancer", "eight-schools", "funnel", "gaussian-toy")


def planted(shift: dict[str, float], noise: float = 0.3, seeds: int = 3, seed: int = 0) -> pd.DataFrame:
    """Scores per problem x estimator x K x seed: a problem-and-seed effect shared by every estimator, plus
    each estimator's shift and independent noise."""
    gen = rng.numpy_generator(seed, "across.bootstrap", 99)
    rows = []
    for p, problem in enumerate(PROBLEMS):
        for k in (1, 10):
            for s in range(seeds):
                common = 5 * p + gen.normal()
                for name, delta in shift.items():
                    rows.append(
                        {
                            "problem": problem,
                            "estimator": name,
                            "num_samples": k,
                            "seed": s,
                            "score": common + delta + noise * gen.normal(),
                        }
                    )
    return pd.DataFrame(rows)


def _row(table, statistic, estimator, k, versus=None, tau=None):
    t = table[
        (table["statistic"] == statistic) & (table["estimator"] == estimator) & (table["num_samples"] == k)
    ]
    if versus is not None:
        t = t[t["versus"] == versus]
    if tau is not None:
        t = t[t["tau"] == tau]
    (row,) = t.to_dict("records")
    return row


def test_a_planted_estimator_worse_on_every_problem_is_ranked_last_with_improvement_near_zero():
    scores = planted({"reparam": 0.0, "stl": 1.0, "dreg": 0.5, "planted": -3.0})
    table = across(scores, resamples=300)
    assert list(table.columns) == list(ACROSS_COLUMNS)
    for k in (1, 10):
        iqm = table[(table["statistic"] == "iqm") & (table["num_samples"] == k)].sort_values("value")
        assert iqm["estimator"].iloc[0] == "planted"
        for versus in ("reparam", "stl"):  # stl: the best other
            row = _row(table, "probability_of_improvement", "planted", k, versus)
            assert row["value"] == 0.0 and row["high"] <= 0.05
        assert _row(table, "profile", "planted", k, tau=1.0)["value"] == 0.0
        assert _row(table, "profile", "stl", k, tau=1.0)["value"] == 1.0


def test_two_identical_estimators_get_one_half_with_an_interval_holding_it():
    scores = planted({"reparam": 0.0, "twin": 0.0}, noise=1.0, seeds=5)
    row = _row(across(scores, resamples=500, level=0.95), "probability_of_improvement", "twin", 1, "reparam")
    assert row["low"] <= 0.5 <= row["high"]
    same = scores[scores["estimator"] == "reparam"].assign(estimator="copy")
    table = across(pd.concat([scores[scores["estimator"] == "reparam"], same]), resamples=200)
    row = _row(table, "probability_of_improvement", "copy", 10, "reparam")
    assert row["value"] == row["low"] == row["high"] == 0.5  # every seed a tie


def test_the_bootstrap_is_seeded_and_stratified_over_problems_and_seeds():
    scores = planted({"reparam": 0.0, "stl": 0.2}, noise=1.0)
    a, b = across(scores, resamples=200, seed=1), across(scores, resamples=200, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not across(scores, resamples=200, seed=2)["low"].equals(a["low"])
    assert (a["problems"] == len(PROBLEMS)).all() and (a["seeds"] == 3).all()


def test_variance_time_scores_are_log_ratios_to_reparam_at_the_same_problem_k_and_seed():
    frame = pd.DataFrame(
        [
            {"problem": "p", "estimator": "reparam", "num_samples": 1, "seed": 0, "value": 2.0},
            {"problem": "p", "estimator": "stl", "num_samples": 1, "seed": 0, "value": 0.5},
            {
                "problem": "p",
                "estimator": "stl",
                "num_samples": 10,
                "seed": 0,
                "value": 0.5,
            },  # no reference at K=10
        ]
    )
    scores = variance_time_scores(frame).set_index("estimator")["score"]
    assert scores["reparam"] == 0.0 and scores["stl"] == pytest.approx(math.log(4))
    assert len(scores) == 2
    with pytest.raises(VaebenchError, match="positive"):
        variance_time_scores(frame.assign(value=0.0))
    with pytest.raises(VaebenchError, match="missing: seed"):
        variance_time_scores(frame.drop(columns="seed"))


def test_figure_scores_turn_lower_is_better_figures_round():
    frame = pd.DataFrame(
        [
            {
                "problem": "funnel",
                "estimator": "a",
                "num_samples": 1,
                "seed": 0,
                "value": 2.0,
                "higher_is_better": False,
            },
            {
                "problem": "digits",
                "estimator": "a",
                "num_samples": 1,
                "seed": 0,
                "value": -90.0,
                "higher_is_better": True,
            },
        ]
    )
    assert figure_scores(frame)["score"].tolist() == [-2.0, -90.0]


def test_transfer_names_an_estimator_only_when_ahead_on_a_majority_and_behind_on_none():
    scores = planted({"reparam": 0.0, "stl": 2.0}, noise=0.1, seeds=4)
    table = transfer(scores, {1: ["stl", "reparam"]})
    (row,) = table.to_dict("records")
    assert (row["a_ahead"], row["b_ahead"], row["problems"]) == (5, 0, 5)
    assert row["verdict"].startswith("stl ahead of reparam at K=1 across these problems")
    flipped = scores.copy()  # reparam well ahead on one problem: stl is behind there, so no verdict
    lost = (flipped["problem"] == "funnel") & (flipped["estimator"] == "stl")
    flipped.loc[lost, "score"] -= 4.0
    (row,) = transfer(flipped, {1: ["stl", "reparam"]}).to_dict("records")
    assert (row["a_ahead"], row["b_ahead"]) == (4, 1)
    assert "not separated across these problems" in row["verdict"]


def test_leaders_are_the_highest_iqm_at_each_k():
    table = across(
        planted({"reparam": 0.0, "stl": 1.0, "dreg": 0.5, "worst": -3.0}), resamples=50, profiles=False
    )
    assert leaders(table, 2) == {1: ["stl", "dreg"], 10: ["stl", "dreg"]}
    assert "profile" not in set(table["statistic"])


def test_duplicate_scores_are_refused():
    scores = planted({"reparam": 0.0})
    with pytest.raises(VaebenchError, match="duplicate"):
        across(pd.concat([scores, scores.head(1)]))
    assert np.isfinite(across(scores, resamples=20)["value"]).all()


def test_the_across_problems_section_reads_the_tables_and_draws_the_improvements():
    scores = planted({"reparam": 0.0, "stl": 2.0, "planted": -3.0}, noise=0.1, seeds=4)
    table = across(scores, resamples=100)
    moves = transfer(scores, leaders(table, 2))
    text = across_section(table, moves)
    assert text.startswith("Across these 5 problems, use stl at K=1 (ahead of reparam); stl at K=10")
    assert "| 1 | stl | " in text and "| 10 | reparam | " in text and "| – | 0 [0, 0] vs stl |" in text
    assert "planted" not in text and "| 1 | stl | reparam | 5 | 0 | 0 |" in text  # the leaders only
    ax = plot_improvement(table)
    assert len(ax.get_yticklabels()) == 4  # stl and planted against reparam, at K = 1 and 10


def _moves(rows: list[tuple]) -> pd.DataFrame:
    """A transfer table at K = 10 over 5 problems from (a, b, a ahead, b ahead), winners as :func:`transfer`."""
    frame = pd.DataFrame(rows, columns=["a", "b", "a_ahead", "b_ahead"])
    frame = frame.assign(num_samples=10, problems=5, neither=5 - frame["a_ahead"] - frame["b_ahead"])
    frame["winner"] = [a if x >= 3 and y == 0 else b if y >= 3 and x == 0 else "" for a, b, x, y in rows]
    return frame


def test_the_takeaway_names_an_estimator_only_when_it_wins_every_pair_else_the_closest_pair():
    won = _moves([("stl", "dreg", 3, 0), ("stl", "iwae", 4, 0), ("dreg", "iwae", 1, 1)])
    assert takeaway(won, 5).startswith("Across these 5 problems, use stl at K=10 (ahead of dreg, iwae)")
    # stl ahead of dreg on 3 but behind on 1: no estimator; that pair is one problem from transferring, the
    # pair ahead on 2 and behind on none is two short of a majority
    lost = _moves([("stl", "dreg", 3, 1), ("stl", "iwae", 4, 0), ("iwae", "dreg", 0, 2)])
    text = takeaway(lost, 5)
    assert text.startswith("No estimator transfers across these 5 problems")
    assert "closest: stl over dreg at K=10, ahead on 3 of 5 problems and behind on 1" in text
    assert text.endswith("Pairs that transfer: stl over iwae at K=10")
    assert takeaway(_moves([]), 5) == "No two estimators to compare across these 5 problems"
