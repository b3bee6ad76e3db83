"""From a results folder to a paper, end to end on one shrunk quick run: ``vaebench.load``, the data dictionary,
``vaebench table`` (LaTeX compiled where a TeX is installed, else checked structurally), ``vaebench plot``,
and ``vaebench export`` read back with TensorBoard's reader and MLflow's client (skipped where the extra is
missing)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import vaebench
from vaebench import cli
from vaebench.errors import VaebenchError
from vaebench.measures import dictionary, schema
from vaebench.report import paper

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "quick", "--workers", "1", "--estimators", "reparam,iwae,stl", "--samples", "1,2",
        "--seeds", "0,1", "--steps", "40", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("paper") / "run"
    assert cli.main(["run", *TINY, "--out", str(out)]) == 0
    return out


# --- the results API and the data dictionary ---------------------------------------------------------------------


def test_load_reads_every_table_the_verdicts_and_the_provenance(folder: Path) -> None:
    res = vaebench.load(folder)
    for name in ("variance", "convergence", "throughput", "summary", "claims", "budget"):
        assert not getattr(res, name).empty, name
    assert res.across.empty  # no across-problem study here
    assert set(res.summary["estimator"]) == {"reparam", "iwae", "stl"}
    assert res.verdicts and {"question", "K", "winner"} <= set(res.verdicts[0])
    assert res.config["train"]["steps"] == 40 and res.provenance["versions"]["torch"]
    assert res.checkpoint == "end" and res.level == 0.95
    # every declared column is there (completed to the schema), as the report reads it
    assert set(schema.VARIANCE.columns) <= set(res.variance.columns)


def test_every_column_of_every_table_is_in_the_dictionary(folder: Path) -> None:
    res = vaebench.load(folder)
    for name, frame in res.tables().items():
        for column in frame.columns:
            entry = dictionary.describe(column)  # KeyError names a column nobody documented
            assert entry.header and entry.meaning, (name, column)
    assert vaebench.header("trace_var") == "encoder grad variance"
    assert vaebench.describe("trace_var").direction == "lower is better"
    assert vaebench.describe("final_test_elbo").unit == "nats"
    assert dictionary.describe("snr_low").header == "encoder SNR (lower end)"
    with pytest.raises(KeyError, match="not a column"):
        dictionary.describe("no_such_column")


def test_the_reports_table_headers_are_the_dictionarys() -> None:
    from vaebench.report.tables import SUMMARY_COLUMNS

    assert [head for _, head, *_ in SUMMARY_COLUMNS] == [vaebench.header(c) for c, *_ in SUMMARY_COLUMNS]


def test_the_readme_holds_the_dictionary_as_the_module_renders_it() -> None:
    assert dictionary.markdown() in (ROOT / "README.md").read_text()


def test_load_reads_an_across_problem_table_and_refuses_a_damaged_unit(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    pd.DataFrame({"problem": ["digits"], "estimator": ["reparam"], "num_samples": [1]}).to_csv(
        copy / "across.csv", index=False
    )
    assert list(vaebench.load(copy).across["problem"]) == ["digits"]
    unit = next((copy / "units" / "variance").glob("*.csv"))
    unit.write_text(unit.read_text().replace("reparam", "reparaM", 1))
    with pytest.raises(VaebenchError, match="damaged"):
        vaebench.load(copy)


# --- tables for papers -----------------------------------------------------------------------------------------------


def test_the_latex_table_is_booktabs_with_the_best_in_bold_and_compiles_where_tex_is(
    folder: Path, tmp_path: Path
) -> None:
    tex = tmp_path / "table.tex"
    assert cli.main(["table", str(folder), "--format", "latex", "--out", str(tex)]) == 0
    text = tex.read_text()
    res = vaebench.load(folder)
    body = text[text.index(r"\midrule") : text.index(r"\bottomrule")].splitlines()[1:]
    assert len(body) == len(res.summary)  # a row per setting
    columns = text[text.index(r"\begin{tabular}{") + 16 :].split("}")[0]
    assert all(row.count(" & ") == len(columns) - 1 and row.endswith(r"\\") for row in body)
    assert text.count(r"\toprule") == text.count(r"\midrule") == text.count(r"\bottomrule") == 1
    assert text.count("{") == text.count("}") and text.count("$") % 2 == 0
    assert r"{\bfseries {\boldmath" in text and "encoder grad variance" in text
    # the bold cell of a column at a K is its lowest variance there
    k1 = res.summary[res.summary["num_samples"] == 1]
    lowest = k1.loc[k1["trace_var"].idxmin(), "estimator"]
    assert any(r.startswith(f"{lowest} & 1 & {{\\bfseries") for r in body)
    if shutil.which("pdflatex"):
        doc = tmp_path / "doc.tex"
        doc.write_text(
            "\\documentclass{article}\\usepackage{booktabs}\\usepackage{graphicx}\\begin{document}"
            f"\\resizebox{{\\textwidth}}{{!}}{{\\input{{{tex.name}}}}}\\end{{document}}"
        )
        done = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
            cwd=tmp_path,
            capture_output=True,
        )
        assert done.returncode == 0, done.stdout[-2000:]


def test_markdown_and_csv_tables_and_a_bad_column_is_named(
    folder: Path, capsys: pytest.CaptureFixture
) -> None:
    res = vaebench.load(folder)
    text = paper.render(res, "markdown", intervals="pm", columns=("trace_var", "final_test_elbo"))
    assert text.splitlines()[0] == "| estimator | K | encoder grad variance | test ELBO (nats) |"
    assert text.count("**") >= 4 and ("±" in text or "+" in text)
    csv = pd.read_csv(io.StringIO(paper.render(res, "csv")))
    both = csv.merge(res.summary, on=["estimator", "num_samples"], suffixes=("", "_summary"))
    assert (
        len(both) == len(res.summary) and (both["trace_var"] == both["trace_var_summary"]).all()
    )  # unrounded
    assert cli.main(["table", str(folder), "--columns", "trace_var,nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_a_cell_rounds_once_and_says_its_interval() -> None:
    assert paper.cell(184.2, 136.0, 233.0) == "184 [136, 233]"
    assert paper.cell(1.57, 1.32, 1.82, "pm") == "1.57 ± 0.25"
    assert paper.cell(47.2, 33.1, 64.0, "pm") == "47.2 +17/-14"
    assert (
        paper.cell(2.95e5, 2.12e5, 3.74e5, tex=True)
        == r"$2.95\times 10^{5}$ [$2.12\times 10^{5}$, $3.74\times 10^{5}$]"
    )
    assert paper.cell(float("nan"), 1, 2) == "–"
    assert paper.tex_escape("a_b & c%") == r"a\_b \& c\%"


# --- figures ---------------------------------------------------------------------------------------------------------


def test_plot_writes_every_figure_of_the_report_as_vector_files(folder: Path, tmp_path: Path) -> None:
    assert cli.main(["plot", str(folder), "--format", "svg", "--out", str(tmp_path)]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {
        "variance_snr_vs_k.svg", "elbo_vs_steps.svg", "elbo_vs_wallclock.svg", "elbo_vs_compute.svg", "throughput.svg"
    }  # fmt: skip
    # the report's PNGs are the same figures
    assert {Path(n).stem for n in names} <= {p.stem for p in folder.glob("*.png")}


# --- trackers --------------------------------------------------------------------------------------------------------


def test_tensorboard_holds_every_training_curve_and_the_figures(folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "tb"
    for _ in range(2):  # an export replaces the previous one: the curves are logged once
        assert cli.main(["export", str(folder), "--to", "tensorboard", "--logdir", str(logdir)]) == 0
    conv = vaebench.load(folder).convergence
    for (name, k, seed), rows in conv.groupby(["estimator", "num_samples", "seed"]):
        events = EventAccumulator(str(logdir / f"{name}_K{k}" / f"seed{seed}"))
        events.Reload()
        for metric, curve in rows.groupby("metric"):
            read = events.Scalars(metric)
            assert [e.step for e in read] == curve.sort_values("step")["step"].tolist()
            assert [e.value for e in read] == pytest.approx(
                curve.sort_values("step")["value"].tolist(), rel=1e-6
            )
    summary = EventAccumulator(str(logdir / "reparam_K1"))
    summary.Reload()
    assert "summary/trace_var" in summary.Tags()["scalars"]
    figures = EventAccumulator(str(logdir / "figures"), size_guidance={"images": 0})
    figures.Reload()
    assert set(figures.Tags()["images"]) == {"variance", "steps", "wallclock", "compute", "throughput"}
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(VaebenchError, match="did not write"):
        from vaebench import trackers

        trackers.to_tensorboard(vaebench.load(folder), tmp_path / "mine")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy's, inside MLflow's SQL store
def test_mlflow_has_one_run_per_setting_with_config_params_and_provenance_tags(
    folder: Path, tmp_path: Path
) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for _ in range(2):  # exported twice: each setting still has one (active) run
        assert cli.main(["export", str(folder), "--to", "mlflow", "--tracking-uri", uri]) == 0
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(f"vaebench/{folder.name}")
    runs = client.search_runs([experiment.experiment_id])
    res = vaebench.load(folder)
    assert sorted(r.info.run_name for r in runs) == sorted(
        f"{e}_K{k}" for e, k in zip(res.summary["estimator"], res.summary["num_samples"], strict=True)
    )
    run = next(r for r in runs if r.info.run_name == "reparam_K1")
    assert run.data.params["train.steps"] == "40" and run.data.params["setting.estimator"] == "reparam"
    assert run.data.tags["versions.torch"] == res.provenance["versions"]["torch"]
    assert run.data.tags["status"] == "complete"
    row = res.summary[(res.summary["estimator"] == "reparam") & (res.summary["num_samples"] == 1)].iloc[0]
    assert run.data.metrics["trace_var"] == pytest.approx(row["trace_var"])
    history = client.get_metric_history(run.info.run_id, "seed0/test_elbo")
    curve = res.convergence.query(
        "estimator == 'reparam' and num_samples == 1 and seed == 0 and metric == 'test_elbo'"
    )
    assert sorted(m.step for m in history) == sorted(curve["step"])


def test_an_unknown_or_missing_tracker_is_refused_before_a_run_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaebench import trackers

    assert cli.main(["run", *TINY, "--out", str(tmp_path / "x"), "--log", "wandb"]) == 2
    assert "unknown tracker(s) wandb" in capsys.readouterr().err and not (tmp_path / "x").exists()
    monkeypatch.setitem(trackers.EXTRAS, "mlflow", ("no_such_package_here",))
    assert cli.main(["run", *TINY, "--out", str(tmp_path / "x"), "--log", "tensorboard,mlflow"]) == 2
    assert "pip install 'vaebench[mlflow]'" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_readme_commands_name_real_flags() -> None:
    text = (ROOT / "README.md").read_text()
    assert re.search(r"vaebench table \S+ --format latex", text) and "vaebench plot" in text
