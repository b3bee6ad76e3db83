"""The variance harness against the plain loop users write: R = 100 gradient estimates at fixed parameters.

The plain loop is the competent version of what a user writes without the harness (issue 12), kept here
verbatim: for each of R = 100 replicates, one call of the estimator (in eval mode, noise from one generator),
``torch.autograd.grad`` of its surrogate for the model's parameters, flattened and concatenated; then the
replicates stacked and ``.var(0).sum()``, the trace of the covariance. The harness is
:func:`~vaebench.measures.variance.measure_variance` with its defaults: the engine, the timing of one
ordinary estimate, and every figure with its interval, for every parameter group.

Both run in the same round, one after the other (the loop in pytest-benchmark's ``setup``, timed with the
session's ``--benchmark-timer``, the harness as the benchmark), so drifting machine load hits both alike. The
table shows the harness; after it, ``conftest.py`` prints each case's speed-up over the loop, the ratio of the
medians with a 95% interval (the ratio of the two medians' 97.5% order-statistic intervals), its ratio to the
matrix-multiply ceiling, and the target the case is judged by; each benchmark's ``extra_info``
(``--benchmark-json``) holds the same and the loop's times. Recorded, not asserted: timings belong to the
report.

The ceiling (issue 23): at K = 10 the harness and the loop both spend their time in the model's own
arithmetic, which no harness removes, so a K = 10 case is judged against physics, not the loop. The FLOPs it
must do are R = 100 gradient estimates, each 3 x the linear-layer FLOPs of one forward of the estimator
(:func:`~vaebench.measures.throughput.estimate_flops`, the count behind the steps' ``flops_per_step``); the
ceiling time is those FLOPs at the FLOP/s of a 1024 x 1024 matmul measured in the same session on the same
thread count and timer (``conftest.py``'s ``session_ceiling``), and

    ceiling_ratio = median harness time / ceiling time,

with an interval from the harness median's 95% order-statistic interval. The harness's own summary (the R x R Gram
matrix of the replicates, R² P multiply-adds) and the timing of one ordinary estimate are not counted: they
are the harness's choice, not work the measurement needs. Cases, with readable ids and targets:

- ``digits-<estimator>-K<k>``: the default preset's model (conftest's ``digits_vae``), the 64-100-8
  Gaussian VAE with tanh (initial σ_x = 0.1), on B = 100 digits, for reparam, reinforce and dreg at K = 1 and 10; at K = 1 a speed-up over
  the loop >= 1.8x, at K = 10 a ceiling ratio <= 2;
- ``vae784-reparam-K<k>``: the 784-400-20 Bernoulli VAE with ReLU (``conftest.py``'s model and batch of
  B = 128 binary images); at K = 1 a speed-up >= 1.5x, at K = 10 a ceiling ratio <= 2.

Torch runs on one thread here (the issue's setting; the thread count in force before is restored after).
Run (about 3 minutes on 2 cores; on a shared machine, time CPU time):

    pytest benchmarks/test_variance_speed.py --benchmark-only
    pytest benchmarks/test_variance_speed.py --benchmark-only --benchmark-timer=time.thread_time
    pytest benchmarks/test_variance_speed.py --benchmark-only --vaebench-device=cuda
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaebench.estimators import make_estimator
from vaebench.measures.throughput import estimate_flops, synchronize
from vaebench.measures.variance import measure_variance
from vaebench.stats import median_interval

REPLICATES = 100
ROUNDS = {"digits": 15, "vae784": 7}  # per case; a K = 10 case of the 784 model runs 3 (each takes ~8 s)
# (what the case is judged by, the bound): "loop", a speed-up over the plain loop of at least the bound;
# "ceiling", a harness time at most the bound times the matmul time of its FLOPs
LOOP, CEILING = "loop", "ceiling"
CASES = [
    *(("digits", name, 1, (LOOP, 1.8)) for name in ("reparam", "reinforce", "dreg")),
    *(("digits", name, 10, (CEILING, 2.0)) for name in ("reparam", "reinforce", "dreg")),
    ("vae784", "reparam", 1, (LOOP, 1.5)),
    ("vae784", "reparam", 10, (CEILING, 2.0)),
]


def plain_loop(model, estimator, x: torch.Tensor, num_samples: int, replicates: int) -> torch.Tensor:
    """The issue's plain loop: R estimator calls, each gradient flattened and concatenated; tr Cov. []"""
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator(x.device).manual_seed(0)
    rows = []
    for _ in range(replicates):
        surrogate = estimator(model, x, num_samples=num_samples, generator=generator).surrogate
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(surrogate, params)]))
    return torch.stack(rows).var(0).sum()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_setup(device, digits_vae):
    """The default preset's model (conftest's ``digits_vae``) on the first 100 digits."""
    from vaebench.data import load_dataset

    data = load_dataset("digits", dequantize=True)
    model = digits_vae(0).to(device)
    return model, data.train[:100].to(device)


@pytest.mark.parametrize(
    ("case", "name", "k", "target"),
    [pytest.param(*c, id=f"{c[0]}-{c[1]}-K{c[2]}") for c in CASES],
)
def test_variance_speed(
    case, name, k, target, benchmark, request, ceiling_now, vae_factory, batch, device, variance_speedups
):
    model, x = (vae_factory(), batch) if case == "vae784" else request.getfixturevalue("digits_setup")
    estimator = make_estimator(name).to(device).eval()
    flops = REPLICATES * estimate_flops(model, estimator, x, k)
    ceiling_flops = ceiling_now()  # called here, so measured on this file's one thread
    ceiling_s = flops / ceiling_flops
    judged_by, bound = target
    timer = benchmark._timer  # the session's --benchmark-timer, so both sides are read on the same clock
    loop_times: list[float] = []

    def loop_then_harness():  # pytest-benchmark's setup: runs (and we time) the loop right before the harness
        start = timer()
        plain_loop(model, estimator, x, k, REPLICATES)
        synchronize(device)
        loop_times.append(timer() - start)

    def harness():
        frame = measure_variance(model, estimator, x, k, REPLICATES)
        synchronize(device)
        return frame

    rounds = ROUNDS[case] if k == 1 or case == "digits" else 3
    benchmark.group = f"variance harness vs plain loop, R={REPLICATES}"
    benchmark.extra_info.update(
        name=request.node.callspec.id,
        replicates=REPLICATES,
        threads=1,
        judged_by=judged_by,
        target=bound,
        flops=flops,
        matmul_ceiling_flops=ceiling_flops,
        ceiling_s=ceiling_s,
    )
    frame = benchmark.pedantic(harness, setup=loop_then_harness, rounds=rounds, warmup_rounds=1)
    assert frame["trace_var"].notna().all()
    if benchmark.stats is None:  # --benchmark-disable
        return
    loop = np.asarray(loop_times[1:], dtype=float)  # the first was the warm-up round's
    times = np.asarray(benchmark.stats.stats.data, dtype=float)
    value, low, high = speedup(loop, times)
    harness_median = float(np.median(times))
    harness_low, harness_high = median_interval(times, 0.95)
    ratio, ratio_low, ratio_high = (t / ceiling_s for t in (harness_median, harness_low, harness_high))
    met = bool(value >= bound) if judged_by == LOOP else bool(ratio <= bound)
    benchmark.extra_info.update(
        loop_times=loop.tolist(),
        loop_median=float(np.median(loop)),
        harness_median=harness_median,
        speedup=value,
        speedup_low=low,
        speedup_high=high,
        ceiling_ratio=ratio,
        ceiling_ratio_low=ratio_low,
        ceiling_ratio_high=ratio_high,
        met=met,
        method=str(frame["method"].iloc[0]),
    )
    variance_speedups.append(
        {
            "case": request.node.callspec.id,
            "loop": float(np.median(loop)),
            "harness": harness_median,
            "value": value,
            "low": low,
            "high": high,
            "flops": flops,
            "ceiling_s": ceiling_s,
            "ceiling_ratio": ratio,
            "ceiling_low": ratio_low,
            "ceiling_high": ratio_high,
            "judged_by": judged_by,
            "target": bound,
            "met": met,
        }
    )


def speedup(reference: np.ndarray, times: np.ndarray) -> tuple[float, float, float]:
    """median(reference) / median(times) and a conservative 95% interval (two 97.5% median intervals)."""
    a_low, a_high = median_interval(reference, 0.975)
    b_low, b_high = median_interval(times, 0.975)
    return float(np.median(reference) / np.median(times)), a_low / b_high, a_high / b_low
