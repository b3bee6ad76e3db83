"""A run across problems: the preset's plan, and a shrunk end-to-end run of an amortised and a global problem."""

import dataclasses

import pandas as pd
import pytest

from vaebench import cli, files, provenance
from vaebench.config import SuiteConfig, VarianceConfig, preset
from vaebench.estimators import Setting
from vaebench.problems import BUILTIN_PROBLEMS, Budget, get_problem, register_problem, unregister_problem
from vaebench.report.across import write_across_report
from vaebench.suite import run_suite
from vaebench.suite.units import plan_problems


def test_preset_plans_every_builtin_problem_and_says_each_refusal_once():
    units, notes = plan_problems(preset("problems"))
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
    assert not any(u.setting == Setting("iwae", 1) for u in units)
    # every unit's file lies under its problem's folder
    assert all(u.path.parts[:2] == ("units", u.problem) for u in units)


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


def _run(config, out, **options):
    return run_suite(config, out, notes=plan_problems(config)[1], progress=False, log=lambda line: None,
                     report=write_across_report, **options)  # fmt: skip


def test_shrunk_run_writes_across_with_a_problem_column(tiny, tmp_path):
    config = SuiteConfig(problems=tiny, estimators=("reparam", "stl", "reinforce-ma", "reinforce-nvil"),
                         samples=(1, 2), seeds=(0, 1), workers=1,
                         variance=VarianceConfig(replicates=4))  # fmt: skip
    result = _run(config, tmp_path)
    assert result.status == "complete" and result.done == result.total
    for stem in ("variance", "merit"):
        frame = files.read_csv(tmp_path / f"{stem}.csv")
        assert frame.columns[0] == "problem" and set(frame["problem"]) == set(tiny), stem
    across = files.read_csv(tmp_path / "across.csv")
    assert {"iqm", "probability_of_improvement", "profile"} <= set(across["statistic"])
    assert (across["low"] <= across["value"] + 1e-12).all() and (
        across["value"] <= across["high"] + 1e-12
    ).all()
    assert (tmp_path / "transfer.csv").is_file() and (tmp_path / "run.json").is_file()
    # the amortised baseline ran on the amortised problem only
    merit = files.read_csv(tmp_path / "merit.csv")
    assert set(merit.loc[merit["estimator"] == "reinforce-nvil", "problem"]) == {"tiny-amortised"}
    report = (tmp_path / "report.md").read_text()
    (tmp_path / "report.md").unlink()  # `vaebench report DIR` rebuilds it as the run wrote it, from the units
    assert cli.main(["report", str(tmp_path)]) == 0 and (tmp_path / "report.md").read_text() == report
    assert report.index("stratified bootstrap intervals") < report.index("## Per problem")  # the verdict first
    notes = provenance.load_run(tmp_path)["notes"]
    assert any(n.startswith("tiny-global: reinforce-nvil skipped") for n in notes)
    assert "**tiny-global**" in report and "note" in report.split("**tiny-global**")[1].splitlines()[0]
    # a resume finds every unit verified and redoes none; a lost unit and a garbled one are redone
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "units").rglob("*.csv")}
    assert _run(config, tmp_path, resume=True).done == 0
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "units").rglob("*.csv")}
    lost = tmp_path / "units/tiny-global/merit/reparam-K1-s0+1.csv"
    lost.unlink()
    garbled = tmp_path / "units/tiny-amortised/variance/end-s1.csv"
    garbled.write_text(garbled.read_text().replace("0", "1"))
    again = _run(config, tmp_path, resume=True)
    assert again.done == 2 and set(again.repaired) == {"tiny-global/merit/reparam-K1-s0+1",
                                                         "tiny-amortised/variance/end-s1"}  # fmt: skip
    assert files.read_csv(tmp_path / "merit.csv").shape == merit.shape


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


def test_every_table_of_an_ordinary_run_names_its_problem(tmp_path):
    from vaebench.suite import store
    from vaebench.suite.units import run_problem

    names = {n: run_problem(preset(n)) for n in ("default", "quick", "scaling", "paper", "fashion-mnist")}
    assert names == {"default": "digits", "quick": "digits", "scaling": "gaussian-toy", "paper": "fashion-mnist",
                     "fashion-mnist": "fashion-mnist"}  # fmt: skip
    from vaebench.config import DataConfig, ModelConfig

    linear = SuiteConfig(data=DataConfig(name="synthetic"), model=ModelConfig(hidden=()))
    assert run_problem(linear) == "linear-gaussian"
    rows = {"estimator": ["reparam"], "num_samples": [1], "seed": [0]}
    frames = {kind: [pd.DataFrame(rows)] for kind in ("variance", "convergence", "throughput", "laws")}
    tables = store.combine(tmp_path, frames, problem="digits")
    for kind in ("variance", "convergence", "throughput"):
        on_disk = files.read_csv(tmp_path / store.COMBINED[kind])
        assert on_disk.columns[0] == "problem" and set(on_disk["problem"]) == {"digits"}, kind
    assert "problem" not in tables["laws"]  # a check's own model is named by its checkpoint
