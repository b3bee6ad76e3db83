"""Problems as first-class: the built-ins load and keep the contract, the registry takes a user's own, the CLI
lists them, and which settings a problem refuses (and why) is stated once."""

from __future__ import annotations

import importlib.metadata
import math
import sys

import pytest
import torch

from vaebench import rng
from vaebench.cli import main
from vaebench.errors import VaebenchError
from vaebench.estimators import sample_posterior
from vaebench.measures.merit import figures_of_merit, global_merit
from vaebench.problems import (
    BUILTIN_PROBLEMS,
    FIGURES,
    GROUP,
    PROBLEMS,
    Budget,
    Problem,
    get_problem,
    load_installed_problems,
    register_problem,
    unregister_problem,
)

EXPECTED = {
    "digits",
    "fashion-mnist-binary",
    "blr-breast-cancer",
    "eight-schools",
    "funnel",
    "gaussian-toy",
    "linear-gaussian",
}


def test_the_built_in_problems_are_registered_and_each_names_the_figure_that_ranks_it():
    assert set(BUILTIN_PROBLEMS) == EXPECTED
    for problem in PROBLEMS.values():
        assert problem.ranked_by in problem.figures
        assert "ranked by" in problem.description


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_problem_loads_and_keeps_the_estimator_contract_or_says_why_not(name):
    problem = get_problem(name)
    if problem.unavailable():
        with pytest.raises(VaebenchError, match=f"problem {name!r} cannot run here"):
            problem.load()
        pytest.skip(problem.unavailable())
    data = problem.load()
    model = problem.build(data, seed=0)
    x = data.train[: problem.budget.batch_size or None]
    q = model.posterior(x)
    rows = 1 if problem.global_latents else x.shape[0]
    assert tuple(q.loc.shape) == (rows, q.loc.shape[-1])
    z = sample_posterior(q, 3, rng.generator(0, "problems.verify", 4))
    log_joint = model.log_joint(x, z)
    assert log_joint.shape == (3, rows) and torch.isfinite(log_joint).all()
    assert getattr(model, "global_latents", False) == problem.global_latents


def test_breast_cancer_is_standardised_on_its_training_rows_and_split_80_20():
    data = get_problem("blr-breast-cancer").load()
    assert data.train.shape == (455, 31) and data.test.shape == (114, 31)
    features = data.train[:, :-1].double()
    assert torch.allclose(features.mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(features.std(0, unbiased=False), torch.ones(30, dtype=torch.float64), atol=1e-4)
    assert set(data.train[:, -1].unique().tolist()) == {0.0, 1.0}


def test_global_problems_refuse_amortised_baselines_and_subsampled_nonlinear_bounds():
    blr, schools, digits = (
        get_problem("blr-breast-cancer"),
        get_problem("eight-schools"),
        get_problem("digits"),
    )
    assert "global latents" in blr.unsupported("reinforce-nvil", 1)
    assert "not linear in log p" in blr.unsupported("iwae", 10)  # minibatches of 50 of 455 rows
    assert blr.unsupported("iwae", 1) == ""  # IWAE_1 is the ELBO
    assert blr.unsupported("reparam", 10) == "" and blr.unsupported("reinforce-loo", 10) == ""
    assert schools.unsupported("iwae", 10) == ""  # all eight rows in every step: IWAE_K of the full data
    assert digits.unsupported("reinforce-nvil", 10) == "" and digits.unsupported("iwae", 10) == ""
    with pytest.raises(VaebenchError, match="unknown estimator"):
        blr.unsupported("nope", 1)


def test_a_problem_checks_its_figures_and_budget_where_it_is_built():
    base = get_problem("funnel")
    with pytest.raises(VaebenchError, match="unknown figure"):
        Problem("p", "d", base.data, base.model, base.budget, ("elbo", "accuracy"), "elbo")
    with pytest.raises(VaebenchError, match="not one of its figures"):
        Problem("p", "d", base.data, base.model, base.budget, ("elbo",), "khat")
    with pytest.raises(VaebenchError, match="batch_size"):
        Budget(steps=10, batch_size=-1, lr=1e-2)
    assert set(FIGURES) >= {f for p in PROBLEMS.values() for f in p.figures}


def test_the_figures_of_merit_of_a_global_problem_at_its_initial_q():
    problem = get_problem("funnel")
    data = problem.load()
    merit = global_merit(problem.build(data), data, problem.figures, samples=1000).set_index("figure")
    assert merit.loc["gap_to_log_z", "value"] == pytest.approx(-merit.loc["elbo", "value"])  # log Z = 0
    assert merit.loc["gap_to_log_z", "value"] > 0
    blr = get_problem("blr-breast-cancer")
    data = blr.load()
    merit = global_merit(blr.build(data), data, blr.figures, samples=1000).set_index("figure")
    assert -20 < merit.loc["predictive_log_likelihood", "value"] < 0
    assert math.isnan(merit.loc["khat", "low"])


PLUGIN = """
from vaebench.problems import get_problem, Problem
from dataclasses import replace
MINE = replace(get_problem("funnel"), name="my-funnel", description="a funnel of mine; ranked by the ELBO")
PROBLEMS = {"my-other": replace(MINE, name="my-other")}
"""


def test_a_users_problems_join_through_the_entry_point_group(tmp_path, monkeypatch):
    (tmp_path / "my_problems.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [
        importlib.metadata.EntryPoint("my-funnel", "my_problems:MINE", GROUP),
        importlib.metadata.EntryPoint("many", "my_problems", GROUP),
    ]
    try:
        assert load_installed_problems(points) == ["my-funnel", "my-other"]
        assert get_problem("my-funnel").global_latents
        with pytest.raises(VaebenchError, match="clashes with the built-in"):
            register_problem(get_problem("funnel"))
        with pytest.raises(VaebenchError, match="not a vaebench Problem"):
            register_problem("funnel")
        bad = importlib.metadata.EntryPoint("bad", "my_problems:get_problem", GROUP)
        with pytest.raises(VaebenchError, match="neither a Problem nor a module"):
            load_installed_problems([bad])
    finally:
        unregister_problem("my-funnel")
        unregister_problem("my-other")
        sys.modules.pop("my_problems", None)
    with pytest.raises(VaebenchError, match="unknown problem 'my-funnel'"):
        get_problem("my-funnel")


def test_list_prints_every_problem(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    section = out[out.index("problems") : out.index("presets:")]
    for name in EXPECTED:
        assert f"  {name} " in section


@pytest.mark.parametrize("name", ["gaussian-toy", "linear-gaussian"])
def test_the_figures_of_merit_of_an_exact_local_problem(name):
    problem = get_problem(name)
    data = problem.load()
    model = problem.build(data, seed=0)
    merit = figures_of_merit(model, data, problem.figures, samples=50, points=64).set_index("figure")
    assert list(merit.index) == list(problem.figures)
    gap = merit.loc["gap_to_log_z"]
    assert gap["value"] > 0 and gap["low"] <= gap["value"] <= gap["high"]
    if "test_log_likelihood" in problem.figures:  # IWAE_50 >= ELBO on average, both below log p(x)
        assert merit.loc["test_elbo", "value"] < merit.loc["test_log_likelihood", "value"]
