"""Plugins: a user's estimators, models and data sets loaded by module, ``module:Attr`` or entry point, checked
against their contracts, recorded with a hash of their source, and loaded again by a worker.

Every test leaves the registries as it found them (the fixture unloads what it loaded), so the rest of the
suite, whose parametrizations read ``ESTIMATORS``, never sees a test's plugin.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vaebench import plugins
from vaebench.data import DATASET_PLUGINS, load_dataset
from vaebench.errors import VaebenchError
from vaebench.estimators import BUILTIN_ESTIMATORS, ESTIMATORS, Setting, make_estimator, runnable, unsupported
from vaebench.model import GaussianVAE
from vaebench.plugins import registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "partial-stl"

GOOD = """
from vaebench.estimators import Estimator, EstimatorOutput, log_density

class Mine(Estimator):
    summary = "reparam, written as a plugin"
    def estimate(self, model, x, num_samples, generator):
        q = model.posterior(x)
        z = self.sample(q, num_samples, generator)
        f = (model.log_joint(x, z) - log_density(q, z)).mean(0)
        return EstimatorOutput(surrogate=-f.mean(), elbo=f.detach(), objective=self.objective)

ESTIMATORS = {"mine": Mine}
"""


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch):
    """Unload every plugin and forget every module a test imported, after the test."""
    before = set(sys.modules)
    path = list(sys.path)
    yield
    registry.unload()
    for name in set(sys.modules) - before:
        del sys.modules[name]
    sys.path[:] = path
    assert set(ESTIMATORS) == set(BUILTIN_ESTIMATORS) and not DATASET_PLUGINS


def package(root: Path, name: str, source: str, files: dict[str, str] | None = None) -> Path:
    """Write the package ``name`` (its __init__ holding ``source``) under ``root`` and put root on sys.path."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(textwrap.dedent(source))
    for rel, text in (files or {}).items():
        (folder / rel).write_text(textwrap.dedent(text))
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    importlib.invalidate_caches()  # the path finder caches folder listings
    return folder


# -- loading ---------------------------------------------------------------------------------------------------


def test_a_module_by_name_registers_its_estimators_and_they_work_like_builtins(tmp_path: Path):
    package(tmp_path, "vbplug_good", GOOD)
    [rec] = registry.load_module("vbplug_good")
    assert rec["kind"] == "estimator" and rec["name"] == "mine" and rec["via"] == "module"
    assert "mine" in ESTIMATORS and "mine" not in BUILTIN_ESTIMATORS
    est = make_estimator("mine")
    model = GaussianVAE(4, 2, hidden=(), seed=0)
    out = est(model, torch.zeros(3, 4), num_samples=2, generator=torch.Generator().manual_seed(0))
    assert out.elbo.shape == (3,) and est.name == "mine"
    assert unsupported("mine", 1) == "" and runnable(["mine"], [1, 2]) == [
        Setting("mine", 1),
        Setting("mine", 2),
    ]
    assert registry.load_module("vbplug_good") == [rec]  # loading it again changes nothing
    assert registry.records() == [rec]


def test_the_record_names_module_file_and_the_packages_source_hash(tmp_path: Path):
    folder = package(
        tmp_path,
        "vbplug_rec",
        "from .impl import Mine\nESTIMATORS = {'mine': Mine}\n",
        {"impl.py": GOOD.replace('ESTIMATORS = {"mine": Mine}', "")},
    )
    [rec] = registry.load_module("vbplug_rec")
    assert rec["module"] == "vbplug_rec" and rec["attribute"] is None
    assert Path(rec["file"]) == (folder / "impl.py").resolve()  # the file defining the class
    assert Path(rec["path"]) == tmp_path.resolve() and rec["distribution"] is None and rec["version"] is None
    expected = hashlib.sha256()
    for rel in ("__init__.py", "impl.py"):  # the module docstring's formula, computed here by hand
        inner = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
        expected.update(f"vbplug_rec/{rel}\0{inner}\n".encode())
    assert rec["sha256"] == expected.hexdigest() and rec["hashed"] == "vbplug_rec: 2 .py files"
    json.dumps(rec)  # JSON-able, for run.json


def test_module_colon_class_names_one_estimator(tmp_path: Path):
    package(tmp_path, "vbplug_spec", GOOD)
    rec = registry.load_spec("vbplug_spec:Mine")
    assert (
        rec["name"] == "Mine" and rec["attribute"] == "Mine" and rec["via"] == "spec"
    )  # no own name: __name__
    assert registry.estimator_names(["reparam", "vbplug_spec:Mine"]) == ["reparam", "Mine"]
    assert plugins.origin(rec) == "vbplug_spec:Mine"


def test_the_example_package_loads_by_module_name_and_by_spec():
    sys.path.insert(0, str(EXAMPLE))
    [rec] = registry.load_module("vaebench_partial_stl")
    assert rec["name"] == "partial-stl" and Path(rec["file"]).parent.name == "vaebench_partial_stl"
    spec = registry.load_spec("vaebench_partial_stl:PartialSTL")  # its own `name`: the same registry entry
    assert spec["name"] == "partial-stl" and ESTIMATORS["partial-stl"].__name__ == "PartialSTL"
    assert make_estimator("partial-stl", score_fraction=0.25).score_fraction == 0.25
    with pytest.raises(VaebenchError, match=r"score_fraction must be a number in \[0, 1\], got 2"):
        make_estimator("partial-stl", score_fraction=2)


def _ours(entry_point) -> bool:
    """An entry point of a distribution these tests wrote (named vbplug-*)."""
    dist = getattr(entry_point, "dist", None)
    return dist is not None and dist.metadata["Name"].startswith("vbplug")


def test_entry_points_of_an_installed_distribution_are_discovered(tmp_path: Path):
    package(tmp_path, "vbplug_ep", GOOD)
    dist = tmp_path / "vbplug_ep-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vbplug-ep\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[vaebench.estimators]\nep-mine = vbplug_ep:Mine\n")
    # listed, nothing imported (other installed plugins, e.g. the example package in CI, are left aside)
    assert [ep.name for ep in plugins.entry_points("estimator") if _ours(ep)] == ["ep-mine"]
    assert "vbplug_ep" not in sys.modules
    [rec] = [r for r in registry.load_installed() if r["distribution"].startswith("vbplug")]
    assert (rec["name"], rec["via"], rec["distribution"], rec["version"]) == (
        "ep-mine",
        "entry point",
        "vbplug-ep",
        "0.3",
    )
    assert "ep-mine" in ESTIMATORS


def test_the_example_declares_its_entry_point_in_the_vaebench_group():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["vaebench.estimators"] == {
        "partial-stl": "vaebench_partial_stl:PartialSTL"
    }


# -- bad plugins: one clear VaebenchError each ----------------------------------------------------------------


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_a_module_that_is_not_there(tmp_path: Path):
    with pytest.raises(VaebenchError) as err:
        registry.load_module("vbplug_absent.estimators")
    assert "plugin module 'vbplug_absent.estimators' not found: no module named 'vbplug_absent'" in one_line(
        err
    )
    with pytest.raises(VaebenchError, match="not a dotted module name"):
        registry.load_module("my_dir/estimators.py")


@pytest.mark.parametrize(
    "source, expected",
    [
        (
            "x = 1\ny = 1 / 0\n",
            r"does not import: ZeroDivisionError: division by zero \(.*vbplug_\w+/__init__.py, line 2\)",
        ),
        ("def f(:\n", r"does not import: SyntaxError: .*\(.*vbplug_\w+/__init__.py, line 1\)"),
        (
            "import vbplug_no_such_dependency\n",
            r"does not import: ModuleNotFoundError: No module named 'vbplug_no_such_dependency'",
        ),
    ],
    ids=["raises", "syntax", "dependency"],
)
def test_a_module_that_does_not_import_is_summarised_in_one_line(
    tmp_path: Path, request: pytest.FixtureRequest, source: str, expected: str
):
    name = f"vbplug_bad_{request.node.callspec.id}"
    package(tmp_path, name, source)
    with pytest.raises(VaebenchError) as err:
        registry.load_module(name)
    assert re.search(expected, one_line(err)), one_line(err)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("class Mine:\n    pass\n", ["not a subclass of vaebench.estimators.Estimator"]),
        (
            "class Mine(Estimator):\n    pass\n",
            ["does not implement estimate(model, x, num_samples, generator)"],
        ),
        (
            "class Mine(Estimator):\n    family = 'pathwize'\n    objective = 'kl'\n    min_samples = 0\n"
            "    def estimate(self, model, x, num_samples, generator):\n        pass\n",
            ["objective is 'kl'", "family is 'pathwize'", "min_samples is 0"],
        ),
        (
            "class Mine(Estimator):\n    def __init__(self, c, sampler='iid'):\n        super().__init__(sampler)\n"
            "    def estimate(self, model, x, num_samples, generator):\n        pass\n",
            ["its constructor needs c without a default"],
        ),
        (
            "class Mine(Estimator):\n    samplers = ('iid',)\n"
            "    def estimate(self, model, x, num_samples, generator):\n        pass\n",
            ["iid_only does not say why"],
        ),
        ("Mine = 3\n", ["it is a int, not a class"]),
    ],
    ids=[
        "not-a-subclass",
        "no-estimate",
        "bad-attributes",
        "needs-an-option",
        "samplers-unexplained",
        "not-a-class",
    ],
)
def test_a_class_that_breaks_the_contract_is_named_with_every_problem(
    tmp_path: Path, request: pytest.FixtureRequest, body: str, expected: list[str]
):
    name = f"vbplug_contract_{request.node.callspec.id.replace('-', '_')}"
    package(
        tmp_path, name, "from vaebench.estimators import Estimator\n" + body + "ESTIMATORS = {'mine': Mine}\n"
    )
    with pytest.raises(VaebenchError) as err:
        registry.load_module(name)
    text = one_line(err)
    assert text.startswith(f"estimator 'mine' from module {name} does not satisfy the estimator contract")
    assert all(e in text for e in expected), text
    assert "mine" not in ESTIMATORS


def test_names_that_clash_or_cannot_be_file_names_are_refused(tmp_path: Path):
    package(tmp_path, "vbplug_clash", GOOD.replace('{"mine": Mine}', '{"reparam": Mine}'))
    with pytest.raises(
        VaebenchError, match="estimator 'reparam' from module vbplug_clash clashes with the built-in"
    ):
        registry.load_module("vbplug_clash")
    assert ESTIMATORS["reparam"].__module__ == "vaebench.estimators.pathwise"
    package(tmp_path, "vbplug_one", GOOD)
    package(tmp_path, "vbplug_two", GOOD)
    registry.load_module("vbplug_one")
    with pytest.raises(VaebenchError, match="clashes with the plugin estimator 'mine' from vbplug_one:Mine"):
        registry.load_module("vbplug_two")
    package(tmp_path, "vbplug_slash", GOOD.replace('{"mine": Mine}', '{"my/est": Mine}'))
    with pytest.raises(
        VaebenchError, match="estimator plugin name 'my/est' from module vbplug_slash is not valid"
    ):
        registry.load_module("vbplug_slash")
    package(tmp_path, "vbplug_data", "DATASETS = {'digits': lambda seed: None, 'x.npz': lambda seed: None}\n")
    with pytest.raises(
        VaebenchError, match="data set 'digits' from module vbplug_data clashes with the built-in"
    ):
        registry.load_module("vbplug_data")


def test_a_module_that_declares_nothing_and_a_missing_attribute(tmp_path: Path):
    package(tmp_path, "vbplug_empty", "x = 1\n")
    with pytest.raises(VaebenchError, match="'vbplug_empty' declares no plugins: give it a dict ESTIMATORS"):
        registry.load_module("vbplug_empty")
    with pytest.raises(VaebenchError, match="module 'vbplug_empty' has no attribute 'Mine'"):
        registry.load_spec("vbplug_empty:Mine")
    with pytest.raises(VaebenchError, match="is not of the form module:Attr"):
        registry.load_spec("vbplug_empty:")


def test_an_entry_point_may_name_a_module_that_declares_its_plugins(tmp_path: Path):
    package(tmp_path, "vbplug_epmod", GOOD)
    package(tmp_path, "vbplug_epnone", "x = 1\n")
    dist = tmp_path / "vbplug_epmod-2.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vbplug-epmod\nVersion: 2.0\n")
    (dist / "entry_points.txt").write_text("[vaebench.estimators]\nall = vbplug_epmod\n")
    [rec] = [r for r in registry.load_installed(["estimator"]) if r["distribution"].startswith("vbplug")]
    assert (rec["name"], rec["attribute"], rec["version"]) == ("mine", None, "2.0")  # the module's own names
    (dist / "entry_points.txt").write_text("[vaebench.estimators]\nnone = vbplug_epnone\n")
    with pytest.raises(VaebenchError, match="names module 'vbplug_epnone', which has no dict ESTIMATORS"):
        registry.load_installed(["estimator"])


def test_a_broken_entry_point_names_its_distribution(tmp_path: Path):
    dist = tmp_path / "vbplug_gone-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vbplug-gone\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vaebench.estimators]\ngone = vbplug_gone:Gone\n")
    sys.path.insert(0, str(tmp_path))
    with pytest.raises(VaebenchError) as err:
        registry.load_installed(["estimator"])
    assert one_line(err).startswith(
        "entry point 'gone' of distribution vbplug-gone 1.0 in group 'vaebench.estimators': plugin module "
        "'vbplug_gone' not found"
    )


# -- models and data sets ---------------------------------------------------------------------------------------


MODEL = """
import torch
from vaebench.model import GaussianVAE

class Wide(GaussianVAE):
    def __init__(self, x_dim, z_dim, seed=0, width=16):
        super().__init__(x_dim, z_dim, hidden=(width,), seed=seed)

class Flat(GaussianVAE):  # log_joint forgets the sample axis
    def __init__(self, x_dim, z_dim, seed=0):
        super().__init__(x_dim, z_dim, hidden=(), seed=seed)
    def log_joint(self, x, z):
        return super().log_joint(x, z).mean(0)

class Partial(torch.nn.Module):
    def __init__(self, x_dim, z_dim, seed=0):
        super().__init__()
    def posterior(self, x): ...
    def log_joint(self, x, z): ...

MODELS = {"wide": Wide, "flat": Flat}
"""


def test_a_model_plugin_is_built_by_name_and_its_shapes_are_probed(tmp_path: Path):
    package(tmp_path, "vbplug_models", MODEL)
    assert {r["name"] for r in registry.load_module("vbplug_models")} == {"wide", "flat"}
    x = torch.rand(5, 6)
    model = registry.build_model("wide", 6, 3, seed=1, width=8)
    registry.probe_model(model, x, name="wide")
    assert model.hidden == (8,)
    with pytest.raises(
        VaebenchError, match=r"log_joint\(x, z\) should be a tensor of shape \[2, 5\], got shape \[5\]"
    ):
        registry.probe_model(registry.build_model("flat", 6, 3), x, name="flat")
    with pytest.raises(VaebenchError, match="model 'wide' cannot be built with these options"):
        registry.build_model("wide", 6, 3, depth=2)
    with pytest.raises(
        VaebenchError,
        match="model 'partial' from vbplug_models:Partial does not satisfy the model "
        "contract: it lacks prior, log_likelihood, parameter_groups",
    ):
        registry.register_model("partial", sys.modules["vbplug_models"].Partial, "vbplug_models:Partial")
    registry.probe_model(registry.build_model("gaussian-vae", 6, 3), x)  # the built-in keeps its own contract


def test_a_data_set_plugin_returns_arrays_that_are_checked_like_a_file(tmp_path: Path):
    source = """
    import numpy as np
    from vaebench import rng

    def blobs(seed):
        g = rng.numpy_generator(seed, "data.sample")
        return {"train": g.random((30, 3)), "test": g.random((10, 3))}

    def broken(seed):
        return [1, 2]

    def nan(seed):
        return np.full((4, 2), np.nan), np.zeros((2, 2))

    DATASETS = {"blobs": blobs, "broken": broken, "nan": nan}
    """
    package(tmp_path, "vbplug_sets", source)
    registry.load_module("vbplug_sets")
    ds = load_dataset("blobs", seed=3)
    assert ds.train.shape == (30, 3) and ds.test.shape == (10, 3) and ds.train.dtype == torch.float32
    assert ds.sha256 == load_dataset("blobs", seed=3).sha256 != load_dataset("blobs", seed=4).sha256
    assert load_dataset("blobs", binarize="threshold").likelihood == "bernoulli"
    with pytest.raises(
        VaebenchError, match=r"data set plugin 'broken' returned a list; return a vaebench\.data\.Dataset"
    ):
        load_dataset("broken")
    with pytest.raises(VaebenchError, match="data set plugin 'nan': its train data has 8 NaN value"):
        load_dataset("nan")
    with pytest.raises(VaebenchError, match="'blobs' is not made of grey levels: it cannot be dequantized"):
        load_dataset("blobs", dequantize=True)


# -- provenance and workers ------------------------------------------------------------------------------------


def test_changes_name_a_new_source_a_new_version_a_missing_and_a_new_plugin(tmp_path: Path):
    folder = package(tmp_path, "vbplug_edit", GOOD)
    [before] = registry.load_module("vbplug_edit")
    assert plugins.changes([before], [before]) == []
    (folder / "__init__.py").write_text(GOOD.replace("written as a plugin", "edited"))
    module = sys.modules["vbplug_edit"]
    after = plugins.record("estimator", "mine", module, None, module.Mine, "module")
    [changed] = plugins.changes([before], [after])
    assert changed.startswith("estimator plugin 'mine': its source changed since the run started (sha256 ")
    assert before["sha256"][:12] in changed and after["sha256"][:12] in changed
    bumped = dict(before, version="0.2")
    assert plugins.changes([before], [bumped]) == [
        "estimator plugin 'mine': version None then, 0.2 now (same source)"
    ]
    other = dict(before, name="theirs")
    assert plugins.changes([before], [other]) == [
        "estimator plugin 'mine' (from vbplug_edit) was used by the run but is not loaded now",
        "estimator plugin 'theirs' (from vbplug_edit) is loaded now but was not used by the run",
    ]
    assert plugins.fingerprint([before]) != plugins.fingerprint([after])
    assert plugins.select([before, other], estimators=["theirs"]) == [other]


def test_the_fingerprint_holds_no_paths_and_two_copies_of_one_source_agree(tmp_path: Path):
    one = package(tmp_path / "a", "vbplug_copy", GOOD)
    [a] = registry.load_module("vbplug_copy")
    registry.unload()
    del sys.modules["vbplug_copy"]
    sys.path.remove(str(tmp_path / "a"))
    package(tmp_path / "b", "vbplug_copy", GOOD)
    [b] = registry.load_module("vbplug_copy")
    assert a["file"] != b["file"] and a["sha256"] == b["sha256"]
    assert plugins.fingerprint([a]) == plugins.fingerprint([b]) and str(one) not in json.dumps(
        plugins.fingerprint([a])
    )
    assert plugins.changes([a], [b]) == []


def test_a_worker_refuses_a_plugin_whose_source_differs_from_the_drivers(tmp_path: Path):
    folder = package(tmp_path, "vbplug_worker", GOOD)
    recorded = registry.load_module("vbplug_worker")
    registry.unload()  # a fresh worker: nothing loaded, the module not imported
    del sys.modules["vbplug_worker"]
    registry.reload(recorded)
    assert registry.records() == recorded and "mine" in ESTIMATORS
    registry.reload(recorded)  # loaded already, same source: nothing to do
    registry.unload()
    del sys.modules["vbplug_worker"]
    (folder / "__init__.py").write_text(GOOD + "\n# edited after the run started\n")
    with pytest.raises(VaebenchError) as err:
        registry.reload(recorded)
    assert "estimator plugin 'mine': this process's copy of vbplug_worker" in one_line(err)
    assert "differs from the one the run recorded" in one_line(err) and "mine" not in ESTIMATORS


def test_a_worker_process_reloads_the_plugins_from_the_record_alone(tmp_path: Path):
    """A separate interpreter, started elsewhere, without the plugin on its path: the record suffices."""
    package(tmp_path / "pkgs", "vbplug_far", GOOD)
    recorded = registry.load_module("vbplug_far")
    code = (
        "import json, sys\n"
        "from vaebench.plugins import registry\n"
        "from vaebench.estimators import make_estimator\n"
        "registry.reload(json.loads(sys.argv[1]))\n"
        "print(type(make_estimator('mine')).__module__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)  # vaebench itself, not the plugin
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(recorded)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "vbplug_far"


def test_ray_ships_package_folders_and_refuses_single_files(tmp_path: Path):
    folder = package(tmp_path, "vbplug_ray", GOOD)
    assert plugins.py_modules(registry.load_module("vbplug_ray")) == [str(folder.resolve())]
    (tmp_path / "vbplug_single.py").write_text(GOOD.replace('{"mine"', '{"single"'))
    with pytest.raises(
        VaebenchError, match=r"comes from the single file .*vbplug_single\.py: Ray ships packages"
    ):
        plugins.py_modules(registry.load_module("vbplug_single"))
