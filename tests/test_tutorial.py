"""The README's tutorial ("From a results folder to a paper"), command by command, on a shrunk quick run.

Each line of the tutorial's block is checked: the ``pip install`` lines name extras and a package that exist
(installing is CI's job, ``.ci/run``); ``verify`` is parsed (that the example is unbiased is
``tests/test_example_plugin.py``'s test); ``run``, ``table`` and ``plot`` run as written, the run shrunk by
flags appended after the tutorial's; ``tensorboard --logdir`` is checked to name a folder of event files.
The Python block then runs against the same folder. Skipped where the example plugin or a tracker extra is
not installed.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from vaebench import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SHRINK = ["--samples", "1,2", "--seeds", "0,1", "--steps", "40", "--workers", "1", "--quiet"]


def block(name: str) -> str:
    found = re.search(rf"<!-- {name} -->\n```\w+\n(.*?)```\n<!-- /{name} -->", README, re.S)
    assert found, f"the README has no {name} block"
    return found[1]


def commands() -> list[list[str]]:
    lines = [line.split("  #")[0].strip() for line in block("tutorial").splitlines()]
    return [shlex.split(line) for line in lines if line]


def test_the_tutorial_is_under_ten_commands() -> None:
    assert 0 < sum(len(" ".join(c).split("&&")) for c in commands()) < 10


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy's, inside MLflow's SQL store
def test_each_tutorial_command_does_what_it_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not any(
        ep.name == "partial-stl" for ep in importlib.metadata.entry_points(group="vaebench.estimators")
    ):
        pytest.skip("the example plugin is not installed (pip install -e examples/partial-stl)")
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)  # results/mine is created here
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    ran = []
    for argv in commands():
        if argv[:2] == ["pip", "install"]:
            for part in " ".join(argv).split("&&"):
                target = shlex.split(part)[-1]
                if "[" in target:  # -e ".[a,b]": the extras are declared
                    assert set(target.split("[")[1].rstrip("]").split(",")) <= set(extras), target
                elif target.startswith("examples/"):
                    assert (ROOT / target / "pyproject.toml").is_file(), target
        elif argv[:3] == ["python", "-m", "vaebench"]:
            args = argv[3:]
            if args[0] == "verify":
                assert cli.build_parser().parse_args(args).names == ["partial-stl"]
                continue
            if args[0] == "run":
                args = [*args, *SHRINK]
            assert cli.main(args) == 0, args
            ran.append(args[0])
        elif argv[0] == "tensorboard":
            logdir = Path(argv[argv.index("--logdir") + 1])
            events = EventAccumulator(str(logdir / "partial-stl_K1" / "seed0"))
            events.Reload()
            assert "test_elbo" in events.Tags()["scalars"]
            ran.append("tensorboard")
        else:
            pytest.fail(f"the tutorial has a command this test does not check: {argv}")
    assert ran == ["run", "table", "plot", "tensorboard"]
    mine = tmp_path / "results" / "mine"
    table = (mine / "table.tex").read_text()
    assert r"\toprule" in table and "\npartial-stl & 1 &" in table
    assert all(p.read_bytes()[:4] == b"%PDF" for p in (mine / "figures").glob("*.pdf"))
    assert len(list((mine / "figures").glob("*.pdf"))) == 5
    assert (mine / "mlflow" / "mlflow.db").is_file()
    exec(compile(block("python"), "README.md", "exec"), {})
    assert (mine / "elbo_k1.pdf").read_bytes()[:4] == b"%PDF"
