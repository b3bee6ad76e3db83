"""Samplers (iid, antithetic, RQMC): their structure, their unbiasedness, their variance, and the engines.

Unbiasedness of every (estimator, sampler) pair against exact gradients is in test_estimators.py; here the
points themselves. Statistical checks use fixed seeds and state their false-alarm rate: FALSE_ALARM per test,
Bonferroni-corrected where one test makes several comparisons.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from scipy import stats

from vaebench.checks.exact_gradients import (
    budget,
    encoder_mask,
    exact_gradient,
    gradient_draws,
    linear_gaussian,
    log_ratio,
    max_z,
    trace_variance,
)
from vaebench.errors import VaebenchError
from vaebench.estimators import (
    ESTIMATORS,
    FAMILIES,
    OBJECTIVES,
    SAMPLERS,
    Reparam,
    make_estimator,
    scrambled_sobol,
    standard_normal,
    unsupported,
)
from vaebench.measures.variance import Engine, VarianceOptions, gradient_sample, measure_variance
from vaebench.model import GaussianVAE
from vaebench.stats import bonferroni_threshold, normal_quantile

FALSE_ALARM = 1e-3
Z_LEVEL = normal_quantile(1 - FALSE_ALARM)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the points ----------------------------------------------------------------------------------------------


def test_iid_draws_are_torch_randn_so_old_seeds_give_old_numbers():
    torch.testing.assert_close(
        standard_normal("iid", 3, (4, 2), gen()), torch.randn(3, 4, 2, generator=gen())
    )


def test_antithetic_pairs_are_negatives_and_need_an_even_k():
    eps = standard_normal("antithetic", 6, (4, 2), gen())
    torch.testing.assert_close(eps[3:], -eps[:3])
    torch.testing.assert_close(eps[:3], torch.randn(3, 4, 2, generator=gen()))
    model, x = linear_gaussian()
    with pytest.raises(
        VaebenchError, match=r"'antithetic' pairs each draw eps with -eps and needs an even K"
    ):
        make_estimator("reparam", sampler="antithetic")(model, x, num_samples=3)


def test_rqmc_points_are_a_scrambled_net_in_every_row():
    # K = 16 = 2^4: in every row and coordinate exactly one point per interval [j/16, (j+1)/16); and the first
    # two Sobol coordinates are a (0, 4, 2)-net, which a scramble keeps: one point in every elementary box
    # of area 1/16 (2^a x 2^(4-a) cells, a = 0..4).
    u = scrambled_sobol(16, 5, 8, gen())
    assert u.shape == (16, 5, 8) and u.dtype == torch.float64
    assert ((u >= 0) & (u < 1)).all()
    cells = (u * 16).floor().long().sort(0).values
    assert torch.equal(cells, torch.arange(16)[:, None, None].expand(16, 5, 8))
    for a in range(5):
        box = (u[..., 0] * 2**a).floor() * 2 ** (4 - a) + (u[..., 1] * 2 ** (4 - a)).floor()
        assert torch.equal(box.long().sort(0).values, torch.arange(16)[:, None].expand(16, 5))
    assert not torch.equal(u[:, 0], u[:, 1])  # every row its own scramble


def test_rqmc_points_are_uniform_one_by_one():
    # Each point of a scrambled set is uniform on [0, 1)^Z; rows are independent scrambles, so point k's
    # coordinate over 2,000 rows is an iid sample: a Kolmogorov-Smirnov test per (k, coordinate), Bonferroni
    # over the 3 x 4 + 16 x 4 tests at family-wise false-alarm rate FALSE_ALARM. K = 3 is not a power of two.
    tests = [(k, scrambled_sobol(k, 2000, 4, gen(k))) for k in (3, 16)]
    count = sum(k * 4 for k, _ in tests)
    for _k, u in tests:
        for point in u:
            for j in range(4):
                assert stats.kstest(point[:, j].numpy(), "uniform").pvalue > FALSE_ALARM / count


def test_rqmc_is_reproducible_from_the_generator_and_fresh_per_call():
    g = gen(3)
    first, second = standard_normal("rqmc", 8, (4, 2), g), standard_normal("rqmc", 8, (4, 2), g)
    assert not torch.equal(first, second)
    torch.testing.assert_close(standard_normal("rqmc", 8, (4, 2), gen(3)), first)
    assert torch.isfinite(first).all()


def test_rqmc_without_a_fresh_scramble_per_call_is_caught_as_biased():
    # A negative control: the same scramble at every call (a generator reseeded inside the estimator) makes
    # every estimate the same QMC sum at fixed points, not an unbiased estimate; the exact-gradient test must
    # reject it (its draws have no spread, so any error beyond rounding is significant).
    class FrozenScramble(Reparam):
        def estimate(self, model, x, num_samples, generator):
            return super().estimate(model, x, num_samples, torch.Generator().manual_seed(0))

    model, x = linear_gaussian()
    est = FrozenScramble(sampler="rqmc").eval()
    g = gradient_draws(model, est, x, 3, *budget("reparam"), seed=1)
    assert max_z(g, exact_gradient(model, x)) > bonferroni_threshold(FALSE_ALARM, g.shape[1])


def test_rqmc_rejects_a_latent_dimension_beyond_sobols():
    with pytest.raises(VaebenchError, match=r"'rqmc' supports latent dimensions up to 21201"):
        standard_normal("rqmc", 2, (1, 30_000), gen())


def test_which_pairs_run_is_decided_in_one_place():
    assert unsupported("reparam", 3, "rqmc") == ""
    assert "even K" in unsupported("reparam", 3, "antithetic")
    assert "needs K >= 2" in unsupported("vimco", 1)
    assert "cannot use sampler 'rqmc'" in unsupported("reinforce-loo", 4, "rqmc")
    with pytest.raises(VaebenchError, match=r"unknown sampler 'sobol'.*iid, antithetic, rqmc"):
        make_estimator("reparam", sampler="sobol")
    offered = {n: c.samplers for n, c in ESTIMATORS.items()}
    assert all(s in SAMPLERS for ss in offered.values() for s in ss)
    assert offered["reparam"] == offered["stl"] == offered["reparam-cv"] == tuple(SAMPLERS)


# --- variance ------------------------------------------------------------------------------------------------


def encoder_variance(name: str, k: int, sampler: str, draws: int = 400) -> tuple[float, float]:
    model, x = linear_gaussian()
    g = gradient_draws(model, make_estimator(name, sampler=sampler), x, k, draws, seed=11)
    return trace_variance(g[:, encoder_mask(model)])


@pytest.mark.parametrize(
    ("name", "k", "sampler"),
    [("reparam", 16, "rqmc"), ("stl", 16, "rqmc"), ("reparam", 2, "antithetic"), ("reinforce", 16, "rqmc")],
)
def test_dependent_samples_lower_the_variance(name, k, sampler):
    # Independent estimates on each side: a one-sided z-test on the log-ratio at level FALSE_ALARM.
    r, se = log_ratio(encoder_variance(name, k, sampler), encoder_variance(name, k, "iid"))
    assert r + Z_LEVEL * se < 0


# --- the variance engines ------------------------------------------------------------------------------------


def se_from_interval(frame, name: str, group: str, level: float) -> tuple[float, float]:
    row = frame.set_index("group").loc[group]
    return float(row[name]), float(row[f"{name}_high"] - row[f"{name}_low"]) / (2 * normal_quantile(level))


@pytest.mark.parametrize(
    ("name", "sampler"),
    [("reparam-cv", "iid"), ("reparam", "rqmc"), ("vimco", "iid"), ("vargrad", "iid"), ("iwae-stl", "iid")],
)
def test_the_default_engine_measures_them_like_the_naive_loop(name, sampler):
    # The tiled engine's probe must accept the new estimators and samplers (one call on R·B rows gives R
    # independent replicates: RQMC scrambles each row apart, the control variate's Hessian-vector product is
    # per datapoint) and then agree with R separate calls within intervals: a z-test on the log-ratio at
    # level FALSE_ALARM per figure and group (6 comparisons).
    model = GaussianVAE(7, 3, hidden=(6,), likelihood="gaussian", activation="tanh", seed=0).double()
    x = torch.rand(5, 7, generator=gen(), dtype=torch.float64)
    est = make_estimator(name, sampler=sampler)
    frames = {
        m: measure_variance(
            model, est, x, 4, 200, seed=i, options=VarianceOptions(method=m, level=0.95, timing_repeats=1)
        )
        for i, m in enumerate(("batched", "naive"))
    }
    assert frames["batched"]["method"].iloc[0] == "tiled"
    z = normal_quantile(1 - FALSE_ALARM / 12)
    for group in ("encoder", "decoder", "all"):
        for figure in ("trace_var", "snr_norm"):
            a, b = (se_from_interval(frames[m], figure, group, 0.95) for m in ("batched", "naive"))
            assert abs(math.log(a[0] / b[0])) < z * math.hypot(a[1] / a[0], b[1] / b[0]), (group, figure)


@pytest.mark.parametrize(("name", "sampler"), [("reparam-cv", "iid"), ("reparam", "rqmc")])
def test_the_vmap_engine_runs_them(name, sampler):
    # vmap draws from torch's generator per replicate (randomness="different") and runs the control variate's
    # Hessian-vector product with torch.func; its variance must agree with the naive loop's (z-test on the
    # log-ratio of trace variances, level FALSE_ALARM).
    model, x = linear_gaussian()
    est = make_estimator(name, sampler=sampler)
    naive = gradient_sample(model, est, x, 4, 300, seed=1, engine=Engine(method="naive")).flat()
    vmapped = gradient_sample(model, est, x, 4, 300, seed=2, engine=Engine(method="vmap")).flat()
    r, se = log_ratio(trace_variance(vmapped), trace_variance(naive))
    assert abs(r) < Z_LEVEL * se


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_estimator_and_sampler_runs_on_cuda_from_a_cuda_generator():
    model, x = linear_gaussian()
    model, x = model.cuda(), x.cuda()
    for name, cls in ESTIMATORS.items():
        for sampler in cls.samplers:
            est = make_estimator(name, sampler=sampler)
            est.prepare(model, x)
            est.to(x.dtype)
            grads = []
            # the same generator state (and estimator state: a copy) gives the same gradient
            for _ in range(2):
                model.zero_grad(set_to_none=True)
                out = copy.deepcopy(est)(
                    model, x, num_samples=4, generator=torch.Generator("cuda").manual_seed(0)
                )
                out.surrogate.backward()
                grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
            assert torch.isfinite(grads[0]).all() and torch.equal(grads[0], grads[1]), (name, sampler)
    u = scrambled_sobol(16, 5, 8, torch.Generator("cuda").manual_seed(0), device="cuda")
    cells = (u * 16).floor().long().sort(0).values.cpu()
    assert torch.equal(cells, torch.arange(16)[:, None, None].expand(16, 5, 8))
    for name, sampler in (("reparam-cv", "iid"), ("reparam", "rqmc")):
        frame = measure_variance(
            model, make_estimator(name, sampler=sampler), x, 4, 50, options=VarianceOptions(timing_repeats=1)
        )
        assert frame["method"].iloc[0] == "tiled" and frame["trace_var"].notna().all()


def test_every_estimator_declares_what_it_is():
    # family, objective, minimum K and samplers are what `python -m vaebench list` and the planners read.
    for name, cls in ESTIMATORS.items():
        assert cls.family in FAMILIES and cls.objective in OBJECTIVES, name
        assert cls.samplers[0] == "iid" and set(cls.samplers) <= set(SAMPLERS), name
        assert (cls.iid_only != "") == (cls.samplers != tuple(SAMPLERS)), name  # a refusal says why
        assert cls.summary and cls.citation, name
    assert [n for n, c in ESTIMATORS.items() if c.bias] == [
        "iwae-stl",
        "rws",
        "rws-dreg",
        "tail-adaptive",
        "tvo",
        "ovis-gamma",
    ]


def test_declared_statefulness_matches_the_state_an_estimator_keeps():
    # `stateful` decides who is warmed up before a variance measurement; it must agree with what the
    # estimator actually holds once prepared (buffers or parameters), so no stateful estimator is measured cold.
    model = GaussianVAE(x_dim=5, z_dim=2, hidden=(), seed=0).double()
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name, cls in ESTIMATORS.items():
        est = make_estimator(name)
        est.prepare(model, x)
        holds = any(True for _ in est.buffers()) or any(True for _ in est.parameters())
        assert cls.stateful == holds, name
    assert sorted(n for n, c in ESTIMATORS.items() if c.stateful) == [
        "quadratic-cv",
        "reinforce-ma",
        "reinforce-nvil",
    ]
