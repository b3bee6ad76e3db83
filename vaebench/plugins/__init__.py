"""Plugins: finding a user's estimators, models and data sets, and recording where their code came from.

The package is the one home of plugins: this module finds them and records their provenance;
:mod:`vaebench.plugins.registry` checks them against their contracts, adds them to the registries and loads
what a configuration names; :mod:`vaebench.plugins.data_sets` holds the data sets they add and checks what
those return.

Three ways to name a plugin (each of the three kinds: ``estimator``, ``model``, ``dataset``):

- **a module by name** (``--plugin my_pkg.estimators``): the module declares its plugins in plain module-level
  dicts, as vaebench declares its own, ``ESTIMATORS`` / ``MODELS`` / ``DATASETS``, name -> object;
- **a spec** ``module:Attr`` (``--estimators reparam,my_pkg.estimators:MyEstimator``): one object, named by
  its ``name`` attribute when its own class body sets one, else by its ``__name__``;
- **an entry point** of an installed distribution in the group ``vaebench.estimators``, ``vaebench.models``
  or ``vaebench.datasets`` (the convention of pytest's ``pytest11`` plugins): ``name = "module:Attr"`` names
  one object, ``name = "module"`` a module whose dict of that kind lists several.

This module only finds objects and describes them, and imports nothing of vaebench but its errors.

Provenance. Each plugin gets a JSON-able record: kind, name, module, attribute, how it was named, the
distribution and version that installed it (None for a module on ``PYTHONPATH``), the file defining the
object, the ``sys.path`` entry the module was found under, and ``sha256``: a hash of the *source of the
top-level package* holding the module (and of the one defining the object, when it lives elsewhere):

    sha256 = SHA-256( Σ over the package's .py files, sorted by relative path: path \\0 SHA-256(bytes) \\n )

The whole package, not the one file, because an estimator's numbers depend on every helper it imports from
its own package; a change anywhere in the package then counts as a change of the plugin (a false alarm
costs a new run, a missed change would mix two versions of an estimator in one results folder). Code outside
the package (other distributions) is covered by their versions only. A single-file module is hashed alone.
:func:`changes` names what differs between two sets of records; :func:`fingerprint` is the part that a
configuration hash includes (no machine paths); :func:`select` keeps the records a configuration uses;
:func:`py_modules` lists the package folders to ship to a Ray cluster.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import re
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from vaebench.errors import VaebenchError

KINDS: dict[str, str] = {"estimator": "ESTIMATORS", "model": "MODELS", "dataset": "DATASETS"}
"""Each kind of plugin, and the module-level dict in which a plugin module declares those it offers."""

GROUPS: dict[str, str] = {kind: f"vaebench.{table.lower()}" for kind, table in KINDS.items()}
"""The entry-point group of each kind: ``vaebench.estimators``, ``vaebench.models``, ``vaebench.datasets``."""

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
"""A plugin's name: it becomes part of file names (``units/convergence/<name>-K1-s0.csv``) and CSV cells, so
letters, digits, ``.``, ``_``, ``+``, ``-`` only (no ``@``: it separates the sampler in unit names)."""

DATA_SUFFIXES = (".npz", ".npy", ".csv")
"""A data-set name ending in one of these is a file; no data-set plugin may take such a name."""


def import_module(module: str) -> ModuleType:
    """Import a plugin module by its dotted name; any failure is one `VaebenchError` line.

    Raises:
        VaebenchError: the module is not on the Python path, or importing it raised (its own error, with the
            file and line where it was raised, in one line).
    """
    if not isinstance(module, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module):
        raise VaebenchError(
            f"plugin module {module!r} is not a dotted module name (like my_pkg.estimators); a file path does "
            "not work: put its folder on PYTHONPATH and name the module"
        )
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and (module == err.name or module.startswith(err.name + ".")):
            raise VaebenchError(
                f"plugin module {module!r} not found: no module named {err.name!r} on the Python path; install "
                "its package (pip install -e <folder>) or put the folder holding it on PYTHONPATH"
            ) from None
        raise VaebenchError(f"plugin module {module!r} does not import: {summarize(err)}") from None
    except (Exception, SystemExit) as err:  # the plugin's own bug; SystemExit: a module that calls exit()
        raise VaebenchError(f"plugin module {module!r} does not import: {summarize(err)}") from None


def summarize(err: BaseException) -> str:
    """An exception in one line: ``Type: message (file, line N)``, at the innermost frame that raised it."""
    text = " ".join(str(err).split()) or "(no message)"
    where = ""
    if isinstance(err, SyntaxError) and err.filename:
        text = " ".join((err.msg or "invalid syntax").split())
        where = f" ({err.filename}, line {err.lineno})"
    else:
        frames = traceback.extract_tb(err.__traceback__)
        mine = [f for f in frames if "importlib" not in f.filename and not f.filename.startswith("<frozen")]
        if mine:
            where = f" ({mine[-1].filename}, line {mine[-1].lineno})"
    return f"{type(err).__name__}: {text}{where}"


def resolve(spec: str) -> tuple[ModuleType, str, Any]:
    """``module:Attr`` (``Attr`` may be dotted) -> (the module, ``Attr``, the object).

    Raises:
        VaebenchError: not of that form, the module does not import, or it has no such attribute.
    """
    module_name, sep, attribute = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or not module_name or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", attribute):
        raise VaebenchError(
            f"plugin {spec!r} is not of the form module:Attr (like my_pkg.estimators:MyEstimator)"
        )
    module = import_module(module_name)
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise VaebenchError(f"plugin {spec!r}: module {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    return module, attribute, obj


def declared(module: ModuleType, kind: str) -> dict[str, Any]:
    """The plugins of one kind that a module declares in its dict `KINDS[kind]` ({} if it has none).

    Raises:
        VaebenchError: the attribute exists but is not a dict of names.
    """
    table = getattr(module, KINDS[kind], None)
    if table is None:
        return {}
    if not isinstance(table, dict) or not all(isinstance(k, str) for k in table):
        raise VaebenchError(
            f"plugin module {module.__name__!r}: {KINDS[kind]} must be a dict of name -> {kind}, got "
            f"{type(table).__name__}"
        )
    return dict(table)


def spec_name(obj: Any) -> str:
    """The name a ``module:Attr`` plugin registers under: its class's own ``name``, else its ``__name__``."""
    own = vars(obj).get("name") if isinstance(obj, type) else getattr(obj, "name", None)
    return own if isinstance(own, str) and own else getattr(obj, "__name__", "")


def check_name(kind: str, name: str, origin: str) -> None:
    """Refuse a plugin name that cannot be a file name or that looks like a data file (`NAME`)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise VaebenchError(
            f"{kind} plugin name {name!r} from {origin} is not valid: use at most 64 letters, digits, '.', '_', "
            "'+' or '-', starting with a letter or digit (it becomes part of file names)"
        )
    if kind == "dataset" and name.lower().endswith(DATA_SUFFIXES):
        raise VaebenchError(
            f"data-set plugin name {name!r} from {origin} ends like a data file ({', '.join(DATA_SUFFIXES)}), "
            "which vaebench reads as a path; rename it"
        )


def entry_points(kind: str) -> list[importlib.metadata.EntryPoint]:
    """The installed entry points of one kind's group (nothing is imported), sorted by name."""
    return sorted(importlib.metadata.entry_points(group=GROUPS[kind]), key=lambda ep: (ep.name, ep.value))


def load_entry_point(kind: str, ep: importlib.metadata.EntryPoint) -> tuple[ModuleType, str | None, Any]:
    """Import what an entry point names -> (module, attribute or None for a whole module, object).

    Raises:
        VaebenchError: its module does not import or lacks the attribute (the message names the
            distribution, so the user knows what to fix or uninstall).
    """
    dist = _dist_label(ep)
    try:
        if ":" in ep.value:
            module, attribute, obj = resolve(ep.value.replace(" ", ""))
            return module, attribute, obj
        module = import_module(ep.value.strip())
    except VaebenchError as err:
        raise VaebenchError(f"entry point {ep.name!r} of {dist} in group {ep.group!r}: {err}") from None
    return module, None, module


def _dist_label(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"distribution {dist.name} {dist.version}" if dist is not None else "an installed distribution"


# ------------------------------------------------------------------------------------------------ provenance


def record(
    kind: str,
    name: str,
    module: ModuleType,
    attribute: str | None,
    obj: Any,
    via: str,
    distribution: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The provenance record of one plugin (see the module docstring); JSON-able.

    Args:
        kind: a key of `KINDS`.
        name: the name it is registered under.
        module: the module it was loaded from.
        attribute: the attribute naming it in ``module`` (``module:Attr`` and entry points), or None when it
            is an entry of the module's `KINDS` dict.
        obj: the plugin itself.
        via: ``"module"``, ``"spec"`` or ``"entry point"``.
        distribution: (name, version) of the distribution that installed it, when known (entry points);
            else looked up from the module's top-level package.

    Raises:
        VaebenchError: the module has no source file (``__main__``, an interactive session): a worker could not
            import it again.
    """
    file = _defining_file(module, obj)
    modules = dict.fromkeys(
        [_top(module.__name__), _top(getattr(obj, "__module__", None) or module.__name__)]
    )
    digest, hashed = source_digest(list(modules))
    dist_name, version = distribution or _distribution(_top(module.__name__))
    return {
        "kind": kind,
        "name": name,
        "module": module.__name__,
        "attribute": attribute,
        "via": via,
        "distribution": dist_name,
        "version": version,
        "file": str(file),
        "path": _search_path(module),
        "sha256": digest,
        "hashed": hashed,
    }


def _top(module_name: str) -> str:
    return module_name.partition(".")[0]


def _defining_file(module: ModuleType, obj: Any) -> Path:
    if module.__name__ == "__main__" or getattr(module, "__file__", None) is None:
        raise VaebenchError(
            f"plugin module {module.__name__!r} has no source file: define plugins in an importable module on "
            "disk (worker processes import it again)"
        )
    try:
        return Path(inspect.getfile(obj) if not isinstance(obj, ModuleType) else module.__file__).resolve()
    except (TypeError, OSError):  # an instance, or a class built at run time: the module's file then
        return Path(module.__file__).resolve()


def _files(top: str) -> list[tuple[str, Path]]:
    """(relative path, file) of the source a top-level module or package consists of."""
    package = sys.modules.get(top) or importlib.import_module(top)
    roots = [Path(p) for p in getattr(package, "__path__", [])]
    if not roots:
        file = getattr(package, "__file__", None)
        if file is None:
            raise VaebenchError(f"plugin module {top!r} has no source file to record")
        return [(Path(file).name, Path(file))]
    found = []
    for root in roots:
        for path in root.rglob("*.py"):
            rel = path.relative_to(root)
            if not any(part == "__pycache__" or part.startswith(".") for part in rel.parts[:-1]):
                found.append((f"{top}/{rel.as_posix()}", path))
    return found


def source_digest(tops: Iterable[str]) -> tuple[str, str]:
    """SHA-256 of the source files of top-level modules or packages, and a phrase saying what was hashed."""
    files = sorted({item for top in tops for item in _files(top)}, key=lambda item: (item[0], str(item[1])))
    outer = hashlib.sha256()
    for rel, path in files:
        try:
            inner = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as err:
            raise VaebenchError(f"cannot read plugin source {path}: {err.strerror}") from None
        outer.update(f"{rel}\0{inner}\n".encode())
    what = ", ".join(tops)
    return outer.hexdigest(), f"{what}: {len(files)} .py file{'s' if len(files) != 1 else ''}"


def _distribution(top: str) -> tuple[str | None, str | None]:
    names = importlib.metadata.packages_distributions().get(top) or []
    for name in names:
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None, None


def _search_path(module: ModuleType) -> str | None:
    """The ``sys.path`` entry under which ``module`` was found (for a worker that lacks it), or None."""
    top = sys.modules.get(_top(module.__name__))
    where = getattr(top, "__path__", None)
    file = Path(next(iter(where))) if where else Path(getattr(top, "__file__", "") or "")
    parent = file.resolve().parent if file.name else None
    return str(parent) if parent is not None else None


# ------------------------------------------------------------------------------------------------ comparing

FINGERPRINT_KEYS = ("kind", "name", "module", "attribute", "sha256")
"""What of a record can change a number: not the machine's paths, nor a version whose code is unchanged."""


def fingerprint(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The part of plugin records that a configuration hash includes, sorted (see `FINGERPRINT_KEYS`)."""
    picked = [{k: r.get(k) for k in FINGERPRINT_KEYS} for r in records]
    return sorted(picked, key=lambda r: (r["kind"], r["name"]))


def changes(recorded: Iterable[dict[str, Any]], current: Iterable[dict[str, Any]]) -> list[str]:
    """What differs between the plugins a run recorded and those loaded now, one phrase each ([] if nothing).

    Each phrase names the plugin and the change: not loaded now, new, another module or attribute, another
    source (with both hashes' first 12 characters and the file), another version.
    """
    before = {(r["kind"], r["name"]): r for r in recorded}
    after = {(r["kind"], r["name"]): r for r in current}
    out = []
    for key in sorted(before.keys() | after.keys()):
        kind, name = key
        a, b = before.get(key), after.get(key)
        who = f"{kind} plugin {name!r}"
        if b is None:
            out.append(f"{who} (from {a['module']}) was used by the run but is not loaded now")
        elif a is None:
            out.append(f"{who} (from {b['module']}) is loaded now but was not used by the run")
        elif (a["module"], a.get("attribute")) != (b["module"], b.get("attribute")):
            out.append(f"{who} came from {origin(a)}, now from {origin(b)}")
        elif a["sha256"] != b["sha256"]:
            out.append(
                f"{who}: its source changed since the run started (sha256 {a['sha256'][:12]} then, "
                f"{b['sha256'][:12]} now; {b['file']})"
            )
        elif a.get("version") != b.get("version"):
            out.append(f"{who}: version {a.get('version')} then, {b.get('version')} now (same source)")
    return out


def origin(rec: dict[str, Any]) -> str:
    """``module:Attr`` or ``module (DICT['name'])``: where a record says its plugin is defined."""
    if rec.get("attribute"):
        return f"{rec['module']}:{rec['attribute']}"
    return f"{rec['module']} ({KINDS[rec['kind']]}[{rec['name']!r}])"


def describe(rec: dict[str, Any]) -> str:
    """One line for ``list``: where a plugin came from (origin, distribution and version, file)."""
    installed = f"{rec['distribution']} {rec['version']}, " if rec.get("distribution") else ""
    return f"{origin(rec)} ({installed}{rec['file']}, sha256 {rec['sha256'][:12]})"


def select(
    records: Iterable[dict[str, Any]],
    estimators: Iterable[str] = (),
    models: Iterable[str] = (),
    datasets: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """The records of the plugins a configuration uses (what its hash and a resume should compare)."""
    wanted = {("estimator", n) for n in estimators} | {("model", n) for n in models}
    wanted |= {("dataset", n) for n in datasets}
    return [r for r in records if (r["kind"], r["name"]) in wanted]


def py_modules(records: Iterable[dict[str, Any]]) -> list[str]:
    """The package folders to ship to Ray workers (``runtime_env={"py_modules": [...]}``) for these plugins.

    Ray uploads each folder and puts it on its workers' path, so a cluster needs nothing installed; workers
    then import the same source (`vaebench.plugins.registry.reload` checks its hash).

    Raises:
        VaebenchError: a plugin that is a single-file module (Ray ships folders): make it a package, or
            install it on every node.
    """
    folders = []
    for rec in records:
        top = rec["module"].partition(".")[0]
        folder = Path(rec["path"] or "") / top
        if not folder.is_dir():
            raise VaebenchError(
                f"{rec['kind']} plugin {rec['name']!r} comes from the single file {rec['file']}: Ray ships "
                "packages (folders); put it in a package, or install it on every node of the cluster"
            )
        if str(folder) not in folders:
            folders.append(str(folder))
    return folders
