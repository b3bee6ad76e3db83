"""Bad input, as an adversarial user would give it: each exits with status 2 and one line naming the problem.

Every case builds what it needs in a temporary folder and returns the command line; the test runs it
in-process through ``cli.main`` and checks the exit status, that stderr is exactly one ``vaebench: error:``
line matching the expected text, that no traceback was printed, and that ``run`` created no results folder.
Everything is rejected before a unit runs (most before the data are loaded).
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import struct
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vaebench import cli
from vaebench.config import preset, to_dict
from vaebench.plugins import registry
from vaebench.provenance import RESULTS_VERSION
from vaebench.report import bottom_line

QUICK = ["run", "--preset", "quick", "--quiet"]


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAEBENCH_DATA", raising=False)


@pytest.fixture(autouse=True)
def _unload_plugins():
    """Forget the plugins a case loaded (and their modules), so that the next case starts clean."""
    path = list(sys.path)
    yield
    registry.unload()
    for name in [m for m in sys.modules if m.startswith("vb_bad_")]:
        del sys.modules[name]
    sys.path[:] = path


def toml(text: str) -> Callable[[Path], list[str]]:
    """A `run --config FILE` case."""

    def build(tmp: Path) -> list[str]:
        (tmp / "c.toml").write_text(text)
        return [*QUICK, "--config", str(tmp / "c.toml")]

    return build


def flags(*args: str) -> Callable[[Path], list[str]]:
    return lambda tmp: [*QUICK, *args]


def idx(images: tuple[int, int, int], test: tuple[int, int, int] = (2, 2, 2)) -> Callable[[Path], list[str]]:
    """`run --dataset mnist` on IDX files of the given shapes [N, H, W] (train, test)."""

    def write(path: Path, shape: tuple[int, int, int]) -> None:
        n, h, w = shape
        path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", n, h, w) + bytes(n * h * w))

    def build(tmp: Path) -> list[str]:
        write(tmp / "train-images-idx3-ubyte", images)
        write(tmp / "t10k-images-idx3-ubyte", test)
        return [*QUICK, "--dataset", "mnist", "--data-dir", str(tmp)]

    return build


def saved(
    run_json: bytes | str | None, *args: str, config: dict | None = None
) -> Callable[[Path], list[str]]:
    """`run --resume --out DIR` (or, with args starting with "report", `report DIR`) on a folder with this run.json."""

    def build(tmp: Path) -> list[str]:
        folder = tmp / "folder"
        folder.mkdir()
        text = (
            run_json
            if run_json is not None
            else json.dumps(
                {"results_version": RESULTS_VERSION, "config": config or to_dict(preset("quick"))}
            )
        )
        (folder / "run.json").write_bytes(text.encode() if isinstance(text, str) else text)
        (folder / "convergence.csv").write_text("estimator,num_samples,seed,step,metric,value\n")
        if args[:1] == ("report",):
            return ["report", str(folder), *args[1:]]
        return ["run", "--resume", "--out", str(folder), "--quiet", *args]

    return build


def report_of(files: dict[str, bytes]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        return ["report", str(tmp)]

    return build


def out_is_a_file(tmp: Path) -> list[str]:
    (tmp / "afile").write_text("x")
    return [*QUICK, "--out", str(tmp / "afile")]


def config_is_a_folder(tmp: Path) -> list[str]:
    return [*QUICK, "--config", str(tmp)]


REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"


def data_file(make: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    """`run --dataset FILE` on the file ``make(tmp)`` returns."""
    return lambda tmp: [*QUICK, "--dataset", str(make(tmp))]


def huge_npy(tmp: Path) -> Path:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**8, 10**6)}
    )
    (tmp / "huge.npy").write_bytes(header.getvalue() + bytes(80))
    return tmp / "huge.npy"


def huge_npz(tmp: Path) -> Path:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 10**3)}
    )
    with zipfile.ZipFile(tmp / "huge.npz", "w") as archive:
        archive.writestr("train.npy", header.getvalue() + bytes(80))
        archive.writestr("test.npy", header.getvalue())
    return tmp / "huge.npz"


def fifo(name: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        os.mkfifo(tmp / name)
        return tmp / name

    return make


def link_to(target: str, name: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / name).symlink_to(target)
        return tmp / name

    return make


def idx_fifo(tmp: Path) -> list[str]:
    """`run --dataset mnist` where the training images are a FIFO (gzipped name: found, then refused)."""
    argv = idx((2, 2, 2))(tmp)
    (tmp / "train-images-idx3-ubyte").unlink()
    os.mkfifo(tmp / "train-images-idx3-ubyte.gz")
    return argv


ESTIMATOR = """
from vaebench.estimators import Estimator, EstimatorOutput, MIWAE, MeasureValued, log_density

class Bad(Estimator):
    summary = "reparam, broken as the case says"
    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        f = (model.log_joint(x, z) - log_density(q, z)).mean(0)
        {body}

class Groups(MIWAE):
    def __init__(self, groups={groups}, sampler="iid"):
        super().__init__(groups, sampler)

class Coupled(MeasureValued):
    def __init__(self, coupling="yes", sampler="iid"):
        super().__init__(coupling, sampler)

ESTIMATORS = {{"bad": Bad, "groups": Groups, "coupled": Coupled}}
"""

MODEL = """
from vaebench.model import GaussianVAE

class Averaging(GaussianVAE):
    def __init__(self, x_dim, z_dim, seed=0):
        super().__init__(x_dim, z_dim, hidden=(8,), seed=seed)
    def log_joint(self, x, z):
        return super().log_joint(x, z).mean(0)  # [B], not [K, B]: broadcast, it would mean nothing

MODELS = {"averaging": Averaging}
"""

_PLUGINS = iter(range(10**6))


def plugin(source: str, *args: str, **fill: object) -> Callable[[Path], list[str]]:
    """`run --plugin MODULE ...` with ``source`` (formatted with ``fill``) as the module, on the quick preset."""

    def build(tmp: Path) -> list[str]:
        name = f"vb_bad_{next(_PLUGINS)}"
        (tmp / f"{name}.py").write_text(source.format(**fill) if fill else source)
        sys.path.insert(0, str(tmp))
        return [*QUICK, "--plugin", name, *args]

    return build


def estimator(
    name: str, body: str = "return EstimatorOutput(-f.mean(), f.detach(), self.objective)", groups: object = 2
) -> Callable[[Path], list[str]]:
    return plugin(ESTIMATOR, "--estimators", f"reparam,{name}", body=body, groups=groups)


def model_plugin(tmp: Path) -> list[str]:
    (tmp / "model.toml").write_text('[model]\nname = "averaging"\n')
    return plugin(MODEL, "--config", str(tmp / "model.toml"))(tmp)


def verify_plugin(body: str) -> Callable[[Path], list[str]]:
    """`verify --plugin MODULE bad` with the ``Bad`` estimator's last line ``body``."""

    def build(tmp: Path) -> list[str]:
        argv = plugin(ESTIMATOR, body=body, groups=2)(tmp)
        return ["verify", "--plugin", argv[argv.index("--plugin") + 1], "--samplers", "iid", "bad"]

    return build


def compare(*args: str, a: str = "default", b: str = "default") -> Callable[[Path], list[str]]:
    """`compare A B ...` on the committed reference runs (``{tmp}`` in an argument is the temporary folder)."""
    return lambda tmp: ["compare", str(REFERENCE / a), str(REFERENCE / b), *(x.format(tmp=tmp) for x in args)]


def compare_csv_to_fifo(tmp: Path) -> list[str]:
    os.mkfifo(tmp / "out.csv")
    return compare("--csv", str(tmp / "out.csv"))(tmp)


CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    # item 6
    "--out is a file": (out_is_a_file, r"--out '.*afile' is a file, not a folder"),
    "binary TOML": (lambda t: (t / "b.toml").write_bytes(b"\xff\xfe\x00\x01\x89PNG") and [*QUICK, "--config", str(t / "b.toml")], "is not valid TOML: not UTF-8 text"),
    "TOML is a folder": (config_is_a_folder, "is not a file"),
    "data.seed = -1": (toml("[data]\nseed = -1\n"), r"data.seed must be an integer >= 0 and <= 2\*\*63 - 1"),
    "IDX with 0 images": (idx((0, 28, 28)), r"train-images-idx3-ubyte: holds 0 images"),
    "--threads 100000": (flags("--threads", "100000"), "threads must be between 0 .* and 1024, got 100000"),
    "--threads -1": (flags("--threads", "-1"), "threads must be between 0"),
    "report: unrelated CSV": (report_of({"variance.csv": b"a,b\n1,2\n"}), r"variance.csv is not a vaebench variance table \(missing columns estimator"),
    "report: binary CSV": (report_of({"convergence.csv": b"\xff\xfe\x00\x01\x02\n\x00\xff"}), "convergence.csv is not a"),
    "report: text in a number column": (report_of({"convergence.csv": b"estimator,num_samples,seed,step,metric,value\nx,one,0,1,m,2\n"}), "non-numeric num_samples"),
    "report: run.json empty": (saved(b"", "report"), r"run.json is empty"),
    "report: run.json invalid JSON": (saved(b'{"status": ', "report"), r"run.json is not valid JSON"),
    "report: run.json a list": (saved(b"[1, 2]", "report"), r"run.json holds a JSON list"),
    "report: run.json with a bad config": (saved(None, "report", config={"steps": 3}), r"run.json: unknown config key 'steps'"),
    "report: not a folder": (lambda t: ["report", str(t / "nope")], "is not a folder"),
    "report: units without run.json": (report_of({"units/convergence/x.csv": b"a\n"}), "has no run.json"),
    # item 7
    "huge seed": (flags("--seeds", "99999999999999999999"), r"seeds must be integers >= 0 and <= 2\*\*63 - 1"),
    "huge variance seed": (toml("[variance]\nseeds = [9223372036854775808]\n"), r"variance.seeds must be integers"),
    "IDX of 0x0 images": (idx((5, 0, 0)), r"train-images-idx3-ubyte: holds images of 0x0 pixels"),
    "IDX test set empty": (idx((2, 2, 2), (0, 2, 2)), r"t10k-images-idx3-ubyte: holds 0 images"),
    "reinforce-loo as anchor": (toml('[variance]\nanchor_estimator = "reinforce-loo"\n'), r"variance.anchor_estimator 'reinforce-loo' needs K >= 2, but the anchor run trains at K = 1"),
    # item 8
    "synthetic, dequantize asked for": (toml('[data]\nname = "synthetic"\ndequantize = true\n'), r"data.dequantize true does not fit synthetic, which holds real values.*set data.dequantize = false"),
    "synthetic, Bernoulli asked for": (toml('[data]\nname = "synthetic"\n[model]\nlikelihood = "bernoulli"\n'), r"model.likelihood 'bernoulli' does not fit synthetic, which holds real values"),
    "synthetic, binarize asked for": (toml('[data]\nname = "synthetic"\nbinarize = "dynamic"\ndequantize = false\n'), r"data.binarize 'dynamic' does not fit synthetic"),
    # item 9
    "batch larger than the data": (toml("[train]\nbatch_size = 5000\n"), r"train.batch_size 5000 is larger than the training set \(1437 examples of digits\)"),
    "variance batch larger than the data": (toml("[variance]\nbatch_size = 1438\n"), r"variance.batch_size 1438 is larger"),
    "throughput batch larger than the data": (toml("[throughput]\nbatch_size = 2000\n"), r"throughput.batch_size 2000 is larger"),
    "--name ../../../x": (flags("--name", "../../../x"), r"name '../../../x' starts with '.'"),
    "--name a/b": (flags("--name", "a/b"), r"name 'a/b' contains '/'"),
    "--name empty": (flags("--name", ""), "name '' is empty"),
    "--name with a control character": (flags("--name", "a\x07b"), r"name 'a\\x07b' contains '\\x07'"),
    "resume: a changed value": (saved(None, "--steps", "30"), r"saved in .*run.json: train.steps: 60 -> 30 \(resume with"),
    "resume: run.json empty": (saved(b""), r"run.json is empty"),
    "resume: run.json invalid JSON": (saved(b"{nope"), r"run.json is not valid JSON"),
    "resume: run.json a list": (saved(b"[]"), r"run.json holds a JSON list"),
    "resume: run.json without config": (saved(b'{"status": "complete"}'), r"not a vaebench run.json \(no 'config' table\)"),
    "resume: a folder of another layout": (saved(json.dumps({"results_version": 0, "config": {}})), r"run.json: this results folder has layout version 0 .* reads version \d+ only; rerun its configuration into a new folder"),
    "resume: not a run folder": (lambda t: ["run", "--resume", "--out", str(t)], "has no run.json: nothing to resume"),
    # issue 25: inputs that regressed
    "--out empty": (flags("--out", ""), r"--out is empty; name a folder"),
    "--out blank": (flags("--out", "  "), r"--out is empty"),
    "K that cannot fit in memory": (flags("--samples", "1,100000000"), r"samples K=100000000 would need about .* GiB per step on cpu .* choose K <= \d+"),
    "K that cannot fit, dry run": (flags("--samples", "100000000", "--dry-run"), r"samples K=100000000 would need about"),
    "checks.laws unknown": (toml('[checks]\nlaws = ["digits"]\n'), r"checks.laws entry 'digits'"),
    "nothing to measure": (toml("[variance]\nenabled = false\n[train]\nenabled = false\n[throughput]\nenabled = false\n"), "this configuration measures nothing"),
    "toy model at trained checkpoints": (toml('[data]\nname = "gaussian-toy"\n[variance]\ncheckpoints = ["init", "end"]\n'), r"the gaussian-toy model is measured at a built checkpoint"),
    # issue 32: data files that are not regular files, or declare more than they hold
    "data: .npy header declares 745,058 GiB": (data_file(huge_npy), r"huge.npy: the file's header declares an array of shape \(100000000, 1000000\).* only 80 bytes of data follow"),
    "data: .npz member declares 3.7 TiB": (data_file(huge_npz), r"huge.npz: its 'train' array's header declares"),
    "data: a FIFO": (data_file(fifo("pipe.npy")), r"pipe.npy is a FIFO \(named pipe\), not a regular file"),
    "data: /dev/zero behind a .npy name": (data_file(link_to("/dev/zero", "zero.npy")), r"zero.npy is a character device, not a regular file"),
    "data: a folder named .csv": (data_file(lambda t: (t / "d.csv").mkdir() or t / "d.csv"), r"d.csv is a folder, not a regular file"),
    "IDX: a FIFO": (idx_fifo, r"train-images-idx3-ubyte.gz is a FIFO \(named pipe\), not a regular file"),
    # issue 32: compare
    "compare --csv /dev/full": (compare("--csv", "/dev/full"), r"/dev/full is a character device, not a regular file: name a new file"),
    "compare --csv a FIFO": (compare_csv_to_fifo, r"out.csv is a FIFO \(named pipe\), not a regular file"),
    "compare --csv a folder": (compare("--csv", "{tmp}"), r"is a folder, not a regular file"),
    "compare --checkpoint never measured": (compare("--checkpoint", "halfway"), r"--checkpoint 'halfway': .*default measured no variance there \(its checkpoints: .*\); name one both runs measured"),
    "compare --checkpoint one run lacks": (compare("--checkpoint", "middle", "--force", b="scaling"), r"--checkpoint 'middle': .*scaling measured no variance there"),
    "compare --fail-on with nothing shared": (compare("--force", "--fail-on", "trace_var:5%", b="scaling"), r"--fail-on: .* share no setting, so nothing was compared"),
    "--out is a FIFO": (lambda t: (os.mkfifo(t / "pipe"), [*QUICK, "--out", str(t / "pipe")])[1], r"--out '.*pipe' is a FIFO \(named pipe\), not a folder"),
    "--out is /dev/null": (flags("--out", "/dev/null"), r"--out '/dev/null' is a character device, not a folder"),
    # issue 32: numbers a float cannot hold
    "train.lr of 400 digits": (toml(f"[train]\nlr = {'9' * 400}\n"), r"config key 'train.lr' must be a number of at most about 1.8e308, got an integer of 400 digits"),
    "save_every_s of 400 digits": (toml(f"save_every_s = {'9' * 400}\n"), r"config key 'save_every_s' must be a number of at most about 1.8e308"),
    "model.init_decoder_scale of 400 digits": (toml(f"[model]\ninit_decoder_scale = -{'9' * 400}\n"), r"config key 'model.init_decoder_scale' must be a number of at most about 1.8e308"),
    "an integer of 5000 digits": (toml(f"[train]\nsteps = {'9' * 5000}\n"), r"c.toml', line 2 \(steps = ...\): an integer of over 4000 digits"),
    # issue 32: a plugin's estimator or model, probed on a batch before the first unit
    "plugin estimator: elbo of the wrong shape": (estimator("bad", "return EstimatorOutput(-f.mean(), f.detach().mean(), self.objective)"), r"estimator bad-K1: its elbo should be a tensor of shape \[4\], got shape \[\]"),
    "plugin estimator: a NaN surrogate": (estimator("bad", "return EstimatorOutput(-f.mean() * float('nan'), f.detach(), self.objective)"), r"estimator bad-K1: its surrogate holds 1 NaN or infinite value"),
    "plugin estimator: a NaN elbo": (estimator("bad", "return EstimatorOutput(-f.mean(), f.detach() / 0 * 0, self.objective)"), r"estimator bad-K1: its elbo holds 4 NaN"),
    "plugin estimator: raises": (estimator("bad", "raise RuntimeError('boom')"), r"estimator bad-K1: calling it on a batch of 4 raised RuntimeError: boom \(.*vb_bad_\d+.py, line \d+\)"),
    "plugin estimator: returns a tuple": (estimator("bad", "return -f.mean(), f"), r"estimator bad-K1 returned a tuple, not an EstimatorOutput"),
    "plugin estimator: surrogate of the wrong shape": (estimator("bad", "return EstimatorOutput(-f, f.detach(), self.objective)"), r"estimator bad-K1: calling it .* raised RuntimeError: grad can be implicitly created only for scalar|its surrogate should be a tensor of shape \[\]"),
    "miwae groups = 0": (estimator("groups", groups=0), r"estimator 'groups': groups must be a positive integer M .* got 0"),
    "miwae groups = 2.5": (estimator("groups", groups=2.5), r"estimator 'groups': groups must be a positive integer M .* got 2.5"),
    "mvd coupling = 'yes'": (estimator("coupled"), r"estimator 'coupled': coupling must be True or False, got 'yes'"),
    "plugin model: log_joint averages over K": (model_plugin, r"model 'averaging': log_joint\(x, z\) should be a tensor of shape \[2, 4\], got shape \[4\]"),
    "verify: a plugin that raises": (verify_plugin("raise RuntimeError('boom')"), r"estimator 'bad' \(iid, K=3\): calling it on a batch of 4 raised RuntimeError: boom \(.*vb_bad_\d+.py, line \d+\)"),
    "verify: a plugin's surrogate of the wrong shape": (verify_plugin("return EstimatorOutput(-f, f.detach(), self.objective)"), r"estimator 'bad' \(iid, K=3\): (calling it .* raised RuntimeError: grad can be implicitly created only for scalar|its surrogate should be a tensor of shape \[\])"),
    "verify: a plugin returning NaN": (verify_plugin("return EstimatorOutput(-f.mean() * float('nan'), f.detach(), self.objective)"), r"estimator 'bad' \(iid, K=3\): its surrogate holds 1 NaN or infinite value"),
    "verify --csv to a FIFO": (lambda t: (os.mkfifo(t / "v.csv"), ["verify", "reparam", "--csv", str(t / "v.csv")])[1], r"v.csv is a FIFO \(named pipe\), not a regular file"),
    "--address malformed": (flags("--engine", "ray", "--address", "not an address"), r"--address 'not an address' is not a Ray address: use HOST:PORT|needs Ray, which is not installed"),
    "--address ray:// nobody serves": (flags("--engine", "ray", "--address", "ray://127.0.0.1:1"), r"--address 'ray://127.0.0.1:1': nothing accepts a connection at 127.0.0.1:1|needs Ray, which is not installed"),
    "--address where nothing listens": (flags("--engine", "ray", "--address", "127.0.0.1:1"), r"--address '127.0.0.1:1': nothing accepts a connection at 127.0.0.1:1 \(.*\); start the cluster|needs Ray, which is not installed"),
    "--address with a port out of range": (flags("--engine", "ray", "--address", "localhost:70000"), r"is not a Ray address|needs Ray, which is not installed"),
    # issue 32: checked before the first unit, not by each unit
    "--compile INDUCTOR": (toml('[train]\ncompile = "INDUCTOR"\n'), r"train.compile 'INDUCTOR' is not a torch.compile backend \(for inductor write compile = true, without quotes\); known: .*inductor"),
    "--compile 'true' as a string": (toml('[train]\ncompile = "true"\n'), r"train.compile 'true' is not a torch.compile backend \(for inductor write compile = true"),
    "--compile a typo": (toml('[train]\ncompile = "indcutor"\n'), r"train.compile 'indcutor' is not a torch.compile backend; known"),
    "--name of 100 characters but 400 bytes": (flags("--name", "\U0001F600" * 100), r"is 400 bytes long in UTF-8, more than 100"),
    "dry run: a folder that holds something": (lambda t: ((t / "full").mkdir(), (t / "full" / "x").write_text(""), [*QUICK, "--dry-run", "--out", str(t / "full")])[2], r"exists and is not empty"),
    "dry run: a resume whose configuration changed": (saved(None, "--steps", "30", "--dry-run"), r"saved in .*run.json: train.steps: 60 -> 30"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line(case: str, tmp_path: Path, capsys) -> None:
    build, message = CASES[case]
    argv = build(tmp_path)
    if argv[0] == "run" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaebench: error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written for bad input


# -- not exit 2: a refused write, accepted input ------------------------------------------------------------------


def test_compare_csv_to_a_full_disk_exits_74(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert cli.main(compare("--csv", str(tmp_path / "out.csv"))(tmp_path)) == 74
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(
        r"out.csv: No space left on device \(ENOSPC\); the disk is full", err[0]
    )
    assert not (tmp_path / "out.csv").exists()


def test_compare_csv_writes_through_a_symlink(tmp_path: Path, capsys) -> None:
    (tmp_path / "link.csv").symlink_to(tmp_path / "target.csv")
    assert cli.main(compare("--csv", str(tmp_path / "link.csv"))(tmp_path)) == 0
    assert (tmp_path / "link.csv").is_symlink() and "estimator" in (tmp_path / "target.csv").read_text()


def test_a_plugin_may_declare_any_objective_of_the_contract(tmp_path: Path, capsys) -> None:
    source = "from vaebench.estimators import Renyi\n\nclass MyRenyi(Renyi):\n    pass\n\nESTIMATORS = {'my-renyi': MyRenyi}\n"
    argv = plugin(source)(tmp_path)
    assert cli.main(["list", "--plugin", argv[argv.index("--plugin") + 1]]) == 0
    assert re.search(r"my-renyi\s+pathwise\s+renyi", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--estimators", "miwae", "--samples", "100000"], r"miwae at K=100000 \(4 decoder evaluations per sample"),
        (["--estimators", "mvd", "--samples", "10000"], r"mvd at K=10000 \(16 decoder evaluations per sample"),
        (["--estimators", "reparam", "--dataset", "{wide}"], r"the model on 200000-dimensional data would need about .* even at K=1"),
    ],
)  # fmt: skip
def test_options_that_multiply_the_work_count_in_the_memory_check(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from vaebench.suite import cost

    monkeypatch.setattr(cost, "available_bytes", lambda device: 2**30)
    if "{wide}" in args:  # 130 examples of 200,000 dimensions: 104 MB on disk, more than 1 GiB in the model
        np.save(tmp_path / "wide.npy", np.zeros((130, 200_000), dtype=np.float32))
    argv = [*QUICK, *(a.format(wide=tmp_path / "wide.npy") for a in args), "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
    assert not (tmp_path / "out").exists()


def test_verify_says_pass_or_fail_with_the_figure_and_names_a_nan_gradient() -> None:
    row = {"estimator": "mine", "sampler": "iid", "k_tested": 3, "expected": "unbiased", "threshold": 4.24}
    ok = cli.verdict_line([row | {"max_z": 1.69, "rel_error": 0.005, "unbiased": True, "as_expected": True}])
    assert ok == "PASS mine (iid): K=3 unbiased as declared, max |z| 1.69 < 4.24 (rel. error 0.5%)"
    nan = cli.verdict_line(
        [row | {"max_z": float("nan"), "rel_error": float("nan"), "unbiased": False, "as_expected": False}]
    )
    assert nan == "FAIL mine (iid): K=3: the mean gradient is NaN or infinite (expected unbiased)"


def test_a_resume_names_a_key_whose_default_changed_since_the_run(tmp_path: Path, capsys) -> None:
    """run.json holds the whole resolved configuration, defaults included: were a default changed since (here
    ``train.lr_schedule``, run with "cosine"), a resume that asks for today's names the key instead of
    re-running every unit."""
    config = to_dict(preset("quick"))
    config["train"]["lr_schedule"] = "cosine"  # the value the run used
    argv = saved(None, "--preset", "quick", config=config)(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(r"train.lr_schedule: 'cosine' -> 'constant'", err[0]), err


def test_the_bottom_line_is_read_from_verdicts_json(tmp_path: Path) -> None:
    verdicts = [
        {"question": "lowest gradient variance", "K": 1, "winner": "reparam-cv", "best": "reparam-cv"},
        {"question": "fastest step", "K": 1, "winner": None, "best": "stl", "not_separated": list("abcde")},
    ]
    (tmp_path / "verdicts.json").write_text(json.dumps({"verdicts": verdicts}))
    (line,) = cli.bottom_line(tmp_path)  # the report's takeaway, worded in one place
    assert line == f"bottom line ({tmp_path / 'verdicts.json'}): {bottom_line.takeaway(verdicts)}"
    assert "`reparam-cv` has the lowest gradient variance at K = 1" in line and "separated" in line
    (tmp_path / "verdicts.json").write_text(json.dumps({"verdicts": [{**verdicts[0], "best": None}]}))
    assert cli.bottom_line(tmp_path) == []  # nothing judged
    (tmp_path / "verdicts.json").write_text("{not json")
    assert cli.bottom_line(tmp_path) == []  # a damaged file costs the summary, never the run's exit
