"""The one table of published claims (vaebench.analysis.claims), its gaps and directions fed both signs (and an
interval that holds 0): each verdict must follow the number; the claims section that renders it; the study presets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vaebench.analysis import summaries
from vaebench.analysis.claims import (
    BURDA_GAP,
    CLAIMS,
    FAMILY,
    NOT_MEASURED,
    Claim,
    Direction,
    Evidence,
    Gap,
    claims_table,
)
from vaebench.config import preset
from vaebench.errors import VaebenchError
from vaebench.report.claims import section

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
            shift = 0.3 * seed + spread * (seed - 1) * {"iwae": 1.0, "dreg": -1.0}.get(name, 0.0)
            for step in range(0, 401, 50):
                rows.append(
                    (name, k, seed, step, "test_elbo", value - 5 + shift + slope * (step - 400), objective)
                )
            rows.append((name, k, seed, 400, "test_log_likelihood", value + shift, objective))
    frame = pd.DataFrame(
        rows, columns=["estimator", "num_samples", "seed", "step", "metric", "value", "objective"]
    )
    return frame.assign(sampler="iid", diverged=False, wall_time_s=1.0, grad_evals=1, latent_samples=1)


def _claims(final: dict, spread: float = 0.1, slope: float = 0.0, **where) -> pd.DataFrame:
    convergence = _convergence(final, spread, slope)
    summary = summaries.summary_table(None, convergence, None)
    empty = pd.DataFrame()
    where = where or MNIST
    evidence = Evidence(empty, empty, empty, summary, convergence, where.get("data"), where.get("likelihood"))
    return claims_table(evidence).set_index("key")


@pytest.mark.parametrize(
    ("iwae", "verdict", "size"),
    [(-88.4, "agrees", "1.57 nats lies inside"), (-92.0, "does not agree", "1.57 nats lies outside")],
)
def test_the_iwae_verdict_follows_the_sign_of_its_gap(iwae: float, verdict: str, size: str) -> None:
    row = _claims({("reparam", 50): -90.0, ("iwae", 50): iwae}).loc["burda"]
    assert row["verdict"] == verdict and row["where"] == "K = 50"
    assert row["measured"] == pytest.approx(iwae + 90.0) and row["measured_low"] < row["measured"]
    assert row["theory"] == pytest.approx(BURDA_GAP) and size in row["detail"]


def test_an_iwae_gap_whose_interval_holds_0_is_inconclusive_never_a_disagreement() -> None:
    # per-seed gaps 1.6 - 3, 1.6, 1.6 + 3: the interval holds both 0 and the published 1.57
    row = _claims({("reparam", 50): -90.0, ("iwae", 50): -88.4}, spread=3.0).loc["burda"]
    assert row["verdict"] == "inconclusive" and row["measured_low"] < 0 < row["measured_high"]
    assert "1.57 nats lies inside the interval" in row["detail"]


@pytest.mark.parametrize(
    ("dreg", "spread", "verdict"),
    [(-88.1, 0.01, "agrees"), (-89.0, 0.01, "does not agree"), (-88.6, 3.0, "consistent")],
)
def test_the_dreg_verdict_follows_the_sign_of_its_gap(dreg: float, spread: float, verdict: str) -> None:
    table = _claims({("reparam", 50): -90.0, ("iwae", 50): -88.4, ("dreg", 50): dreg}, spread=spread)
    row = table.loc["dreg-iwae"]
    assert (
        row["verdict"] == verdict and row["theory"] == 0.0
    )  # "at least": an interval holding 0 is consistent
    assert row["measured"] == pytest.approx(dreg + 88.4)


@pytest.mark.parametrize(
    ("where", "slope", "why"),
    [
        (
            {"data": "digits", "likelihood": "gaussian"},
            0.0,
            "this run is on digits with a Gaussian likelihood",
        ),
        (MNIST, 0.02, "had not converged"),  # 0.02 nats per step at a constant rate: 2 nats a quarter
        ({"data": None}, 0.0, "this run's data are not known"),
    ],
)
def test_a_run_that_cannot_compare_itself_says_why_and_states_only_its_own_gap(where, slope, why) -> None:
    table = _claims({("reparam", 50): -90.0, ("iwae", 50): -88.4, ("dreg", 50): -88.1}, slope=slope, **where)
    for key in ("burda", "dreg-iwae"):
        row = table.loc[key]
        assert row["verdict"] == "not comparable" and why in row["detail"], row.to_dict()
        assert row["measured"] > 0  # its own gap is still stated


def test_training_too_short_to_judge_is_not_compared() -> None:
    convergence = _convergence({("reparam", 50): -90.0, ("iwae", 50): -88.4})
    convergence = convergence[(convergence["step"] == 400) | (convergence["metric"] != "test_elbo")]
    summary = summaries.summary_table(None, convergence, None)
    empty = pd.DataFrame()
    row = (
        claims_table(Evidence(empty, empty, empty, summary, convergence, **MNIST))
        .set_index("key")
        .loc["burda"]
    )
    assert row["verdict"] == "not comparable" and "too short to judge" in row["detail"]


def test_on_fashion_mnist_only_the_direction_is_compared() -> None:
    row = _claims({("reparam", 50): -90.0, ("iwae", 50): -88.4}, data="fashion-mnist", likelihood="bernoulli")
    assert (
        row.loc["burda", "verdict"] == "agrees"
        and "only the direction is compared" in row.loc["burda", "detail"]
    )


def test_a_gap_needs_both_settings_above_k_1_and_otherwise_names_its_preset() -> None:
    table = _claims({("reparam", 1): -90.0, ("iwae", 1): -90.0})
    assert table.loc["burda", "verdict"] == NOT_MEASURED
    assert table.loc["burda", "detail"] == "run `python -m vaebench run --preset fashion-mnist`"


def test_a_claim_is_one_row_and_the_section_renders_the_table() -> None:
    """Adding a claim is one row of the table: here a Gap between two other estimators, as an OVIS row would be."""
    extra = Claim(
        "stl-reparam", "STL at least reparam", "a test", "fashion-mnist", Gap("stl", "reparam", 0.0, True)
    )
    final = {("reparam", 50): -90.0, ("iwae", 50): -88.4, ("stl", 50): -89.0}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("vaebench.analysis.claims.CLAIMS", (*CLAIMS, extra))
        table = _claims(final)
    assert table.loc["stl-reparam", "verdict"] == "agrees" and table.loc["burda", "verdict"] == "agrees"
    md = "\n".join(section(table.reset_index()))
    assert "## Published claims" in md and "STL at least reparam" in md and "**agrees**" in md
    nothing = section(_claims({("reparam", 1): -90.0}).reset_index())  # nothing measured: one line, no table
    assert nothing[2].startswith(f"All {len(CLAIMS)} claims are not measured in this run: run `python -m")
    assert not any(line.startswith("|") for line in nothing) and section(pd.DataFrame()) == []


def test_the_stems_of_claims_and_their_neighbours_are_used_once_or_as_the_declared_pair() -> None:
    from pathlib import Path

    import vaebench

    root = Path(vaebench.__file__).parent
    for stem in ("claims", "published", "scaling", "compare", "timing", "yardstick", "contrast"):
        found = sorted(str(p.relative_to(root)) for p in root.rglob(f"{stem}.py"))
        pair = [f"analysis/{stem}.py", f"report/{stem}.py"]
        assert len(found) <= 1 or (stem in vaebench.PAIRS and found == pair), found


def test_the_report_never_imports_the_checks() -> None:
    import ast
    from pathlib import Path

    import vaebench

    for path in (Path(vaebench.__file__).parent / "report").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("vaebench.checks") for n in names), (path.name, names)


@pytest.mark.parametrize("name", ["fashion-mnist", "scaling"])
def test_the_study_presets_validate(name: str) -> None:
    from vaebench.config import validate

    config = preset(name)
    validate(config)
    if name == "fashion-mnist":
        assert config.data.binarize == "dynamic" and config.model.likelihood == "bernoulli"
        assert set(config.samples) == {1, 5, 50} and len(config.seeds) >= 3
        assert {"reparam", "iwae", "dreg"} <= set(config.estimators)


BLR = "blr-breast-cancer"


def _variance(ratios: dict[str, list[float]], ks: dict[str, tuple[int, ...]] | None = None) -> pd.DataFrame:
    """Planted encoder variances on BLR: reparam's 100 x 1.5^seed at every seed (a seed effect the pairing
    removes), each other estimator's that times its per-seed ratio; a decoder row and another problem's row
    that the directions must ignore."""
    rows = []
    for name, per_seed in {"reparam": [1.0, 1.0, 1.0], **ratios}.items():
        for k in (ks or {}).get(name, (1, 10)):
            for seed, r in enumerate(per_seed):
                rows.append((BLR, name, k, seed, "encoder", 100 * 1.5**seed * r))
                rows.append((BLR, name, k, seed, "decoder", 1e9))
                rows.append(("digits", name, k, seed, "encoder", 1e-9))
    frame = pd.DataFrame(rows, columns=["problem", "estimator", "num_samples", "seed", "group", "trace_var"])
    return frame.assign(sampler="iid")


def _directions(variance: pd.DataFrame) -> pd.DataFrame:
    return claims_table(Evidence(variance=variance)).set_index("key")


def test_a_held_direction_agrees_a_reversed_one_does_not_and_an_overlapping_one_is_inconclusive() -> None:
    table = _directions(_variance({
        "reinforce": [300.0, 250.0, 350.0],  # above reparam on every seed: held
        "reinforce-ma": [1.2, 0.8, 1.05],  # overlapping 1 (against reinforce: below, held)
        "reinforce-loo": [610.0, 490.0, 720.0],  # twice reinforce on every seed: reversed
        "reparam-cv": [0.5, 1.5, 1.0],  # overlapping 1, a claim of "not above": consistent
    }))  # fmt: skip
    assert table.loc["mohamed-blr-pathwise", "verdict"] == "agrees"
    row = table.loc["mohamed-blr-pathwise"]
    assert (
        row["where"] == f"{BLR}, K = 10" and row["measured_low"] < row["measured"] < row["measured_high"] < 1
    )
    assert row["measured"] == pytest.approx(1 / (300 * 250 * 350) ** (1 / 3))  # ratio of geometric means
    assert table.loc["mohamed-blr-baseline", "verdict"] == "agrees"
    assert table.loc["mohamed-blr-loo", "verdict"] == "does not agree"
    assert table.loc["mohamed-blr-loo", "measured_low"] > 1
    assert table.loc["mohamed-blr-taylor", "verdict"] == "consistent"
    assert table.loc["mohamed-blr-mvd", "verdict"] == NOT_MEASURED  # mvd did not run
    # the same overlap on a claim of "below" is inconclusive, never a disagreement
    with pytest.MonkeyPatch.context() as patch:
        below = Claim(
            "cv-below",
            "reparam-cv below reparam",
            "a test",
            "problems",
            Direction(BLR, "reparam-cv", "reparam"),
        )
        patch.setattr("vaebench.analysis.claims.CLAIMS", (*CLAIMS, below))
        row = _directions(_variance({"reparam-cv": [0.5, 1.5, 1.0]})).loc["cv-below"]
    assert row["verdict"] == "inconclusive" and row["measured_low"] < 1 < row["measured_high"]


def test_a_direction_is_judged_at_the_family_wise_level_at_the_largest_k_both_ran() -> None:
    from scipy import stats

    ratios = [3.0, 2.0, 5.0]
    variance = _variance(
        {"reinforce-ma": ratios, "reinforce": [1.0] * 3}, ks={"reinforce-ma": (1, 5, 10), "reinforce": (1, 5)}
    )
    row = _directions(variance).loc["mohamed-blr-baseline"]
    assert row["where"] == f"{BLR}, K = 5"
    m = sum(isinstance(c.measure, Direction) for c in CLAIMS)
    d = np.log(ratios)
    half = stats.t.ppf(1 - (1 - FAMILY) / m / 2, 2) * d.std(ddof=1) / np.sqrt(3)
    assert row["measured_low"] == pytest.approx(np.exp(d.mean() - half))
    assert row["measured_high"] == pytest.approx(np.exp(d.mean() + half))
    assert f"{FAMILY:.0%} for the {m} direction claims at once (Bonferroni)" in row["detail"]
    # above 1 on every seed, yet the interval at 1 - 0.05/m holds 1 with three seeds this spread
    assert row["verdict"] == "inconclusive" and row["measured_low"] < 1


def test_a_direction_of_one_seed_cannot_be_judged_and_duplicate_rows_are_refused() -> None:
    variance = _variance({"reinforce": [300.0, 250.0, 350.0]})
    one = variance[variance["seed"] == 0]
    assert _directions(one).loc["mohamed-blr-pathwise", "verdict"] == "cannot be judged"
    with pytest.raises(VaebenchError, match="one row per problem, estimator, K and seed"):
        _directions(pd.concat([variance, variance]))
    nothing = _directions(variance.drop(columns="problem"))
    assert (nothing["verdict"] == NOT_MEASURED).all()
