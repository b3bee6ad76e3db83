"""Training with ``compile``: the same run as eager (the noise is drawn outside, from the same generator), one
seed or stacked seeds, with the compile time kept apart from the training clock.

The fast tests use the ``aot_eager`` backend (dynamo's graph capture and AOTAutograd's joint graph, no code
generation: seconds); the inductor test is slow (tens of seconds of C++ compilation) and skipped without a C++
compiler. Nothing here is statistical.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from vaebench.data import load_dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import Setting
from vaebench.model import GaussianVAE
from vaebench.train import TrainSpec, train, train_seeds

SEEDS = [0, 1]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def vae(seed: int) -> GaussianVAE:
    return GaussianVAE(64, 4, hidden=(16,), seed=seed)


def spec(compile=False, steps: int = 6, **options) -> TrainSpec:
    return TrainSpec(steps=steps, eval_every=3, keep=(0, 3), compile=compile, **options)


def assert_close_runs(a, b, rtol: float = 1e-6, atol: float = 1e-6) -> None:
    assert a.history[["step", "metric"]].equals(b.history[["step", "metric"]])
    torch.testing.assert_close(
        torch.tensor(a.history["value"].to_numpy()),
        torch.tensor(b.history["value"].to_numpy()),
        rtol=rtol,
        atol=1e-4,
    )
    for step, state in b.checkpoints.items():
        torch.testing.assert_close(a.checkpoints[step], state, rtol=rtol, atol=atol)
    torch.testing.assert_close(a.final_state, b.final_state, rtol=rtol, atol=atol)
    torch.testing.assert_close(a.estimator_state, b.estimator_state, rtol=rtol, atol=atol)


def test_a_compiled_run_equals_an_eager_one_and_counts_its_compile_time_apart(digits):
    compiled = train(vae(0), Setting("dreg", 3), digits, spec("aot_eager"), seed=0)
    eager = train(vae(0), Setting("dreg", 3), digits, spec(), seed=0)
    assert_close_runs(compiled, eager)
    assert compiled.compile_time_s > 0 and eager.compile_time_s == 0
    assert compiled.wall_time_s > 0  # the five steps after the one that compiled


def test_stacked_seeds_compile_too(digits):
    setting = Setting("reparam", 2)
    results = train_seeds([vae(s) for s in SEEDS], setting, digits, spec("aot_eager"), seeds=SEEDS)
    for seed, result in zip(SEEDS, results, strict=True):
        assert result.seeds_stacked == 2 and result.compile_time_s > 0
        assert_close_runs(result, train(vae(seed), setting, digits, spec(), seed=seed), rtol=1e-4, atol=1e-5)


def test_a_backend_that_would_get_a_stateful_estimator_wrong_is_refused(digits):
    with pytest.raises(VaebenchError, match="aot_eager backend recomputes its learning signal"):
        train(vae(0), Setting("reinforce-ma", 2), digits, spec("aot_eager"), seed=0)
    with pytest.raises(VaebenchError, match=r"compile must be True, False or a torch.compile backend"):
        spec(3)


def _cxx() -> bool:
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)  # torch's own import
@pytest.mark.skipif(not _cxx(), reason="inductor needs a C++ compiler on a CPU")
def test_inductor_compiles_stacked_stateful_seeds_to_the_eager_run(digits):
    setting = Setting("reinforce-ma", 2)
    results = train_seeds([vae(s) for s in SEEDS], setting, digits, spec(True, steps=4), seeds=SEEDS)
    for seed, result in zip(SEEDS, results, strict=True):
        assert result.seeds_stacked == 2 and result.note == "" and result.compile_time_s > 0
        # inductor fuses and reorders: float rounding, amplified for a few coordinates by Adam's first steps
        own = train(vae(seed), setting, digits, spec(steps=4), seed=seed)
        assert_close_runs(result, own, rtol=1e-3, atol=2e-5)


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)  # torch's own import
# torch's own notes while it compiles and captures (seen with torch 2.11 on an H200: TF32 advice, "online
# softmax is disabled", "the CUDA Graph is empty"): raised as errors, they fail the compilation they describe
@pytest.mark.filterwarnings("ignore::UserWarning:torch")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_compiled_steps_with_cuda_graphs_equal_the_eager_run(digits):
    # compile=True on CUDA is inductor with CUDA graphs (reduce-overhead): graph outputs are overwritten by the
    # next replay, so the latched check (several steps between reads) and a stateful estimator are the risks
    on_cuda = {"device": "cuda", "check_every": 4}
    single = Setting("reinforce-ma", 2)
    compiled = train(vae(0), single, digits, spec(True, steps=8, **on_cuda), seed=0)
    assert compiled.compile_time_s > 0
    assert_close_runs(compiled, train(vae(0), single, digits, spec(steps=8, **on_cuda), seed=0), 1e-3, 2e-5)
    stacked = Setting("dreg", 3)
    results = train_seeds(
        [vae(s) for s in SEEDS], stacked, digits, spec(True, steps=8, **on_cuda), seeds=SEEDS
    )
    for seed, result in zip(SEEDS, results, strict=True):
        assert result.seeds_stacked == 2 and result.compile_time_s > 0
        own = train(vae(seed), stacked, digits, spec(steps=8, **on_cuda), seed=seed)
        assert_close_runs(result, own, rtol=1e-3, atol=2e-5)
