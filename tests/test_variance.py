"""The gradient-variance harness: exact engines, honest intervals, and the orderings theory guarantees.

Exactness checks (tiled == naive per replicate) feed every engine the same noise and compare to rounding.
Statistical checks use fixed seeds and intervals at level 1 - FALSE_ALARM, so a correct harness fails one
with probability about FALSE_ALARM over the choice of seed; comparisons of two independent estimates use a
z-test on their log-ratio with standard errors read off their intervals.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import vaebench.estimators as estimators_module
from vaebench.checks.exact_gradients import exact_gradient, gradient_draws, linear_gaussian, trace_variance
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS, Estimator, Reparam, make_estimator
from vaebench.exact import exact_elbo
from vaebench.measures.variance import (
    WARM_UP_BATCHES,
    Engine,
    GradientSample,
    VarianceOptions,
    baseline_gradient,
    decompose_noise,
    gradient_sample,
    layout,
    measure_variance,
    measured_minibatch,
    warm_up,
    warm_up_minibatches,
)
from vaebench.measures.variance import harness as harness_module
from vaebench.measures.variance import tiled as tiled_module
from vaebench.measures.variance.engines import resolve_method
from vaebench.measures.variance.harness import summarize
from vaebench.measures.variance.summary import resample_counts
from vaebench.model import GaussianVAE
from vaebench.stats import jackknife_interval, normal_quantile, percentile_interval

FALSE_ALARM = 1e-3
LEVEL = 1 - FALSE_ALARM
Z = normal_quantile(LEVEL)


def small_vae(likelihood: str = "bernoulli", hidden=(6,), seed: int = 0) -> tuple[GaussianVAE, torch.Tensor]:
    model = GaussianVAE(7, 3, hidden=hidden, likelihood=likelihood, activation="relu", seed=seed).double()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(5, 7, generator=gen, dtype=torch.float64)
    if likelihood == "bernoulli":
        x = (x < 0.4).double()
    return model, x


@pytest.fixture
def pooled_noise(monkeypatch):
    """Every estimator draws ε from one pool, row by row, so all engines see the same noise per replicate.

    Row i of the pool goes to the i-th datapoint row asked for: the tiled engine's one call on R·B rows and
    the naive engine's R calls on B rows each then give replicate r, datapoint b the same ε.
    """
    # 32 draws per row: the M x K draws of miwae and piwae, and mvd's 10 standard normals per sample, at K <= 3.
    pool = torch.randn(4000, 32, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    state = {"row": 0}

    def sample(q, num_samples, generator=None, sampler="iid"):
        rows = q.loc.shape[0]
        start = state["row"]
        state["row"] += rows
        eps = pool[start : start + rows, :num_samples, : q.loc.shape[-1]].transpose(0, 1)
        return q.loc + q.scale * eps

    monkeypatch.setattr(estimators_module, "sample_posterior", sample)
    monkeypatch.setattr(estimators_module.base, "sample_posterior", sample)  # what the estimators call
    return state


def ready(name: str, model, x, k: int) -> Estimator:
    est = make_estimator(name)
    warm_up(est, model, x, num_samples=max(k, est.min_samples), baseline_steps=20, calls=5)
    return est.to(x.dtype)


# --- the engines ---------------------------------------------------------------------------------------------


SECOND_ORDER = {"uha"}
"""Estimators whose gradient differentiates ∇_z log p (Langevin dynamics): per-layer products cannot give it."""


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize(
    ("likelihood", "hidden", "k"), [("bernoulli", (6,), 1), ("gaussian", (6,), 3), ("gaussian", (), 2)]
)
def test_tiled_equals_naive_replicate_by_replicate(pooled_noise, monkeypatch, name, likelihood, hidden, k):
    # Tiling is valid because, in eval mode, every estimator treats datapoints independently: with the same
    # noise per (replicate, datapoint) the per-replicate gradients must agree to rounding, chunked or not,
    # and with the encoder's first weight kept as factors (forced here: at this size they would not pay).
    monkeypatch.setattr(tiled_module, "factors_pay", lambda *shape: True)
    model, x = small_vae(likelihood, hidden)
    est = ready(name, model, x, k)
    k = max(k, est.min_samples)
    if name in SECOND_ORDER:  # the tiled engine refuses it; batched falls back to vmap, checked against naive
        with pytest.raises(VaebenchError, match="method='tiled' does not reproduce"):
            gradient_sample(model, est, x, k, 2, engine=Engine(method="tiled"))
        pooled_noise["row"] = 0
        naive = gradient_sample(model, est, x, k, 1, engine=Engine(method="naive")).flat()
        assert gradient_sample(model, est, x, k, 2).method == "vmap"
        pooled_noise["row"] = 0
        vmapped = gradient_sample(model, est, x, k, 3, engine=Engine(method="vmap")).flat()
        # The pooled sampler runs once under vmap: every replicate is the naive first one.
        torch.testing.assert_close(vmapped, naive.expand(3, -1), rtol=1e-9, atol=1e-11)
        return
    out = {}
    for method, chunk, factored in (("naive", None, False), ("tiled", None, False), ("tiled", 3, True)):
        pooled_noise["row"] = 0
        sample = gradient_sample(
            model, est, x, k, 7, engine=Engine(method=method, chunk_size=chunk, factored=factored)
        )
        assert bool(sample.factors) == factored
        out[method, chunk] = sample.flat()
    reference = out["naive", None]
    assert torch.isfinite(reference).all()
    torch.testing.assert_close(out["tiled", None], reference, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(out["tiled", 3], reference, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", ["reparam", "reinforce-nvil", "dreg"])
def test_vmap_engine_is_exact(pooled_noise, name):
    # Under vmap the pooled sampler runs once for all replicates, so each must equal the naive first one.
    model, x = small_vae("gaussian")
    est = ready(name, model, x, 2)
    pooled_noise["row"] = 0
    naive = gradient_sample(model, est, x, 2, 1, engine=Engine(method="naive")).flat()
    pooled_noise["row"] = 0
    vmapped = gradient_sample(model, est, x, 2, 4, engine=Engine(method="vmap")).flat()
    torch.testing.assert_close(vmapped, naive.expand_as(vmapped), rtol=1e-9, atol=1e-11)


def test_nvil_rescaling_is_undone_on_the_encoder_only():
    model, x = small_vae()
    est = ready("reinforce-nvil", model, x, 1)
    est.variance.fill_(9.0)  # as after a noisy warm-up: NVIL divides its encoder gradient by √v = 3
    assert est.encoder_scale == pytest.approx(1 / 3)
    raw = gradient_sample(model, est, x, 1, 3, engine=Engine(rescale=False))
    scaled = gradient_sample(model, est, x, 1, 3)
    lay = raw.layout
    for i, (a, b) in enumerate(zip(raw.blocks, scaled.blocks, strict=True)):
        factor = 1 / est.encoder_scale if i in lay.encoder else 1.0
        torch.testing.assert_close(b, a * factor)


class _FreeWeights(torch.nn.Module):
    """A linear-Gaussian model written with bare parameters (no nn.Linear): the tiled engine cannot see it."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.enc = torch.nn.Parameter(0.3 * torch.randn(4, 5, generator=gen, dtype=torch.float64))
        self.dec = torch.nn.Parameter(0.3 * torch.randn(5, 2, generator=gen, dtype=torch.float64))

    def posterior(self, x):
        loc, raw = (x @ self.enc.T).chunk(2, -1)
        return torch.distributions.Normal(loc, torch.nn.functional.softplus(raw) + 0.1)

    def log_joint(self, x, z):
        log_lik = torch.distributions.Normal(z @ self.dec.T, 1.0).log_prob(x).sum(-1)
        return log_lik + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)


def test_models_without_linear_layers_fall_back_to_vmap():
    model = _FreeWeights()
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert resolve_method(model, layout(model), "batched") == "vmap"
    with pytest.raises(VaebenchError, match="method='vmap'"):
        resolve_method(model, layout(model), "tiled")
    frame = measure_variance(
        model, make_estimator("reparam"), x, 2, 50, options=VarianceOptions(timing_repeats=1)
    )
    assert list(frame["group"]) == ["all"] and (frame["method"] == "vmap").all()
    assert frame["trace_var"].iloc[0] > 0


def test_the_tiled_probe_catches_parameters_read_outside_their_layers():
    # The closed-form ELBO reads the decoder's weight directly: hooks on nn.Linear cannot see that use.
    model, x = linear_gaussian()
    with pytest.raises(VaebenchError, match="does not reproduce"):
        gradient_sample(model, ExactGradient(), x, 1, 3, engine=Engine(method="tiled"))
    sample = gradient_sample(model, ExactGradient(), x, 1, 3)
    assert sample.method == "vmap"
    torch.testing.assert_close(sample.flat(), exact_gradient_in_layout(model, x).expand(3, -1))


def exact_gradient_in_layout(model, x) -> torch.Tensor:
    lay = layout(model)
    grads = torch.autograd.grad(-exact_elbo(model, x).mean(), lay.params)
    return torch.cat([g.reshape(-1) for g in grads])


# --- agreement with brute force ------------------------------------------------------------------------------


def se_from_interval(frame: pd.DataFrame, name: str, group: str, level: float) -> tuple[float, float]:
    """(estimate, standard error) of a figure from its interval, read as estimate ± z·se."""
    row = frame.set_index("group").loc[group]
    return float(row[name]), float(row[f"{name}_high"] - row[f"{name}_low"]) / (2 * normal_quantile(level))


def test_linear_gaussian_reparam_variance_matches_a_brute_force_loop():
    # A plain loop of .backward() calls (vaebench.checks.exact_gradients) with many draws is the ground truth; its own
    # standard error is accounted for in the z-test.
    model, x = linear_gaussian()
    est = make_estimator("reparam")
    frame = measure_variance(
        model, est, x, 3, 300, seed=3, options=VarianceOptions(level=0.95, timing_repeats=1)
    )
    truth, truth_se = trace_variance(gradient_draws(model, est, x, 3, 2000, seed=8))
    value, se = se_from_interval(frame, "trace_var", "all", 0.95)
    assert abs(value - truth) < Z * math.hypot(se, truth_se)
    # The interval itself, at level 1 - FALSE_ALARM, covers the truth.
    wide = measure_variance(
        model, est, x, 3, 300, seed=3, options=VarianceOptions(level=LEVEL, timing_repeats=1)
    )
    row = wide.set_index("group").loc["all"]
    slack = Z * truth_se
    assert row["trace_var_low"] - slack <= truth <= row["trace_var_high"] + slack


@pytest.mark.parametrize("name", ["reparam", "reinforce"])
def test_batched_and_naive_agree_within_intervals_on_a_vae(name):
    model, x = small_vae()
    est = make_estimator(name).double()
    frames = {
        m: measure_variance(
            model, est, x, 1, 200, seed=i, options=VarianceOptions(method=m, level=0.95, timing_repeats=1)
        )
        for i, m in enumerate(("batched", "naive"))
    }
    assert frames["batched"]["method"].iloc[0] == "tiled"
    for group in ("encoder", "decoder", "all"):
        for figure in ("trace_var", "snr_norm"):
            a, b = (se_from_interval(frames[m], figure, group, 0.95) for m in ("batched", "naive"))
            assert abs(math.log(a[0] / b[0])) < Z * math.hypot(a[1] / a[0], b[1] / b[0]), (group, figure)


def brute_force_figures(g: np.ndarray, ref: np.ndarray, counts: np.ndarray, level: float) -> dict:
    """The figures of `summary`, written out on the replicate matrix g [n, P] with explicit resampled copies."""
    n = g.shape[0]
    mean = g.mean(0)
    tv = float(g.var(0, ddof=1).sum())
    sd = g.std(0, ddof=1)
    varies = sd > 0
    groups, size = 10, n // 10
    loo = []
    for j in range(groups):
        kept = np.delete(g, np.s_[j * size : (j + 1) * size], axis=0)
        s = kept.std(0, ddof=1)
        loo.append(float(np.mean(np.abs(kept.mean(0))[s > 0] / s[s > 0])))
    snr = float(np.mean(np.abs(mean)[varies] / sd[varies]))
    draws = []
    for w in counts:  # a resample: replicate r taken w_r times; its trace variance, corrected by n / (n - 1)
        mw = (w[:, None] * g).sum(0) / n
        draws.append(float((w[:, None] * (g - mw) ** 2).sum()) / (n - 1) * n / (n - 1))
    cos = g @ ref / (np.linalg.norm(g, axis=1) * np.linalg.norm(ref))
    return {
        "trace_var": tv,
        "trace_var_interval": percentile_interval(np.array(draws), level),
        "mean_sq_norm": float((g**2).sum(1).mean()),
        "snr": snr,
        "snr_interval": jackknife_interval(snr, np.array(loo), level),
        "snr_norm": math.sqrt(max(float(mean @ mean) - tv / n, 0.0) / tv),
        "bias_norm": math.sqrt(max(float((mean - ref) @ (mean - ref)) - tv / n, 0.0)),
        "cosine": float(cos.mean()),
    }


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_summary_equals_the_figures_written_out(monkeypatch, dtype):
    # The summary reduces the sample in cache-sized column tiles, by runs of parameters, with one bootstrap
    # Gram matrix; forcing tiles of a few columns (so tiles split parameters and runs) must not change a figure.
    monkeypatch.setattr(harness_module, "summary_tile", lambda replicates, like: 5)
    model, x = small_vae("gaussian")
    model, x = model.to(dtype), x.to(dtype)
    est = make_estimator("reparam").to(dtype)
    sample = gradient_sample(model, est, x, 2, 40, engine=Engine(method="naive"))
    ref = baseline_gradient(model, x, samples=64)[0]
    rows = {r["group"]: r for r in summarize(sample, baseline=ref, level=0.9, resamples=200, seed=5)}
    counts = resample_counts(40, 200, 5)
    tol = {"rtol": 1e-9, "abs_tol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-4, "abs_tol": 1e-6}
    lay = sample.layout
    for group, members in lay.groups.items():
        g = sample.flat(group).double().numpy()
        offsets = np.cumsum([0] + [p.numel() for p in lay.params])
        r = np.concatenate([ref[offsets[i] : offsets[i + 1]].double().numpy() for i in members])
        want, got = brute_force_figures(g, r, counts, 0.9), rows[group]
        for name in ("trace_var", "mean_sq_norm", "snr", "snr_norm", "bias_norm", "cosine"):
            assert math.isclose(got[name], want[name], rel_tol=tol["rtol"], abs_tol=tol["abs_tol"]), (
                group,
                name,
            )
        for name in ("trace_var", "snr"):
            low, high = want[f"{name}_interval"]
            assert math.isclose(got[f"{name}_low"], low, rel_tol=tol["rtol"], abs_tol=tol["abs_tol"]), (
                group,
                name,
            )
            assert math.isclose(got[f"{name}_high"], high, rel_tol=tol["rtol"], abs_tol=tol["abs_tol"])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_factored_weights_give_the_figures_of_their_blocks(monkeypatch, dtype):
    # The encoder's first weight kept as factors (a, δ): a Gram matrix from K = a aᵀ and per-coordinate sums
    # over gradients formed a few units at a time must equal the reduction of the formed block, interval for
    # interval (tiles of a few columns, so units split across tiles).
    monkeypatch.setattr(tiled_module, "factors_pay", lambda *shape: True)
    monkeypatch.setattr(harness_module, "summary_tile", lambda replicates, like: 5)
    model, x = small_vae("gaussian")
    model, x = model.to(dtype), x.to(dtype)
    est = make_estimator("reinforce").to(dtype)
    sample = gradient_sample(model, est, x, 2, 40, engine=Engine(factored=True))
    assert list(sample.factors) == [0]
    formed = GradientSample([sample.block(i) for i in range(len(sample.blocks))], sample.layout)
    ref = baseline_gradient(model, x, samples=64)[0]
    got, want = (summarize(s, baseline=ref, level=0.9, resamples=200, seed=5) for s in (sample, formed))
    rtol = 1e-9 if dtype == torch.float64 else 1e-4
    for a, b in zip(got, want, strict=True):
        for name in ("trace_var", "mean_sq_norm", "snr", "snr_norm", "bias_norm", "cosine"):
            for f in (name, f"{name}_low", f"{name}_high"):
                assert math.isclose(a[f], b[f], rel_tol=rtol, abs_tol=1e-9), (a["group"], f)
        assert a["snr_coordinates"] == b["snr_coordinates"]


# --- orderings and identities --------------------------------------------------------------------------------


def test_identities_hold_exactly():
    model, x = linear_gaussian()
    frame = measure_variance(
        model, make_estimator("reparam"), x, 2, 60, baseline="auto", options=VarianceOptions(timing_repeats=1)
    )
    rows = frame.set_index("group")
    n = 60
    for g in ("encoder", "decoder", "all"):
        r = rows.loc[g]
        # E||g||² = ||E g||² + tr Cov, so the sample versions obey mean_sq >= (n-1)/n trace_var.
        assert r["mean_sq_norm"] >= (n - 1) / n * r["trace_var"]
        assert r["work_normalized_var"] == pytest.approx(r["trace_var"] * r["seconds_per_estimate"])
        for f in ("trace_var", "mean_sq_norm", "snr", "snr_norm", "cosine", "work_normalized_var"):
            assert r[f"{f}_low"] <= r[f] <= r[f"{f}_high"], f
        assert r["baseline"] == "exact" and r["nan_fraction"] == 0 and r["replicates_used"] == n
    # Traces and squared norms add over groups.
    assert rows.loc["all", "trace_var"] == pytest.approx(
        rows.loc["encoder", "trace_var"] + rows.loc["decoder", "trace_var"]
    )
    assert rows.loc["all", "num_params"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("iw", "elbo"), [("iwae", "reparam"), ("dreg", "stl")])
def test_iw_estimators_at_k1_measure_like_their_elbo_counterparts(iw, elbo):
    # IWAE_1 = ELBO and the same noise stream: every figure must coincide.
    model, x = small_vae("gaussian")
    a, b = (
        measure_variance(
            model, make_estimator(n), x, 1, 40, baseline="auto", options=VarianceOptions(timing_repeats=1)
        )
        for n in (iw, elbo)
    )
    assert a["baseline"].iloc[0] == b["baseline"].iloc[0] == "reparam-4096"
    for f in ("trace_var", "snr", "snr_norm", "bias_norm", "cosine", "trace_var_high"):
        torch.testing.assert_close(torch.tensor(a[f].values), torch.tensor(b[f].values))


def log_ratio(a: pd.DataFrame, b: pd.DataFrame, figure: str = "trace_var", group: str = "encoder"):
    (va, sa), (vb, sb) = se_from_interval(a, figure, group, 0.95), se_from_interval(b, figure, group, 0.95)
    return math.log(va / vb), math.hypot(sa / va, sb / vb)


def test_variance_falls_as_one_over_k_and_snr_norm_grows_as_root_k():
    model, x = linear_gaussian()
    est = make_estimator("reparam")
    one, ten = (
        measure_variance(model, est, x, k, 300, seed=k, options=VarianceOptions(timing_repeats=1))
        for k in (1, 10)
    )
    r, se = log_ratio(one, ten, "trace_var", "all")
    assert abs(r - math.log(10)) < Z * se
    r, se = log_ratio(ten, one, "snr_norm", "all")
    assert abs(r - 0.5 * math.log(10)) < Z * se


@pytest.mark.parametrize(
    ("worse", "better", "k"), [("reinforce", "reparam", 1), ("reinforce", "reinforce-ma", 1)]
)
def test_encoder_variance_orderings(worse, better, k):
    model, x = linear_gaussian()
    a, b = (
        measure_variance(model, ready(n, model, x, k), x, k, 200, options=VarianceOptions(timing_repeats=1))
        for n in (worse, better)
    )
    r, se = log_ratio(a, b)
    assert r - Z * se > 0


def test_bias_is_zero_for_an_unbiased_estimator_and_caught_for_a_biased_one():
    class ScaleBlocked(Reparam):  # no gradient through σ: a biased encoder gradient
        def estimate(self, model, x, num_samples, generator):
            q = model.posterior(x)
            eps = torch.randn((num_samples, *q.loc.shape), generator=generator, dtype=x.dtype)
            z = q.loc + q.scale.detach() * eps
            return self._output((model.log_joint(x, z) - q.log_prob(z).sum(-1)).mean(0))

    model, x = linear_gaussian()
    exact = baseline_gradient(model, x)
    torch.testing.assert_close(exact[0], exact_gradient(model, x))
    fair = measure_variance(
        model, make_estimator("reparam"), x, 2, 300, baseline=exact, options=VarianceOptions(level=LEVEL)
    )
    biased = measure_variance(
        model, ScaleBlocked(), x, 2, 300, baseline=exact, options=VarianceOptions(level=LEVEL)
    )
    assert (fair["bias_norm_low"] == 0).all()  # the interval reaches 0
    assert biased.set_index("group").loc["encoder", "bias_norm_low"] > 0
    assert (fair["mean_error_norm"] < 3 * fair["bias_floor"]).all()


# --- bad input and NaN ---------------------------------------------------------------------------------------


def test_nan_replicates_are_dropped_and_counted(pooled_noise):
    class SometimesNaN(Reparam):  # a datapoint whose noise ε_1 exceeds 1.5 poisons its replicate
        def estimate(self, model, x, num_samples, generator):
            q = model.posterior(x)
            z = estimators_module.sample_posterior(q, num_samples, generator)
            f = (model.log_joint(x, z) - q.log_prob(z).sum(-1)).mean(0)
            eps = (z[0, :, 0] - q.loc[:, 0]) / q.scale[:, 0]
            poison = torch.where(eps.detach() > 1.5, float("nan"), 1.0)  # per row: no 0·NaN leaking across
            return self._output(f * poison)

    model, x = linear_gaussian()
    frames = {}
    for method in ("naive", "tiled"):
        pooled_noise["row"] = 0
        frames[method] = measure_variance(
            model, SometimesNaN(), x, 1, 40, options=VarianceOptions(method=method, timing_repeats=1)
        )
    naive, tiled = frames["naive"], frames["tiled"]
    assert 0 < naive["nan_fraction"].iloc[0] < 1
    pd.testing.assert_series_equal(naive["replicates_used"], tiled["replicates_used"])
    torch.testing.assert_close(
        torch.tensor(naive["trace_var"].values), torch.tensor(tiled["trace_var"].values)
    )
    assert naive["trace_var"].notna().all()

    class AlwaysNaN(Reparam):
        def estimate(self, model, x, num_samples, generator):
            q = model.posterior(x)
            return self._output(q.loc.sum(-1) * float("nan"))

    dead = measure_variance(model, AlwaysNaN(), x, 1, 5, options=VarianceOptions(timing_repeats=1))
    assert (dead["nan_fraction"] == 1).all() and dead["trace_var"].isna().all()


def test_bad_input_is_named():
    model, x = linear_gaussian()
    est = make_estimator("reparam")
    with pytest.raises(VaebenchError, match=r"replicates must be an integer >= 2"):
        measure_variance(model, est, x, 1, 1)
    with pytest.raises(VaebenchError, match=r"num_samples.*>= 2 for reinforce-loo"):
        measure_variance(model, make_estimator("reinforce-loo"), x, 1, 10)
    with pytest.raises(VaebenchError, match=r"unknown method 'fast'"):
        measure_variance(model, est, x, 1, 10, options=VarianceOptions(method="fast"))
    with pytest.raises(VaebenchError, match=r"'exact' is the ELBO gradient.*IWAE_3"):
        measure_variance(model, make_estimator("iwae"), x, 3, 10, baseline=baseline_gradient(model, x))
    with pytest.raises(VaebenchError, match=r"shape \[5, 5\]|shape \[B, D\]"):
        measure_variance(model, est, x[0], 1, 10)
    with pytest.raises(VaebenchError, match=r"at least 2 minibatches"):
        decompose_noise(model, est, [x], 1, 10)


# --- warm-up, noise decomposition, the driver ----------------------------------------------------------------


def test_warm_up_sets_baselines_without_touching_the_model():
    model, x = linear_gaussian()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ma = warm_up(make_estimator("reinforce-ma"), model, x, num_samples=2)
    assert not ma.training and ma.steps > 0 and ma.baseline != 0
    nvil = warm_up(
        make_estimator("reinforce-nvil"), model, x.float().double(), num_samples=2, baseline_steps=30
    )
    assert not nvil.training and nvil.variance != 1 and all(p.grad is None for p in nvil.parameters())
    assert any(p.abs().sum() > 0 for p in nvil.baseline_net[-1].parameters())  # b(x) was fitted
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())


def _variance_unit(tmp_path, estimators, samples, *, seeds=(0,), replicates=4, baseline_samples=0):
    """A suite context on digits with a tiny model, its anchor checkpoints written as the anchor unit would."""
    from vaebench.config import resolve
    from vaebench.suite import store
    from vaebench.suite.context import Context
    from vaebench.suite.units import ANCHOR, Unit

    overrides = {
        "estimators": list(estimators), "samples": list(samples), "seeds": [0],
        "model": {"z_dim": 2, "hidden": [8]},
        "variance": {"seeds": list(seeds), "replicates": replicates, "batch_size": 50,
                     "baseline_samples": baseline_samples, "checkpoints": ["init", "end"]},
    }  # fmt: skip
    config, _ = resolve(overrides=overrides)
    ctx = Context(config, tmp_path)
    state = ctx.model_factory(0).state_dict()
    anchor = {"estimator": "reparam", "seed": 0, "diverged_step": None,
              "checkpoints": {"init": {"step": 0, "state": state}, "end": {"step": 0, "state": state}}}  # fmt: skip
    store.save(Unit(ANCHOR, "checkpoints"), anchor, tmp_path, "test")
    return ctx


def test_the_suite_never_warms_up_on_the_measured_minibatch(tmp_path, monkeypatch):
    # A baseline fitted on the batch it is measured on learns that batch's f (NVIL's b(x) reached R^2 = 0.97
    # there) and flatters its variance 30x; the suite warms up on other rows only.
    from vaebench.suite import execute
    from vaebench.suite.units import Unit

    seen = []

    def spy(est, model, batches, **kwargs):
        seen.append((est.name, batches))
        return warm_up(est, model, batches, baseline_steps=5, calls=3, **kwargs)

    monkeypatch.setattr(execute, "warm_up", spy)
    ctx = _variance_unit(tmp_path, ["reparam", "reinforce-ma", "reinforce-nvil"], [2], seeds=(0, 1))
    data = ctx.dataset
    for seed in (0, 1):
        seen.clear()
        frame = execute.execute(Unit("variance", f"end-s{seed}", seed=seed, checkpoint="end"), ctx)
        measured = {tuple(row.tolist()) for row in measured_minibatch(data, 50, seed)}
        assert [name for name, _ in seen] == ["reinforce-ma", "reinforce-nvil"]  # stateless: no warm-up
        for _, batches in seen:
            assert len(batches) == WARM_UP_BATCHES
            assert not measured & {tuple(row.tolist()) for b in batches for row in b}
        warmed = frame.groupby("estimator")["warm_up_batches"].max().to_dict()
        assert warmed == {"reparam": 0, "reinforce-ma": 10, "reinforce-nvil": 10}
        assert set(frame["seed"]) == {seed}


def test_a_training_set_of_one_minibatch_has_none_to_warm_up_on():
    from vaebench.data import load_dataset

    data = load_dataset("synthetic", n_train=40, n_test=10, x_dim=5, z_dim=2)
    with pytest.raises(VaebenchError, match="none other than the measured one"):
        warm_up_minibatches(data, 50, 0)
    assert len(warm_up_minibatches(data, 10, 0)) == 3  # 40 rows: the measured batch and 3 others


class ExactGradient(Estimator):
    """The exact ELBO gradient as an 'estimator': no Monte Carlo noise at all."""

    def estimate(self, model, x, num_samples, generator):
        return self._output(exact_elbo(model, x))


def test_noise_decomposition_separates_the_two_sources():
    model, _ = linear_gaussian()
    gen = torch.Generator().manual_seed(4)
    batches = [torch.randn(4, 5, generator=gen, dtype=torch.float64) for _ in range(12)]
    # No MC noise: the Monte Carlo part is 0 and the minibatch part is the spread of the exact gradients.
    exact = decompose_noise(model, ExactGradient(), batches, 1, 3).set_index("group")
    grads = torch.stack([exact_gradient(model, b) for b in batches])
    assert exact.loc["all", "mc_var"] == pytest.approx(0, abs=1e-12)
    assert exact.loc["all", "minibatch_var"] == pytest.approx(float(grads.var(0).sum()))
    # One batch repeated: no minibatch noise, and the correction for the means' MC noise must see that.
    same = decompose_noise(
        model, make_estimator("reparam"), [batches[0]] * 12, 1, 30, options=VarianceOptions(level=LEVEL)
    )
    for _, row in same.iterrows():
        assert row["minibatch_var_low"] <= 0 <= row["minibatch_var_high"]
        assert row["mc_var"] > 0 and row["mc_var_low"] <= row["mc_var"] <= row["mc_var_high"]
        assert row["total_var"] == pytest.approx(row["mc_var"] + row["minibatch_var"])


def test_a_variance_unit_measures_every_combination_at_the_same_parameters(tmp_path):
    from vaebench.suite.execute import execute
    from vaebench.suite.units import Unit

    ctx = _variance_unit(
        tmp_path, ["reparam", "reinforce-loo", "iwae"], [1, 2], replicates=12, baseline_samples=64
    )
    frame = execute(Unit("variance", "end-s0", seed=0, checkpoint="end"), ctx)
    assert len(frame) == 3 * 2 * 3  # estimators x K x groups
    skipped = frame[frame["status"] == "skipped"]
    assert set(skipped["estimator"]) == {"reinforce-loo"} and set(skipped["num_samples"]) == {1}
    assert skipped["skip_reason"].str.contains("K >= 2").all()
    ok = frame[frame["status"] == "ok"]
    assert ok["trace_var"].notna().all() and set(ok["checkpoint"]) == {"end"}
    assert set(ok["run"]) == {"shared"} and set(ok["seed"]) == {0}
    assert set(ok[ok["estimator"] == "iwae"].query("num_samples == 2")["baseline"]) == {"iwae2-64"}
    assert set(ok[ok["estimator"] == "reparam"]["baseline"]) == {"reparam-64"}
    # One setting measured by the suite is what the measure gives for that setting, at the same parameters.
    model = ctx.model_factory(0).to(ctx.device)
    x = measured_minibatch(ctx.dataset, 50, 0)
    alone = measure_variance(
        model, make_estimator("reparam"), x, 1, 12, options=VarianceOptions(timing_repeats=5)
    )
    mine = ok.query("estimator == 'reparam' and num_samples == 1")
    pd.testing.assert_series_equal(
        mine["trace_var"].reset_index(drop=True), alone["trace_var"].reset_index(drop=True)
    )


def test_frozen_parameters_are_left_out():
    model, x = linear_gaussian()
    for p in model.decoder.parameters():
        p.requires_grad_(False)
    frame = measure_variance(
        model, make_estimator("reparam"), x, 1, 20, options=VarianceOptions(timing_repeats=1)
    ).set_index("group")
    assert frame.loc["decoder", "num_params"] == 0 and math.isnan(frame.loc["decoder", "trace_var"])
    assert frame.loc["all", "trace_var"] == frame.loc["encoder", "trace_var"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_engines_agree():
    model, x = small_vae()
    model, x = model.cuda(), x.cuda()
    est = make_estimator("reparam").double()
    frames = {
        m: measure_variance(
            model, est, x, 1, 200, seed=i, options=VarianceOptions(method=m, level=0.95, timing_repeats=1)
        )
        for i, m in enumerate(("batched", "naive"))
    }
    assert frames["batched"]["method"].iloc[0] == "tiled"
    a, b = (se_from_interval(frames[m], "trace_var", "all", 0.95) for m in ("batched", "naive"))
    assert abs(math.log(a[0] / b[0])) < Z * math.hypot(a[1] / a[0], b[1] / b[0])


def test_the_tiled_engine_asks_the_model_for_shared_outputs(pooled_noise):
    # A model of our own whose Gaussian scale parameter lives outside any nn.Linear: tiled only by declaring it.
    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.log_s = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))

        def forward(self, loc):
            return loc, self.log_s.exp()

    class Model(torch.nn.Module):
        def __init__(self, declare: bool):
            super().__init__()
            self.enc = torch.nn.Linear(5, 4).double()
            self.dec = torch.nn.Linear(2, 5).double()
            self.scale = Scale()
            if declare:
                self.scale.shared_outputs = lambda: [(1, self.scale.log_s, torch.exp)]

        def posterior(self, x):
            loc, raw = self.enc(x).chunk(2, -1)
            return torch.distributions.Normal(loc, torch.nn.functional.softplus(raw) + 1e-3)

        def log_joint(self, x, z):
            loc, s = self.scale(self.dec(z))
            prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
            return prior + torch.distributions.Normal(loc, s).log_prob(x).sum(-1)

    x = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(VaebenchError, match="shared_outputs"):
        gradient_sample(Model(False), make_estimator("reparam"), x, 2, 4, engine=Engine(method="tiled"))
    model, out = Model(True), {}
    for method in ("naive", "tiled"):
        pooled_noise["row"] = 0  # the same noise per (replicate, datapoint) in both engines
        out[method] = gradient_sample(
            model, make_estimator("reparam").eval(), x, 2, 4, engine=Engine(method=method)
        ).flat()
    assert out["naive"][:, -5:].abs().sum() > 0  # the declared parameter's gradient is measured
    torch.testing.assert_close(out["tiled"], out["naive"], rtol=1e-9, atol=1e-11)
