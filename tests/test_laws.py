"""The scaling laws' evidence (vaebench.checks.laws): the harness against closed forms on the Gaussian toy,
the regime rule on real checkpoints, and the laws unit's measurements shrunk into the one claims table.

Statistical comparisons are z-tests on log-ratios with standard errors read off 95% intervals, at a
threshold with a stated false-alarm rate.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from vaebench.analysis.claims import CLAIMS, NOT_MEASURED, Evidence, Law, claims_table
from vaebench.analysis.scaling import scaling_laws
from vaebench.checks.laws import CHECKPOINTS, checkpoint, closed_form_gradients, near_posterior_model
from vaebench.config import preset
from vaebench.config.sections import LAW_GRID
from vaebench.data import load_dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import make_estimator
from vaebench.exact import kl_to_posterior
from vaebench.measures.variance import GradientSample, VarianceOptions, layout, measure_variance
from vaebench.measures.variance.harness import summarize
from vaebench.measures.weights import weight_summary
from vaebench.stats import normal_quantile
from vaebench.suite import cost, units
from vaebench.toy import toy_checkpoint

Z95 = normal_quantile(0.95)


@pytest.fixture(scope="module")
def toy():
    data = load_dataset("gaussian-toy")
    return toy_checkpoint(data).double(), data.train[:4].double()


@pytest.mark.parametrize("name", ["reparam", "stl", "iwae", "dreg"])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_the_closed_form_is_autograd_draw_by_draw(toy, name, k):
    """Same noise, same gradient: the closed form has no autograd in it, so this checks both."""
    model, x = toy
    est = make_estimator(name)
    out = est(model, x, num_samples=k, generator=torch.Generator().manual_seed(k))
    params = layout(model).params
    grads = torch.autograd.grad(out.surrogate, params)
    eps = torch.randn((k, *x.shape), generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    expected = closed_form_gradients(model, x, eps, name)
    torch.testing.assert_close(torch.cat([g.reshape(-1) for g in grads]), expected, rtol=1e-10, atol=1e-12)


def closed_form_figures(model, x, name: str, k: int, replicates: int, seed: int) -> dict[str, dict]:
    """The variance measure's figures of ``replicates`` closed-form gradients with independent noise."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.stack(
        [
            closed_form_gradients(
                model, x, torch.randn((k, *x.shape), generator=gen, dtype=torch.float64), name
            )
            for _ in range(replicates)
        ]
    )
    lay = layout(model)
    blocks = list(rows.split([p.numel() for p in lay.params], dim=1))
    return {r["group"]: r for r in summarize(GradientSample(blocks, lay), resamples=400, seed=seed)}


@pytest.mark.parametrize(("name", "k"), [("iwae", 1), ("iwae", 10), ("dreg", 10), ("dreg", 100)])
def test_the_harness_agrees_with_the_closed_form_k_by_k(toy, name, k):
    """The harness (tiled engine, its summary) against 600 closed-form replicates of independent noise: each
    figure's log-ratio within 3.3 combined standard errors (false alarm 1e-3 per comparison, 14 here)."""
    model, x = toy
    harness = measure_variance(
        model, make_estimator(name), x, k, 600, seed=7, options=VarianceOptions(weights=0, timing_repeats=1)
    )
    harness = harness.set_index("group")
    closed = closed_form_figures(model, x, name, k, 600, seed=11)
    z = normal_quantile(1 - 1e-3)
    checks = [("decoder", "snr_norm"), ("decoder", "trace_var"), ("encoder", "trace_var")]
    if name == "dreg":
        checks.append(("encoder", "snr_norm"))  # resolved; IWAE's encoder SNR is near 0 here
    for group, figure in checks:
        h, c = harness.loc[group], closed[group]
        se = [(math.log(r[f"{figure}_high"]) - math.log(r[f"{figure}_low"])) / (2 * Z95) for r in (h, c)]
        assert abs(math.log(h[figure] / c[figure])) < z * math.hypot(*se), (group, figure)


def test_a_heavy_tailed_checkpoint_is_not_testable_and_a_light_one_is_tested():
    """The regime rule on real checkpoints: the toy with q narrower than the posterior (s² = 0.3: a power
    tail of shape 0.4, read as k̂ > 1/2 at these S) gives "not testable" for every IWAE law; the paper's
    toy (s² = 2/3, bounded weights) gives tested verdicts."""
    data = load_dataset("gaussian-toy")
    x = data.train[:4]
    verdicts = {}
    for label, q_variance in (("heavy", 0.3), ("light", 2 / 3)):
        model = toy_checkpoint(data, q_variance=q_variance)
        weights = weight_summary(model, x, 2000)
        rows = [
            measure_variance(
                model,
                make_estimator("iwae"),
                x,
                k,
                150,
                options=VarianceOptions(weights=weights, timing_repeats=1),
            )
            for k in (10, 30, 100)
        ]
        laws = scaling_laws(pd.concat(rows).assign(checkpoint=label), checkpoint=label)
        verdicts[label] = laws.set_index(["group", "figure"])["verdict"]
    assert verdicts["heavy"].str.startswith("not testable here: heavy-tailed weights").all()
    light = verdicts["light"]
    assert light[("decoder", "snr_norm")] in ("agrees", "fails")
    assert not light.str.startswith("not testable").any()


def test_the_near_posterior_checkpoint_is_near_its_posterior():
    model = near_posterior_model()
    near, x = checkpoint("near-posterior", batch_size=16)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), near.parameters(), strict=True))
    kl = kl_to_posterior(near, x).mean().item()
    assert 0 < kl < 0.5  # near: mostly the over-dispersion's part, 3 (1.2² - 1 - log 1.2²) / 2 = 0.11 nats
    summary = weight_summary(near, x, 2000)
    assert summary["khat_max"] < 0.25  # over-dispersed: bounded weights, DReG's E[w^4] condition holds
    with pytest.raises(VaebenchError, match="unknown checkpoint"):
        checkpoint("digits")


def test_the_laws_measured_shrunk_state_the_claims_of_the_one_table():
    """The laws unit's path (vaebench.suite.execute), shrunk: each built checkpoint's weights drawn once, every
    estimator at every K; the laws fitted as the report fits them; the claims read from the one table."""
    frames = []
    for label in CHECKPOINTS:
        model, x = checkpoint(label, batch_size=4)
        options = VarianceOptions(timing_repeats=1, weights=weight_summary(model, x, 256))
        for name in ("iwae", "dreg", "ovis-mc", "reparam"):
            for k in (3, 10, 30):
                frame = measure_variance(model, make_estimator(name), x, k, 60, options=options)
                frames.append(frame.assign(checkpoint=label, status="ok"))
    variance = pd.concat(frames, ignore_index=True)
    assert variance.groupby("checkpoint")["khat_max"].nunique().eq(1).all()  # one diagnostic per checkpoint
    laws = pd.concat(
        [scaling_laws(variance, checkpoint=c, unfitted=True) for c in CHECKPOINTS], ignore_index=True
    )
    assert laws["verdict"].notna().all() and set(laws["figure"]) == {"trace_var", "snr_norm", "snr_rms"}
    empty = pd.DataFrame()
    table = claims_table(Evidence(laws, empty, empty, empty, empty)).set_index("key")
    assert list(table.index) == [c.key for c in CLAIMS]
    for c in CLAIMS:
        measured = table.loc[c.key, "verdict"] != NOT_MEASURED
        assert measured == isinstance(c.measure, Law), (c.key, table.loc[c.key, "verdict"])
    assert table.loc["rainforth-encoder", "where"] == "toy"
    assert table.loc["roeder", "detail"] == "run `python -m vaebench run --preset scaling`"
    nothing = claims_table(Evidence(laws.iloc[0:0], empty, empty, empty, empty))
    assert nothing["verdict"].eq(NOT_MEASURED).all()


def test_closed_form_refuses_other_estimators(toy):
    model, x = toy
    with pytest.raises(VaebenchError, match="no closed form"):
        closed_form_gradients(model, x, torch.zeros(1, *x.shape), "reinforce")


def test_the_laws_units_leave_out_the_k_an_estimators_own_work_cannot_afford() -> None:
    """OVIS_MC holds K x S x K numbers per datapoint: the scaling preset's laws units measure it up to K = 100, say
    so in a plan note and a skipped row's reason, and time only what they measure; the others keep every K."""
    config = preset("scaling")
    kept, note = cost.laws_grid(config, "ovis-mc")
    assert kept == [k for k in LAW_GRID if k <= 100] and "K=300,1000" in note and "GiB" in note
    assert cost.laws_grid(config, "iwae") == (list(LAW_GRID), "")
    assert cost.laws_notes(config) == [note]
    unit = next(u for u in units.plan(config) if u.kind == "laws" and u.estimator == "ovis-mc")
    rates = cost.nominal(config, 1)
    spent = cost.seconds(unit, config, rates)
    without_cap = cost.seconds(unit, dataclasses.replace(config, samples=(1000,)), rates)
    assert spent < 30 and without_cap == 0.0  # K = 1000 alone: nothing measured, nothing timed
