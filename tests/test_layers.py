"""The package's architecture, checked from its own source: layers, no cycles, small functions, one RNG home.

Everything is read with ``ast`` from the files under ``vaebench/`` (nothing is imported), so a violation is
named with its file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vaebench

ROOT = Path(vaebench.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()
LAYER = {f"vaebench.{top}": i for i, (_, tops) in enumerate(vaebench.LAYERS) for top in tops}


def layer_of(module: str) -> int:
    """The layer of a module: that of its top-level module or package under ``vaebench``."""
    top = ".".join(module.split(".")[:2])
    return LAYER[top]


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported vaebench module, line, inside a function) for every vaebench import of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    inner = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(f)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            names = subs if len(subs) == len(node.names) else [base, *subs]
        else:
            continue
        for name in names:
            target = _resolve(name) if name.startswith("vaebench") else None
            if target and target != module and target != "vaebench":
                out.append((target, node.lineno, id(node) in inner))
    return out


GRAPH = {m: imports(m) for m in MODULES if m != "vaebench"}


def test_every_module_belongs_to_a_stated_layer_named_in_the_package_docstring() -> None:
    for module in GRAPH:
        assert ".".join(module.split(".")[:2]) in LAYER, f"{module} is in no layer of vaebench.LAYERS"
    for name, _ in vaebench.LAYERS:
        assert f"**{name}**" in vaebench.__doc__


def test_no_module_imports_one_of_a_higher_layer() -> None:
    upward = [
        f"{MODULES[m].relative_to(ROOT.parent)}:{line} imports {t} ({vaebench.LAYERS[layer_of(t)][0]} above "
        f"{vaebench.LAYERS[layer_of(m)][0]})"
        for m, found in GRAPH.items()
        for t, line, _ in found
        if layer_of(t) > layer_of(m)
    ]
    assert not upward, "\n".join(upward)


def test_the_report_imports_nothing_from_the_suite() -> None:
    bad = [(m, t) for m, found in GRAPH.items() if m.startswith("vaebench.report") for t, _, _ in found]
    assert not [b for b in bad if b[1].startswith("vaebench.suite")]


def test_there_is_no_import_cycle() -> None:
    edges = {m: {t for t, _, _ in found} for m, found in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in edges.get(m, ()):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(t) :], t]))
            if t not in state:
                visit(t, [*path, t])
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m, [m])


def test_only_the_command_line_imports_vaebench_inside_functions() -> None:
    inner = [
        f"{MODULES[m].relative_to(ROOT.parent)}:{line} imports {t} inside a function"
        for m, found in GRAPH.items()
        if m != "vaebench.cli"
        for t, line, in_function in found
        if in_function
    ]
    assert not inner, "\n".join(inner)


def _functions(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path, node


@pytest.mark.parametrize("package", ["train", "measures"])
def test_no_function_over_80_lines_or_8_parameters(package: str) -> None:
    too_big = []
    for path, node in _functions(package):
        a = node.args
        params = [*a.posonlyargs, *a.args, *a.kwonlyargs] + [p for p in (a.vararg, a.kwarg) if p]
        params = [p for p in params if p.arg not in ("self", "cls")]
        body = node.body[1:] if ast.get_docstring(node) is not None else node.body
        lines = (node.end_lineno - body[0].lineno + 1) if body else 0
        if len(params) > 8 or lines > 80:
            too_big.append(
                f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}: {len(params)} parameters, {lines} lines"
            )
    assert not too_big, "\n".join(too_big)


RANDOM_SOURCES = ("Generator", "SeedSequence", "default_rng", "manual_seed", "fork_rng")


def test_random_generators_are_built_only_in_rng() -> None:
    found = []
    for module, path in MODULES.items():
        if module == "vaebench.rng":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in RANDOM_SOURCES:
                    found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} calls {name}")
    assert not found, "\n".join(found)
