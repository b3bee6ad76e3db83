"""End-to-end tests of ``python -m vaebench``: the quick preset, interrupt and resume, and bad options.

Everything runs in-process through ``cli.main`` (exit codes are returned, not raised). The quick preset's
run is shared by the tests that read its folder (module-scoped fixture); the interrupt test uses an even
smaller configuration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vaebench import cli, interrupts
from vaebench.config.sections import CLASSIC_ESTIMATORS
from vaebench.errors import VaebenchError
from vaebench.estimators import ESTIMATORS
from vaebench.report.writer import FIGURES
from vaebench.suite import execute

ROW_KEYS = {"estimator", "sampler", "num_samples", "seed"}


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not depend on the developer's $VAEBENCH_DATA."""
    monkeypatch.delenv("VAEBENCH_DATA", raising=False)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("quick") / "run"
    status = cli.main(["run", "--preset", "quick", "--out", str(out), "--quiet"])
    return out, status


def test_quick_preset_writes_every_file(quick_run) -> None:
    out, status = quick_run
    assert status == 0
    for name in ("variance.csv", "convergence.csv", "throughput.csv", "summary.csv", "report.md", "run.json"):
        assert (out / name).is_file(), name
    for name in FIGURES.values():
        assert (out / name).stat().st_size > 1000, name


def test_quick_preset_csv_columns(quick_run) -> None:
    out, _ = quick_run
    variance = pd.read_csv(out / "variance.csv")
    convergence = pd.read_csv(out / "convergence.csv")
    throughput = pd.read_csv(out / "throughput.csv")
    assert ROW_KEYS | {"trace_var", "trace_var_low", "trace_var_high", "snr", "snr_low", "snr_high", "group",
                       "checkpoint", "step", "work_normalized_var"} <= set(variance)  # fmt: skip
    assert ROW_KEYS | {"step", "wall_time_s", "metric", "value", "objective", "diverged"} <= set(convergence)
    assert ROW_KEYS | {"step_s_median", "step_s_low", "step_s_high", "batch_size", "device"} <= set(
        throughput
    )
    for frame in (variance, convergence, throughput):
        assert frame[list(ROW_KEYS)].notna().all().all()
    assert set(convergence["metric"]) >= {
        "train_objective",
        "test_elbo",
        "final_test_elbo",
        "test_log_likelihood",
    }
    # every registered estimator at every K it can take, every seed
    pairs = {(n, k) for n in CLASSIC_ESTIMATORS for k in (1, 4) if k >= ESTIMATORS[n].min_samples}
    assert set(zip(convergence["estimator"], convergence["num_samples"], strict=True)) == pairs
    assert set(convergence["seed"]) == {0, 1}
    measured = throughput[throughput["estimator"] != "handwritten"]
    assert set(zip(measured["estimator"], measured["num_samples"], strict=True)) == pairs


def test_quick_preset_summary_and_report(quick_run) -> None:
    out, _ = quick_run
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == sum(k >= ESTIMATORS[n].min_samples for n in CLASSIC_ESTIMATORS for k in (1, 4))
    for metric in (
        "trace_var",
        "snr",
        "final_test_elbo",
        "test_log_likelihood",
        "step_ms",
        "work_normalized_var",
    ):
        for column in (metric, f"{metric}_low", f"{metric}_high"):
            assert column in summary, column
    assert set(summary["objective"]) == {ESTIMATORS[n].objective for n in CLASSIC_ESTIMATORS}
    assert {"runs", "diverged"} <= set(summary)
    report = (out / "report.md").read_text()
    for name in CLASSIC_ESTIMATORS:
        assert f"`{name}`" in report
    assert (
        "## Bottom line" in report and "## Comparison" in report and "skipping reinforce-loo at K=1" in report
    )
    assert "| estimator | K | encoder grad variance |" in report  # every row iid: no sampler column
    assert "`iwae-stl` † | 4 |" in report and "`iwae-stl` K=4 († biased for the IWAE_K gradient" in report


def test_quick_preset_run_json(quick_run) -> None:
    out, _ = quick_run
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    assert run["config"]["name"] == "quick" and run["config"]["samples"] == [1, 4]
    assert run["versions"]["torch"] and run["versions"]["numpy"] and run["versions"]["vaebench"]
    assert run["environment"]["device"] == "cpu" and run["environment"]["threads"] >= 1
    assert "git" in run and run["started"] and run["ended"]
    assert run["command"].startswith("python -m vaebench run --preset quick")
    assert run["units"]["finished"] == run["units"]["total"]


def test_report_command_rebuilds_the_report(quick_run, capsys) -> None:
    out, _ = quick_run
    before = pd.read_csv(out / "summary.csv")
    (out / "report.md").unlink()
    (out / "summary.csv").unlink()
    assert cli.main(["report", str(out)]) == 0
    assert (out / "report.md").is_file()
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), before)


def test_a_finished_folder_is_not_overwritten(quick_run, capsys) -> None:
    out, _ = quick_run
    assert cli.main(["run", "--preset", "quick", "--out", str(out)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    # resuming a finished run does nothing and succeeds
    assert cli.main(["run", "--resume", "--out", str(out), "--quiet"]) == 0


SMALL = ["--preset", "quick", "--workers", "1", "--estimators", "reparam,reinforce-loo", "--samples", "2", "--seeds", "0", "--steps", "20", "--quiet"]  # fmt: skip


def test_interrupt_then_resume_redoes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "run"
    real = execute.execute
    calls: list[str] = []

    def interrupt_after_four(unit, ctx):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(f"{unit.kind}/{unit.name}")
        return real(unit, ctx)

    monkeypatch.setattr(execute, "execute", interrupt_after_four)
    assert cli.main(["run", *SMALL, "--out", str(out)]) == 130
    assert "--resume --out" in capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and run["units"]["finished"] == 4
    finished = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "units").rglob("*.*")}
    assert len([p for p in finished if p.suffix != ".json"]) == 4  # each with its manifest
    assert (out / "report.md").is_file()  # a partial report
    assert "Partial report" in (out / "report.md").read_text()

    calls.clear()
    monkeypatch.setattr(
        execute, "execute", lambda unit, ctx: calls.append(f"{unit.kind}/{unit.name}") or real(unit, ctx)
    )
    assert cli.main(["run", "--resume", "--out", str(out), "--quiet"]) == 0
    total = run["units"]["total"]
    assert len(calls) == total - 4  # only the unfinished units ran
    for path, (mtime, content) in finished.items():  # finished units were not rewritten
        assert (path.stat().st_mtime_ns, path.read_bytes()) == (mtime, content), path
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["units"]["finished"] == total
    assert [i["status"] for i in run["invocations"]] == ["interrupted", "complete"]
    convergence = pd.read_csv(out / "convergence.csv")
    assert set(convergence["estimator"]) == {"reparam", "reinforce-loo"}


def test_a_failing_unit_is_recorded_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "run"
    real = execute.execute

    def broken(unit, ctx):
        if unit.kind == "convergence":
            raise RuntimeError("boom")
        return real(unit, ctx)

    small = [a for a in SMALL if a != "reparam,reinforce-loo"]
    small[small.index("--estimators") + 1 : small.index("--estimators") + 1] = ["reparam"]
    monkeypatch.setattr(execute, "execute", broken)
    assert cli.main(["run", *small, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "unit convergence/reparam-K2-s0 failed: RuntimeError: boom" in err
    assert "boom" in (out / "units" / "convergence" / "reparam-K2-s0.error").read_text()
    assert "Some units failed" in (out / "report.md").read_text()
    monkeypatch.setattr(execute, "execute", real)
    assert cli.main(["run", "--resume", "--out", str(out), "--quiet"]) == 0
    assert not (out / "units" / "convergence" / "reparam-K2-s0.error").exists()


def test_a_failed_anchor_run_is_named_by_the_variance_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    real = execute.execute

    def broken(unit, ctx):
        if unit.kind == "anchor":
            raise RuntimeError("boom")
        return real(unit, ctx)

    monkeypatch.setattr(execute, "execute", broken)
    out = tmp_path / "run"
    tiny = tmp_path / "tiny.toml"
    tiny.write_text("[throughput]\nenabled = false\n")
    assert cli.main(["run", *SMALL, "--estimators", "reparam", "--config", str(tiny), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    cause = "not run: the anchor run (anchor/checkpoints) failed: RuntimeError: boom"
    assert f"unit variance/init-s0 failed: {cause}" in err and f"unit variance/end-s0 failed: {cause}" in err
    assert "FileNotFoundError" not in err and "retry the failed units" in err


def test_an_error_that_recurs_is_not_offered_as_a_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def bad(unit, ctx):
        raise VaebenchError("this setting cannot work")

    monkeypatch.setattr(execute, "execute", bad)
    tiny = tmp_path / "tiny.toml"
    tiny.write_text("[throughput]\nenabled = false\n[variance]\nenabled = false\n")
    args = [*SMALL, "--estimators", "reparam", "--config", str(tiny), "--out", str(tmp_path / "run")]
    assert cli.main(["run", *args]) == 1
    err = capsys.readouterr().err
    assert "this setting cannot work (this fails the same way every time: fix the configuration)" in err
    assert "retry the failed units" not in err


def test_a_diverged_anchor_run_is_a_note_not_a_failure(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"  # plain SGD at lr 1000 overflows within a few steps
    tiny = tmp_path / "tiny.toml"
    tiny.write_text('[train]\noptimizer = "sgd"\nlr = 1000.0\n[throughput]\nenabled = false\n')
    assert cli.main(["run", *SMALL, "--estimators", "reparam", "--config", str(tiny), "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and not run["failed"]
    (note,) = [n for n in run["notes"] if n.startswith("variance/end")]
    assert re.fullmatch(
        r"variance/end-s0: not measured: the anchor run \(reparam, K=1, seed 0\) diverged at step \d+, "
        r"before the 'end' checkpoint \(step 20\)",
        note,
    ), note
    assert note in (out / "report.md").read_text()
    assert cli.main(["run", "--resume", "--out", str(out), "--quiet"]) == 0  # nothing to retry


SHRINK = """estimators = ["reparam"]
samples = [2]
seeds = [0]
[train]
steps = 4
eval_every = 2
batch_size = 20
ll_samples = 4
ll_points = 8
eval_points = 8
[variance]
checkpoints = ["init", "end"]
replicates = 2
baseline_samples = 2
batch_size = 10
seeds = [0]
[throughput]
repeats = 1
warmup = 0
batch_size = 10
"""


@pytest.mark.parametrize("name", ["quick", "default", "paper"])
def test_synthetic_data_run_end_to_end_under_every_preset(name: str, tmp_path: Path, capsys) -> None:
    shrink = tmp_path / "shrink.toml"
    shrink.write_text(SHRINK)
    out = tmp_path / "run"
    argv = ["run", "--preset", name, "--dataset", "synthetic", "--config", str(shrink), "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert (
        "synthetic data are real values, not pixel grey levels, so the preset's pixel settings give way"
        in err
    )
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["config"]["data"]["name"] == "synthetic"
    assert not run["config"]["data"]["dequantize"] and run["config"]["data"]["binarize"] == "none"
    throughput = pd.read_csv(out / "throughput.csv")
    reference = throughput[throughput["estimator"] == "handwritten"]
    if name == "paper":  # two hidden layers: no pytorch/examples reference row at all
        assert reference.empty and run["config"]["model"]["likelihood"] == "auto"
    else:  # the reference step's Bernoulli loss needs data in [0, 1]: skipped, with the reason, not failed
        assert (
            list(reference["status"]) == ["skipped"] and "needs data in [0, 1]" in reference["reason"].iloc[0]
        )
        report = (out / "report.md").read_text()  # the unit's note, said once
        assert report.count("hand-written step not timed: the pytorch/examples reference step") == 1


def test_a_run_with_samplers_keys_every_row_by_its_sampler(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert cli.main(["run", *SMALL, "--samplers", "iid,rqmc", "--out", str(out)]) == 0
    names = {p.stem for p in (out / "units" / "convergence").glob("*.csv")}
    assert names == {"reparam-K2-s0", "reparam@rqmc-K2-s0", "reinforce-loo-K2-s0"}  # iid names unchanged
    assert {p.stem for p in (out / "units" / "throughput").glob("*.csv")} == {"K2"}  # every setting of a K
    timed = pd.read_csv(out / "throughput.csv")
    assert {("reparam", "rqmc"), ("reparam", "iid")} <= set(
        zip(timed["estimator"], timed["sampler"], strict=True)
    )
    for kind in ("variance", "convergence", "throughput"):
        assert pd.read_csv(out / f"{kind}.csv")["sampler"].notna().all(), kind
    summary = pd.read_csv(out / "summary.csv")
    assert set(zip(summary["estimator"], summary["sampler"], strict=True)) == {
        ("reparam", "iid"),
        ("reparam", "rqmc"),
        ("reinforce-loo", "iid"),
    }
    report = (out / "report.md").read_text()
    assert (
        "| estimator | sampler | K | encoder grad variance |" in report
        and "| `reparam` | rqmc | 2 |" in report
    )
    assert "skipping reinforce-loo with sampler rqmc: they are unbiased only with iid samples" in report


def test_sigterm_becomes_an_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt) as caught, interrupts.as_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
    assert interrupts.exit_status(caught.value) == 143


def bad_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--estimators", "reparam,nope"], "unknown estimator 'nope'; valid names: reparam, "),
        (["--samples", "0"], r"samples \(K\) must be integers >= 1"),
        (["--samples", "1,x"], "--samples takes comma-separated integers"),
        (["--seeds", "-1"], "seeds must be integers >= 0"),
        (
            ["--dataset", "cifar"],
            "unknown data set 'cifar'; valid names: digits, fashion-mnist, mnist, synthetic",
        ),
        (["--estimators", "reinforce-loo", "--samples", "1"], "'reinforce-loo' needs K >= 2"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (
            ["--samplers", "iid,sobol"],
            "samplers entry 'sobol' is not valid; choose one of: iid, antithetic, rqmc",
        ),
        (["--steps", "ten"], "--steps takes an integer"),
        (
            ["--config", "CONFIG:[train]\nstepz = 3\n"],
            r"unknown config key 'train.stepz'; valid keys in \[train\]",
        ),
        (
            ["--config", "CONFIG:samples = ['1']\n"],
            r"config key 'samples\[0\]' must be an integer, got string '1'",
        ),
        (["--config", "missing.toml"], "config file 'missing.toml' does not exist"),
        (["--resume"], "--resume needs --out DIR"),
        (["--preset", "fast"], "invalid choice: 'fast'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_options_exit_2_with_a_message(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    args = [bad_config(tmp_path, a[7:]) if a.startswith("CONFIG:") else a for a in args]
    assert (
        cli.main(["run", *args, "--out", str(tmp_path / "out")] if args != ["--resume"] else ["run", *args])
        == 2
    )
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written for bad input


def test_missing_data_dir_is_a_clear_error(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [
        "run",
        "--preset",
        "quick",
        "--dataset",
        "mnist",
        "--data-dir",
        str(empty),
        "--out",
        str(tmp_path / "o"),
    ]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "mnist" in err and "Traceback" not in err
    args[args.index(str(empty))] = str(tmp_path / "nope")
    assert cli.main(args) == 2
    assert "--data-dir" in (err := capsys.readouterr().err) and "is not a folder" in err


def test_resume_with_other_options_names_the_difference(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    from vaebench.config import preset, to_dict
    from vaebench.provenance import RESULTS_VERSION

    run = {"results_version": RESULTS_VERSION, "config": to_dict(preset("quick"))}
    (out / "run.json").write_text(json.dumps(run))
    assert cli.main(["run", "--preset", "quick", "--seeds", "5", "--resume", "--out", str(out)]) == 2
    assert "seeds: [0, 1] -> [5]" in capsys.readouterr().err


def test_report_of_a_folder_without_results(tmp_path: Path, capsys) -> None:
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "holds no results" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "nope")]) == 2


def test_list_prints_estimators_data_sets_and_presets(capsys) -> None:
    assert cli.main(["list"]) == 0
    text = capsys.readouterr().out
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ") and line.split()}
    for name, cls in ESTIMATORS.items():
        assert cls.citation in lines[name]
        assert lines[name].split()[1:5] == [
            cls.family,
            cls.objective,
            str(cls.min_samples),
            ",".join(cls.samplers),
        ]
    assert "[biased for the IWAE_K gradient when K > 1]" in lines["iwae-stl"]
    assert {"iid", "antithetic", "rqmc"} <= set(lines)
    for name in ("digits", "fashion-mnist", "synthetic", "quick", "default", "paper"):
        assert name in text


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`vaebench list | head`: the pipe closes under the writer; exit 141 (SIGPIPE's status), no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaebench", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # before the child has imported anything, so its first write meets a closed pipe
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err, err


def test_run_json_names_the_revision_the_run_started_from(tmp_path: Path, monkeypatch) -> None:
    """A checkout that moves during a long run must not be credited with it: the revision is read once."""
    from vaebench import provenance
    from vaebench.suite import runner

    reads = iter(range(1000))

    def moving(*args, **kwargs):  # each read of the checkout sees a new commit
        return {"commit": f"commit-{next(reads)}", "dirty": False}

    monkeypatch.setattr(runner, "git_revision", moving)
    monkeypatch.setattr(provenance, "git_revision", moving)
    out = tmp_path / "run"
    assert cli.main(["run", *SMALL, "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["git"]["commit"] == "commit-0"
    assert [i["git"]["commit"] for i in run["invocations"]] == ["commit-0"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_run_into_a_tracked_folder_does_not_call_the_code_edited(tmp_path: Path) -> None:
    # rerunning a committed reference run (--out results/reference/default) rewrites tracked files
    from vaebench.provenance import git_revision

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "summary.csv").write_text("x\n1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    (tmp_path / "results" / "summary.csv").write_text("x\n2\n")
    assert git_revision(tmp_path, exclude=tmp_path / "results")["dirty"] is False
    assert git_revision(tmp_path)["dirty"] is True
    (tmp_path / "code.py").write_text("a = 2\n")
    assert git_revision(tmp_path, exclude=tmp_path / "results")["dirty"] is True
