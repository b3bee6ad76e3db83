"""Seeds trained as one program against seeds trained apart, and the compiled step against the eager one.

Every case times, in each round, the reference (in pytest-benchmark's ``setup``, on the session's
``--benchmark-timer``) and then the benchmark, so drifting machine load hits both alike; both sides are the
training loop's own step (:mod:`vaebench.train.run`: forward, backward, the divergence check with its one
host read, the optimizer step), with the same model, activation, estimator and fused Adam:

- ``stacked-[compiled-]<model>-K<k>-S<s>``: one step of :class:`~vaebench.train.seeds.StackedProgram` over S seeds
  against S steps of :class:`~vaebench.train.program.SeedProgram` (what :func:`~vaebench.train.train` runs),
  each seed on its own minibatch. The figure is the speed-up in seed-steps per second, S x (time of one
  single-seed step) / (time of the stacked step) = median(S single steps) / median(stacked step). Targets
  (issue 23), on one CPU thread, for the default model: >= 2x at K = 1 and >= 1.3x at K = 10 with S = 3; on
  a GPU (S = 8 and 16, eager and, at S = 8, compiled; ``--vaebench-device=cuda``, skipped on a CPU) >= 10x.
  For information: the 784-400-20 model, S = 6, and the compiled stacked step (``compiled-``) against the
  same eager single steps;
- ``compiled-<model>-K<k>``: one compiled step (``TrainSpec(compile=True)``: inductor, CUDA graphs on CUDA)
  against one eager step of the same seed, after the compilation (its time is reported apart by training,
  `TrainResult.compile_time_s`, and excluded here by the warm-up); ``compiled-stacked-digits-K1-S3`` the
  same for a stacked step. For information: the issue asks for a default that is on only where it pays.

Models: ``digits``, the default preset's (conftest's ``digits_vae``: 64-100-8 Gaussian VAE with tanh, σ_x
initialised at 0.1, B = 100 digits per seed), and ``vae784``, the 784-400-20 Bernoulli VAE with ReLU of
``test_steps.py`` (B = 128).
Torch runs on one thread (the targets' setting; the previous count is restored after). After the table,
``conftest.py`` prints each ratio with a 95% interval (the ratio of the two medians' 97.5% order-statistic
intervals) and its target, and writes them to the JSON under ``"vaebench_seed_speedups"``.

Run (about 2 minutes without the compiled cases, plus about 30 s of compilation per compiled case on 2 cores):

    pytest benchmarks/test_seeds_speed.py --benchmark-only --benchmark-timer=time.thread_time
    pytest benchmarks/test_seeds_speed.py --benchmark-only -k "not compiled"
    pytest benchmarks/test_seeds_speed.py --benchmark-only --vaebench-device=cuda
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vaebench.estimators import Setting
from vaebench.measures.throughput import synchronize
from vaebench.model import GaussianVAE
from vaebench.stats import median_interval
from vaebench.train import StackedProgram, TrainSpec
from vaebench.train.program import SeedProgram
from vaebench.train.run import read_check

ROUNDS = {"digits": 40, "vae784": 12}
STACKED = [  # (model, K, S, target, compiled): targets for the default model; the rest for information
    *(("digits", k, 3, 2.0 if k == 1 else 1.3, False) for k in (1, 10)),
    *(("vae784", k, 3, None, False) for k in (1, 10)),
    *(("digits", k, 6, None, False) for k in (1, 10)),
    *(("digits", k, 3, None, True) for k in (1, 10)),  # compiled stacked step against eager single steps
    *(("digits", k, s, 10.0, False) for s in (8, 16) for k in (1, 10)),  # GPU only
    # GPU only: eager S = 8 cannot reach 10x there (the stacked step is never shorter than one seed's, H200)
    *(("digits", k, 8, 10.0, True) for k in (1, 10)),
]
COMPILED = [("digits", 1, 1), ("digits", 10, 1), ("digits", 1, 3)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_data():
    from vaebench.data import load_dataset

    return load_dataset("digits", dequantize=True)


def setup(case: str, seeds: int, digits_data, digits_vae, batch, device):
    """S models (seeds 0..S-1) and their S minibatches, on the device."""
    if case == "digits":
        models = [digits_vae(s) for s in range(seeds)]
        train = digits_data.train
        xs = [train[(100 * s) % 1300 : (100 * s) % 1300 + 100] for s in range(seeds)]
    else:
        models = [
            GaussianVAE(784, 20, hidden=(400,), likelihood="bernoulli", activation="relu", seed=s)
            for s in range(seeds)
        ]
        xs = [batch.roll(s, 0).cpu() for s in range(seeds)]
    return models, [x.to(device) for x in xs]


def step_of(program, xs):
    """The loop's step (`vaebench.train.run.Run`'s, without its bookkeeping): forward, backward, one host read
    of the divergence flags and losses, the optimizer step."""

    def step() -> list[float]:
        loss, norm = program.forward_backward(program.batch(xs))
        losses, _ = read_check(loss, norm, program.spec.divergence_bound)
        program.update(None)
        return losses

    return step


def programs(models, xs, k, device, compile=False):
    """One SeedProgram per seed and one StackedProgram over them (fresh copies of the models)."""
    spec = TrainSpec(steps=1, batch_size=xs[0].shape[0], compile=compile)
    setting = Setting("reparam", k)

    def data(x):
        return SimpleNamespace(train=x, test=x[:1])

    singles = [
        SeedProgram(copy.deepcopy(m), setting.build(), k, data(x), spec, s, device)
        for s, (m, x) in enumerate(zip(models, xs, strict=True))
    ]
    stacked = StackedProgram([copy.deepcopy(m) for m in models], [setting.build() for _ in models], k, data(xs[0]), spec,
                             list(range(len(models))), device)  # fmt: skip
    stacked.verified = True  # the first step's check against each seed is a one-off: not the step's cost
    for program in (*singles, stacked):
        program.train_mode()
    return singles, stacked


def run_case(benchmark, request, reference, candidate, device, rows, target, warmup):
    timer = benchmark._timer
    reference_times: list[float] = []

    def timed_reference():
        start = timer()
        reference()
        synchronize(device)
        reference_times.append(timer() - start)

    def timed_candidate():
        candidate()
        synchronize(device)

    for _ in range(warmup):  # allocator, caches, compilation
        reference()
        candidate()
    rounds = ROUNDS["vae784" if "vae784" in request.node.callspec.id else "digits"]
    benchmark.extra_info.update(name=request.node.callspec.id, threads=torch.get_num_threads(), target=target)
    benchmark.pedantic(timed_candidate, setup=timed_reference, rounds=rounds, warmup_rounds=1)
    if benchmark.stats is None:  # --benchmark-disable
        return
    ref = np.asarray(reference_times[1:], dtype=float)
    times = np.asarray(benchmark.stats.stats.data, dtype=float)
    value, low, high = speedup(ref, times)
    met = None if target is None else value >= target
    benchmark.extra_info.update(
        reference_times=ref.tolist(), speedup=value, speedup_low=low, speedup_high=high, met=met
    )
    rows.append({"case": request.node.callspec.id, "loop": float(np.median(ref)), "harness": float(np.median(times)),
                 "value": value, "low": low, "high": high, "target": target, "met": met})  # fmt: skip


@pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)  # torch's own import
@pytest.mark.parametrize(
    ("case", "k", "seeds", "target", "compiled"),
    [pytest.param(*c, id=f"stacked-{'compiled-' if c[4] else ''}{c[0]}-K{c[1]}-S{c[2]}") for c in STACKED],
)
def test_stacked_step(
    case,
    k,
    seeds,
    target,
    compiled,
    benchmark,
    request,
    digits_data,
    digits_vae,
    batch,
    device,
    seed_speedups,
):
    if seeds >= 8 and device.type != "cuda":
        pytest.skip("the S >= 8 cases are for a GPU (--vaebench-device=cuda)")
    models, xs = setup(case, seeds, digits_data, digits_vae, batch, device)
    singles, stacked = programs(models, xs, k, device)
    if compiled:
        _, stacked = programs(models, xs, k, device, compile=True)
    single_steps = [step_of(p, [x]) for p, x in zip(singles, xs, strict=True)]
    benchmark.group = f"seeds as one program vs apart, S={seeds}"
    run_case(benchmark, request, lambda: [s() for s in single_steps], step_of(stacked, xs), device,
             seed_speedups, target, warmup=5)  # fmt: skip


@pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)  # torch's own import
@pytest.mark.parametrize(
    ("case", "k", "seeds"),
    [pytest.param(*c, id=f"compiled-{'stacked-' if c[2] > 1 else ''}{c[0]}-K{c[1]}" + (f"-S{c[2]}" if c[2] > 1 else ""))
     for c in COMPILED],
)  # fmt: skip
def test_compiled_step(
    case, k, seeds, benchmark, request, digits_data, digits_vae, batch, device, seed_speedups
):
    models, xs = setup(case, seeds, digits_data, digits_vae, batch, device)
    eager_singles, eager_stacked = programs(models, xs, k, device)
    compiled_singles, compiled_stacked = programs(models, xs, k, device, compile=True)
    if seeds == 1:
        eager, compiled = step_of(eager_singles[0], xs), step_of(compiled_singles[0], xs)
    else:
        eager, compiled = step_of(eager_stacked, xs), step_of(compiled_stacked, xs)
    benchmark.group = "compiled vs eager step"
    run_case(benchmark, request, eager, compiled, device, seed_speedups, None, warmup=3)


def speedup(reference: np.ndarray, times: np.ndarray) -> tuple[float, float, float]:
    """median(reference) / median(times) and a conservative 95% interval (two 97.5% median intervals)."""
    a_low, a_high = median_interval(reference, 0.975)
    b_low, b_high = median_interval(times, 0.975)
    return float(np.median(reference) / np.median(times)), a_low / b_high, a_high / b_low
