"""Imports point down: each top-level package imports only the packages of the layers below its own
(read from the source with ast, lazy imports inside functions included), so a job never reaches up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Bottom first. A package may import its own modules and those of lower layers, none of its layer's.
LAYERS = [
    {"export", "finsent"},  # the model contract and ONNX export; the client package (client/finsent)
    {"training", "model_repository"},  # fine-tuning a checkpoint; the Triton repository of the exports
    {"server"},  # running the stack (server.stack)
    {"loadtest"},  # load generation: Locust sweeps and the threaded traffic (traffic.py)
    {"evaluation", "benchmarks", "k8s"},  # jobs that serve and call the stack, and drive load at it
]
LAYER = {package: level for level, packages in enumerate(LAYERS) for package in packages}
SOURCES = {package: ROOT / ("client/finsent" if package == "finsent" else package) for package in LAYER}


def imported(path: Path) -> set[str]:
    """The top-level names `path` imports (relative imports are its own package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(LAYER))
def test_a_package_imports_only_the_layers_below_it(package):
    upward = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted(SOURCES[package].rglob("*.py"))
        for name in sorted(imported(path) & LAYER.keys())
        if name != package and LAYER[name] >= LAYER[package]
    ]
    assert not upward, upward


def test_every_top_level_package_has_a_layer():
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= LAYER.keys(), packages - LAYER.keys()


def client_modules() -> dict[str, Path]:
    """finsent's modules by dotted name (a package by its __init__.py)."""
    found = {}
    for path in sorted(SOURCES["finsent"].rglob("*.py")):
        parts = path.relative_to(SOURCES["finsent"].parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def client_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The finsent modules `name` imports, lazy imports included (`from finsent.bulk import storage`
    names the module finsent.bulk.storage; a relative import resolves against name's package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            for alias in node.names:
                found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module)
    return {m for m in found if m in modules and m != name}


def test_the_client_package_has_no_import_circle():
    modules = client_modules()
    graph = {name: client_imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, str] = {}  # "open" while on the path walked, "done" after

    def circle(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target] if target in path else [*path, target]
            if target not in state and (found := circle(target, [*path, target])):
                return found
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            found = circle(name, [name])
            assert found is None, " -> ".join(found)
