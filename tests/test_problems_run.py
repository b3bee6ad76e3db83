"""A run across problems: the preset's plan, and a shrunk end-to-end run of an amortised and a global problem."""

import dataclasses

import pytest

from vaebench import files
from vaebench.config import SuiteConfig, VarianceConfig, preset
from vaebench.problems import BUILTIN_PROBLEMS, Budget, get_problem, register_problem, unregister_problem
from vaebench.report.across import write_across_report
from vaebench.suite import problems


def test_preset_plans_every_builtin_problem_and_says_each_refusal_once():
    units, notes = problems.plan(preset("problems"))
    planned = {u.problem for u in units}
    available = {n for n in BUILTIN_PROBLEMS if not get_problem(n).unavailable()}
    assert planned == available
    assert all(f"problem {n} dropped" in " ".join(notes) for n in set(BUILTIN_PROBLEMS) - available)
    # the amortised baseline is refused on every global-latent problem, as a note, never planned
    for name in ("blr-breast-cancer", "eight-schools", "funnel"):
        assert any(n.startswith(f"{name}: reinforce-nvil skipped") and "global latents" in n for n in notes)
        assert not any(
            u.problem == name and u.setting and u.setting.estimator == "reinforce-nvil" for u in units
        )
    # an estimator's own refusal (K below its minimum) is said once, not once per problem
    assert sum(n.startswith("vimco skipped at K=1") for n in notes) == 1
    # IWAE at K = 1 is reparam's gradient: trained once
    assert not any(u.setting == problems.Setting("iwae", 1) for u in units)


@pytest.fixture
def tiny():
    names = []
    for name, small in (("linear-gaussian", "tiny-amortised"), ("eight-schools", "tiny-global")):
        p = get_problem(name)
        register_problem(
            dataclasses.replace(
                p, name=small, budget=Budget(steps=30, batch_size=p.budget.batch_size, lr=1e-2)
            )
        )
        names.append(small)
    yield tuple(names)
    for n in names:
        unregister_problem(n)


def test_shrunk_run_writes_across_with_a_problem_column(tiny, tmp_path):
    config = SuiteConfig(problems=tiny, estimators=("reparam", "stl", "reinforce-ma", "reinforce-nvil"),
                         samples=(1, 2), seeds=(0, 1), workers=1,
                         variance=VarianceConfig(replicates=4))  # fmt: skip
    tables = problems.run_problems(config, tmp_path, log=lambda line: None)
    for stem in ("variance", "merit"):
        frame = files.read_csv(tmp_path / f"{stem}.csv")
        assert set(frame["problem"]) == set(tiny), stem
    across = files.read_csv(tmp_path / "across.csv")
    assert {"iqm", "probability_of_improvement", "profile"} <= set(across["statistic"])
    assert (across["low"] <= across["value"] + 1e-12).all() and (
        across["value"] <= across["high"] + 1e-12
    ).all()
    assert (tmp_path / "transfer.csv").is_file() and (tmp_path / "run.json").is_file()
    # the amortised baseline ran on the amortised problem only
    merit = tables["merit"]
    assert set(merit.loc[merit["estimator"] == "reinforce-nvil", "problem"]) == {"tiny-amortised"}
    report = write_across_report(tmp_path).read_text()
    assert report.index("## Across problems") < report.index("## Per problem")
    assert "tiny-global: reinforce-nvil skipped" in report
    # a second call finds every unit saved and redoes none
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "units").rglob("*.csv")}
    problems.run_problems(config, tmp_path, log=lambda line: None)
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "units").rglob("*.csv")}


@pytest.mark.parametrize("name", ["blr-breast-cancer", "eight-schools", "funnel"])
def test_the_contract_probe_takes_a_global_latent_model_and_refuses_one_per_datapoint(name):
    from vaebench.errors import VaebenchError
    from vaebench.plugins.registry import probe_model

    problem = get_problem(name)
    data = problem.load()
    model = problem.build(data, 0)
    probe_model(model, data.train[:7], name=name)  # q [1, Z], joint [K, 1], no decoder group
    posterior = model.posterior
    model.posterior = lambda x: type(posterior(x))(
        posterior(x).loc.expand(7, -1), posterior(x).scale.expand(7, -1)
    )
    with pytest.raises(VaebenchError, match=r"\[1, Z\] \(global latents\)"):
        probe_model(model, data.train[:7], name=name)
