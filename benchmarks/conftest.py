"""Fixtures of the pytest-benchmark suite, and the table of target ratios printed after it.

Run it (about 1 to 2 minutes on 2 CPU cores for the steps, 3 more for the variance harness; every figure
comes from this one session):

    pytest benchmarks/ --benchmark-only                               # the table, then the target ratios
    pytest benchmarks/ --benchmark-only --benchmark-autosave          # save under .benchmarks/; a later run
    pytest benchmarks/ --benchmark-only --benchmark-compare           # compares itself with the last one
    pytest benchmarks/ --benchmark-only --benchmark-json=steps.json   # or JSON: pytest-benchmark compare a b
    pytest benchmarks/ --benchmark-only --vaebench-device=cuda        # on a GPU

The model is the pytorch/examples VAE's size, 784-400-20 (``GaussianVAE(784, 20, hidden=(400,),
likelihood="bernoulli", activation="relu")``), on a batch of B = 128 Fashion-MNIST images (binarized once with
a fixed seed) when the IDX files are installed, else seeded random binary images of the same shape.

Threads: ``torch.set_num_threads(2)`` (``--vaebench-threads``) is set once when pytest starts, for every
benchmark file: the targets are stated for 2 CPU threads, and a fixed count keeps runs comparable across
machines with more cores.

The ratios (``reparam-K1 / handwritten`` and the others of issue 6) are computed from the medians of the
benchmarks of this same run, with a conservative 95% interval (the ratio of two 97.5% order-statistic intervals of
the medians), printed after pytest-benchmark's table and added to the JSON under ``"vaebench_ratios"``;
``test_variance_speed.py``'s speed-ups over the plain loop and ratios to the matmul ceiling likewise, under
``"vaebench_variance_speedups"``, and ``test_seeds_speed.py``'s (stacked seeds, compiled steps) under
``"vaebench_seed_speedups"``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pytest
import torch

from vaebench.config import preset
from vaebench.devices import resolve as resolve_device
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS
from vaebench.measures.throughput import synchronize
from vaebench.measures.throughput.timing import device_name
from vaebench.model import GaussianVAE
from vaebench.stats import median_interval

X_DIM, HIDDEN, Z_DIM, BATCH_SIZE = 784, 400, 20, 128
WARMUP_STEPS = 5  # untimed steps before pytest-benchmark's rounds: allocator caches, lazy init, compilation
_TIMINGS = pytest.StashKey[dict]()
_CEILING = pytest.StashKey[dict]()  # torch thread count -> FLOP/s
_VARIANCE = pytest.StashKey[list]()
_SEEDS = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def digits_vae() -> Callable[[int], GaussianVAE]:
    """``seed -> model``: the default preset's model for digits (64-100-8, tanh, σ_x from 0.1), what
    ``python -m vaebench run`` trains, so the digits benchmarks follow the default when it changes."""
    m = preset("default").model

    def build(seed: int = 0) -> GaussianVAE:
        return GaussianVAE(
            64, m.z_dim, hidden=m.hidden, activation=m.activation, init_decoder_scale=m.init_decoder_scale,
            seed=seed,
        )  # fmt: skip

    return build


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vaebench", "vaebench benchmarks")
    group.addoption("--vaebench-device", default="cpu", help="device to benchmark on: cpu (default) or cuda")
    group.addoption(
        "--vaebench-threads", type=int, default=2, help="torch CPU threads (default 2, the targets' setting)"
    )


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(config.getoption("--vaebench-threads", 2))
    config.stash[_TIMINGS] = {}
    config.stash[_CEILING] = {}
    config.stash[_VARIANCE] = []
    config.stash[_SEEDS] = []


@pytest.fixture(scope="session")
def variance_speedups(pytestconfig: pytest.Config) -> list[dict]:
    """Rows of the variance harness's speed-ups over the plain loop, printed after the table."""
    return pytestconfig.stash[_VARIANCE]


@pytest.fixture(scope="session")
def seed_speedups(pytestconfig: pytest.Config) -> list[dict]:
    """Rows of the stacked-seeds and compiled-step speed-ups (``test_seeds_speed.py``), printed after the table."""
    return pytestconfig.stash[_SEEDS]


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    """The benchmark device (``--vaebench-device``); a clear error when CUDA is asked for and absent."""
    try:
        return resolve_device(pytestconfig.getoption("--vaebench-device"))
    except VaebenchError as error:
        pytest.exit(str(error), returncode=4)


@pytest.fixture(scope="session")
def vae_factory(device: torch.device) -> Callable[[], GaussianVAE]:
    """Builds the 784-400-20 Bernoulli VAE with ReLU (the pytorch/examples size), seeded, on the device
    (``z_dim`` another latent dimension, for the steps whose cost grows with it)."""

    def build(seed: int = 0, z_dim: int = Z_DIM) -> GaussianVAE:
        model = GaussianVAE(
            X_DIM, z_dim, hidden=(HIDDEN,), likelihood="bernoulli", activation="relu", seed=seed
        )
        return model.to(device)

    return build


@pytest.fixture(scope="session")
def batch(device: torch.device) -> torch.Tensor:
    """B = 128 binary images [128, 784]: Fashion-MNIST if installed, else seeded Bernoulli(0.5) pixels."""
    from vaebench.data import load_dataset

    try:
        x = load_dataset("fashion-mnist", binarize="fixed", seed=0).train[:BATCH_SIZE]
    except VaebenchError:
        x = torch.bernoulli(torch.full((BATCH_SIZE, X_DIM), 0.5), generator=torch.Generator().manual_seed(0))
    return x.to(device)


@pytest.fixture(scope="session")
def ceiling_flops(device: torch.device, pytestconfig: pytest.Config) -> float:
    """The matmul ceiling (FLOP/s) measured in this session with pytest-benchmark's timer.

    The best of 10 timed [1024, 1024] products after half a second of them (the CPU's clock and second core
    ramp up only after a few hundred milliseconds of work; this also warms the machine before the first
    benchmark), read with ``--benchmark-timer`` so that a CPU-time timer gives a CPU-time ceiling, consistent
    with the steps it is compared with.
    """
    return session_ceiling(device, pytestconfig)


@pytest.fixture(scope="session")
def ceiling_now(device: torch.device, pytestconfig: pytest.Config) -> Callable[[], float]:
    """``ceiling_now()``: the matmul ceiling (FLOP/s) for the torch thread count in force when it is called.

    For a benchmark that runs on other threads than the session's (``test_variance_speed.py``'s one thread):
    the ``ceiling_flops`` fixture is measured before a module's thread setting takes effect.
    """
    return lambda: session_ceiling(device, pytestconfig)


def session_ceiling(device: torch.device, config: pytest.Config, size: int = 1024) -> float:
    """FLOP/s of the best of 10 warmed-up [size, size] matmuls, read with the session's benchmark timer.

    Measured once per torch thread count in force when it is asked for: the steps run on the session's
    threads, the variance harness on one (``test_variance_speed.py``), and each is set against its own.
    """
    threads = torch.get_num_threads()
    if threads in config.stash[_CEILING]:
        return config.stash[_CEILING][threads]
    from pytest_benchmark.utils import load_timer

    timer = load_timer(config.getoption("benchmark_timer", "time.perf_counter")).target
    generator = torch.Generator(device).manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator, device=device) for _ in range(2))
    out = torch.empty_like(a)
    warm_until = time.perf_counter() + 0.5
    while time.perf_counter() < warm_until:
        torch.mm(a, b, out=out)
        synchronize(device)
    best = math.inf
    for _ in range(10):
        start = timer()
        torch.mm(a, b, out=out)
        synchronize(device)
        best = min(best, timer() - start)
    config.stash[_CEILING][threads] = 2.0 * size**3 / best
    return config.stash[_CEILING][threads]


@pytest.fixture
def time_step(benchmark, device: torch.device, ceiling_flops: float, pytestconfig: pytest.Config):
    """Benchmark one training step under a readable name; records its times for the ratio table.

    Call it as ``time_step(name, step, info)`` with ``info["flops_per_step"]`` (as from ``build_step``): it
    warms up, runs pytest-benchmark on the step (synchronized on CUDA), and stores the FLOPs and the achieved
    fraction of the matmul ceiling in the benchmark's ``extra_info`` (kept in ``--benchmark-json``).
    """

    def run(name: str, step: Callable[[], object], info: dict, group: str) -> None:
        def synchronized() -> None:
            step()
            synchronize(device)

        for _ in range(WARMUP_STEPS):
            synchronized()
        benchmark.group = group
        flops = int(info["flops_per_step"])
        benchmark.extra_info.update(
            name=name,
            device=device_name(device),
            threads=torch.get_num_threads(),
            flops_per_step=flops,
            matmul_ceiling_flops=ceiling_flops,
            optimizer=info.get("optimizer", ""),
        )
        benchmark(synchronized)
        if benchmark.stats is None:  # --benchmark-disable: the step ran once, untimed
            return
        times = np.asarray(benchmark.stats.stats.data, dtype=float)
        median = float(np.median(times))
        benchmark.extra_info["ceiling_fraction"] = flops / median / ceiling_flops
        pytestconfig.stash[_TIMINGS][name] = {"times": times, "flops": flops}

    return run


# ------------------------------------------------------------------------------------------- target ratios


def _median_interval(times: np.ndarray, level: float) -> tuple[float, float, float]:
    low, high = median_interval(times, level)
    return float(np.median(times)), low, high


def target_ratios(timings: dict[str, dict], ceiling: float) -> list[dict]:
    """The issue's ratios from the recorded step times: value, 95% interval, target, whether it is met.

    A ratio's interval divides the 97.5% intervals of the two medians (Bonferroni: both hold with >= 95%).
    """

    def ratio(numerator: str, denominator: str, target: float | None, note: str = "") -> dict | None:
        if numerator not in timings or denominator not in timings:
            return None
        a = _median_interval(timings[numerator]["times"], 0.975)
        b = _median_interval(timings[denominator]["times"], 0.975)
        value = a[0] / b[0]
        return {
            "ratio": f"{numerator} / {denominator}",
            "value": value,
            "low": a[1] / b[2],
            "high": a[2] / b[1],
            "target": target,
            "met": None if target is None else value <= target,
            "note": note,
        }

    rows = [ratio("reparam-K1", "handwritten", 1.0, "the suite's step vs the hand-written one")]
    for name, cls in ESTIMATORS.items():
        if cls.family == "measure-valued":  # 4Z decoder passes per sample: decoder-bound at K = 1 already
            rows.append(ratio(f"{name}-K10", f"{name}-K1", None, "4Z points per sample; for information"))
        elif cls.min_samples > 1:
            rows.append(
                ratio(f"{name}-K10", "reinforce-K1", 3.0, f"{name} cannot run K=1; plain REINFORCE's K=1")
            )
        else:
            rows.append(ratio(f"{name}-K10", f"{name}-K1", 3.0, "vectorized over K"))
    rows.append(ratio("reinforce-ma-K1", "reparam-K1", 1.3, "score function vs pathwise"))
    rows.append(ratio("reinforce-ma-K10", "reparam-K10", None, "the same at K=10, for information"))
    rows.append(
        ratio("reparam-cv-K1", "reparam-K1", None, "the control variate's gradient and HVP at the means")
    )
    for sampler in ("antithetic", "rqmc"):
        rows.append(ratio(f"reparam-{sampler}-K10", "reparam-K10", None, f"{sampler} draws vs iid ones"))
    for z in (8, 50):
        rows.append(ratio(f"mvd-Z{z}-K1", f"reparam-Z{z}-K1", None, f"measure-valued vs pathwise, Z = {z}"))
    rows = [row for row in rows if row is not None]
    for name in ("handwritten", "reparam-K1", "reparam-K10"):
        if name in timings:
            median = float(np.median(timings[name]["times"]))
            rows.append(
                {
                    "ratio": f"{name} FLOP/s / matmul ceiling",
                    "value": timings[name]["flops"] / median / ceiling,
                    "low": math.nan,
                    "high": math.nan,
                    "target": None,
                    "met": None,
                    "note": f"ceiling {ceiling / 1e9:.0f} GFLOP/s measured in this session",
                }
            )
    return rows


def _format(rows: list[dict]) -> list[str]:
    lines = [f"{'ratio':50} {'value':>7} {'95% interval':>17} {'target':>8}  {'':6} note"]
    for row in rows:
        interval = "" if math.isnan(row["low"]) else f"[{row['low']:.2f}, {row['high']:.2f}]"
        target = "" if row["target"] is None else f"<= {row['target']:.1f}"
        verdict = {None: "", True: "met", False: "MISSED"}[row["met"]]
        unit = "x" if "ceiling" not in row["ratio"] else ""
        lines.append(
            f"{row['ratio']:50} {row['value']:6.2f}{unit or ' '} {interval:>17} {target:>8}  {verdict:6} {row['note']}"
        )
    return lines


def _format_speedups(rows: list[dict], names: tuple[str, str] = ("plain loop", "harness")) -> list[str]:
    width = max([22, *(len(row["case"]) for row in rows)])
    lines = [
        f"{'case':{width}} {names[0]:>11} {names[1]:>10} {'speed-up':>9} {'95% interval':>15} {'target':>8}"
    ]
    for row in rows:
        target = "" if row["target"] is None else f">= {row['target']:.1f}x"
        verdict = {None: "", True: "met", False: "MISSED"}[row["met"]]
        lines.append(
            f"{row['case']:{width}} {row['loop']:10.4f}s {row['harness']:9.4f}s {row['value']:8.2f}x "
            f"[{row['low']:5.2f}, {row['high']:5.2f}] {target:>8}  {verdict}"
        )
    return lines


def _format_variance(rows: list[dict]) -> list[str]:
    """The variance rows: speed-up over the loop, ratio to the matmul ceiling, and the target judged."""
    width = max([22, *(len(row["case"]) for row in rows)])
    lines = [
        f"{'case':{width}} {'plain loop':>11} {'harness':>10} {'speed-up':>9} {'95% interval':>15} "
        f"{'ceiling':>10} {'/ ceiling':>9} {'95% interval':>15} {'target':>17}"
    ]
    for row in rows:
        if row["judged_by"] == "loop":
            target = f"speed-up >= {row['target']:.1f}x"
        else:
            target = f"/ ceiling <= {row['target']:.1f}"
        verdict = "met" if row["met"] else "MISSED"
        lines.append(
            f"{row['case']:{width}} {row['loop']:10.4f}s {row['harness']:9.4f}s {row['value']:8.2f}x "
            f"[{row['low']:5.2f}, {row['high']:5.2f}] {row['ceiling_s']:9.4f}s {row['ceiling_ratio']:9.2f} "
            f"[{row['ceiling_low']:5.2f}, {row['ceiling_high']:5.2f}] {target:>17}  {verdict}"
        )
    return lines


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    speedups = config.stash.get(_VARIANCE, [])
    if speedups:
        device = resolve_device(config.getoption("--vaebench-device"))
        timer = config.getoption("benchmark_timer", "time.perf_counter")
        terminalreporter.section(
            f"variance harness vs plain loop and vs the matmul ceiling ({device_name(device)}, 1 thread, "
            f"{timer}, medians of this run; ceiling: the harness's linear-layer FLOPs at the 1-thread matmul "
            f"FLOP/s, {speedups[0]['flops'] / speedups[0]['ceiling_s'] / 1e9:.0f} GFLOP/s)"
        )
        for line in _format_variance(speedups):
            terminalreporter.write_line(line)
    seeds = config.stash.get(_SEEDS, [])
    if seeds:
        device = resolve_device(config.getoption("--vaebench-device"))
        timer = config.getoption("benchmark_timer", "time.perf_counter")
        terminalreporter.section(
            f"seeds as one program and compiled steps ({device_name(device)}, 1 thread, {timer}, medians of this "
            "run; stacked: seed-steps/s of the stacked step over S single-seed steps; compiled: over the eager step)"
        )
        for line in _format_speedups(seeds, ("reference", "candidate")):
            terminalreporter.write_line(line)
    timings = config.stash.get(_TIMINGS, {})
    if not timings:
        return
    device = resolve_device(config.getoption("--vaebench-device"))
    rows = target_ratios(timings, session_ceiling(device, config))
    timer = config.getoption("benchmark_timer", "time.perf_counter")
    terminalreporter.section(
        f"vaebench target ratios ({device_name(device)}, {torch.get_num_threads()} threads, {timer}, "
        "medians of this run)"
    )
    for line in _format(rows):
        terminalreporter.write_line(line)


def pytest_benchmark_update_json(config: pytest.Config, benchmarks, output_json: dict) -> None:
    if config.stash.get(_VARIANCE, []):
        output_json["vaebench_variance_speedups"] = config.stash[_VARIANCE]
    if config.stash.get(_SEEDS, []):
        output_json["vaebench_seed_speedups"] = config.stash[_SEEDS]
    timings = config.stash.get(_TIMINGS, {})
    if timings:
        device = resolve_device(config.getoption("--vaebench-device"))
        output_json["vaebench_ratios"] = target_ratios(timings, session_ceiling(device, config))
