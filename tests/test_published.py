"""Tests for the reading's comparison with published gaps (vaebench.report.published) and the study preset."""

from __future__ import annotations

import pandas as pd
import pytest

from vaebench.analysis import summaries
from vaebench.config import preset
from vaebench.report.published import BURDA_GAP, published_comparisons
from vaebench.report.reading import reading


def _convergence(final: dict[tuple[str, int], float], spread: float = 0.1) -> pd.DataFrame:
    """Finished runs of three seeds with flat test-ELBO curves and the given test log-likelihoods."""
    rows = []
    for (name, k), value in final.items():
        objective = "elbo" if name == "reparam" else "iwae"
        for seed in (0, 1, 2):
            # a seed effect shared by every setting (pairing removes it) and one of the setting's own
            shift = 0.3 * seed + spread * (seed - 1) * {"reparam": 0.0, "iwae": 1.0, "dreg": -1.0}[name]
            for step in range(0, 401, 50):
                rows.append((name, k, seed, step, "test_elbo", value - 5 + shift, objective))
            rows.append((name, k, seed, 400, "test_log_likelihood", value + shift, objective))
    frame = pd.DataFrame(
        rows, columns=["estimator", "num_samples", "seed", "step", "metric", "value", "objective"]
    )
    return frame.assign(sampler="iid", diverged=False, wall_time_s=1.0, grad_evals=1, latent_samples=1)


def _lines(final: dict, spread: float = 0.1) -> list[str]:
    convergence = _convergence(final, spread)
    summary = summaries.summary_table(None, convergence, None)
    return published_comparisons(summary, convergence)


def test_gaps_that_match_the_papers_agree() -> None:
    lines = _lines({("reparam", 50): -90.0, ("iwae", 50): -88.4, ("dreg", 50): -88.1, ("reparam", 1): -91.0})
    iwae, dreg = lines
    assert "IWAE against the VAE (`reparam`) at K=50" in iwae and "1.60" in iwae
    assert "**agrees** in direction" in iwae and f"{BURDA_GAP:.2f}"[:3] in iwae
    assert "lies within it" in iwae and "the curves had levelled off" in iwae
    assert "DReG against IWAE at K=50" in dreg and "**agrees**" in dreg


def test_gaps_against_the_papers_do_not_agree() -> None:
    iwae, dreg = _lines({("reparam", 50): -88.0, ("iwae", 50): -90.0, ("dreg", 50): -91.0})
    assert "**does not agree**: the interval does not lie above 0" in iwae
    assert "does not lie within it" in iwae
    assert "**does not agree**: DReG is worse" in dreg


def test_the_reading_carries_the_comparison_and_needs_the_settings() -> None:
    convergence = _convergence({("reparam", 5): -90.0, ("iwae", 5): -89.0})
    summary = summaries.summary_table(None, convergence, None)
    assert any(
        "IWAE against the VAE" in line
        for line in reading(summary, {"convergence": convergence}, checkpoint=None)
    )
    only_k1 = _convergence({("reparam", 1): -90.0, ("iwae", 1): -90.0})
    assert published_comparisons(summaries.summary_table(None, only_k1, None), only_k1) == []


@pytest.mark.parametrize("name", ["fashion-mnist", "scaling"])
def test_the_study_presets_validate(name: str) -> None:
    from vaebench.config import validate

    config = preset(name)
    validate(config)
    if name == "fashion-mnist":
        assert config.data.binarize == "dynamic" and config.model.likelihood == "bernoulli"
        assert set(config.samples) == {1, 5, 50} and len(config.seeds) >= 3
        assert {"reparam", "iwae", "dreg"} <= set(config.estimators)
