"""The throughput harness: its frame, its FLOP counts against hand computations, skips, labels and errors.

No timing assertions here (timing belongs in benchmarks/): only that the figures exist, are positive and
finite, and that the bookkeeping around them is right.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vaebench.config import resolve
from vaebench.errors import VaebenchError
from vaebench.estimators import Setting, make_estimator
from vaebench.measures import throughput
from vaebench.measures.throughput import (
    HandwrittenVAE,
    StepOptions,
    Timing,
    build_step,
    count_linear_flops,
    estimate_flops,
    handwritten_loss,
    handwritten_step,
    matmul_ceiling,
    measure_handwritten,
    measure_interleaved,
    measure_throughput,
    summarize_times,
    time_interleaved,
)
from vaebench.model import GaussianVAE
from vaebench.suite.units import plan, timed_settings, times_handwritten

D, Z, H, B = 10, 3, 7, 5
FAST = {"timing": Timing(repeats=3, warmup=1)}
REQUIRED = [
    "estimator",
    "num_samples",
    "batch_size",
    "seed",
    "device",
    "threads",
    "step_s_median",
    "step_s_p25",
    "step_s_p75",
    "datapoints_per_s",
    "latent_samples_per_s",
    "peak_memory_bytes",
    "memory_kind",
    "flops_per_step",
    "matmul_ceiling_flops",
    "ceiling_fraction",
    "compiled",
    "amp",
    "compile_s",
]
POSITIVE = [
    "step_s_median",
    "step_s_p25",
    "step_s_p75",
    "datapoints_per_s",
    "latent_samples_per_s",
    "flops_per_step",
    "matmul_ceiling_flops",
    "ceiling_fraction",
]


def small_model(**kwargs) -> GaussianVAE:
    return GaussianVAE(D, Z, hidden=(H,), likelihood="bernoulli", activation="relu", **kwargs)


def binary_batch(rows: int = B, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((rows, D), 0.3), generator=torch.Generator().manual_seed(seed))


def forward_linear_flops(rows_encoder: int, rows_decoder: int) -> int:
    """By hand: encoder D->H->2Z on B rows, decoder Z->H->D on K·B rows, 2 FLOPs per multiply-add."""
    return 2 * rows_encoder * (D * H + H * 2 * Z) + 2 * rows_decoder * (Z * H + H * D)


def assert_figures(row) -> None:
    for name in POSITIVE:
        assert math.isfinite(row[name]) and row[name] > 0, name
    # the median's exact interval needs 6 steps at 95% (fewer: NaN, stated); these tests time 1 to 4
    for figure in ("step_s", "datapoints_per_s"):
        median, low, high = (row[figure if figure != "step_s" else "step_s_median"], row[f"{figure}_low"],
                             row[f"{figure}_high"])  # fmt: skip
        assert low <= median <= high if row["repeats"] >= 6 else math.isnan(low) and math.isnan(high)
    assert row["step_s_p25"] <= row["step_s_median"] <= row["step_s_p75"]
    assert row["memory_kind"] in {"rss_peak", "rss_peak_lifetime", "cuda_max_allocated", "unavailable"}
    if row["memory_kind"] != "unavailable":
        assert row["peak_memory_bytes"] > 0


def test_measure_throughput_frame_and_figures():
    frame = measure_throughput(
        small_model(), "reparam", binary_batch(), 4, timing=Timing(repeats=3, warmup=1, threads=1)
    )
    assert len(frame) == 1 and set(REQUIRED) <= set(frame.columns)
    row = frame.iloc[0]
    assert (row["estimator"], row["num_samples"], row["batch_size"], row["device"]) == (
        "reparam",
        4,
        B,
        "cpu",
    )
    assert (row["threads"], row["status"], row["variant"], row["objective"]) == (1, "ok", "eager", "elbo")
    assert not row["compiled"] and not row["amp"] and row["optimizer"].startswith("adam")
    assert_figures(row)
    assert row["latent_samples_per_s"] == pytest.approx(4 * row["datapoints_per_s"])
    assert row["datapoints_per_s"] == pytest.approx(B / row["step_s_median"])
    expected_fraction = row["flops_per_step"] / row["step_s_median"] / row["matmul_ceiling_flops"]
    assert row["ceiling_fraction"] == pytest.approx(expected_fraction)


@pytest.mark.parametrize(
    ("name", "decoder_passes", "extra"),
    [
        ("reparam", 1, 0),
        ("reinforce-loo", 1, 0),
        ("dreg", 2, 0),  # decodes z and its detached copy
        ("reinforce-nvil", 1, 2 * B * (D * 100 + 100 * 1)),  # the baseline net b(x): D->100->1 on B rows
    ],
)
def test_flops_per_step_match_hand_count(name, decoder_passes, extra):
    k = 4
    row = measure_throughput(small_model(), name, binary_batch(), k, timing=Timing(repeats=1, warmup=0)).iloc[
        0
    ]
    forward = forward_linear_flops(B, decoder_passes * k * B) + extra
    assert row["flops_per_step"] == 3 * forward  # backward ≈ 2x forward


def test_count_linear_flops_counts_leading_dimensions():
    layer = torch.nn.Linear(6, 4)
    with count_linear_flops(layer) as total:
        layer(torch.zeros(3, 2, 6))
    assert total[0] == 2 * 3 * 2 * 6 * 4
    layer(torch.zeros(1, 6))  # hooks are gone after the block
    assert total[0] == 2 * 3 * 2 * 6 * 4


@pytest.mark.parametrize(("name", "decoder_passes"), [("reparam", 1), ("reinforce", 1), ("dreg", 2)])
@pytest.mark.parametrize("k", [1, 3])
def test_estimate_flops_match_hand_count(name, decoder_passes, k):
    # The count the variance benchmark's ceiling is built on, on the digits model's shape (Gaussian, tanh,
    # learned σ_x: the decoder's last layer has D outputs, not 2D), by hand: 2·m·n·k per layer.
    model = GaussianVAE(D, Z, hidden=(H,), activation="tanh", init_decoder_scale=0.1, seed=0)
    estimator = make_estimator(name).eval()
    encoder = 2 * B * D * H + 2 * B * H * (2 * Z)
    decoder = 2 * (decoder_passes * k * B) * Z * H + 2 * (decoder_passes * k * B) * H * D
    flops = estimate_flops(model, estimator, binary_batch(), k)
    assert flops == 3 * (encoder + decoder)
    assert all(p.grad is None for p in model.parameters())  # counting writes no gradients


def test_k_below_the_minimum_is_refused_and_the_suite_never_plans_it():
    # The suite plans only what `runnable` allows; a direct call with a K the estimator cannot take is an error.
    with pytest.raises(VaebenchError, match="K >= 2"):
        measure_throughput(small_model(), make_estimator("reinforce-loo"), binary_batch(), 1, **FAST)
    config, _ = resolve(overrides={"estimators": ["reinforce-loo", "reparam"], "samples": [1, 2]})
    timed = {u.name: timed_settings(u, config) for u in plan(config) if u.kind == "throughput"}
    # one unit per K, its settings timed together
    assert timed == {
        "K1": [Setting("reparam", 1)],
        "K2": [Setting("reinforce-loo", 2), Setting("reparam", 2)],  # in the configuration's order
    }


def test_the_handwritten_step_joins_the_smallest_k_for_one_hidden_layer_models_only():
    config, _ = resolve(overrides={"estimators": ["reparam"], "samples": [4, 2]})
    timed = [u for u in plan(config) if u.kind == "throughput"]
    assert [(u.name, times_handwritten(u, config)) for u in timed] == [("K2", True), ("K4", False)]
    deep = dataclasses.replace(config, model=dataclasses.replace(config.model, hidden=(H, H)))
    assert not any(times_handwritten(u, deep) for u in plan(deep))


def test_interleaved_steps_are_taken_round_robin_rotated_each_round():
    calls: list[str] = []
    steps = [lambda name=name: calls.append(name) for name in "abc"]
    times = time_interleaved(steps, torch.device("cpu"), rounds=3, per_round=2, warmup=1)
    assert times.shape == (3, 3, 2) and (times >= 0).all()
    warm, timed = calls[:3], calls[3:]
    assert warm == ["a", "b", "c"]
    # round r starts at step r, each step for a block of 2 consecutive calls
    assert timed == [*"aabbcc", *"bbccaa", *"ccaabb"]
    with pytest.raises(VaebenchError, match="rounds"):
        time_interleaved(steps, torch.device("cpu"), rounds=0, per_round=1, warmup=0)


def test_settings_timed_together_share_a_group_and_keep_their_own_rows():
    x = binary_batch()
    built = [build_step(small_model(), name, x, 2) for name in ("reparam", "dreg")]
    frame = measure_interleaved(built, timing=Timing(repeats=4, warmup=1, rounds=2), group="K2")
    assert list(frame["estimator"]) == ["reparam", "dreg"] and set(frame["timing_group"]) == {"K2"}
    for _, row in frame.iterrows():
        assert_figures(row)
        assert (row["rounds"], row["round_steps"], row["repeats"]) == (2, 2, 4)
        per_round = [float(t) for t in row["round_s"].split()]
        assert len(per_round) == 2 and all(t > 0 for t in per_round)
        assert row["load_before"] is None or row["load_before"] >= 0
    assert Timing(repeats=50).schedule == (10, 5) and Timing(repeats=3).schedule == (3, 1)
    with pytest.raises(VaebenchError, match="rounds"):
        Timing(repeats=3, rounds=4)


def test_measuring_leaves_callers_objects_unchanged():
    model, estimator = small_model(), make_estimator("reinforce-ma")
    before = [p.detach().clone() for p in model.parameters()]
    frame = measure_throughput(model, estimator, binary_batch(), 2, **FAST)
    assert frame.iloc[0]["estimator"] == "reinforce-ma"
    for old, new in zip(before, model.parameters(), strict=True):
        assert torch.equal(old, new)
    assert int(estimator.steps) == 0 and float(estimator.baseline) == 0.0
    assert estimator.training  # untouched flag


def test_options_are_labelled():
    x = binary_batch()
    no_step = measure_throughput(
        small_model(), "stl", x, 1, **FAST, options=StepOptions(optimizer_step=False)
    ).iloc[0]
    assert no_step["optimizer"] == "none" and no_step["compile_s"] == 0  # an eager row compiled nothing
    compiled = measure_throughput(
        small_model(),
        "reparam",
        x,
        2,
        options=StepOptions(compile="eager"),
        timing=Timing(repeats=2, warmup=1),
    ).iloc[0]
    assert compiled["compiled"] and compiled["variant"] == "compiled"
    assert compiled["compile_s"] > 0  # its first, compiling call, timed apart from the steps
    assert_figures(compiled)


def test_bad_input_raises_clear_errors():
    x = binary_batch()
    with pytest.raises(VaebenchError, match="K\\) must be an integer >= 2"):
        measure_throughput(small_model(), "reinforce-loo", x, 1, **FAST)
    with pytest.raises(VaebenchError, match="repeats"):
        measure_throughput(small_model(), "reparam", x, 1, timing=Timing(repeats=0))
    with pytest.raises(VaebenchError, match="warmup"):
        measure_throughput(small_model(), "reparam", x, 1, timing=Timing(warmup=-1))
    with pytest.raises(VaebenchError, match="CUDA only"):
        measure_throughput(small_model(), "reparam", x, 1, options=StepOptions(amp=True), device="cpu")
    with pytest.raises(VaebenchError, match="threads"):
        measure_throughput(small_model(), "reparam", x, 1, timing=Timing(threads=0))
    with pytest.raises(VaebenchError, match=r"\[B, D\]"):
        measure_throughput(small_model(), "reparam", x[0], 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(VaebenchError, match="sees no CUDA device"):
        measure_throughput(small_model(), "reparam", binary_batch(), 1, device="cuda")


def test_summarize_times_order_statistics():
    times = np.array([4.0, 1.0, 3.0, 2.0, 5.0])
    summary = summarize_times(times)
    assert summary["step_s_median"] == 3.0 and summary["step_s_min"] == 1.0
    assert (summary["step_s_p25"], summary["step_s_p75"], summary["step_s_iqr"]) == (2.0, 4.0, 2.0)
    assert math.isnan(summary["step_s_low"])  # [min, max] of 5 covers the median with 1 - 2^-4 < 95%
    # 9 steps: [x_(2), x_(8)] covers it with 1 - 2 P(Binomial(9, 1/2) <= 1) = 0.961, the narrowest >= 95%
    nine = summarize_times(np.arange(9.0, 0.0, -1.0))
    assert (nine["step_s_low"], nine["step_s_median"], nine["step_s_high"]) == (2.0, 5.0, 8.0)
    single = summarize_times(np.array([2.0]))
    assert single["step_s_median"] == 2.0 and math.isnan(single["step_s_low"])


def test_matmul_ceiling_is_cached_and_positive():
    first = matmul_ceiling("cpu", size=64)
    assert math.isfinite(first) and first > 0
    assert matmul_ceiling("cpu", size=64) == first


def test_handwritten_loss_is_bce_plus_analytic_kl():
    torch.manual_seed(0)
    model, x = HandwrittenVAE(D, H, Z), binary_batch()
    recon, mu, logvar = model(x)
    expected_kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum()
    bce = -(x * recon.log() + (1 - x) * (1 - recon).log()).sum()
    torch.testing.assert_close(handwritten_loss(recon, x, mu, logvar), bce + expected_kl)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    weight = model.fc1.weight.detach().clone()
    assert math.isfinite(handwritten_step(model, optimizer, x))
    assert not torch.equal(weight, model.fc1.weight)  # it stepped


def test_handwritten_row_keeps_its_on_disk_name():
    assert not hasattr(throughput, "measure_reference")  # the former aliases are gone
    row = measure_handwritten(binary_batch(), hidden=H, z_dim=Z, **FAST).iloc[0]
    assert (row["estimator"], row["num_samples"], row["optimizer"]) == ("handwritten", 1, "adam-default")
    assert row["flops_per_step"] == 3 * (2 * B * (D * H + 2 * H * Z) + 2 * B * (Z * H + H * D))
    assert_figures(row)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_rows_use_cuda_memory_and_amp():
    rows = [
        measure_throughput(
            small_model(),
            make_estimator("reparam"),
            binary_batch(),
            2,
            device="cuda",
            options=StepOptions(amp=amp),
            **FAST,
        )
        for amp in (False, True)
    ]
    frame = pd.concat(rows, ignore_index=True)
    assert set(frame["variant"]) == {"eager", "amp-bf16"}
    assert (frame["device_type"] == "cuda").all() and (frame["memory_kind"] == "cuda_max_allocated").all()
    for _, row in frame.iterrows():
        assert_figures(row)
