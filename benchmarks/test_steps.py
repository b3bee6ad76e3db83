"""Training-step benchmarks: every registered estimator at K = 1 and K = 10, and the hand-written step.

One benchmark per estimator x K, read from the registry, with ids like ``reparam-K1`` and
``reinforce-loo-K10`` (stable across runs, so ``--benchmark-compare`` lines them up), and the samplers other
than iid on the pathwise estimators at K = 10 (``reparam-rqmc-K10``: what a step pays for its draws). A step is what
:func:`vaebench.measures.throughput.build_step` builds and the throughput measure times: the estimator's
forward, backward and a fused Adam step, on the 784-400-20 VAE with B = 128 (see ``conftest.py``).

``test_step_by_latent_dimension`` times ``mvd`` next to ``reparam`` at K = 1 on the same VAE with Z = 8 and
Z = 50 (``mvd-Z8-K1``, ``reparam-Z50-K1``, ...): the measure-valued derivative evaluates log p at 4Z points
per sample, so its step's cost grows with Z where reparam's barely does.

``test_handwritten_step`` times the pytorch/examples VAE step written out plainly in the same session (first,
next to ``reparam-K1``, so that drifting machine load affects their ratio least);
``test_matmul`` times the large matmul whose FLOP/s is the ceiling the steps are compared with. The ratios of
issue 6 are printed after the table (``conftest.py``).
"""

from __future__ import annotations

import pytest
import torch

from vaebench.estimators import ESTIMATORS, make_estimator
from vaebench.measures.throughput import build_handwritten_step, build_step, count_linear_flops

SAMPLES = (1, 10)
MATMUL_SIZE = 1024
SAMPLER_CASES = [("reparam", "antithetic", 10), ("reparam", "rqmc", 10), ("stl", "rqmc", 10)]
LATENT_CASES = [(name, z) for z in (8, 50) for name in ("reparam", "mvd")]


def _cases():
    for name, cls in ESTIMATORS.items():
        for k in SAMPLES:
            skip = k < cls.min_samples
            marks = [pytest.mark.skip(reason=f"{name} needs K >= {cls.min_samples}")] if skip else []
            yield pytest.param(name, k, id=f"{name}-K{k}", marks=marks)


def test_handwritten_step(batch, device, time_step):
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        step, model, _ = build_handwritten_step(batch)
        with count_linear_flops(model) as forward_flops:
            step()
    info = {"flops_per_step": 3 * forward_flops[0], "optimizer": "adam-default"}
    time_step("handwritten", step, info, group="step K=1")


@pytest.mark.parametrize(("name", "num_samples"), list(_cases()))
def test_step(name, num_samples, vae_factory, batch, device, time_step):
    step, info = build_step(vae_factory(), name, batch, num_samples, device=device, seed=0)
    time_step(f"{name}-K{num_samples}", step, info, group=f"step K={num_samples}")


@pytest.mark.parametrize(
    ("name", "sampler", "num_samples"), SAMPLER_CASES, ids=[f"{n}-{s}-K{k}" for n, s, k in SAMPLER_CASES]
)
def test_step_with_sampler(name, sampler, num_samples, vae_factory, batch, device, time_step):
    estimator = make_estimator(name, sampler=sampler)
    step, info = build_step(vae_factory(), estimator, batch, num_samples, device=device, seed=0)
    time_step(f"{name}-{sampler}-K{num_samples}", step, info, group=f"step K={num_samples}")


def test_matmul(benchmark, device):
    generator = torch.Generator(device).manual_seed(0)
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator, device=device)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator, device=device)
    out = torch.empty_like(a)

    def product() -> None:
        torch.mm(a, b, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    benchmark.group = "matmul ceiling"
    benchmark.extra_info["flops"] = 2 * MATMUL_SIZE**3
    benchmark(product)


@pytest.mark.parametrize(("name", "z_dim"), LATENT_CASES, ids=[f"{n}-Z{z}-K1" for n, z in LATENT_CASES])
def test_step_by_latent_dimension(name, z_dim, vae_factory, batch, device, time_step):
    step, info = build_step(vae_factory(z_dim=z_dim), name, batch, 1, device=device, seed=0)
    time_step(f"{name}-Z{z_dim}-K1", step, info, group="step by Z, K=1")
