"""Tests for the reading's comparison with published gaps (vaebench.report.published) and the study preset.

Every comparison sentence is fed both signs (and an interval that holds 0): its words must follow the number.
"""

from __future__ import annotations

import pandas as pd
import pytest

from vaebench.analysis import summaries
from vaebench.analysis.published import BURDA_GAP
from vaebench.config import preset
from vaebench.report.published import published_comparisons

MNIST = {"data": "mnist", "likelihood": "bernoulli"}


def _convergence(
    final: dict[tuple[str, int], float], spread: float = 0.1, slope: float = 0.0
) -> pd.DataFrame:
    """Finished runs of three seeds with test-ELBO curves rising by ``slope`` per step and the given test
    log-likelihoods (``slope`` 0: flat curves, judged levelled off)."""
    rows = []
    for (name, k), value in final.items():
        objective = "elbo" if name == "reparam" else "iwae"
        for seed in (0, 1, 2):
            # a seed effect shared by every setting (pairing removes it) and one of the setting's own
            shift = 0.3 * seed + spread * (seed - 1) * {"reparam": 0.0, "iwae": 1.0, "dreg": -1.0}[name]
            for step in range(0, 401, 50):
                rows.append(
                    (name, k, seed, step, "test_elbo", value - 5 + shift + slope * (step - 400), objective)
                )
            rows.append((name, k, seed, 400, "test_log_likelihood", value + shift, objective))
    frame = pd.DataFrame(
        rows, columns=["estimator", "num_samples", "seed", "step", "metric", "value", "objective"]
    )
    return frame.assign(sampler="iid", diverged=False, wall_time_s=1.0, grad_evals=1, latent_samples=1)


def _lines(final: dict, spread: float = 0.1, slope: float = 0.0, **where) -> list[str]:
    convergence = _convergence(final, spread, slope)
    summary = summaries.summary_table(None, convergence, None)
    return published_comparisons(summary, convergence, **(where or MNIST))


@pytest.mark.parametrize(
    ("iwae", "words"),
    [
        (-88.4, ["**agrees** in direction (IWAE better", "IWAE ahead by 1.60 nats", "1.57 nats lies within"]),
        (-92.0, ["**does not agree**: IWAE is worse", "IWAE behind by 2.00 nats", "1.57 nats lies outside"]),
    ],
)
def test_the_iwae_sentence_follows_the_sign_of_its_gap(iwae: float, words: list[str]) -> None:
    (line,) = _lines({("reparam", 50): -90.0, ("iwae", 50): iwae})
    assert line.startswith("IWAE against the VAE (`reparam`) at K=50: test log-likelihood difference ")
    for word in words:
        assert word in line, word
    assert f"{BURDA_GAP:.2f}" in line
    assert "favour" not in line  # the old sentence said "in IWAE's favour" whatever the sign


def test_an_iwae_gap_whose_interval_holds_0_is_inconclusive_never_a_disagreement() -> None:
    # per-seed gaps 1.6 - 3, 1.6, 1.6 + 3: the interval holds both 0 and the published 1.57
    (line,) = _lines({("reparam", 50): -90.0, ("iwae", 50): -88.4}, spread=3.0)
    assert "**inconclusive**: the interval holds 0" in line and "not separated from 0" in line
    assert "does not agree" not in line and "agrees" not in line.replace("**inconclusive**", "")
    assert "1.57 nats lies within the interval" in line  # said on its own, no contradiction


@pytest.mark.parametrize(
    ("dreg", "spread", "words"),
    [
        (-88.1, 0.01, ["**agrees**: DReG is better", "DReG ahead by 0.300 nats", "0.300 nats lies within"]),
        (
            -89.0,
            0.01,
            ["**does not agree**: DReG is worse", "DReG behind by 0.600 nats", "0.300 nats lies outside"],
        ),
        (
            -88.6,
            3.0,
            ["**consistent** with it: DReG is not separated from IWAE", "DReG behind by 0.200 nats"],
        ),
    ],
)
def test_the_dreg_sentence_follows_the_sign_of_its_gap(dreg: float, spread: float, words: list[str]) -> None:
    lines = _lines({("reparam", 50): -90.0, ("iwae", 50): -88.4, ("dreg", 50): dreg}, spread=spread)
    line = lines[-1]
    assert line.startswith("DReG against IWAE at K=50")
    for word in words:
        assert word in line, word
    assert "favour" not in line  # the old sentence said "in DReG's favour" whatever the sign


@pytest.mark.parametrize(
    ("where", "slope", "why"),
    [
        (
            {"data": "digits", "likelihood": "gaussian"},
            0.0,
            "this run is on digits with a Gaussian likelihood",
        ),
        (MNIST, 0.02, "had not levelled off"),  # 0.02 nats per step: 2 nats over the last quarter
        (None, 0.0, "this run's data are not known"),
    ],
)
def test_a_run_that_cannot_compare_itself_says_why_and_states_only_its_own_gap(where, slope, why) -> None:
    final = {("reparam", 50): -90.0, ("iwae", 50): -88.4, ("dreg", 50): -88.1}
    convergence = _convergence(final, slope=slope)
    summary = summaries.summary_table(None, convergence, None)
    kwargs = where if where is not None else {}
    for line in published_comparisons(summary, convergence, **kwargs):
        assert "Not set beside" in line and why in line, line
        assert "agree" not in line and "consistent" not in line and "inconclusive" not in line
        assert "ahead by" in line  # its own gap is still stated, in words that follow its sign


def test_training_too_short_to_judge_is_not_compared() -> None:
    final = {("reparam", 50): -90.0, ("iwae", 50): -88.4}
    convergence = _convergence(final)
    convergence = convergence[(convergence["step"] == 400) | (convergence["metric"] != "test_elbo")]
    summary = summaries.summary_table(None, convergence, None)
    (line,) = published_comparisons(summary, convergence, **MNIST)
    assert "training was too short to judge whether the curves had levelled off" in line


def test_on_fashion_mnist_only_the_direction_is_compared() -> None:
    (line,) = _lines(
        {("reparam", 50): -90.0, ("iwae", 50): -88.4}, data="fashion-mnist", likelihood="bernoulli"
    )
    assert "**agrees** in direction" in line and "only the direction is compared" in line
    assert "lies within" not in line


def test_the_reading_carries_the_comparison_and_needs_the_settings() -> None:
    convergence = _convergence({("reparam", 5): -90.0, ("iwae", 5): -89.0})
    summary = summaries.summary_table(None, convergence, None)
    assert any(
        "IWAE against the VAE" in line for line in published_comparisons(summary, convergence, **MNIST)
    )
    only_k1 = _convergence({("reparam", 1): -90.0, ("iwae", 1): -90.0})
    assert published_comparisons(summaries.summary_table(None, only_k1, None), only_k1, **MNIST) == []


@pytest.mark.parametrize("name", ["fashion-mnist", "scaling"])
def test_the_study_presets_validate(name: str) -> None:
    from vaebench.config import validate

    config = preset(name)
    validate(config)
    if name == "fashion-mnist":
        assert config.data.binarize == "dynamic" and config.model.likelihood == "bernoulli"
        assert set(config.samples) == {1, 5, 50} and len(config.seeds) >= 3
        assert {"reparam", "iwae", "dreg"} <= set(config.estimators)
