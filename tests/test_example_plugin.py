"""The example plugin package (examples/partial-stl), loaded from the source tree by module name as a user
would after ``pip install -e examples/partial-stl``, proven by the exact-gradient machinery of
:mod:`vaebench.checks.exact_gradients` exactly as the built-in estimators are.

False-alarm rates: `verify` tests unbiasedness with a family-wise false-alarm rate of 1e-3 per (estimator,
sampler, K) (Bonferroni over the gradient's coordinates); the draw-by-draw identity is exact (no statistics).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from vaebench.checks.exact_gradients import gradient_draws, linear_gaussian, verify
from vaebench.estimators import (
    BUILTIN_ESTIMATORS,
    ESTIMATORS,
    EstimatorOutput,
    log_density,
    make_estimator,
    register,
    unregister,
)
from vaebench.plugins import registry

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "partial-stl"


@pytest.fixture(autouse=True)
def example():
    """The example on the path and loaded by name; unloaded and forgotten afterwards."""
    sys.path.insert(0, str(EXAMPLE))
    registry.load_module("vaebench_partial_stl")
    yield sys.modules["vaebench_partial_stl"]
    registry.unload()
    sys.path.remove(str(EXAMPLE))
    for name in [m for m in sys.modules if m.startswith("vaebench_partial_stl")]:
        del sys.modules[name]
    assert set(ESTIMATORS) == set(BUILTIN_ESTIMATORS)


def test_verify_proves_the_example_unbiased_with_every_sampler():
    table = verify(["partial-stl"])
    assert set(table["sampler"]) == {"iid", "antithetic", "rqmc"}
    assert table["unbiased"].all() and table["as_expected"].all(), table
    assert (table["reference"] == "exact").all()


def test_verify_catches_a_plugin_that_drops_part_of_the_path_term(example):
    """The bug a careless interpolation makes: scaling all of log q by c drops (1 - c) of its path term."""

    class Careless(example.PartialSTL):
        name = "careless-stl"

        def estimate(self, model, x, num_samples, generator):
            q = model.posterior(x)
            z = self.sample(q, num_samples, generator)
            f = (model.log_joint(x, z) - self.score_fraction * log_density(q, z)).mean(0)
            return EstimatorOutput(surrogate=-f.mean(), elbo=f.detach(), objective=self.objective)

    register("careless-stl", Careless)
    try:
        row = verify(["careless-stl"], samplers=["iid"]).iloc[0]
    finally:
        unregister("careless-stl")
    assert not row["unbiased"] and not row["as_expected"] and row["max_z"] > 10 * row["threshold"]


@pytest.mark.parametrize("c", [0.0, 0.3, 1.0])
def test_the_gradient_is_draw_by_draw_the_line_between_stl_and_reparam(c: float):
    model, x = linear_gaussian()
    same = {"num_samples": 3, "draws": 20, "seed": 5}  # the same noise for all three
    stl = gradient_draws(model, make_estimator("stl"), x, **same)
    reparam = gradient_draws(model, make_estimator("reparam"), x, **same)
    mine = gradient_draws(model, make_estimator("partial-stl", score_fraction=c), x, **same)
    torch.testing.assert_close(mine, (1 - c) * stl + c * reparam, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(stl, reparam)  # the two ends differ, so the identity says something
