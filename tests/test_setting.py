"""A Setting (estimator, sampler, K) is checked once, where it is built, with a message that names the problem."""

from __future__ import annotations

import pytest
import torch

from vaebench.errors import VaebenchError
from vaebench.estimators import Setting, make_estimator, runnable
from vaebench.model import GaussianVAE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", 1), "unknown estimator 'nope'"),
        (("reparam", 0), r"num_samples \(K\) must be an integer >= 1"),
        (("reparam", True), r"num_samples \(K\) must be an integer >= 1"),
        (("reinforce-loo", 1), "reinforce-loo needs K >= 2"),
        (("iwae", 4, "rqmc"), "iwae cannot use sampler 'rqmc'"),
        (("reparam", 3, "antithetic"), "needs an even K"),
        (("reparam", 2, "sobol"), "unknown sampler 'sobol'"),
    ],
)
def test_an_impossible_setting_is_refused_where_it_is_built(args, message):
    with pytest.raises(VaebenchError, match=message):
        Setting(*args)


def test_a_setting_names_its_units_and_builds_its_estimator():
    plain, rqmc = Setting("stl", 10), Setting("stl", 16, "rqmc")
    assert (plain.name, plain.label, rqmc.name, rqmc.label) == ("stl", "stl-K10", "stl@rqmc", "stl@rqmc-K16")
    est = rqmc.build()
    assert est.name == "stl" and est.sampler == "rqmc" and rqmc.kind is type(est)
    assert runnable(["reparam", "reinforce-loo"], [1, 2], ["iid", "antithetic"]) == [
        Setting("reparam", 1),
        Setting("reparam", 2),
        Setting("reparam", 2, "antithetic"),
        Setting("reinforce-loo", 2),
    ]


def test_a_settings_estimator_trusts_the_checked_k_and_checks_any_other():
    model, x = GaussianVAE(6, 2, seed=0), torch.zeros(3, 6)
    built = Setting("vimco", 2).build()
    assert built.checked_samples == 2
    assert built(model, x, num_samples=2).surrogate.shape == ()
    for estimator in (built, make_estimator("vimco")):  # another K, or an estimator no Setting built
        with pytest.raises(VaebenchError, match=r"num_samples \(K\) must be an integer >= 2 for vimco"):
            estimator(model, x, num_samples=1)
